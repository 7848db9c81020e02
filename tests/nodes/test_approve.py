"""The approval interrupt's payload and how resume values are read (graph-level paths are in
tests/graphs/test_controller.py)."""

from __future__ import annotations

import jsonschema
import pytest

from graphtune.graphs.state import Approval
from graphtune.nodes.approve import HITL_ACTION, ApprovalRequest, approver_checked, parse_approval

REPORT = {"candidate": {"id": "c1", "mutations": [{"path": "rag.top_k", "value": 8}]}}


def payload() -> dict:
    return ApprovalRequest(workflow="support_qa", candidate_id="c1", report=REPORT, markdown="# report").model_dump(mode="json")


def test_the_payload_carries_a_response_schema_and_a_human_in_the_loop_request():
    sent = payload()
    jsonschema.validate({"action": "approve", "actor": "dana", "comment": "ok"}, sent["response_schema"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"action": "ship-it", "actor": "dana"}, sent["response_schema"])
    (request,) = sent["action_requests"]
    assert request["name"] == HITL_ACTION and request["args"]["mutations"] == REPORT["candidate"]["mutations"]
    assert request["description"] == "# report"
    assert sent["review_configs"][0]["allowed_decisions"] == ["approve", "reject", "edit"]


@pytest.mark.parametrize(("answer", "expected"), [
    ("approve", Approval(action="approve", actor="anonymous")),
    ({"action": "reject", "actor": "dana", "comment": "too slow"}, Approval(action="reject", actor="dana", comment="too slow")),
    ({"decisions": [{"type": "approve"}]}, Approval(action="approve", actor="anonymous")),
    ({"decisions": [{"type": "reject", "message": "risky"}]}, Approval(action="reject", actor="anonymous", comment="risky")),
    ({"decisions": [{"type": "edit", "edited_action": {"name": HITL_ACTION, "args": {"mutations": [{"path": "rag.top_k", "value": 6}]}}}]},
     Approval(action="edit", actor="anonymous", mutations=[{"path": "rag.top_k", "value": 6}])),
])
def test_resume_values_in_either_shape(answer, expected):
    assert parse_approval(answer) == expected


@pytest.mark.parametrize(("answer", "problem"), [
    ({"action": "ship-it"}, "invalid approval"),
    ({"decisions": []}, "expected one decision"),
    ({"decisions": [{"type": "respond", "message": "hi"}]}, "expected approve, edit or reject"),
    ({"decisions": [{"type": "edit", "edited_action": {"name": HITL_ACTION, "args": {}}}]}, "an edit needs mutations"),
    (42, "invalid approval"),
])
def test_bad_resume_values_say_what_was_expected(answer, problem):
    with pytest.raises(ValueError, match=problem):
        parse_approval(answer)


def test_outside_the_server_the_payload_names_the_approver():
    assert approver_checked(Approval(action="approve", actor="dana")).actor == "dana"
