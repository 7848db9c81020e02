"""A live experiment through the controller: the approver answers "experiment", simulated users send
traffic through the serving wrapper with feedback, each resume is a look; the thread returns to
approval with live evidence, and approval ramps the candidate to 50% and then promotes it."""

import asyncio

from graphtune.backends.config_store import open_config_store
from graphtune.serving import ServedWorkflow
from tests.graphs.test_controller import REQUEST, controller, db  # noqa: F401  (fixture)

QUESTIONS = [("capital of france", "Paris"), ("two plus two", "4"), ("colour of sky", "blue")]
# the toy answers in ~2 ms, where scheduling jitter on a busy machine is most of the latency: allow
# p95 up to 3x so the latency guardrail is decided by the data, not by the machine's load
LIVE_REQUEST = REQUEST + " without increasing latency more than 200%"


def users_send(db, spec, n: int, first_user: int = 0) -> None:
    """``n`` requests from distinct users; a user likes an answer that states the expected fact."""
    async def send(served):
        for i in range(n):
            question, expected = QUESTIONS[i % 3]
            run = await served.ainvoke({"question": question}, unit_key=f"user-{first_user + i}")
            await served.afeedback(run.trace_id, thumbs_up=expected in (run.output.get("answer") or ""))

    with ServedWorkflow(spec, db, refresh_s=0.0) as served:
        asyncio.run(send(served))
        served.flush()


def look(db, thread_id, answer=None):
    return asyncio.run(controller(db).resume(thread_id, answer or {"action": "check"}))


def send_and_look_until_decided(db, spec, thread_id, per_look: int, first_user: int, looks: int = 6):
    """Traffic, then a look, until the look decides (the statistics allow looking as often as we like)."""
    for i in range(looks):
        users_send(db, spec, per_look, first_user=first_user + i * per_look)
        result = look(db, thread_id)
        if result.pending or result.outcome:
            return result
    return result


def test_experiment_then_approval_with_live_evidence_then_ramp_then_promotion(db, weak_toy_spec):
    parked = asyncio.run(controller(db, experiment_share=0.2).start(LIVE_REQUEST, spec=str(weak_toy_spec.path)))
    assert parked.pending
    started = asyncio.run(controller(db, experiment_share=0.2).resume(
        parked.thread_id, {"action": "experiment", "actor": "dana"}))
    assert started.waiting["kind"] == "experiment_pending" and started.waiting["share"] == 0.2
    candidate = started.waiting["candidate_version"]
    with open_config_store(db) as store:
        assert store.split("toy").weights == {1: 0.8, candidate: 0.2}

    back = send_and_look_until_decided(db, weak_toy_spec, parked.thread_id, 750, first_user=0)
    assert back.pending, back.waiting["reasons"]  # decided: back at approval
    live = "\n".join(back.pending["report"]["live"])
    assert "verdict: promote" in live and "net_feedback is better" in live
    assert "guardrail p95 latency_ms at most 3x baseline holds" in live
    assert "Live experiment" in back.pending["markdown"]

    ramp = look(db, parked.thread_id, {"action": "approve", "actor": "dana"})
    assert ramp.waiting["kind"] == "experiment_pending" and ramp.waiting["stage"] == "ramp" and ramp.waiting["share"] == 0.5
    with open_config_store(db) as store:
        assert store.split("toy").weights == {1: 0.5, candidate: 0.5}

    done = send_and_look_until_decided(db, weak_toy_spec, parked.thread_id, 400, first_user=100_000)
    assert done.outcome and done.outcome["status"] == "promoted", done.waiting
    with open_config_store(db) as store:
        assert store.active("toy").version == candidate and store.split("toy") is None
        actions = [e.action for e in store.history("toy", limit=10)]
        assert actions[:3] == ["promote", "split", "split"]


def test_stopping_an_experiment_takes_its_traffic_back_and_returns_to_approval(db, weak_toy_spec):
    parked = asyncio.run(controller(db).start(REQUEST, spec=str(weak_toy_spec.path)))
    started = look(db, parked.thread_id, {"action": "experiment", "actor": "dana"})
    assert started.waiting["kind"] == "experiment_pending"
    stopped = look(db, parked.thread_id, {"action": "stop", "actor": "sam", "comment": "not during the sale"})
    assert stopped.pending  # back at approval
    assert any("sam stopped the experiment" in m.content for m in stopped.values["messages"])
    with open_config_store(db) as store:
        assert store.split("toy") is None
        assert store.history("toy")[0].action == "clear_split" and store.history("toy")[0].actor == "sam"
    rejected = look(db, parked.thread_id, {"action": "reject", "actor": "sam"})
    assert rejected.outcome["status"] == "rejected"
