"""The approval page's pieces without a thread: live looks from checkpoint states, and form answers."""

from __future__ import annotations

import pytest

from graphtune.web.approval import FormError, answer_from_form, looks_of, parse_changes


def state(looks: int, stage: str = "experiment", lower=-0.1, upper=0.3) -> dict:
    return {"experiment": {"candidate_id": "c1", "stage": stage, "share": 0.1, "looks": looks, "last_look": {
        "primary": {"metric": "error", "estimate": 0.05, "lower": lower, "upper": upper, "n_candidate": 10 * looks,
                    "n_baseline": 90 * looks, "decision": "inconclusive"},
        "verdict": {"action": "continue"}, "summary": f"look {looks}"}}}


def test_looks_come_one_per_look_oldest_first_from_newest_first_checkpoints():
    past = [state(3, lower=0.01, upper=0.1), state(3), state(2), state(2), state(1, lower=None, upper=None), {"experiment": None}, {}]
    looks = looks_of(past)
    assert [lk["look"] for lk in looks] == [1, 2, 3]
    assert looks[-1]["lower"] == 0.01 and looks[0]["lower"] is None  # the newest checkpoint of a look wins


def test_ramp_looks_follow_the_experiment_looks():
    looks = looks_of([state(1, stage="ramp"), state(2), state(1)])
    assert [(lk["stage"], lk["look"]) for lk in looks] == [("experiment", 1), ("experiment", 2), ("ramp", 1)]


def test_form_answers_never_carry_an_actor_and_edits_become_mutations():
    assert answer_from_form({"action": "Approve", "comment": " ok ", "actor": "mallory"}) == {"action": "approve", "comment": "ok"}
    edit = answer_from_form({"action": "edit", "changes": "rag.top_k = 8\n\nprompt.system = 'Be brief.'"})
    assert edit["mutations"] == [{"path": "rag.top_k", "value": 8}, {"path": "prompt.system", "value": "Be brief."}]


@pytest.mark.parametrize("form, message", [
    ({"action": "ship"}, "action: expected approve, reject, edit, experiment or stop; got 'ship'"),
    ({"action": "edit", "changes": ""}, "changes: an edit needs at least one line"),
    ({"action": "edit", "changes": "a = 1\nb 2"}, "changes, line 2: expected path = value"),
    ({"action": "edit", "changes": "a = [1"}, "changes, line 1: the value is not valid YAML"),
])
def test_bad_forms_name_the_field(form, message):
    with pytest.raises(FormError, match=message.replace("[", r"\[").replace("(", r"\(")):
        answer_from_form(form)


def test_parse_changes_keeps_yaml_types():
    assert parse_changes("a.b = true\nc = 0.5\nd = [1, 2]") == [
        {"path": "a.b", "value": True}, {"path": "c", "value": 0.5}, {"path": "d", "value": [1, 2]}]
