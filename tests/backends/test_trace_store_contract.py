"""One contract for every trace store: JSONL, SQLite and a real PostgreSQL all pass it."""

from __future__ import annotations

import os
import threading
import time

import pytest

from graphtune.backends.aggregate import exact_quantile
from graphtune.backends.traces import EventQuery, RunQuery, open_trace_store
from graphtune.tracing.events import EventKind, TrajectoryEvent


@pytest.fixture(params=["jsonl", "sqlite", "postgres"])
def store_url(request, tmp_path):
    if request.param == "jsonl":
        return f"jsonl:///{tmp_path}/traces"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/graphtune.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url):
    s = open_trace_store(store_url)
    yield s
    s.close()


T0 = 1_800_000_000.0  # a fixed instant, whole minute


def ev(kind, t, trace="a" * 32, name="n", **kw) -> TrajectoryEvent:
    return TrajectoryEvent(kind=kind, time=t, trace_id=trace, span_id=kw.pop("span_id", "b" * 16), name=name, **kw)


def test_write_then_read_round_trips_every_field(store):
    e = ev(
        EventKind.LLM_USAGE, T0 + 1.5, name="chat", node="answer", workflow="wf", config_version=3, variant="cand",
        source="eval", thread_id="t1", user_hash="u" * 32, duration_ms=12.5, status="ok", input_tokens=10,
        output_tokens=4, parent_span_id="c" * 16, attributes={"gen_ai.request.model": "m", "nested": {"x": [1, 2]}},
    )
    store.write([e])
    (got,) = store.read()
    assert got.model_dump() == e.model_dump()


def test_read_filters_and_orders_by_time(store):
    store.write([
        ev(EventKind.NODE_END, T0 + 3, trace="1" * 32, workflow="a", source="production"),
        ev(EventKind.NODE_END, T0 + 1, trace="1" * 32, workflow="a", source="eval"),
        ev(EventKind.NODE_END, T0 + 2, trace="2" * 32, workflow="b", source="production", thread_id="th"),
    ])
    assert [e.time for e in store.read()] == [T0 + 1, T0 + 2, T0 + 3]
    assert [e.time for e in store.read(EventQuery(trace_id="1" * 32))] == [T0 + 1, T0 + 3]
    assert [e.workflow for e in store.read(EventQuery(sources=("production",)))] == ["b", "a"]
    assert [e.time for e in store.read(EventQuery(since=T0 + 2, until=T0 + 3))] == [T0 + 2]
    assert [e.trace_id for e in store.read(EventQuery(thread_id="th"))] == ["2" * 32]
    assert len(store.read(EventQuery(limit=2))) == 2
    assert store.read(EventQuery(kinds=(EventKind.FEEDBACK,))) == []


def test_replayed_batches_never_duplicate(store):
    batch = [ev(EventKind.NODE_END, T0 + i) for i in range(5)]
    store.write(batch)
    store.write_replay(batch + [ev(EventKind.NODE_END, T0 + 9)])
    assert len(store.read()) == 6


def _workload():
    """Two workflows, sources mixed, errors, tokens and feedback: what hot spots are made of."""
    events = []
    durations = {"retrieve": [], "answer": []}
    for i in range(200):
        trace = f"{i:032x}"
        for node, base in (("retrieve", 10.0), ("answer", 100.0)):
            d = base + (i % 50) * (2 if node == "answer" else 0.5)
            failed = node == "answer" and i % 20 == 0
            durations[node].append(d)
            events.append(ev(EventKind.NODE_ERROR if failed else EventKind.NODE_END, T0 + i, trace=trace, name=node,
                             node=node, workflow="qa", duration_ms=d, status="error" if failed else "ok"))
        events.append(ev(EventKind.LLM_USAGE, T0 + i, trace=trace, name="chat", node="answer", workflow="qa",
                         input_tokens=100, output_tokens=20))
        events.append(ev(EventKind.RUN_END, T0 + i + 0.5, trace=trace, name="qa", workflow="qa", duration_ms=150.0,
                         status="error" if i % 20 == 0 else "ok"))
        if i % 10 == 0:  # thumbs down, arriving later than the run
            events.append(ev(EventKind.FEEDBACK, T0 + 5000 + i, trace=trace, name="user_feedback", workflow="qa", score=0.0))
        if i % 10 == 5:
            events.append(ev(EventKind.FEEDBACK, T0 + 5000 + i, trace=trace, name="user_feedback", workflow="qa", score=1.0))
    # noise that must not count: another source and another workflow
    events.append(ev(EventKind.NODE_ERROR, T0 + 10, trace="f" * 32, name="answer", workflow="qa", source="eval", duration_ms=5000.0, status="error"))
    events.append(ev(EventKind.NODE_END, T0 + 10, trace="e" * 32, name="other", workflow="other", duration_ms=1.0))
    return events, durations


def test_aggregate_per_node_counts_only_production(store):
    events, durations = _workload()
    store.write(events)
    stats = {(s.workflow, s.node): s for s in store.aggregate(workflow="qa")}
    assert set(stats) == {("qa", "retrieve"), ("qa", "answer"), ("qa", "__run__")}
    answer = stats[("qa", "answer")]
    assert (answer.count, answer.errors) == (200, 10)
    assert answer.error_rate == pytest.approx(0.05)
    for node in ("retrieve", "answer"):
        exact = sorted(durations[node])
        assert stats[("qa", node)].p50_ms == pytest.approx(exact_quantile(exact, 0.5), rel=0.02)
        assert stats[("qa", node)].p95_ms == pytest.approx(exact_quantile(exact, 0.95), rel=0.02)
    assert (answer.input_tokens, answer.output_tokens) == (20000, 4000)
    assert stats[("qa", "retrieve")].input_tokens == 0
    assert stats[("qa", "__run__")].input_tokens == 20000
    assert answer.negative_feedback == 20  # 20 thumbs-down traces, each ran "answer"
    assert stats[("qa", "__run__")].errors == 10
    with_eval = {(s.workflow, s.node): s for s in store.aggregate(workflow="qa", sources=None)}
    assert with_eval[("qa", "answer")].count == 201


def test_aggregate_respects_the_time_window(store):
    events, _ = _workload()
    store.write(events)
    stats = {s.node: s for s in store.aggregate(workflow="qa", since=T0 + 50, until=T0 + 150)}
    assert stats["retrieve"].count == 100
    assert stats["__run__"].count == 100  # run_end at T0+i+0.5 for i in 50..149


def test_traces_lists_newest_first(store):
    events, _ = _workload()
    store.write(events[:50])
    summaries = store.traces(limit=3)
    assert len(summaries) == 3
    assert summaries[0].start >= summaries[1].start >= summaries[2].start
    first = summaries[0]
    assert first.workflow == "qa" and first.events > 1


def test_recent_runs_lists_finished_runs_newest_first_under_filters(store):
    store.write([
        ev(EventKind.RUN_END, T0 + i, trace=f"{i:032x}", name="qa", workflow="qa" if i % 3 else "other",
           config_version=1 + i % 2, source="eval" if i == 4 else "production", status="error" if i % 4 == 0 else "ok")
        for i in range(12)
    ] + [ev(EventKind.NODE_END, T0 + 20, trace="f" * 32, workflow="qa")])  # not a run
    times = lambda q: [e.time - T0 for e in store.recent_runs(q)]  # noqa: E731
    assert times(RunQuery()) == [11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert times(RunQuery(limit=3)) == [11, 10, 9]
    assert times(RunQuery(workflow="qa")) == [11, 10, 8, 7, 5, 4, 2, 1]
    assert times(RunQuery(workflow="qa", config_version=2, source="production")) == [11, 7, 5, 1]
    assert times(RunQuery(errors_only=True)) == [8, 4, 0]
    assert times(RunQuery(since=T0 + 3, until=T0 + 6)) == [5, 4, 3]


def test_recent_runs_lists_the_slowest_finished_runs_first(store):
    durations = [30.0, None, 90.0, 10.0, 90.0, 500.0, 60.0]
    store.write([
        ev(EventKind.RUN_END, T0 + i, trace=f"{i:032x}", name="qa", workflow="qa", duration_ms=d,
           status="interrupted" if d == 500.0 else ("error" if i == 6 else "ok"))
        for i, d in enumerate(durations)
    ])
    slowest = lambda q: [e.time - T0 for e in store.recent_runs(q)]  # noqa: E731
    assert slowest(RunQuery(slowest=True)) == [2, 4, 6, 0, 3]  # no duration or interrupted: left out; ties: earlier first
    assert slowest(RunQuery(slowest=True, limit=2, since=T0 + 3)) == [4, 6]
    assert slowest(RunQuery(slowest=True, errors_only=True)) == [6]


def test_prune_and_delete_user(store):
    store.write([
        ev(EventKind.NODE_END, T0, user_hash="x" * 32),
        ev(EventKind.NODE_END, T0 + 100, user_hash="y" * 32),
        ev(EventKind.NODE_END, T0 + 200, user_hash="x" * 32),
    ])
    assert store.prune(T0 + 50) == 1
    assert store.delete_user("x" * 32) == 1
    remaining = store.read()
    assert [e.user_hash for e in remaining] == ["y" * 32]


def test_meta_first_writer_wins(store_url):
    values = []

    def create(i):
        s = open_trace_store(store_url)
        values.append(s.get_or_create_meta("salt", f"value-{i}"))
        s.close()

    threads = [threading.Thread(target=create, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(values)) == 1


def test_several_writers_at_once(store_url):
    """Processes (here: threads with their own store objects) write concurrently; nothing is lost."""
    def write(worker):
        s = open_trace_store(store_url)
        for batch in range(5):
            s.write([ev(EventKind.NODE_END, T0 + batch, trace=f"{worker:016x}{batch:016x}") for _ in range(20)])
        s.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader = open_trace_store(store_url)
    assert len(reader.read()) == 4 * 5 * 20
    reader.close()


def test_reopening_keeps_schema_and_data(store_url):
    s = open_trace_store(store_url)
    s.write([ev(EventKind.CUSTOM, time.time())])
    s.close()
    again = open_trace_store(store_url)
    assert len(again.read()) == 1
    again.close()
