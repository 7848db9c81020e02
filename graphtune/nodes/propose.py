"""The controller's propose step: new candidate configs from the LLM proposer, topped up by Optuna search.

The LLM reads the hot spots, sample trajectories and everything measured so far, and proposes
candidates with rationales; each is validated against the search space (restricted to the request's
scope), and the rejected ones go back to the model with their reasons, a bounded number of times.
Optuna's TPE search (``SearchProposer``), warm-started from every eval, fills what the LLM left of
the batch, and is the whole proposer when no controller model is configured.

Every candidate is a set of mutations of the BASELINE (active) config, is new (no config proposed
or evaluated before), and lies inside the space: a proposal outside it never becomes a candidate.
The pure half lives in ``graphtune.tuning.llm_proposer``.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.runtime import Runtime

from graphtune.evals.runner import EvalReport
from graphtune.graphs.context import ControllerContext
from graphtune.graphs.state import CandidateRecord, ControllerState
from graphtune.llm import OFFLINE_NOTICE
from graphtune.prompts import render_prompt
from graphtune.spec import WorkflowSpec, load_spec
from graphtune.throttling import model_failure
from graphtune.tuning.hotspots import Observation as HotspotObservation
from graphtune.tuning.llm_proposer import (
    Accepted,
    ProposalSet,
    Rejected,
    TriedConfig,
    describe_mutations,
    prompt_inputs,
    retry_inputs,
    screen,
    tried_config,
)
from graphtune.tuning.request import TuningRequest
from graphtune.tuning.search import Observation as SearchObservation
from graphtune.tuning.config_paths import get_path
from graphtune.tuning.evidence import evidence_moves, named_paths
from graphtune.tuning.search import SearchProposer, focus_from_hot_spots
from graphtune.tuning.space import SearchSpace

MAX_ERROR_CHARS = 300
MAX_REPLY_CHARS = 2000
MAX_MESSAGE_REJECTIONS = 6


async def propose(state: ControllerState, runtime: Runtime[ControllerContext]) -> dict:
    ctx = runtime.context if runtime.context is not None else ControllerContext()
    request = TuningRequest.model_validate(state["request"])
    spec = await asyncio.to_thread(load_spec, ctx.spec_source(state["spec"]))
    baseline = CandidateRecord.model_validate(state["baseline"])
    round_ = int(state.get("round") or 0) + 1
    earlier = [CandidateRecord.model_validate(c) for c in state.get("candidates") or []]
    evals = {h: EvalReport.model_validate(r) for h, r in (state.get("evals") or {}).items()}
    update: dict[str, Any] = {"round": round_, "candidates": [], "rejected_proposals": [], "controller_usage": []}
    if baseline.config_hash not in evals:
        # The baseline is scored first, alone: a run that cannot score its objective stops before any
        # candidate, and round one's candidates can read the baseline's own failures.
        text = (f"Scoring the baseline (active version {state['baseline'].get('version', '?')}) first, "
                "before proposing any candidate.")
        return {**update, "round": round_ - 1, "messages": [AIMessage(content=text, name="propose")]}

    used = sum(1 for c in earlier if c.id != "baseline")
    n = min(ctx.batch_size, request.budget.candidates - used)
    if n <= 0:
        text = f"Round {round_}: no new candidates: the candidate budget is used ({used} of {request.budget.candidates})."
        return {**update, "messages": [AIMessage(content=text, name="propose")]}

    workflow_model = ctx.workflow_has_model(spec)  # the workflow's model, not the controller's
    space = spec.space.restricted(request.scope)
    out_of_scope = set(spec.space.tunables) - set(space.tunables)
    if not space.available(workflow_model):
        scope = ", ".join(request.scope) or "the whole space"
        text = f"Round {round_}: no new candidates: no tunable to change in scope ({scope})"
        if space.tunables:
            text += "; the ones there need the workflow's LLM, and none is configured"
        return {**update, "messages": [AIMessage(content=text + ".", name="propose")]}

    base_tried, tried = _measured(baseline, earlier, evals, request)
    known = {baseline.config_hash: "the baseline (current config)"}
    known.update({c.config_hash: c.id for c in earlier if c.config_hash not in known})
    known.update({h: "an already evaluated config" for h in evals if h not in known})
    notes: list[str] = []
    if n < ctx.batch_size:
        notes.append(f"candidate budget: {used} of {request.budget.candidates} used, so {n} this round")

    llm: list[Accepted] = []
    rejected: list[Rejected] = []
    if ctx.has_model():
        inputs = prompt_inputs(
            workflow=spec.workflow, description=spec.description, goal=request.goal, guardrails=request.guardrails,
            space=space, config=baseline.config, observation=_observation(state.get("observation")),
            baseline=base_tried, history=tried, n=n, model_available=workflow_model,
            eval_observation=_observation(state.get("eval_observation")))
        llm, rejected, usage = await _ask_model(ctx, spec, render_prompt("propose", **inputs), n, space=space,
                                                base_config=baseline.config, known=known, out_of_scope=out_of_scope,
                                                model_available=workflow_model)
        update["controller_usage"] = [{"step": "propose", **usage}]

    observation = _observation(state.get("observation"))
    evals_seen = _observation(state.get("eval_observation"))
    hot_spots = [(h.node, h.severity) for obs in (observation, evals_seen) if obs for h in obs.hot_spots]
    search = await _search(space, request, ctx, baseline, base_tried, tried, known, n - len(llm), workflow_model,
                           hot_spots, evals_seen.hot_spots if evals_seen else [])
    next_id = 1 + sum(1 for c in earlier if c.id.startswith("c"))
    records = [
        CandidateRecord(id=f"c{next_id + i}", round=round_, proposer=a.candidate.proposer, mutations=a.candidate.mutations,
                        rationale=a.candidate.rationale, config=a.config, config_hash=a.config_hash)
        for i, a in enumerate([*llm, *search])
    ]
    update["candidates"] = [r.model_dump(mode="json") for r in records]
    update["rejected_proposals"] = [{"round": round_, "proposer": "llm", "candidate": r.candidate, "reasons": r.reasons}
                                    for r in rejected]
    text = _summary(round_, records, rejected, notes, len(llm), len(search))
    if not ctx.has_model():
        text = f"{OFFLINE_NOTICE}; the Optuna search proposer proposes every candidate.\n{text}"
    update["messages"] = [AIMessage(content=text, name="propose")]
    return update


# -- the LLM proposer ---------------------------------------------------------------------------
async def _ask_model(ctx: ControllerContext, spec: WorkflowSpec, prompt: str, n: int, **screening: Any
                     ) -> tuple[list[Accepted], list[Rejected], dict[str, int]]:
    """Ask for n candidates; send rejected ones back with their reasons, at most ``max_proposal_retries`` times.

    A reply that cannot be used at all (an exception from the call, a parsing error, no ProposalSet)
    is a failed attempt too, retried within the same bound and reported: "malformed output", or the
    endpoint's failure (rate limited, 5xx) when the call itself failed after the client's retries.
    """
    model = ctx.build_chat_model(spec).with_structured_output(ProposalSet, include_raw=True)
    messages: list[BaseMessage] = [HumanMessage(content=prompt)]
    accepted: list[Accepted] = []
    rejected: list[Rejected] = []
    usage = {"input_tokens": 0, "output_tokens": 0}
    for attempt in range(ctx.max_proposal_retries + 1):
        want = n - len(accepted)
        try:
            result = await model.ainvoke(messages)
        except Exception as exc:  # openai errors after the client's own retries, validation errors, ...
            failure = model_failure(exc) or f"malformed output: {_clip(f'{type(exc).__name__}: {exc}', MAX_ERROR_CHARS)}"
            reply = None
        else:
            raw = result.get("raw")
            for key in usage:
                usage[key] += int((getattr(raw, "usage_metadata", None) or {}).get(key) or 0)
            parsed, error = result.get("parsed"), result.get("parsing_error")
            if error is not None or not isinstance(parsed, ProposalSet):
                why = f"{type(error).__name__}: {error}" if error is not None else "the reply held no ProposalSet"
                failure = f"malformed output: {_clip(why, MAX_ERROR_CHARS)}"
                content = getattr(raw, "content", None)
                reply = _clip(content, MAX_REPLY_CHARS) if isinstance(content, str) and content.strip() else None
            else:
                failure, reply = None, parsed.model_dump_json()
        if failure is not None:
            now = [Rejected({}, [failure])]
        else:
            screened = screen(parsed.candidates, proposer="llm", limit=want, **screening)
            accepted += screened.accepted
            now = screened.rejected
        rejected += now
        count = n - len(accepted) if failure is not None else min(len(now), n - len(accepted))
        if count <= 0 or attempt == ctx.max_proposal_retries:
            break
        if reply is not None:
            messages.append(AIMessage(content=reply))  # plain text: safe to resend whatever the output method
        messages.append(HumanMessage(content=render_prompt("propose_retry", **retry_inputs(now, accepted, count))))
    return accepted, rejected, usage


# -- the search proposer ------------------------------------------------------------------------
async def _search(space: SearchSpace, request: TuningRequest, ctx: ControllerContext, baseline: CandidateRecord,
                  base_tried: TriedConfig, tried: list[TriedConfig], known: dict[str, str], n: int,
                  workflow_model: bool, hot_spots: list[tuple[str, float]], eval_spots: list) -> list[Accepted]:
    """Up to n search candidates, warm-started from every evaluated config, none already known;
    the local start moves the tunables that name hot spots first, and with nothing feasible yet it
    first tries the moves the eval runs' failures point to (``tuning.evidence``)."""
    if n <= 0:
        return []
    history = [SearchObservation(config=t.config, score=_goal_estimate(t), feasible=t.good, violation=t.violation,
                                 clear=t.clear, constraints=t.constraints, complete=t.stop_reason is None)
               for t in [base_tried, *tried] if t.evaluated]
    # The search only knows evaluated configs: ask for enough extra to drop those it cannot know about.
    evaluated = {t.config_hash for t in [base_tried, *tried] if t.evaluated}
    unknown_to_search = sum(1 for h in known if h not in evaluated)
    searcher = SearchProposer(space, direction=request.goal.direction, seed=ctx.seed, model_available=workflow_model)
    paths = [p.path for p in searcher.params]
    focus = focus_from_hot_spots(paths, hot_spots)
    for spot in eval_spots:  # a tunable the failures name is moved first
        for path, strength in named_paths(spot, paths, lambda p: get_path(baseline.config, p, None)).items():
            focus[path] = focus.get(path, 1.0) + strength * max(spot.severity, 1.0)
    domains = {p.path: p.domain for p in searcher.params}
    proposals = await asyncio.to_thread(searcher.propose, baseline.config, history, n + unknown_to_search, focus,
                                        lambda config: evidence_moves(eval_spots, domains, lambda p: get_path(config, p, None)))
    return screen(proposals, space=space, base_config=baseline.config, known=known, proposer="optuna", limit=n,
                  model_available=workflow_model).accepted


# -- helpers ------------------------------------------------------------------------------------
def _goal_estimate(tried: TriedConfig) -> float:
    """The goal over the whole eval set: measured, or for an eval the race cut, the paired estimate."""
    value = tried.estimate if tried.estimate is not None else tried.value
    return math.nan if value is None else value


def _measured(baseline: CandidateRecord, earlier: list[CandidateRecord], evals: dict[str, EvalReport],
              request: TuningRequest) -> tuple[TriedConfig, list[TriedConfig]]:
    """The baseline and every earlier candidate (first record per config) with what it measured."""
    base_report = evals.get(baseline.config_hash)

    def tried(record: CandidateRecord) -> TriedConfig:
        return tried_config(record, evals.get(record.config_hash), base_report, request.goal, request.guardrails)

    seen = {baseline.config_hash}
    others = []
    for record in earlier:
        if record.config_hash not in seen:
            seen.add(record.config_hash)
            others.append(tried(record))
    return tried(baseline), others


def _observation(raw: dict | None) -> HotspotObservation | None:
    return HotspotObservation.model_validate(raw) if raw else None


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _summary(round_: int, records: list[CandidateRecord], rejected: list[Rejected], notes: list[str],
             from_llm: int, from_search: int) -> str:
    who = [f"{k} from the LLM" for k in [from_llm] if k] + [f"{k} from Optuna search" for k in [from_search] if k]
    if records:
        lines = [f"Round {round_}: {len(records)} candidate{'s' if len(records) != 1 else ''} proposed ({', '.join(who)})."]
    else:
        lines = [f"Round {round_}: no new candidates: every proposal was rejected or already tried."]
    lines += [f"- {r.id} ({r.proposer}) {describe_mutations(r.mutations)}: {_clip(r.rationale, 160) or 'no rationale'}"
              for r in records]
    if rejected:
        lines.append(f"{len(rejected)} LLM proposal{'s' if len(rejected) != 1 else ''} rejected:")
        lines += [f"- {_clip(r.describe(), 240)}" for r in rejected[:MAX_MESSAGE_REJECTIONS]]
        if len(rejected) > MAX_MESSAGE_REJECTIONS:
            lines.append(f"- ... and {len(rejected) - MAX_MESSAGE_REJECTIONS} more (see rejected_proposals)")
    lines += [f"Note: {note}." for note in notes]
    return "\n".join(lines)


__all__ = ["propose"]
