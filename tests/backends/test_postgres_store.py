"""What only the PostgreSQL store has: the per-minute rollup, replay without double counting, and
migrations that several processes may run at once. The shared behaviour is in the contract suite."""

from __future__ import annotations

import threading

import psycopg
import pytest

from graphtune.backends.postgres import SCHEMA_VERSION, PostgresTraceStore, SchemaTooNewError, minute_of
from graphtune.tracing.events import EventKind, TrajectoryEvent
from tests.backends.stats_reference import T0, assert_same_stats, reference, workload


@pytest.fixture
def store(pg_url):
    s = PostgresTraceStore(pg_url)
    yield s
    s.close()


def rollup_totals(url: str) -> tuple:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*), sum(count), sum(errors), sum(input_tokens), sum(output_tokens) FROM graphtune_node_rollup").fetchone()


def test_rollup_matches_raw_events_after_several_batches(store):
    events = workload()
    for start in range(0, len(events), 97):
        store.write(events[start:start + 97])
    for sources in (("production",), None):
        for workflow in ("qa", None):
            assert_same_stats(store.aggregate(workflow=workflow, sources=sources), reference(store, workflow=workflow, sources=sources))


def test_replay_of_stored_events_adds_nothing_and_counts_once(store, pg_url):
    events = workload(traces=60)
    store.write(events)
    before = rollup_totals(pg_url)
    store.write_replay(events)
    store.write(events[:10])  # a plain retry of a stored batch falls back to replay instead of failing
    assert len(store.read()) == len(events)
    assert rollup_totals(pg_url) == before

    late = workload(seed=8, traces=5)
    store.write_replay(events[:30] + late + late[:3])  # duplicates inside the batch too
    assert len(store.read()) == len(events) + len(late)
    assert_same_stats(store.aggregate(sources=None), reference(store, sources=None))


def test_concurrent_replays_of_one_batch_count_it_once(pg_url):
    events = workload(seed=9, traces=80)
    barrier = threading.Barrier(3)
    errors = []

    def replay():
        s = PostgresTraceStore(pg_url)
        try:
            barrier.wait()
            s.write_replay(events)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=replay) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    reader = PostgresTraceStore(pg_url)
    assert len(reader.read()) == len(events)
    assert_same_stats(reader.aggregate(sources=None), reference(reader, sources=None))
    reader.close()


def test_window_with_mid_minute_edges_is_exact_in_counts(store):
    store.write(workload())
    windows = [
        (T0 + 37.3, T0 + 250.9),  # partial minutes at both ends, whole minutes inside
        (T0 + 60.0, T0 + 180.0),  # whole minutes only
        (T0 + 61.5, T0 + 119.5),  # inside one minute: raw rows only, exact quantiles
        (T0 + 130.2, None),
        (None, T0 + 200.7),
    ]
    for since, until in windows:
        window = dict(workflow="qa", since=since, until=until)
        quantiles_exact = since is not None and until is not None and until - since < 60
        assert_same_stats(store.aggregate(**window), reference(store, sources=("production",), **window), quantiles_exact)


def test_events_on_minute_edges_land_in_one_minute(store):
    edge = T0 + 120.0
    times = [edge - 1e-6, edge, edge + 1e-6, edge + 59.999999]
    store.write([TrajectoryEvent(kind=EventKind.NODE_END, time=t, trace_id="a" * 32, span_id="b" * 16, name="n",
                                 workflow="qa", duration_ms=5.0) for t in times])
    assert [minute_of(t) for t in times] == [minute_of(edge) - 1] + [minute_of(edge)] * 3
    for since, until, expected in ((edge, edge + 60, 3), (edge - 30, edge, 1), (edge - 30, edge + 60, 4)):
        (stats,) = store.aggregate(workflow="qa", since=since, until=until)
        assert stats.count == expected, (since, until)


def test_prune_drops_rollup_minutes_that_ended(store, pg_url):
    store.write(workload())
    store.prune(T0 + 150.0)
    with psycopg.connect(pg_url) as conn:
        first = conn.execute("SELECT min(minute) FROM graphtune_node_rollup").fetchone()[0]
    assert first == minute_of(T0 + 120.0)  # the minute holding the cut stays
    assert min(e.time for e in store.read()) >= T0 + 150.0


def test_concurrent_writers_share_rollup_rows_without_deadlock(pg_url):
    barrier = threading.Barrier(4)
    errors = []

    def write(worker):
        s = PostgresTraceStore(pg_url)
        try:
            barrier.wait()
            for batch in range(10):
                s.write([TrajectoryEvent(kind=EventKind.NODE_END, time=T0 + 60 * (k % 3), trace_id=f"{worker:032x}",
                                         span_id="b" * 16, name=f"n{(k + worker) % 4}", workflow="qa", duration_ms=1.0 + k)
                         for k in range(50)])
        except Exception as exc:  # reported below: a failure in a thread must fail the test
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert rollup_totals(pg_url)[1] == 4 * 10 * 50


def test_stores_migrating_at_once_all_succeed(pg_url):
    barrier = threading.Barrier(6)
    outcomes = []

    def open_store():
        barrier.wait()
        try:
            PostgresTraceStore(pg_url).close()
            outcomes.append("ok")
        except Exception as exc:
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == ["ok"] * 6
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT component, version FROM graphtune_schema").fetchall() == [("traces", SCHEMA_VERSION)]


def test_newer_schema_version_is_refused_with_a_clear_error(pg_url):
    PostgresTraceStore(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE graphtune_schema SET version = 99 WHERE component = 'traces'")
    with pytest.raises(SchemaTooNewError, match=rf"traces schema version 99 is newer than this graphtune supports \({SCHEMA_VERSION}\)"):
        PostgresTraceStore(pg_url)


def test_sqlalchemy_style_url_is_accepted(pg_url):
    s = PostgresTraceStore(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    assert s.get_or_create_meta("k", "v") == "v"
    s.close()
