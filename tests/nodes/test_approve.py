"""The approval interrupt's payload and how resume values are read (graph-level paths are in
tests/graphs/test_controller.py; the chat card itself in tests/graphs/test_hitl.py)."""

from __future__ import annotations

import getpass

import jsonschema
import pytest

from graphtune.graphs.access import local_actor
from graphtune.graphs.state import Approval
from graphtune.nodes.approve import ApprovalRequest, approver_checked, parse_approval
from tests.graphs.test_hitl import report

REPORT = report().model_dump(mode="json")


def payload(error: str | None = None) -> dict:
    return ApprovalRequest(workflow="support_qa", candidate_id="c2", report=REPORT, markdown="# report",
                           error=error).model_dump(mode="json")


def test_the_payload_carries_a_response_schema_and_a_human_in_the_loop_request():
    sent = payload()
    jsonschema.validate({"action": "approve", "actor": "dana", "comment": "ok"}, sent["response_schema"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"action": "ship-it", "actor": "dana"}, sent["response_schema"])
    (request,) = sent["action_requests"]
    assert request["name"] == "Promote c2 as the new config of support_qa"
    assert set(request["args"]) == {"mutations"}  # workflow and candidate id are not for editing
    assert sent["review_configs"][0]["allowed_decisions"] == ["approve", "reject", "edit"]
    assert payload(error="no such path")["action_requests"][0]["description"].startswith("**Your last answer was refused:** no such path")


def test_the_payload_links_the_approval_page_in_the_card():
    page = "https://tune.example.com/graphtune/threads/t-1"
    sent = ApprovalRequest(workflow="support_qa", candidate_id="c2", report=REPORT, markdown="# report",
                           approval_page=page).model_dump(mode="json")
    assert sent["approval_page"] == page
    assert f"[{page}]({page})" in sent["action_requests"][0]["description"]


def test_with_nobody_authenticated_the_answer_is_in_the_local_users_name(monkeypatch):
    monkeypatch.delenv("GRAPHTUNE_ACTOR", raising=False)
    assert parse_approval("approve").actor == getpass.getuser() != "anonymous"
    assert parse_approval("approve", default_actor="dana").actor == "dana"
    monkeypatch.setenv("GRAPHTUNE_ACTOR", "release-bot")
    assert local_actor() == "release-bot" and local_actor("sam") == "sam"


@pytest.mark.parametrize(("answer", "expected"), [
    ("approve", Approval(action="approve", actor="ann")),
    ({"action": "reject", "actor": "dana", "comment": "too slow"}, Approval(action="reject", actor="dana", comment="too slow")),
    ({"decisions": [{"type": "approve"}]}, Approval(action="approve", actor="ann")),
    ({"decisions": [{"type": "reject", "message": "risky"}]}, Approval(action="reject", actor="ann", comment="risky")),
    ({"decisions": [{"type": "edit", "edited_action": {"name": "x", "args": {"mutations": [{"path": "rag.top_k", "value": 6}]}}}]},
     Approval(action="edit", actor="ann", mutations=[{"path": "rag.top_k", "value": 6}])),
    ({"decisions": [{"type": "edit", "edited_action": {"name": "x", "args": {"mutations": '[{"path": "rag.top_k", "value": 6}]'}}}]},
     Approval(action="edit", actor="ann", mutations=[{"path": "rag.top_k", "value": 6}])),
    ({"action": "edit", "actor": "ann", "mutations": "rag.top_k: 6"}, Approval(action="edit", actor="ann", mutations=[{"path": "rag.top_k", "value": 6}])),
])
def test_resume_values_in_every_shape(answer, expected):
    assert parse_approval(answer, default_actor="ann") == expected


@pytest.mark.parametrize(("answer", "problem"), [
    ({"action": "ship-it"}, "invalid approval"),
    ({"decisions": []}, "expected one decision"),
    ({"decisions": [{"type": "respond", "message": "hi"}]}, "expected approve, edit or reject"),
    ({"decisions": [{"type": "edit", "edited_action": {"name": "x", "args": {}}}]}, "mutations: expected"),
    ({"decisions": [{"type": "edit", "edited_action": {"name": "x", "args": {"mutations": "[{oops"}}}]}, "mutations: cannot read the text"),
    ({"action": "edit", "actor": "ann"}, "an edit needs mutations"),
    (42, "invalid approval"),
])
def test_bad_resume_values_say_what_was_expected(answer, problem):
    with pytest.raises(ValueError, match=problem):
        parse_approval(answer, default_actor="ann")


def test_outside_the_server_the_payload_names_the_approver():
    assert approver_checked(Approval(action="approve", actor="dana")).actor == "dana"
