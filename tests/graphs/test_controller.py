"""The controller end to end, offline, on a weak toy workflow: propose, evaluate, decide, approve, promote.

Each test runs the real graph with a SQLite checkpointer through ``LocalController``: the same path
as ``graphtune tune``. The toy's active config answers badly; Optuna's first batch of two always
includes ``answer.quality: good`` or ``explode`` (a config whose graph cannot be built).
"""

import asyncio
import getpass

import pytest

from graphtune.backends.config_store import open_config_store
from graphtune.backends.traces import EventQuery, open_trace_store
from graphtune.graphs.context import ControllerContext
from graphtune.graphs.local_controller import LocalController

REQUEST = "improve toy accuracy; try 2 candidates, at most 1 round"


@pytest.fixture
def db(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/gt.db"
    monkeypatch.setenv("GRAPHTUNE_DATABASE_URL", url)
    monkeypatch.delenv("GRAPHTUNE_TRACES_URL", raising=False)
    monkeypatch.delenv("GRAPHTUNE_MODEL", raising=False)
    monkeypatch.delenv("GRAPHTUNE_ACTOR", raising=False)
    return url


def controller(db, **kw) -> LocalController:
    return LocalController(context=ControllerContext(database_url=db, traces_url=db, batch_size=2, seed=2, **kw))


def start(db, spec, text=REQUEST, **kw):
    return asyncio.run(controller(db, **kw).start(text, spec=str(spec.path)))


def resume(db, thread_id, answer):
    return asyncio.run(controller(db).resume(thread_id, answer))


def test_tunes_stops_at_approval_then_promotes_with_evidence(db, weak_toy_spec, monkeypatch):
    monkeypatch.setenv("GRAPHTUNE_WEB_URL", "https://tune.example.com/")
    parked = start(db, weak_toy_spec)
    assert parked.pending, parked.values.get("outcome")
    page = f"https://tune.example.com/graphtune/threads/{parked.thread_id}"  # the link the CLI prints
    assert parked.pending["approval_page"] == page and page in parked.pending["action_requests"][0]["description"]
    assert page in parked.values["messages"][-1].content
    report = parked.pending["report"]
    assert parked.pending["candidate_id"] == report["candidate"]["id"]
    assert {"path": "answer.quality", "value": "good"} in report["candidate"]["mutations"]
    assert "answer.quality" in report["diff"] and "contains" in parked.pending["markdown"]
    messages = [m.content for m in parked.values["messages"]]
    assert any("offline" in m or "no LLM configured" in m for m in messages)

    done = resume(db, parked.thread_id, {"action": "approve", "actor": "dana", "comment": "clearly better"})
    assert done.pending is None
    assert done.outcome["status"] == "promoted" and done.outcome["from_version"] == 1
    with open_config_store(db) as store:
        active = store.active("toy")
        assert active.version == done.outcome["version"] and active.config["answer"]["quality"] == "good"
        entry = store.history("toy")[0]
        assert (entry.action, entry.actor, entry.reason) == ("promote", "dana", "clearly better")
        assert parked.thread_id in entry.evidence and "contains" in entry.evidence

    # the controller recorded its own run, beside the eval runs, in the same trace store
    with open_trace_store(db) as traces:
        sources = {e.source for e in traces.read(EventQuery(workflow="controller"))}
        evals = traces.read(EventQuery(workflow="toy", sources=("eval",)))
    assert sources == {"controller"}
    assert evals


def test_an_invalid_answer_keeps_the_thread_at_approval(db, weak_toy_spec):
    parked = start(db, weak_toy_spec)
    again = resume(db, parked.thread_id, {"action": "promote-it-now", "actor": "dana"})
    assert again.pending and "invalid approval" in again.pending["error"] and "approve" in again.pending["error"]
    bad_edit = resume(db, parked.thread_id, {"action": "edit", "actor": "dana",
                                             "mutations": [{"path": "answer.qualty", "value": "good"}]})
    assert bad_edit.pending and "answer.qualty" in bad_edit.pending["error"]
    with open_config_store(db) as store:
        assert store.active("toy").version == 1
    said = [m.content for m in bad_edit.values["messages"] if getattr(m, "name", None) == "approve"]
    assert "That answer was refused" in said[-1] and "answer.qualty" in said[-1]  # in the chat, for a UI's card
    done = resume(db, parked.thread_id, "approve")
    assert done.outcome["status"] == "promoted"
    assert done.outcome["message"].endswith("toy is free for the next tuning request.")
    with open_config_store(db) as store:
        assert store.history("toy")[0].actor == getpass.getuser()  # nobody authenticated: the OS user, not "anonymous"


def test_reject_is_logged_and_changes_nothing(db, weak_toy_spec):
    parked = start(db, weak_toy_spec)
    done = resume(db, parked.thread_id, {"action": "reject", "actor": "sam", "comment": "not now"})
    assert done.outcome["status"] == "rejected"
    with open_config_store(db) as store:
        assert store.active("toy").version == 1
        entry = store.history("toy")[0]
        assert (entry.action, entry.actor, entry.reason) == ("reject", "sam", "not now")


def unproposed_delay(parked) -> float:
    """A delay that, with quality "good", makes a config the search did not propose: a new one."""
    proposed = {c["config"]["answer"]["delay_s"] for c in parked.values["candidates"] if c["config"]["answer"]["quality"] == "good"}
    return next(d for d in (0.002, 0.003) if d not in proposed)


def test_an_edit_is_evaluated_and_comes_back_for_approval(db, weak_toy_spec):
    parked = start(db, weak_toy_spec)
    delay = unproposed_delay(parked)
    as_the_chat_ui_sends_it = f'[{{"path": "answer.quality", "value": "good"}}, {{"path": "answer.delay_s", "value": {delay}}}]'
    edited = resume(db, parked.thread_id, {"decisions": [{"type": "edit", "edited_action": {
        "name": parked.pending["action_requests"][0]["name"], "args": {"mutations": as_the_chat_ui_sends_it}}}]})
    assert edited.pending and edited.pending["candidate_id"] == "e1"
    assert {"path": "answer.delay_s", "value": delay} in edited.pending["report"]["candidate"]["mutations"]
    done = resume(db, parked.thread_id, {"action": "approve", "actor": "dana"})
    assert done.outcome["status"] == "promoted"
    with open_config_store(db) as store:
        assert store.active("toy").config["answer"] == {"quality": "good", "delay_s": delay}


def test_a_promotion_meanwhile_makes_approval_a_conflict_not_an_overwrite(db, weak_toy_spec):
    parked = start(db, weak_toy_spec)
    hotfix = {"answer": {"quality": "good", "delay_s": unproposed_delay(parked)}}  # not the candidate itself
    with open_config_store(db) as store:
        other = store.put("toy", hotfix, actor="ops", source="manual")
        store.promote("toy", other.version, expected_active=1, actor="ops", reason="hotfix")
    done = resume(db, parked.thread_id, {"action": "approve", "actor": "dana"})
    assert done.outcome["status"] == "conflict" and "expected active version 1" in done.outcome["message"]
    with open_config_store(db) as store:
        assert store.active("toy").version == other.version


def test_a_rejection_after_another_promotion_names_the_version_actually_active(db, weak_toy_spec):
    """Issue 17, item 5: the rejection used to say the run's baseline "stays active" although someone
    had promoted another version meanwhile."""
    parked = start(db, weak_toy_spec)
    hotfix = {"answer": {"quality": "good", "delay_s": unproposed_delay(parked)}}  # not the candidate itself
    with open_config_store(db) as store:
        other = store.put("toy", hotfix, actor="ops", source="manual")
        store.promote("toy", other.version, expected_active=1, actor="ops", reason="hotfix")
    done = resume(db, parked.thread_id, {"action": "reject", "actor": "sam"})
    assert done.outcome["status"] == "rejected"
    assert f"version {other.version} stays active" in done.outcome["message"], done.outcome["message"]
    assert "version 1 stays active" not in done.outcome["message"]
    with open_config_store(db) as store:
        assert store.active("toy").version == other.version


def test_pending_lists_parked_threads_only(db, weak_toy_spec):
    parked = start(db, weak_toy_spec)
    listed = asyncio.run(controller(db).pending())
    assert [(p.thread_id, p.workflow) for p in listed] == [(parked.thread_id, "toy")]
    resume(db, parked.thread_id, "reject")
    assert asyncio.run(controller(db).pending()) == []


def test_an_unknown_workflow_gets_the_known_ones(db):
    done = asyncio.run(controller(db).start("make checkout_bot faster"))
    assert done.pending is None and done.outcome["status"] == "unknown_workflow"
    assert "support_qa" in done.values["messages"][-1].content


def test_resuming_a_thread_that_is_not_waiting_says_so(db, weak_toy_spec):
    with pytest.raises(LookupError, match="no tuning thread"):
        resume(db, "nope", "approve")
    parked = start(db, weak_toy_spec)
    resume(db, parked.thread_id, "reject")
    with pytest.raises(LookupError, match="not waiting for approval"):
        resume(db, parked.thread_id, "approve")


def test_production_traffic_is_summarised_once_per_run_not_every_round(db, weak_toy_spec):
    parked = start(db, weak_toy_spec, text="improve toy accuracy; try 1 candidate, at most 3 rounds")
    observed = [m.content for m in parked.values["messages"] if getattr(m, "name", None) == "observe"]
    assert len(observed) >= 2, observed  # more than one round ran
    assert sum("production runs" in m for m in observed) == 1, observed
