"""report and approve: show a person the evidence, then wait for their decision (an ``interrupt()``).

``report`` writes the approval report into the state and the chat before the pause, so Studio,
``graphtune pending`` and the trace store all see it. ``approve`` holds only the interrupt: on resume
it runs again from the top, and everything before ``interrupt()`` is a pure read of the state.

The resume value is validated. Anything invalid keeps the thread at approval with the error in the
next interrupt's payload; an edit is checked against the search space and goes back to evaluate.
On a LangGraph server with auth, the approver is the run's authenticated caller (the payload's
``actor`` is ignored) and must hold the approver role (``graphtune.graphs.context.actor_for``); the
server's auth handler already refuses others, and promote checks the caller again as it writes.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from langchain_core.messages import AIMessage
from langgraph.runtime import Runtime
from langgraph.types import Command, Send, interrupt
from pydantic import BaseModel, Field, ValidationError, model_validator

from graphtune.graphs.access import APPROVER, local_actor
from graphtune.graphs.context import ControllerContext, WriteRefused, actor_for, current_thread_id
from graphtune.graphs.hitl import ENDED_COMMENT, card_answer, hitl_request, is_card_answer, parse_mutations
from graphtune.graphs.state import Approval, CandidateRecord, ControllerState, EvalTask
from graphtune.spec import load_spec
from graphtune.tuning.config_paths import config_hash
from graphtune.tuning.decision import Decision
from graphtune.tuning.mutations import Candidate, apply_mutations, check_candidate
from graphtune.tuning.report import ApprovalReport, build_report, format_report
from graphtune.tuning.request import TuningRequest
from graphtune.web.links import thread_url

ACTIONS = ("approve", "reject", "edit", "experiment")
RESUME_HELP = ('resume with {"action": "approve" | "reject" | "edit" | "experiment", "actor": "<who>", "comment": "...", '
               '"mutations": [{"path": "...", "value": ...}] (edit only, relative to the baseline)}; '
               '"experiment" tries the candidate on a share of live traffic first')


class ApprovalRequest(BaseModel):
    """The interrupt payload: what a client shows the approver.

    ``response_schema`` is the JSON Schema of the resume value. ``action_requests`` and
    ``review_configs`` are LangChain's human-in-the-loop request shape (``graphtune.graphs.hitl``), so
    UIs that render it (Agent Chat UI, Agent Inbox) show a card with approve / edit / reject; their
    answers are accepted as resume values too.
    """

    kind: Literal["approval"] = "approval"
    workflow: str
    candidate_id: str
    actions: list[str] = list(ACTIONS)
    resume_format: str = RESUME_HELP
    response_schema: dict[str, Any] = Field(default_factory=lambda: Approval.model_json_schema())
    report: dict[str, Any]
    markdown: str
    error: str | None = None
    approval_page: str | None = Field(None, description="The web view's page of this approval (GRAPHTUNE_WEB_URL), with charts")
    action_requests: list[dict[str, Any]] = Field(default_factory=list)
    review_configs: list[dict[str, Any]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _hitl_request(self) -> ApprovalRequest:
        if not self.action_requests:
            card = hitl_request(ApprovalReport.model_validate(self.report), self.error, self.approval_page)
            self.action_requests, self.review_configs = card["action_requests"], card["review_configs"]
        return self


def parse_approval(value: Any, default_actor: str = "") -> Approval:
    """The resume value as an ``Approval``; ``ValueError`` with what was expected otherwise. An answer
    that names nobody is in ``default_actor``'s name (``ControllerContext.local_actor``)."""
    if isinstance(value, str):
        value = {"action": value.strip().lower()}
    if is_card_answer(value):
        value = card_answer(value)
    if isinstance(value, dict) and isinstance(value.get("mutations"), (str, dict)):
        value = {**value, "mutations": parse_mutations(value["mutations"])}
    if isinstance(value, dict) and not value.get("actor"):
        value = {**value, "actor": default_actor or local_actor()}
    try:
        approval = Approval.model_validate(value)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in error.errors())
        raise ValueError(f"invalid approval {value!r}: {problems}. Expected: {RESUME_HELP}") from None
    if approval.action == "edit" and not approval.mutations:
        raise ValueError(f"an edit needs mutations. Expected: {RESUME_HELP}")
    return approval


def approver_checked(approval: Approval) -> Approval:
    """The approval in the name of the run's authenticated caller, who must be an approver
    (``graphtune.graphs.context.actor_for``); the payload's ``actor`` counts only without auth."""
    try:
        actor = actor_for(APPROVER, f"{approval.action} a candidate", approval.actor)
    except WriteRefused as refused:
        raise ValueError(str(refused)) from None
    return approval.model_copy(update={"actor": actor})


def reported_candidate(state: ControllerState) -> str | None:
    """The candidate of a live experiment; the edited candidate once evaluated after an edit; else the
    decision's recommendation."""
    if (state.get("experiment") or {}).get("candidate_id"):
        return state["experiment"]["candidate_id"]
    approval = state.get("approval") or {}
    if approval.get("action") == "edit" and approval.get("candidate_id"):
        edited = next((c for c in state.get("candidates", []) if c["id"] == approval["candidate_id"]), None)
        if edited and edited["config_hash"] in state.get("evals", {}):
            return edited["id"]
    return (state.get("decision") or {}).get("best_candidate_id")


def approval_page() -> str | None:
    """The web view's page of this run's thread (``graphtune.web.links``: where ``GRAPHTUNE_WEB_URL``
    points, else ``graphtune ui``), the same link the CLI prints; None outside a thread."""
    thread_id = current_thread_id()
    return thread_url(thread_id) if thread_id else None


def report(state: ControllerState, runtime: Runtime[ControllerContext]) -> dict:
    decision = Decision.model_validate(state["decision"])
    approval_report = build_report(state, decision, reported_candidate(state))
    text = format_report(approval_report) + "\n\nWaiting for approval: approve, reject, or edit."
    page = approval_page()
    if page:
        text += f" Or open the approval page, with charts: {page}"
    return {"report": approval_report.model_dump(mode="json"), "approval_error": None,
            "messages": [AIMessage(text, name="report")]}


async def approve(state: ControllerState, runtime: Runtime[ControllerContext]) -> Command:
    saved = state["report"]
    candidate_id = saved["candidate"]["id"]
    payload = ApprovalRequest(workflow=saved["workflow"], candidate_id=candidate_id, report=saved,
                              markdown=format_report_dict(saved), error=state.get("approval_error"),
                              approval_page=approval_page())
    answer = interrupt(payload.model_dump(mode="json"))

    ctx = runtime.context or ControllerContext()
    try:
        approval = approver_checked(parse_approval(answer, local_actor(ctx.actor)))
        if approval.action == "edit":
            return await _edit(state, ctx, approval)
    except ValueError as error:  # said in the chat too: a UI's card shows no error field
        return Command(goto="approve", update={
            "approval_error": str(error),
            "messages": [AIMessage(f"That answer was refused, the candidate still waits for approval: {error}", name="approve")]})
    approval = approval.model_copy(update={"candidate_id": approval.candidate_id or candidate_id})
    said = f"{approval.actor} chose to {approval.action} {approval.candidate_id}" + (f": {approval.comment}" if approval.comment else "")
    if approval.comment == ENDED_COMMENT:
        said = f"{approval.actor} ended the thread from the chat without an answer: rejecting {approval.candidate_id}"
    after_live = (state.get("experiment") or {}).get("status") in ("decided", "stopped")
    goto = "experiment" if approval.action == "experiment" or (approval.action == "approve" and after_live) else "promote"
    return Command(goto=goto, update={"approval": approval.model_dump(mode="json"), "approval_error": None,
                                      "messages": [AIMessage(said + ".", name="approve")]})


def format_report_dict(saved: dict) -> str:
    return format_report(ApprovalReport.model_validate(saved))


async def _edit(state: ControllerState, ctx: ControllerContext, approval: Approval) -> Command:
    spec = await asyncio.to_thread(load_spec, ctx.spec_source(state["spec"]))
    baseline = state["baseline"]
    candidate = Candidate(mutations=approval.mutations, rationale=approval.comment or f"edited by {approval.actor}", proposer="human")
    rejections = check_candidate(spec.space, baseline["config"], candidate,
                                 model_available=ctx.workflow_has_model(spec))
    if rejections:
        raise ValueError("the edited candidate is not valid: " + "; ".join(r.message for r in rejections))
    config = apply_mutations(baseline["config"], candidate.mutations)
    digest = config_hash(config)
    known = next((c for c in state.get("candidates", []) if c["config_hash"] == digest), None)
    edits = sum(1 for c in state.get("candidates", []) if c["id"].startswith("e"))
    record = CandidateRecord.model_validate(known) if known else CandidateRecord(
        id=f"e{edits + 1}", round=state.get("round", 0), proposer="human", mutations=candidate.mutations,
        rationale=candidate.rationale, config=config, config_hash=digest)
    goal = TuningRequest.model_validate(state["request"]).goal
    approval = approval.model_copy(update={"candidate_id": record.id})
    update = {"approval": approval.model_dump(mode="json"), "approval_error": None,
              "messages": [AIMessage(f"{approval.actor} edited the candidate: {candidate.describe()}. Evaluating {record.id}.", name="approve")]}
    if known is None:
        update["candidates"] = [record.model_dump(mode="json")]
    task = EvalTask(candidate=record, workflow=spec.workflow, spec=state["spec"], thread_id=current_thread_id(),
                    stop_metric=goal.metric, direction=goal.direction)
    return Command(goto=Send("evaluate", task.model_dump(mode="json")), update=update)
