"""promote: act on the approver's answer, compare-and-set, with the evidence in the change log.

Approval makes the candidate the active version only if the active version is still the baseline
this run measured against; otherwise nothing changes and the outcome says to tune again. A
rejection is logged against the candidate's stored version. ``finish`` ends a run with nothing to
approve.
"""

from __future__ import annotations

import asyncio
import json

from langchain_core.messages import AIMessage
from langgraph.runtime import Runtime

from graphtune.backends.configs import ConflictError
from graphtune.graphs.context import ControllerContext, current_thread_id
from graphtune.graphs.state import Approval, ControllerState, Outcome


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
        reason = approval.comment or f"{approval.action}d {candidate['id']} from a tuning run"
        if approval.action == "reject":
            store.record_rejection(workflow, stored.version, actor=approval.actor, reason=reason,
                                   evidence=evidence(state, candidate["id"]))
            return Outcome(status="rejected", workflow=workflow, version=stored.version, from_version=baseline["version"],
                           message=f"{approval.actor} rejected {candidate['id']} (version {stored.version}); "
                                   f"version {baseline['version']} stays active.")
        try:
            store.promote(workflow, stored.version, expected_active=baseline["version"], actor=approval.actor,
                          reason=reason, evidence=evidence(state, candidate["id"]))
        except ConflictError as error:
            return Outcome(status="conflict", workflow=workflow, version=stored.version, from_version=baseline["version"],
                           message=f"not promoted: {error}. Run the tuning again against the new active version.")
    return Outcome(status="promoted", workflow=workflow, version=stored.version, from_version=baseline["version"],
                   message=f"{workflow}: version {stored.version} is active (was {baseline['version']}), "
                           f"approved by {approval.actor}.")


async def promote(state: ControllerState, runtime: Runtime[ControllerContext]) -> dict:
    approval = Approval.model_validate(state["approval"])
    outcome = await asyncio.to_thread(_apply, runtime.context or ControllerContext(), state, approval)
    return {"outcome": outcome.model_dump(mode="json"), "messages": [AIMessage(outcome.message, name="promote")]}


def finish(state: ControllerState) -> dict:
    """No candidate worth approving: end, saying why."""
    reason = (state.get("decision") or {}).get("reason") or "no candidate beat the baseline"
    workflow = (state.get("request") or {}).get("workflow")
    outcome = Outcome(status="no_change", workflow=workflow, version=(state.get("baseline") or {}).get("version"),
                      message=f"No change proposed for {workflow}: {reason}")
    return {"outcome": outcome.model_dump(mode="json"), "messages": [AIMessage(outcome.message, name="finish")]}
