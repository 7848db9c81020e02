"""experiment and experiment_wait: try the candidate on a share of live traffic, then ramp it up.

``experiment`` sets the workflow's traffic split (compare-and-set): the candidate gets the context's
``experiment_share`` when the approver answers "experiment", or the next ramp step (50%, then 100%,
which is the promotion itself) when they approve after live evidence. ``experiment_wait`` looks at
the live data and, while nothing is decided, parks at an ``experiment_pending`` interrupt: durable,
holding no worker. Every resume (``graphtune experiment check``, the SDK) is another look.

- An experiment that decides (better, worse, a broken guardrail, a sample-ratio mismatch) returns
  to approval with the live evidence; a losing candidate's traffic is taken back at once.
- A ramp step whose guardrails hold moves to the next step; one that breaks a guardrail takes the
  traffic back and returns to approval.
- ``{"action": "stop"}`` as a resume, or ``graphtune experiment stop WORKFLOW`` (the split cleared
  under the thread), ends the experiment and returns to approval.

Every split a person causes (the experiment, each ramp step, a stop) and the promotion at the end of
the ramp are checked as they happen against the run's authenticated caller (``actor_for``): on a
server with auth only an approver's run makes them, recorded in the approver's name. An operator may
look (resume the wait); a look that finds the ramp complete returns to approval instead of promoting.
The one write any look makes is the automatic one: traffic taken back from a candidate whose live
data says stop (actor ``graphtune``), which only returns the split to the approved baseline.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from langchain_core.messages import AIMessage
from langgraph.runtime import Runtime
from langgraph.types import Command, interrupt
from pydantic import BaseModel

from graphtune.backends.config_store import ConflictError
from graphtune.graphs.access import APPROVER, local_actor
from graphtune.graphs.context import ControllerContext, WriteRefused, actor_for
from graphtune.graphs.state import Approval, ControllerState, ExperimentRecord
from graphtune.tuning.experiment import LiveLook, judge, live_plan, next_share
from graphtune.tuning.request import TuningRequest
from graphtune.tuning.sequential import Comparison

RESUME_HELP = 'resume with anything to look at the data again, or {"action": "stop"} to end the experiment'


class ExperimentPending(BaseModel):
    """The interrupt payload while live data is collected."""

    kind: str = "experiment_pending"
    workflow: str
    candidate_id: str
    candidate_version: int
    baseline_version: int
    stage: str
    share: float
    looks: int
    summary: str
    reasons: list[str]
    resume_format: str = RESUME_HELP


def _candidate(state: ControllerState, candidate_id: str) -> dict:
    return next(c for c in state.get("candidates", []) if c["id"] == candidate_id)


def _set_split(ctx: ControllerContext, state: ControllerState, approval: Approval, previous: ExperimentRecord | None,
               share: float, stage: str) -> ExperimentRecord:
    """The candidate's share of traffic, written as ``approval.actor`` (already checked by the caller)."""
    workflow = state["report"]["workflow"]
    baseline = state["baseline"]["version"]
    candidate = _candidate(state, approval.candidate_id)
    with ctx.config_store() as store:
        stored = store.put(workflow, candidate["config"], actor=approval.actor, source="controller",
                           note=f"{candidate['id']} ({candidate['proposer']}): {candidate['rationale']}"[:500])
        wanted = {baseline: round(1.0 - share, 6), stored.version: share}
        current = store.split(workflow)
        if current is not None and current.weights == wanted:  # this step ran before a crash
            split = current
        else:
            ours = current is not None and set(current.weights) <= {baseline, stored.version}
            try:
                split = store.set_split(workflow, wanted, expected_revision=current.revision if ours else None,
                                        actor=approval.actor, reason=f"{stage} {candidate['id']} at {share:.0%}",
                                        evidence=approval.comment)
            except ConflictError:
                split = store.split(workflow)
                if split is None or split.weights != wanted:
                    raise
                # the same step, run at the same moment by another look (cron and a person): it won, and it is ours
    now = time.time()
    return ExperimentRecord(
        workflow=workflow, candidate_id=candidate["id"], baseline_version=baseline, candidate_version=stored.version,
        stage=stage, share=share, split_revision=split.revision, started_at=previous.started_at if previous else now,
        stage_started_at=now, looks=0)


async def experiment(state: ControllerState, runtime: Runtime[ControllerContext]) -> Command:
    ctx = runtime.context or ControllerContext()
    approval = Approval.model_validate(state["approval"])
    previous = ExperimentRecord.model_validate(state["experiment"]) if state.get("experiment") else None
    if approval.action == "experiment":
        stage, share = "experiment", ctx.experiment_share
    else:  # approved after live evidence, or a ramp step passed: the next step
        stage, share = "ramp", next_share(previous.share if previous else 0.0) or 1.0
    workflow = state["report"]["workflow"]
    try:
        actor = actor_for(APPROVER, f"promote {approval.candidate_id} of {workflow}" if share >= 1.0
                          else f"give {approval.candidate_id} {share:.0%} of {workflow}'s traffic", approval.actor)
    except WriteRefused as refused:
        if previous is not None and previous.stage == "ramp" and approval.action == "approve":  # a look: the ramp held
            return _back_to_approval(previous.model_copy(update={"status": "decided"}),
                                     f"The ramp of {previous.candidate_id} at {previous.share:.0%} held its guardrails; "
                                     f"an approver's approval makes it active ({refused}).")
        return refused.ends_branch("experiment")
    approval = approval.model_copy(update={"actor": actor})
    if share >= 1.0:
        return Command(goto="promote", update={"messages": [AIMessage("Ramp complete: promoting.", name="experiment")]})
    try:
        record = await asyncio.to_thread(_set_split, ctx, state, approval, previous, share, stage)
    except ConflictError as error:
        return Command(goto="approve", update={
            "approval_error": f"cannot start the experiment: {error}",
            "messages": [AIMessage(f"Cannot start the experiment: {error}", name="experiment")]})
    text = (f"{record.candidate_id} (version {record.candidate_version}) now gets {share:.0%} of {record.workflow}'s "
            f"traffic ({stage}); version {record.baseline_version} serves the rest. Live plan: "
            f"{live_plan(TuningRequest.model_validate(state['request'])).describe()}.")
    return Command(goto="experiment_wait", update={"experiment": record.model_dump(mode="json"),
                                                   "messages": [AIMessage(text, name="experiment")]})


def _look(ctx: ControllerContext, state: ControllerState, record: ExperimentRecord) -> tuple[LiveLook | None, str | None]:
    """(the look, None), or (None, why the experiment is over) when its split is gone or replaced."""
    from graphtune.live import read_live_evidence

    with ctx.config_store() as store:
        split = store.split(record.workflow)
        if split is None or split.revision != record.split_revision:
            entry = next((e for e in store.history(record.workflow, limit=5) if e.action in ("clear_split", "split", "promote", "rollback")), None)
            who = f" by {entry.actor}" + (f" ({entry.reason})" if entry.reason else "") if entry else ""
            return None, f"the traffic split changed{who}; the experiment is over"
    plan = live_plan(TuningRequest.model_validate(state["request"]))
    until = time.time()
    if until <= record.stage_started_at:
        until = record.stage_started_at + 1e-3
    with ctx.trace_store() as traces:
        evidence = read_live_evidence(traces, record.workflow, baseline_version=record.baseline_version,
                                      candidate_version=record.candidate_version, since=record.stage_started_at,
                                      until=until, assignments_since=max(record.stage_started_at, split.updated_at))
    previous = record.last_look.get("primary") if record.last_look and record.last_look.get("stage") == record.stage else None
    look = judge(evidence, plan, split.weights, stage=record.stage, share=record.share,
                 previous=Comparison.model_validate(previous) if previous else None)
    return look, None


def take_back(ctx: ControllerContext, record: ExperimentRecord, actor: str, reason: str) -> None:
    with ctx.config_store() as store:
        split = store.split(record.workflow)
        if split is not None and split.revision == record.split_revision:
            store.clear_split(record.workflow, expected_revision=split.revision, actor=actor, reason=reason)


async def experiment_wait(state: ControllerState, runtime: Runtime[ControllerContext]) -> Command:
    ctx = runtime.context or ControllerContext()
    record = ExperimentRecord.model_validate(state["experiment"])
    look, over = await asyncio.to_thread(_look, ctx, state, record)
    if over is not None:
        return _back_to_approval(record.model_copy(update={"status": "stopped"}), over)
    record = record.model_copy(update={"looks": record.looks + 1, "last_look": look.model_dump(mode="json")})
    action = look.verdict.action
    if action in ("stop", "halt"):
        await asyncio.to_thread(take_back, ctx, record, "graphtune", f"{record.stage} {action}: {'; '.join(look.verdict.reasons)}"[:500])
        return _back_to_approval(record.model_copy(update={"status": "decided"}),
                                 f"Live {record.stage} of {record.candidate_id}: {action}. Its traffic went back to "
                                 f"version {record.baseline_version}.")
    if action == "promote" and record.stage == "experiment":
        return _back_to_approval(record.model_copy(update={"status": "decided"}),
                                 f"Live experiment of {record.candidate_id}: better on live traffic. Approve to ramp it up.")
    if action == "promote":  # a ramp step held its guardrails: the next step
        return Command(goto="experiment", update={"experiment": record.model_dump(mode="json"), "messages": [
            AIMessage(f"Ramp step at {record.share:.0%} held its guardrails.", name="experiment_wait")]})

    payload = ExperimentPending(workflow=record.workflow, candidate_id=record.candidate_id,
                                candidate_version=record.candidate_version, baseline_version=record.baseline_version,
                                stage=record.stage, share=record.share, looks=record.looks, summary=look.summary,
                                reasons=look.verdict.reasons)
    answer: Any = interrupt(payload.model_dump(mode="json"))
    if isinstance(answer, dict) and str(answer.get("action", "")).lower() == "stop":
        try:
            actor = actor_for(APPROVER, f"stop the {record.stage} of {record.candidate_id}", local_actor(answer.get("actor") or ctx.actor))
        except WriteRefused as refused:
            return Command(goto="experiment_wait", update={"messages": [
                AIMessage(f"Not stopped: {refused}.", name="experiment_wait")]})
        await asyncio.to_thread(take_back, ctx, record, actor, str(answer.get("comment") or "experiment stopped"))
        return _back_to_approval(record.model_copy(update={"status": "stopped"}), f"{actor} stopped the {record.stage}.")
    return Command(goto="experiment_wait", update={"experiment": record.model_dump(mode="json")})


def _back_to_approval(record: ExperimentRecord, text: str) -> Command:
    record = record.model_copy(update={"note": text})
    return Command(goto="report", update={"experiment": record.model_dump(mode="json"),
                                          "messages": [AIMessage(text, name="experiment_wait")]})
