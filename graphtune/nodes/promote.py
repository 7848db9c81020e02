"""promote: act on the approver's answer, compare-and-set, with the evidence in the change log.

Approval makes the candidate the active version only if the active version is still the baseline
this run measured against; otherwise nothing changes and the outcome says to tune again. A
rejection is logged against the candidate's stored version. ``finish`` ends a run with nothing to
approve. Both end the run, so both release its claim on the workflow.

Who may write is decided here, as the write happens, from the run's authenticated caller
(``actor_for``), never from the approval in the state: on a server with auth only an approver's run
promotes or rejects, and the change log names that approver. A run of anyone else that reaches this
node (a copied thread, a replayed checkpoint) changes nothing; the thread keeps waiting for an approver.
"""

from __future__ import annotations

import asyncio
import json
import logging

from langchain_core.messages import AIMessage
from langgraph.runtime import Runtime
from langgraph.types import Command

from graphtune.backends.config_store import ConflictError
from graphtune.graphs.access import APPROVER
from graphtune.graphs.context import ControllerContext, WriteRefused, actor_for, current_thread_id
from graphtune.graphs.state import Approval, ControllerState, ExperimentRecord, Outcome
from graphtune.nodes.experiment import take_back

log = logging.getLogger("graphtune.controller")


def evidence(state: ControllerState, candidate_id: str) -> str:
    """A compact JSON record of why: the thread, the request, the metric table of the candidate."""
    report = state.get("report") or {}
    rows = [{k: row.get(k) for k in ("metric", "statistic", "baseline", "candidate", "ci_low", "ci_high", "n")}
            for row in report.get("table", [])]
    return json.dumps({"thread_id": current_thread_id(), "candidate": candidate_id,
                       "request": (state.get("request") or {}).get("text", ""), "metrics": rows}, default=str)


def _apply(ctx: ControllerContext, state: ControllerState, approval: Approval) -> Outcome:
    baseline = state["baseline"]
    candidate = next(c for c in state.get("candidates", []) if c["id"] == approval.candidate_id)
    workflow = state["report"]["workflow"]
    with ctx.config_store() as store:
        stored = store.put(workflow, candidate["config"], actor=approval.actor, source="controller",
                           note=f"{candidate['id']} ({candidate['proposer']}): {candidate['rationale']}"[:500])
        reason = approval.comment or f"{'rejected' if approval.action == 'reject' else 'approved'} {candidate['id']} from a tuning run"
        if approval.action == "reject":
            store.record_rejection(workflow, stored.version, actor=approval.actor, reason=reason,
                                   evidence=evidence(state, candidate["id"]))
            active = store.active(workflow)  # not the baseline: another run may have promoted since
            return Outcome(status="rejected", workflow=workflow, version=stored.version, from_version=baseline["version"],
                           message=f"{approval.actor} rejected {candidate['id']} (version {stored.version}); "
                                   + (f"version {active.version} stays active." if active else "no version is active."))
        try:
            store.promote(workflow, stored.version, expected_active=baseline["version"], actor=approval.actor,
                          reason=reason, evidence=evidence(state, candidate["id"]))
        except ConflictError as error:
            if error.found == stored.version:  # this node promoted it before a crash, and runs again
                return _promoted(workflow, stored.version, baseline["version"], approval.actor)
            return Outcome(status="conflict", workflow=workflow, version=stored.version, from_version=baseline["version"],
                           message=f"not promoted: {error}. Run the tuning again against the new active version.")
    return _promoted(workflow, stored.version, baseline["version"], approval.actor)


def _promoted(workflow: str, version: int, from_version: int, actor: str) -> Outcome:
    return Outcome(status="promoted", workflow=workflow, version=version, from_version=from_version,
                   message=f"{workflow}: version {version} is active (was {from_version}), approved by {actor}.")


def release_claim(ctx: ControllerContext, state: ControllerState) -> bool:
    """Let the next tuning run of the workflow start; True when released. A store that cannot be
    reached leaves the claim for ``graphtune unlock``; the run's outcome stands either way."""
    workflow, holder = (state.get("request") or {}).get("workflow"), state.get("tuning_claim")
    if not workflow or not holder:
        return False
    try:
        with ctx.config_store() as store:
            store.release_tuning(workflow, holder, actor="graphtune")
        return True
    except Exception as error:  # noqa: BLE001 - reported, never fatal to a finished run
        log.warning("could not release %s's tuning claim (thread %s): %s; run `graphtune unlock %s`",
                    workflow, holder, error, workflow)
        return False


async def promote(state: ControllerState, runtime: Runtime[ControllerContext]) -> Command:
    ctx = runtime.context or ControllerContext()
    approval = Approval.model_validate(state["approval"])
    workflow = (state.get("report") or {}).get("workflow")
    try:
        actor = actor_for(APPROVER, f"{approval.action} {approval.candidate_id} of {workflow}", approval.actor)
    except WriteRefused as refused:
        return refused.ends_branch("promote")
    approval = approval.model_copy(update={"actor": actor})
    if approval.action == "reject" and state.get("experiment"):  # its live traffic goes back first
        record = ExperimentRecord.model_validate(state["experiment"])
        await asyncio.to_thread(take_back, ctx, record, actor, approval.comment or "rejected")
    outcome = await asyncio.to_thread(_apply, ctx, state, approval)
    if await asyncio.to_thread(release_claim, ctx, state):
        outcome.message += f" {outcome.workflow} is free for the next tuning request."
    return Command(goto="record", update={"outcome": outcome.model_dump(mode="json"),
                                          "messages": [AIMessage(outcome.message, name="promote")]})


async def finish(state: ControllerState, runtime: Runtime[ControllerContext]) -> dict:
    """No candidate worth approving: end, saying why."""
    reason = (state.get("decision") or {}).get("reason") or "no candidate beat the baseline"
    workflow = (state.get("request") or {}).get("workflow")
    outcome = Outcome(status="no_change", workflow=workflow, version=(state.get("baseline") or {}).get("version"),
                      message=f"No change proposed for {workflow}: {reason}")
    await asyncio.to_thread(release_claim, runtime.context or ControllerContext(), state)
    return {"outcome": outcome.model_dump(mode="json"), "messages": [AIMessage(outcome.message, name="finish")]}
