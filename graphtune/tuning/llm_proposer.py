"""The LLM proposer without I/O: what the model is shown, and which of its proposals become candidates.

The controller's propose node renders ``prompts/propose.md`` with :func:`prompt_inputs`, asks the
model for a :class:`ProposalSet` (structured output), and passes the answer through :func:`screen`:
a proposal outside the search space, a no-op, or a config seen before never becomes a candidate;
it comes back as a :class:`Rejected` with reasons the model can act on (``prompts/propose_retry.md``
via :func:`retry_inputs`).

Nothing here knows a particular workflow. The prompt is built from the spec's search space, the
hot spots the observe step found in production traces, and what earlier candidates measured, and it
stays bounded: few sample trajectories, few steps each, and at most ``MAX_HISTORY`` history lines.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from graphtune.evals.runner import EvalReport
from graphtune.spec import Guardrail
from graphtune.tuning.config_paths import config_hash, get_path, has_path
from graphtune.tuning.decision import feasible, format_number, guardrail_checks, metric_row, objective_value, violation
from graphtune.tuning.hotspots import Observation, format_observation
from graphtune.tuning.mutations import Candidate, Mutation, apply_mutations, check_candidate
from graphtune.tuning.request import TuningGoal
from graphtune.tuning.space import BoolDomain, ChoiceDomain, FloatDomain, IntDomain, SearchSpace, TextDomain

MAX_HOT_SPOTS = 8
MAX_NOTES = 5
MAX_SAMPLES = 3
MAX_SAMPLE_STEPS = 12
MAX_STEP_CHARS = 240
MAX_HISTORY = 24  # candidate lines; beyond it the best third and the most recent rest are shown
MAX_LINE_CHARS = 400
MAX_VALUE_CHARS = 80  # a value (e.g. a prompt text) inside a one-line description
MAX_RATIONALE_CHARS = 200


# -- the model's answer (structured output) ----------------------------------------------------
class ProposedCandidate(BaseModel):
    """One candidate as the model proposes it; lenient on purpose, so one bad candidate is a
    rejection with reasons rather than a parse failure of the whole answer."""

    mutations: list[Mutation] = Field(default_factory=list, description="Changes to the current config: tunable path and new value")
    rationale: str = Field("", description="One sentence: which hot spot or earlier result this answers, and why it should help")


class ProposalSet(BaseModel):
    """New candidate configurations for the workflow, each a few changes to the current config with a rationale."""

    candidates: list[ProposedCandidate] = Field(default_factory=list)


# -- what earlier candidates measured ----------------------------------------------------------
class TriedConfig(BaseModel):
    """An earlier candidate (or the baseline) with what its eval measured, as the proposers see it."""

    id: str
    round: int = 0
    proposer: str = ""
    mutations: list[Mutation] = Field(default_factory=list)
    rationale: str = ""
    config: dict[str, Any]
    config_hash: str
    evaluated: bool = False
    value: float | None = Field(None, description="The goal's statistic, by tuning.decision.objective_value")
    feasible: bool | None = Field(None, description="tuning.decision.feasible vs the baseline (False when stopped early); None without a baseline report")
    broken: list[str] = Field(default_factory=list, description="Guardrails it broke, described")
    violation: float = Field(0.0, description="How far past their limits the broken guardrails are (tuning.decision.violation)")
    clear: bool = Field(False, description="Its goal is better than the baseline's with 95% confidence (paired)")
    stop_reason: str | None = Field(None, description="Why its eval stopped early; None when it ran to the end")
    metrics: dict[str, float] = Field(default_factory=dict, description="Guardrail statistics, e.g. 'p95 latency_ms'")
    constraints: list[float | None] = Field(default_factory=list, description="Per guardrail, how far past its limit "
                                            "(> 0 broken, <= 0 kept, None not measurable): tuning.decision.GuardrailCheck.constraint")
    estimate: float | None = Field(None, description="The goal's statistic over the whole eval set, estimated as the baseline's "
                                                     "plus the paired change on the examples it ran (differs from value when stopped early)")

    @property
    def good(self) -> bool:
        """A complete measurement that kept the guardrails (unknown guardrails count as kept)."""
        return self.evaluated and self.feasible is not False and self.stop_reason is None


def tried_config(record: dict | BaseModel, report: EvalReport | None, baseline_report: EvalReport | None,
                 goal: TuningGoal, guardrails: list[Guardrail]) -> TriedConfig:
    """A candidate record (CandidateRecord or its dict) joined with its eval report, if any."""
    data = record.model_dump() if isinstance(record, BaseModel) else dict(record)
    tried = TriedConfig.model_validate(data)
    if report is None:
        return tried
    tried.evaluated = True
    tried.value = objective_value(report, goal)
    if report.stopped_early:
        tried.stop_reason = report.stop_reason or "stopped early"
    for guardrail in guardrails:
        value = report.value(guardrail.metric, guardrail.statistic)
        if value is not None:
            tried.metrics[f"{guardrail.statistic} {guardrail.metric}"] = value
    if baseline_report is not None:
        checks = guardrail_checks(report, baseline_report, guardrails)
        tried.feasible = feasible(report, baseline_report, guardrails)
        tried.broken = [f"{c.guardrail} ({c.detail})" for c in checks if c.passed is False]
        tried.violation = violation(checks)
        tried.constraints = [c.constraint for c in checks]
        row = metric_row(report, baseline_report, goal.metric, goal.statistic, higher_is_better=goal.direction == "maximize")
        tried.clear = row.better is True
        base_value = objective_value(baseline_report, goal)
        tried.estimate = base_value + row.delta if base_value is not None and row.delta is not None else tried.value
    return tried


# -- the prompt ---------------------------------------------------------------------------------
def describe_value(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_mutations(mutations: Sequence[Mutation]) -> str:
    return ", ".join(f"{m.path}={describe_value(m.value)}" for m in mutations) or "(no changes)"


def describe_domain(domain: Any) -> str:
    """A tunable's domain in words: bounds and step, choices, bool, or text with its placeholders."""
    if isinstance(domain, (FloatDomain, IntDomain)):
        kind = "integer" if isinstance(domain, IntDomain) else "number"
        text = f"{kind} in [{domain.low:g}, {domain.high:g}]"
        if domain.step and not (isinstance(domain, IntDomain) and domain.step == 1):
            text += f", step {domain.step:g} from {domain.low:g}"
        if domain.log:
            text += ", log scale"
    elif isinstance(domain, BoolDomain):
        text = "true or false"
    elif isinstance(domain, ChoiceDomain):
        text = "one of " + " | ".join(describe_value(v, 200) for v in domain.values)
    elif isinstance(domain, TextDomain):
        text = f"text, at most {domain.max_length} characters"
        if domain.placeholders:
            text += ", must keep the placeholders " + ", ".join(domain.placeholders)
    else:  # pragma: no cover - the Domain union is closed
        text = type(domain).__name__
    if domain.requires_model:
        text += "; only matters with an LLM"
    if domain.description:
        text += f" ({domain.description})"
    return text


def describe_space(space: SearchSpace, config: dict, *, model_available: bool) -> str:
    """One line per tunable the proposer may change now, with its current value."""
    lines = []
    for path, domain in space.available(model_available).items():
        current = describe_value(get_path(config, path)) if has_path(config, path) else "(unset)"
        lines.append(f"- {path}: {describe_domain(domain)}; current {current}")
    idle = sorted(set(space.tunables) - set(space.available(model_available)))
    if idle:
        lines.append(f"(not tunable now, the workflow has no LLM: {', '.join(idle)})")
    return "\n".join(lines) or "(no tunable in scope)"


def format_samples(observation: Observation | None) -> str:
    """The first ``MAX_SAMPLES`` trajectories, ``MAX_SAMPLE_STEPS`` steps each, one clipped line per step."""
    if observation is None or not observation.samples:
        return "(none)"
    blocks = []
    for sample in observation.samples[:MAX_SAMPLES]:
        head = f"trace {sample.trace_id[:12]}: {sample.why}"
        if sample.status:
            head += f" (status {sample.status})"
        lines = [head]
        for step in sample.steps[:MAX_SAMPLE_STEPS]:
            lines.append("  - " + describe_value(step, MAX_STEP_CHARS))
        if len(sample.steps) > MAX_SAMPLE_STEPS:
            lines.append(f"  - ... {len(sample.steps) - MAX_SAMPLE_STEPS} more steps")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def format_hot_spots(observation: Observation | None) -> str:
    if observation is None:
        return "(no production observation for this run)"
    trimmed = observation.model_copy(update={
        "hot_spots": observation.hot_spots[:MAX_HOT_SPOTS], "samples": [], "notes": observation.notes[:MAX_NOTES]})
    text = format_observation(trimmed)
    if len(observation.hot_spots) > MAX_HOT_SPOTS:
        text += f"\n({len(observation.hot_spots) - MAX_HOT_SPOTS} less severe hot spots not shown)"
    return text


def _fmt(value: float | None) -> str:
    return format_number(value if value is not None and math.isfinite(value) else None)


def _history_line(tried: TriedConfig, goal: TuningGoal, baseline_value: float | None) -> str:
    head = f"{tried.id} [round {tried.round}, {tried.proposer}] {describe_mutations(tried.mutations)}"
    if tried.rationale:
        head += f" | why: {' '.join(tried.rationale.split())}"
    if not tried.evaluated:
        result = "not evaluated yet"
    else:
        result = f"{goal.statistic} {goal.metric} {_fmt(tried.value)}"
        if tried.value is not None and baseline_value:
            result += f" ({tried.value / baseline_value - 1:+.1%} vs baseline)"
        if tried.metrics:
            result += "; " + ", ".join(f"{k} {_fmt(v)}" for k, v in tried.metrics.items())
        if tried.broken:
            result += "; BROKE " + "; ".join(tried.broken)
        elif tried.feasible is True:
            result += "; guardrails kept"
        if tried.stop_reason is not None:
            result += f"; stopped early: {tried.stop_reason}"
    # the result matters more than a long rationale: clip the head, keep the result whole
    room = max(60, MAX_LINE_CHARS - len(result) - 3)
    if len(head) > room:
        head = head[: room - 1] + "…"
    return f"- {head} -> {result}"


def format_history(baseline: TriedConfig, tried: Sequence[TriedConfig], goal: TuningGoal) -> str:
    """The baseline's values, then one line per earlier candidate (bounded, see ``MAX_HISTORY``)."""
    if baseline.evaluated:
        base = f"baseline (current config): {goal.statistic} {goal.metric} {_fmt(baseline.value)}"
        if baseline.metrics:
            base += "; " + ", ".join(f"{k} {_fmt(v)}" for k, v in baseline.metrics.items())
    else:
        base = "baseline (current config): not evaluated yet"
    lines = [base]
    shown = list(tried)
    if len(shown) > MAX_HISTORY:
        sign = 1 if goal.direction == "maximize" else -1
        measured = [t for t in shown if t.value is not None and math.isfinite(t.value) and t.feasible is not False]
        best = {t.id for t in sorted(measured, key=lambda t: -sign * t.value)[: MAX_HISTORY // 3]}
        recent = [t.id for t in shown if t.id not in best][-(MAX_HISTORY - len(best)):]
        keep = best | set(recent)
        lines.append(f"({len(shown) - len(keep)} earlier candidates not shown; the best and the most recent follow)")
        shown = [t for t in shown if t.id in keep]
    lines += [_history_line(t, goal, baseline.value) for t in shown]
    if not tried:
        lines.append("(no candidates tried yet)")
    return "\n".join(lines)


def prompt_inputs(*, workflow: str, description: str, goal: TuningGoal, guardrails: list[Guardrail],
                  space: SearchSpace, config: dict, observation: Observation | None,
                  baseline: TriedConfig, history: Sequence[TriedConfig], n: int, model_available: bool,
                  eval_observation: Observation | None = None) -> dict[str, str]:
    """The values ``prompts/propose.md`` is rendered with."""
    return {
        "workflow": workflow,
        "description": description or "",
        "goal": goal.describe(),
        "guardrails": "\n".join(f"- {g.describe()}" for g in guardrails) or "- (none)",
        "space": describe_space(space, config, model_available=model_available),
        "constraints": "\n".join(f"- {c.describe()}" for c in space.constraints) or "- (none)",
        "config": json.dumps(config, indent=2, ensure_ascii=False),
        "hot_spots": format_hot_spots(observation),
        "samples": format_samples(observation),
        "eval_hot_spots": format_hot_spots(eval_observation) if eval_observation else "(no eval runs yet)",
        "eval_samples": format_samples(eval_observation),
        "history": format_history(baseline, history, goal),
        "n": str(n),
    }


# -- screening proposals ------------------------------------------------------------------------
@dataclass
class Accepted:
    candidate: Candidate
    config: dict
    config_hash: str


@dataclass
class Rejected:
    candidate: dict  # the proposal as given ({} for a malformed reply)
    reasons: list[str]

    def describe(self) -> str:
        mutations = self.candidate.get("mutations") or []
        what = ", ".join(f"{m.get('path')}={describe_value(m.get('value'))}" for m in mutations
                         if isinstance(m, dict)) if mutations else "your reply"
        return f"{what}: {'; '.join(self.reasons)}"


@dataclass
class Screened:
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def screen(proposals: Sequence[ProposedCandidate | Candidate], *, space: SearchSpace, base_config: dict,
           known: dict[str, str], proposer: str, limit: int, model_available: bool,
           out_of_scope: Collection[str] = ()) -> Screened:
    """Split proposals into valid new candidates (at most ``limit``) and rejections with reasons.

    ``known`` maps config hashes already proposed or evaluated to a label ("c2", "the baseline");
    accepted candidates are added to it, so a batch never holds the same config twice.
    ``out_of_scope`` lists tunables of the spec this run may not change, for a clearer reason.
    Proposals past ``limit`` are ignored.
    """
    result = Screened()
    for proposal in proposals:
        if len(result.accepted) >= limit:
            break
        as_given = proposal.model_dump(mode="json", include={"mutations", "rationale"})
        if not proposal.mutations:
            result.rejected.append(Rejected(as_given, ["no changes proposed: give at least one {path, value}"]))
            continue
        scoped = [f"{m.path} is outside this run's scope; change only {', '.join(space.tunables)}"
                  for m in proposal.mutations if m.path in out_of_scope]
        if scoped:
            result.rejected.append(Rejected(as_given, scoped))
            continue
        candidate = Candidate(mutations=[Mutation(path=m.path, value=m.value) for m in proposal.mutations],
                              rationale=" ".join(proposal.rationale.split()), proposer=proposer)
        rejections = check_candidate(space, base_config, candidate, model_available=model_available)
        if rejections:
            result.rejected.append(Rejected(as_given, [r.message for r in rejections]))
            continue
        candidate.mutations = _normalised(space, base_config, candidate.mutations)
        if not candidate.mutations:  # only float spelling differed from the current config
            result.rejected.append(Rejected(as_given, ["the candidate changes nothing: every value equals the current config"]))
            continue
        config = apply_mutations(base_config, candidate.mutations)
        digest = config_hash(config)
        if digest in known:
            result.rejected.append(Rejected(as_given, [f"same config as {known[digest]}: propose something not tried yet"]))
            continue
        known[digest] = f"another candidate of this batch ({describe_mutations(candidate.mutations)})"
        result.accepted.append(Accepted(candidate, config, digest))
    return result


def _normalised(space: SearchSpace, base_config: dict, mutations: list[Mutation]) -> list[Mutation]:
    """Mutations that really change something, with float values as floats (1 -> 1.0), so equal
    configs hash equally whoever proposed them."""
    out = []
    for m in mutations:
        value = m.value
        if isinstance(space.tunables.get(m.path), FloatDomain):
            value = float(f"{float(value):.12g}")
        if has_path(base_config, m.path) and _same(get_path(base_config, m.path), value):
            continue
        out.append(Mutation(path=m.path, value=value))
    return out


def _same(a: Any, b: Any) -> bool:
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def retry_inputs(rejected: Sequence[Rejected], accepted: Sequence[Accepted], count: int) -> dict[str, str]:
    """The values ``prompts/propose_retry.md`` is rendered with."""
    return {
        "rejections": "\n".join(f"- {r.describe()}" for r in rejected),
        "accepted": "\n".join(f"- {describe_mutations(a.candidate.mutations)}" for a in accepted) or "- (none yet)",
        "count": str(count),
    }


__all__ = [
    "Accepted", "ProposalSet", "ProposedCandidate", "Rejected", "Screened", "TriedConfig", "describe_domain",
    "describe_mutations", "describe_space", "format_history", "format_hot_spots", "format_samples", "prompt_inputs",
    "retry_inputs", "screen", "tried_config",
]
