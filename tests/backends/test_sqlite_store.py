"""What only the SQLite store has: per-node statistics computed in SQL, equal to the definition
over the raw events, quantiles included. The shared behaviour is in the contract suite."""

from __future__ import annotations

import pytest

from graphtune.backends.sqlite import SqliteTraceStore
from graphtune.tracing.events import EventKind, TrajectoryEvent
from tests.backends.stats_reference import T0, assert_same_stats, reference, workload


@pytest.fixture
def store(tmp_path):
    s = SqliteTraceStore(f"sqlite:///{tmp_path}/graphtune.db")
    yield s
    s.close()


@pytest.mark.parametrize("seed", [7, 8])
def test_aggregate_equals_the_definition_exactly(store, seed):
    store.write(workload(seed=seed))
    for sources in (("production",), ("eval",), None):
        for workflow in ("qa", None, "missing"):
            window = dict(workflow=workflow, sources=sources)
            assert_same_stats(store.aggregate(**window), reference(store, **window), quantiles_exact=True)


def test_aggregate_in_a_window_equals_the_definition_exactly(store):
    store.write(workload())
    for since, until in ((T0 + 37.3, T0 + 250.9), (T0 + 61.5, T0 + 119.5), (T0 + 130.2, None), (None, T0 + 200.7)):
        window = dict(workflow="qa", since=since, until=until)
        assert_same_stats(store.aggregate(**window), reference(store, sources=("production",), **window), quantiles_exact=True)


@pytest.mark.parametrize("durations", [[5.0], [3.0, 1.0], [2.0] * 7, [9.0, 1.0, 4.0, 4.0, 16.0]])
def test_quantiles_interpolate_between_ranks_for_any_count(store, durations):
    store.write([TrajectoryEvent(kind=EventKind.NODE_END, time=T0 + i, trace_id="a" * 32, span_id="b" * 16, name="n",
                                 workflow="qa", duration_ms=d) for i, d in enumerate(durations)])
    store.write([TrajectoryEvent(kind=EventKind.NODE_END, time=T0, trace_id="a" * 32, span_id="c" * 16, name="n",
                                 workflow="qa")])  # untimed: counted, not in the quantiles or the mean
    assert_same_stats(store.aggregate(workflow="qa"), reference(store, workflow="qa"), quantiles_exact=True)


def test_a_node_without_durations_has_no_quantiles(store):
    store.write([TrajectoryEvent(kind=EventKind.NODE_ERROR, time=T0, trace_id="a" * 32, span_id="b" * 16, name="n",
                                 workflow="qa", status="error")])
    (stats,) = store.aggregate(workflow="qa")
    assert (stats.count, stats.errors, stats.p50_ms, stats.p95_ms, stats.mean_ms) == (1, 1, None, None, None)
