"""ServedWorkflow: routing by the store's split, stickiness, run tags, one graph per version, checked
feedback, and serving on through config store outages."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import uuid
from collections import Counter, defaultdict
from typing import TypedDict

import pytest
import yaml
from langgraph.graph import END, START, StateGraph

from graphtune.backends.config_store import open_config_store
from graphtune.backends.traces import EventQuery
from graphtune.live import read_live_evidence
from graphtune.serving import OUTAGE_EVENT, RECOVERY_EVENT, LiveRouting, ServedWorkflow, experiment_salt
from graphtune.serving.factory import unit_key_of_run
from graphtune.spec import load_spec
from graphtune.tracing.events import EventKind
from graphtune.tuning.router import Router
from tests.graphs.conftest import weak_toy_spec  # noqa: F401  (fixture)

USERS = [f"user-{i}" for i in range(400)]
BUILDS: list[dict] = []


class State(TypedDict, total=False):
    question: str
    answer: str


def build_sync_graph(config: dict):
    """A sync workflow (``invoke``) whose answer says which config ran; 'boom' fails."""
    BUILDS.append(config)

    def answer(state: State) -> dict:
        if state["question"] == "boom":
            raise RuntimeError("the answer service exploded")
        return {"answer": f"{config['answer']['quality']}: {state['question']}"}

    graph = StateGraph(State)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph.compile(name="sync_toy")


@pytest.fixture
def sync_spec(tmp_path):
    spec = {"workflow": "sync_toy", "graph": "tests.test_serving:build_sync_graph",
            "config": {"answer": {"quality": "bad"}},
            "tunables": {"answer.quality": {"type": "choice", "values": ["good", "bad"]}},
            "evals": {"datasets": [{"name": "toy", "path": "toy.jsonl"}], "metrics": ["contains"]},
            "objective": {"metric": "contains"}}
    (tmp_path / "sync_toy.yaml").write_text(yaml.safe_dump(spec))
    return load_spec(tmp_path / "sync_toy.yaml")


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path}/configs.db"


def with_candidate(db: str, spec, weights: dict[int, float], quality: str = "good"):
    """v1 = the spec's config (active), v2 = a candidate, and a traffic split between them."""
    with open_config_store(db) as store:
        store.ensure_active(spec.workflow, spec.config, actor="test")
        v2 = store.put(spec.workflow, {**spec.config, "answer": {**spec.config["answer"], "quality": quality}},
                       actor="test", source="test")
        current = store.split(spec.workflow)
        store.set_split(spec.workflow, {1: weights[1], v2.version: weights[2]},
                        expected_revision=current.revision if current else None, actor="test", reason="live test")
    return v2


def expected_version(spec, user: str, weights: dict[int, float]) -> int:
    return Router(weights, 1, workflow=spec.workflow, salt=experiment_salt(weights, 1)).assign(user)


def served(spec, db, recorder, **kw) -> ServedWorkflow:
    return ServedWorkflow(spec, db, recorder=recorder, refresh_s=kw.pop("refresh_s", 0), **kw)


# -- routing ---------------------------------------------------------------------------------------


def test_requests_follow_the_split_and_each_user_sticks_to_one_version(sync_spec, db, recorder):
    with_candidate(db, sync_spec, {1: 0.7, 2: 0.3})
    app = served(sync_spec, db, recorder)
    seen: dict[str, set[int]] = defaultdict(set)
    for _ in range(3):
        for user in USERS:
            result = app.invoke({"question": "hi"}, unit_key=user)
            seen[user].add(result.config_version)
            assert result.output["answer"].startswith("good" if result.config_version == 2 else "bad")
            assert result.variant == ("candidate" if result.config_version == 2 else "baseline")
    assert all(len(versions) == 1 for versions in seen.values())  # sticky
    assert {u: v.pop() for u, v in seen.items()} == {u: expected_version(sync_spec, u, {1: 0.7, 2: 0.3}) for u in USERS}
    share = sum(1 for u in USERS if expected_version(sync_spec, u, {1: 0.7, 2: 0.3}) == 2) / len(USERS)
    assert 0.22 < share < 0.38
    stats = app.stats()
    assert stats.requests == 3 * len(USERS) and stats.by_version[2] == round(share * len(USERS)) * 3
    assert stats.split == {1: 0.7, 2: 0.3} and stats.active_version == 1


def test_a_ramp_keeps_candidate_users_on_the_candidate(sync_spec, db, recorder):
    with_candidate(db, sync_spec, {1: 0.9, 2: 0.1})
    app = served(sync_spec, db, recorder)
    before = {u: app.invoke({"question": "hi"}, unit_key=u).config_version for u in USERS}
    with_candidate(db, sync_spec, {1: 0.5, 2: 0.5})  # next ramp step, same experiment
    after = {u: app.invoke({"question": "hi"}, unit_key=u).config_version for u in USERS}
    assert all(after[u] == 2 for u in USERS if before[u] == 2)
    assert sum(v == 2 for v in after.values()) > sum(v == 2 for v in before.values())


@pytest.mark.parametrize("key", ["", None, b""])
def test_an_empty_unit_key_always_runs_the_baseline(sync_spec, db, recorder, key):
    with_candidate(db, sync_spec, {1: 0.01, 2: 0.99})  # almost everyone on the candidate
    app = served(sync_spec, db, recorder)
    results = [app.invoke({"question": "hi"}, unit_key=key) for _ in range(20)]
    assert {(r.config_version, r.variant) for r in results} == {(1, "unassigned")}
    assert app.invoke({"question": "hi"}, unit_key="someone").config_version == 2


def test_a_bad_unit_key_type_is_refused_with_a_clear_error(sync_spec, db, recorder):
    app = served(sync_spec, db, recorder)
    with pytest.raises(ValueError, match="a unit key is a str, bytes or int"):
        app.invoke({"question": "hi"}, unit_key=["user-1"])


def test_the_split_is_reread_at_most_every_refresh_interval(sync_spec, db):
    now = [0.0]
    with open_config_store(db) as store:
        reads = Counter()

        class Counting:
            """The store, counting reads of the split."""

            url = db

            def __getattr__(self, name):
                if name == "split":
                    reads["split"] += 1
                return getattr(store, name)

        routing = LiveRouting(sync_spec, config_store=Counting(), refresh_s=5.0, clock=lambda: now[0])
        for _ in range(100):
            routing.route("u", routing.refresh_if_due())
        assert reads["split"] == 1
        with_candidate(db, sync_spec, {1: 0.5, 2: 0.5})
        now[0] = 4.9
        assert routing.refresh_if_due().split is None  # not yet
        now[0] = 5.0
        snapshot = routing.refresh_if_due()
        assert snapshot.split.weights == {1: 0.5, 2: 0.5} and reads["split"] == 2
        router = snapshot.router
        now[0] = 10.0
        assert routing.refresh_if_due().router is router  # same split revision: the same router


# -- graphs and tags -------------------------------------------------------------------------------


def test_each_version_is_built_once_and_runs_are_tagged(sync_spec, db, recorder, store):
    with_candidate(db, sync_spec, {1: 0.5, 2: 0.5})
    BUILDS.clear()
    app = served(sync_spec, db, recorder)
    incoming_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    results = [app.invoke({"question": "hi"}, unit_key=u, config={"metadata": {
        "graphtune_source": "eval", "graphtune_config_version": 7, "team": "support",  # the serving tags win
        **({"traceparent": f"00-{incoming_trace}-00f067aa0ba902b7-01"} if u == "user-0" else {})}})
        for u in USERS[:40]]
    assert len(BUILDS) == 2 and app.stats().graphs_built == 2
    assert sorted(app.graphs.cached_versions(sync_spec)) == [1, 2]
    assert results[0].trace_id == incoming_trace  # an incoming W3C trace is joined
    assert all(r.trace_id == r.run_id.hex for r in results[1:])
    app.flush()
    ends = {e.trace_id: e for e in store.read(EventQuery(kinds=(EventKind.RUN_END,)))}
    assert len(ends) == 40
    for result in results:
        event = ends[result.trace_id]
        assert (event.workflow, event.config_version, event.variant, event.source, event.status) == (
            "sync_toy", result.config_version, result.variant, "production", "ok")
        assert event.user_hash is not None
    assert len({e.user_hash for e in ends.values()}) == 40  # the unit key is the (hashed) user id


def test_a_given_run_id_is_the_trace_id_and_failed_runs_carry_it(sync_spec, db, recorder, store):
    app = served(sync_spec, db, recorder)
    run_id = uuid.uuid4()
    assert app.invoke({"question": "hi"}, unit_key="u", run_id=str(run_id)).trace_id == run_id.hex
    with pytest.raises(RuntimeError, match="exploded") as raised:
        app.invoke({"question": "boom"}, unit_key="u")
    [note] = [n for n in raised.value.__notes__ if n.startswith("graphtune trace id: ")]
    failed_trace = note.rsplit(" ", 1)[1]
    assert app.feedback(failed_trace, thumbs_up=False) == "recorded"  # a failed answer can be disliked too
    app.flush()
    ends = store.read(EventQuery(kinds=(EventKind.RUN_END,), trace_id=failed_trace))
    assert [e.status for e in ends] == ["error"]
    assert app.stats().failed == 1 and app.stats().requests == 2
    with pytest.raises(ValueError, match="run_id must be a UUID"):
        app.invoke({"question": "hi"}, unit_key="u", run_id="not-a-uuid")


# -- feedback --------------------------------------------------------------------------------------


def test_feedback_is_checked_counted_and_recorded_once(sync_spec, db, recorder, store):
    app = served(sync_spec, db, recorder)
    first, second = (app.invoke({"question": "hi"}, unit_key=u) for u in ("ann", "bob"))
    outcomes = [
        app.feedback(first.trace_id, thumbs_up=True),
        app.feedback(first.trace_id, thumbs_up=False),  # a second click: the first answer stands
        app.feedback(first.trace_id, score=0.2),
        app.feedback(second.trace_id),  # no value
        app.feedback(second.trace_id, thumbs_up=True, score=1.0),  # both
        app.feedback(second.trace_id, score=1.5),
        app.feedback(second.trace_id, score=float("nan")),
        app.feedback(second.trace_id, thumbs_up="yes"),
        app.feedback(uuid.uuid4().hex, thumbs_up=True),  # a run nobody served
        app.feedback("", thumbs_up=True),
        app.feedback(None, score=0.5),
        app.feedback(second.trace_id, score=0.25, comment="too vague"),
    ]
    assert outcomes == ["recorded", "duplicate", "duplicate", "missing_value", "invalid_value", "invalid_value",
                        "invalid_value", "invalid_value", "unknown_trace", "unknown_trace", "unknown_trace", "recorded"]
    assert app.stats().feedback.model_dump() == {"received": 12, "recorded": 2, "missing_value": 1, "invalid_value": 4,
                                                 "unknown_trace": 3, "duplicate": 2}
    app.flush()
    feedback = store.read(EventQuery(kinds=(EventKind.FEEDBACK,)))
    assert sorted((e.trace_id, e.score) for e in feedback) == sorted([(first.trace_id, 1.0), (second.trace_id, 0.25)])
    assert all(e.source == "production" and e.workflow == "sync_toy" and e.user_hash for e in feedback)
    assert next(e for e in feedback if e.trace_id == second.trace_id).attributes == {"comment": "too vague"}


def test_feedback_for_a_run_another_process_served_is_checked_in_the_trace_store(sync_spec, db, recorder, store):
    worker_a, worker_b = served(sync_spec, db, recorder), served(sync_spec, db, recorder)
    result = worker_a.invoke({"question": "hi"}, unit_key="ann")
    worker_a.flush()
    assert worker_b.feedback(result.trace_id, thumbs_up=True) == "recorded"
    worker_b.flush()
    assert worker_a.feedback(result.trace_id, thumbs_up=True) == "recorded"  # a does not know b recorded it ...
    assert worker_a.ledger.lookup is not None
    worker_c = served(sync_spec, db, recorder)
    assert worker_c.feedback(result.trace_id, thumbs_up=False) == "duplicate"  # ... the store does
    alone = served(sync_spec, db, recorder, feedback_lookup=False)
    assert alone.feedback(result.trace_id, thumbs_up=True) == "unknown_trace"
    worker_a.flush()
    assert len(store.read(EventQuery(kinds=(EventKind.FEEDBACK,)))) == 2
    evidence = read_live_evidence(store, "sync_toy", baseline_version=1, candidate_version=2, since=0, until=time.time() + 1,
                                  assigned_only=False)
    assert evidence.baseline.rated == 1 and evidence.duplicate_feedback == 1  # the reader counts it once


def test_concurrent_feedback_for_one_run_records_one(sync_spec, db, recorder, store):
    app = served(sync_spec, db, recorder)
    result = app.invoke({"question": "hi"}, unit_key="ann")
    barrier = threading.Barrier(8)
    outcomes = []

    def click():
        barrier.wait()
        outcomes.append(app.feedback(result.trace_id, thumbs_up=True))

    threads = [threading.Thread(target=click) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["duplicate"] * 7 + ["recorded"]
    app.flush()
    assert len(store.read(EventQuery(kinds=(EventKind.FEEDBACK,)))) == 1


# -- the config store goes away --------------------------------------------------------------------


def custom_events(store, name):
    return [e for e in store.read(EventQuery(kinds=(EventKind.CUSTOM,))) if e.name == name]


def test_an_unreachable_store_keeps_the_last_known_active_version_and_split(sync_spec, db, recorder, store, monkeypatch, caplog):
    v2 = with_candidate(db, sync_spec, {1: 0.5, 2: 0.5})
    config_store = open_config_store(db)
    app = served(sync_spec, db, recorder, config_store=config_store)
    before = {u: app.invoke({"question": "hi"}, unit_key=u).config_version for u in USERS[:50]}
    assert set(before.values()) == {1, v2.version}

    def unreachable(*args, **kwargs):
        raise sqlite3.OperationalError("unable to open database file")

    with monkeypatch.context() as cut:
        for method in ("active", "split", "get", "ensure_active"):
            cut.setattr(config_store, method, unreachable)
        with caplog.at_level("WARNING", logger="graphtune.serving"):
            during = [app.invoke({"question": "hi"}, unit_key=u) for u in USERS[:50]]
    assert all(r.stale for r in during)
    assert {u: r.config_version for u, r in zip(USERS[:50], during)} == before  # same users, same versions
    outage_logs = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(outage_logs) == 1 and "last known active version 1" in outage_logs[0].getMessage()
    stats = app.stats()
    assert stats.store_outages == 1 and not stats.store_reachable and stats.stale_routes == 50

    after = app.invoke({"question": "hi"}, unit_key=USERS[0])  # the store answers again
    assert not after.stale and app.stats().store_reachable
    app.flush()
    [outage] = custom_events(store, OUTAGE_EVENT)  # recorded once per outage, not per request
    assert outage.workflow == "sync_toy" and outage.source == "production" and outage.status == "error"
    assert outage.attributes["error.type"] == "OperationalError"
    assert outage.attributes["graphtune.serving_version"] == 1 and outage.attributes["graphtune.split_revision"] == 1
    [recovery] = custom_events(store, RECOVERY_EVENT)
    assert recovery.attributes["graphtune.stale_routes"] == 50
    config_store.close()


def test_a_store_never_reached_serves_the_spec_config_until_it_answers(sync_spec, tmp_path, recorder, store):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the database directory should be")
    db = f"sqlite:///{blocker}/configs.db"
    app = served(sync_spec, db, recorder)
    results = [app.invoke({"question": "hi"}, unit_key=u) for u in USERS[:5]]
    assert {(r.config_version, r.variant, r.stale) for r in results} == {(None, "unassigned", True)}
    assert results[0].output["answer"].startswith("bad")  # the spec's own config
    assert app.stats().unversioned == 5
    blocker.unlink()
    blocker.mkdir()  # the store becomes reachable: version 1 is the spec's config
    recovered = app.invoke({"question": "hi"}, unit_key="ann")
    assert (recovered.config_version, recovered.variant, recovered.stale) == (1, "baseline", False)
    app.flush()
    [outage] = custom_events(store, OUTAGE_EVENT)
    assert outage.attributes["graphtune.fallback"] == "spec_config"
    assert len(custom_events(store, RECOVERY_EVENT)) == 1
    app.close()


# -- concurrency, async ----------------------------------------------------------------------------


def test_concurrent_async_requests_route_build_once_and_record_everything(weak_toy_spec, db, recorder, store):
    with_candidate(db, weak_toy_spec, {1: 0.5, 2: 0.5})
    app = served(weak_toy_spec, db, recorder, refresh_s=5)
    users = USERS[:60]

    async def traffic():
        return await asyncio.gather(*(app.ainvoke({"question": "two plus two"}, unit_key=u) for u in users * 3))

    results = asyncio.run(traffic())
    assert app.stats().graphs_built == 2
    by_user = defaultdict(set)
    for user, result in zip(users * 3, results):
        by_user[user].add(result.config_version)
        assert ("4" in result.output["answer"]) == (result.config_version == 2)  # v2 answers well
    assert all(len(v) == 1 for v in by_user.values())

    async def rate():
        return await asyncio.gather(*(app.afeedback(r.trace_id, thumbs_up=r.config_version == 2) for r in results))

    assert set(asyncio.run(rate())) == {"recorded"}
    app.flush()
    evidence = read_live_evidence(store, "toy", baseline_version=1, candidate_version=2, since=0, until=time.time() + 1)
    assert evidence.baseline.runs + evidence.candidate.runs == 180
    assert evidence.candidate.positive == evidence.candidate.runs and evidence.baseline.positive == 0
    # the sample-ratio check counts routed users, not requests: each user sent three
    assert evidence.assignments == {1: evidence.baseline.runs // 3, 2: evidence.candidate.runs // 3}


def test_concurrent_threads_share_one_served_workflow(sync_spec, db, recorder):
    with_candidate(db, sync_spec, {1: 0.5, 2: 0.5})
    BUILDS.clear()
    app = served(sync_spec, db, recorder)
    results: dict[str, list[int]] = defaultdict(list)
    lock = threading.Lock()

    def worker(offset: int):
        for user in USERS[offset::8][:25]:
            for _ in range(2):
                version = app.invoke({"question": "hi"}, unit_key=user).config_version
                with lock:
                    results[user].append(version)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(BUILDS) == 2
    assert sum(len(v) for v in results.values()) == 400 == app.stats().requests
    assert all(len(set(v)) == 1 and v[0] == expected_version(sync_spec, u, {1: 0.5, 2: 0.5}) for u, v in results.items())


# -- the server's unit key -------------------------------------------------------------------------


def test_a_server_run_is_keyed_by_its_user_session_or_thread():
    thread = {"configurable": {"thread_id": "t-1"}}
    assert unit_key_of_run(thread, {"user_id": "ann", "session_id": "s"}) == ("ann", "ann")
    assert unit_key_of_run(thread, {"session_id": "s-9"}) == ("s-9", None)
    assert unit_key_of_run({**thread, "metadata": {"user_id": 42}}, None) == ("42", "42")
    assert unit_key_of_run({**thread, "metadata": {"session_id": "s-2"}}, {"user_id": ""}) == ("s-2", None)
    assert unit_key_of_run(thread, {}) == ("t-1", None)
    assert unit_key_of_run({}, None) == (None, None)


def test_support_qa_served_with_a_live_split_and_feedback(db, recorder, store):
    """The bundled workflow end to end: routed, run, rated, and read back as live evidence."""
    spec = load_spec("support_qa")
    with open_config_store(db) as configs:
        configs.ensure_active("support_qa", spec.config, actor="test")
        v2 = configs.put("support_qa", {**spec.config, "llm": {**spec.config["llm"], "max_tokens": 16}}, actor="test", source="test")
        configs.set_split("support_qa", {1: 0.5, v2.version: 0.5}, expected_revision=None, actor="test", reason="live test")
    app = ServedWorkflow("support_qa", db, recorder=recorder)
    question = {"messages": [{"role": "user", "content": "How do I reset my password?"}]}

    async def traffic():
        return await asyncio.gather(*(app.ainvoke(question, unit_key=u) for u in USERS[:24]))

    results = asyncio.run(traffic())
    assert {r.config_version for r in results} == {1, 2}
    assert all(r.output["answer"] for r in results)
    for result in results:
        assert app.feedback(result.trace_id, thumbs_up=result.config_version == 1) == "recorded"
    app.close()
    evidence = read_live_evidence(store, "support_qa", baseline_version=1, candidate_version=2, since=0, until=time.time() + 1)
    assert evidence.baseline.runs + evidence.candidate.runs == 24
    assert evidence.baseline.positive_feedback.mean == 1.0 and evidence.candidate.positive_feedback.mean == 0.0
    assert evidence.baseline.success.mean == 1.0 and evidence.candidate.latency_ms.n == evidence.candidate.runs


def test_sync_invoke_serves_a_workflow_with_async_nodes(db, recorder, store):
    """support_qa's nodes are ``async def``: ``invoke`` used to fail every request with 'No synchronous
    function provided to "router"'. Now sync callers, from several threads at once, get answers, the
    runs are recorded, and a failing run still carries its trace id."""
    with open_config_store(db) as configs:
        configs.ensure_active("support_qa", load_spec("support_qa").config, actor="test")
    app = ServedWorkflow("support_qa", db, recorder=recorder)
    question = {"messages": [{"role": "user", "content": "How do I reset my password?"}]}
    results: dict[str, object] = {}

    def serve(user: str) -> None:
        results[user] = app.invoke(question, unit_key=user)

    threads = [threading.Thread(target=serve, args=(u,)) for u in USERS[:6]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6 and all(r.output["answer"] and r.config_version == 1 for r in results.values())
    with pytest.raises(ValueError, match="needs a 'question'") as info:
        app.invoke({}, unit_key="ann")
    assert any("graphtune trace id" in note for note in getattr(info.value, "__notes__", []))
    app.close()
    runs = store.read(EventQuery(workflow="support_qa", kinds=(EventKind.RUN_END,)))
    assert {r.trace_id for r in runs} >= {r.trace_id for r in results.values()}
    assert app.stats().requests == 7 and app.stats().failed == 1
