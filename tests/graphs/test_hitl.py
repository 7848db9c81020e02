"""The approval card in LangChain's human-in-the-loop format, and the answers chat UIs send back."""

from __future__ import annotations

import pytest

from graphtune.graphs.hitl import ENDED_COMMENT, card_answer, end_as_reject, hitl_request, parse_mutations
from graphtune.tuning.decision import GuardrailCheck, MetricRow
from graphtune.tuning.report import ApprovalReport


def report(*, confident: bool = True, ci_low: float = 0.05) -> ApprovalReport:
    goal = MetricRow(metric="contains", statistic="mean", higher_is_better=True, baseline=0.6, candidate=0.7,
                     delta=0.1, ci_low=ci_low, ci_high=0.15, better=True if confident else None, n=120)
    guard = GuardrailCheck(guardrail="mean error <= 0.05", metric="error", statistic="mean", passed=True)
    return ApprovalReport(workflow="support_qa", goal="maximize mean contains",
                          candidate={"id": "c2", "mutations": [{"path": "rag.top_k", "value": 8},
                                                               {"path": "rag.rerank", "value": True}]},
                          diff="rag.top_k: 4 → 8", table=[goal], guardrails=[guard], changed_examples=[], confident=confident)


def test_the_card_has_a_plain_title_a_short_summary_and_only_the_mutations_to_edit():
    card = hitl_request(report())
    (action,) = card["action_requests"]
    assert action["name"] == "Promote c2 as the new config of support_qa"
    assert card["review_configs"][0]["action_name"] == action["name"]
    assert set(action["args"]) == {"mutations"}
    assert action["args"]["mutations"] == "rag.top_k: 8\nrag.rerank: true"
    summary = action["description"]
    assert "`rag.top_k` → `8`" in summary and "mean contains:** 0.600 → 0.700 (+0.100, 95% CI +0.050…+0.150)" in summary
    assert "✓ mean error <= 0.05" in summary and "Not significant" not in summary


def test_a_gain_whose_interval_includes_zero_is_flagged_in_the_title_and_summary():
    card = hitl_request(report(confident=False, ci_low=-0.02))
    (action,) = card["action_requests"]
    assert action["name"].endswith("(⚠ gain not significant)")
    assert "**⚠ Not significant:** the 95% interval of the change includes 0" in action["description"]
    assert "95% CI -0.020…+0.150" in action["description"]


def test_the_summary_links_the_approval_page_when_there_is_one():
    page = "https://tune.example.com/graphtune/threads/t-1"
    (action,) = hitl_request(report(), page_url=page)["action_requests"]
    assert f"[{page}]({page})" in action["description"]
    assert "Approval page" not in hitl_request(report())["action_requests"][0]["description"]


def test_a_refused_answer_leads_the_summary():
    (action,) = hitl_request(report(), error="mutations: cannot read the text")["action_requests"]
    assert action["description"].startswith("**Your last answer was refused:** mutations: cannot read the text")


@pytest.mark.parametrize("raw", [
    "rag.top_k: 6",  # the card's own format, edited in its text box
    '[{"path": "rag.top_k", "value": 6}]',  # JSON in the text box, as the UI sends an edited list back
    '{"rag.top_k": 6}',
    [{"path": "rag.top_k", "value": 6}],
    {"rag.top_k": 6},
])
def test_mutations_are_read_in_every_shape_a_client_sends(raw):
    assert parse_mutations(raw) == [{"path": "rag.top_k", "value": 6}]


@pytest.mark.parametrize(("raw", "problem"), [
    ('[{"path": "rag.top_k", "value": 6}', r"mutations: cannot read the text at line 1, column \d+"),
    ("", "mutations: expected one \"path: value\" line per tunable"),
    ("just words", "mutations: expected"),
    ('[{"path": "rag.top_k"}]', r'mutations\[0\]: expected \{"path": ..., "value": ...\}'),
    ([1, 2], r"mutations\[0\]"),
    (None, "mutations: expected"),
])
def test_bad_mutations_are_refused_saying_what_was_expected(raw, problem):
    with pytest.raises(ValueError, match=problem):
        parse_mutations(raw)


@pytest.mark.parametrize(("answer", "expected"), [
    ({"decisions": [{"type": "approve"}]}, {"action": "approve", "comment": ""}),
    ({"decisions": [{"type": "reject", "message": "risky"}]}, {"action": "reject", "comment": "risky"}),
    ({"decisions": [{"type": "edit", "edited_action": {"name": "Promote c2", "args": {"mutations": "rag.top_k: 6"}}}]},
     {"action": "edit", "comment": "", "mutations": [{"path": "rag.top_k", "value": 6}]}),
    ([{"type": "accept", "args": None}], {"action": "approve"}),  # Agent Inbox's older responses
    ([{"type": "ignore", "args": None}], {"action": "reject", "comment": ENDED_COMMENT}),
    ([{"type": "response", "args": "not this week"}], {"action": "reject", "comment": "not this week"}),
    ([{"type": "edit", "args": {"action": "Promote c2", "args": {"mutations": '{"rag.top_k": 6}'}}}],
     {"action": "edit", "mutations": [{"path": "rag.top_k", "value": 6}]}),
])
def test_answers_of_chat_uis(answer, expected):
    assert card_answer(answer) == expected


@pytest.mark.parametrize(("answer", "problem"), [
    ({"decisions": []}, "decisions: expected one decision"),
    ({"decisions": [{"type": "respond"}]}, "decisions\\[0\\].type: expected approve, edit or reject, got 'respond'"),
    ([{"type": "maybe"}], "expected accept, edit, response or ignore"),
    ([{"type": "accept"}, {"type": "ignore"}], "expected one response"),
])
def test_bad_answers_of_chat_uis_say_what_was_expected(answer, problem):
    with pytest.raises(ValueError, match=problem):
        card_answer(answer)


def test_only_a_bare_goto_end_becomes_a_rejection():
    command = {"goto": "__end__", "update": None, "resume": None}
    assert end_as_reject(command)
    assert command == {"goto": None, "update": None, "resume": {"action": "reject", "comment": ENDED_COMMENT}}
    for other in ({"goto": "promote"}, {"goto": "__end__", "update": {"approval": {}}}, {"resume": "approve"}):
        assert not end_as_reject(dict(other))
