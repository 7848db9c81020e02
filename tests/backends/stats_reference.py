"""A mixed workload and the reference statistics (``stats_from_events`` over the raw stored events)
that every trace store's ``aggregate`` must meet."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from graphtune.backends.aggregate import stats_from_events
from graphtune.backends.traces import EventQuery, TraceStore
from graphtune.tracing.events import EventKind, TrajectoryEvent

T0 = 1_800_000_000.0  # a whole minute


def workload(seed: int = 7, traces: int = 300, span_s: float = 360.0) -> list[TrajectoryEvent]:
    """Runs spread over several minutes: three nodes, errors, untimed ends, tokens with and
    without a node, mixed sources and variants, feedback arriving after the run."""
    rnd = random.Random(seed)
    events = []
    for i in range(traces):
        trace = f"{rnd.getrandbits(128):032x}"
        t = T0 + rnd.uniform(0, span_s)
        tags = dict(workflow=rnd.choice(["qa", "qa", "qa", None]), source=rnd.choice(["production"] * 4 + ["eval"]),
                    variant=rnd.choice([None, "cand"]), config_version=rnd.choice([None, 1, 2]))
        common = dict(trace_id=trace, span_id="b" * 16, **tags)
        for node in rnd.sample(["retrieve", "rerank", "answer"], k=rnd.randint(1, 3)):
            t += rnd.uniform(0.01, 2.0)
            failed = rnd.random() < 0.1
            duration = None if rnd.random() < 0.05 else rnd.lognormvariate(4, 0.8)
            events.append(TrajectoryEvent(kind=EventKind.NODE_ERROR if failed else EventKind.NODE_END, time=t, name=node,
                                          node=node, duration_ms=duration, status="error" if failed else "ok", **common))
            if node == "answer" or rnd.random() < 0.2:
                events.append(TrajectoryEvent(kind=EventKind.LLM_USAGE, time=t, name="chat", node=rnd.choice([node, None]),
                                              input_tokens=rnd.randint(1, 500), output_tokens=rnd.choice([None, 7]), **common))
        events.append(TrajectoryEvent(kind=EventKind.RUN_END, time=t + 0.001, name="qa", duration_ms=rnd.uniform(100, 900),
                                      status=rnd.choice(["ok"] * 9 + ["error"]), **common))
        if rnd.random() < 0.3:
            events.append(TrajectoryEvent(kind=EventKind.FEEDBACK, time=t + rnd.uniform(1, 120), name="user_feedback",
                                          score=rnd.choice([0.0, 0.2, 1.0]), **common))
    events.sort(key=lambda e: e.time)
    return events


def reference(store: TraceStore, **window) -> dict:
    """``stats_from_events`` over the raw stored events: the definition the store must meet."""
    everything = store.read()
    query = EventQuery(**window)

    def nodes_of_traces(trace_ids):
        wanted, found = set(trace_ids), defaultdict(set)
        for e in everything:
            if e.trace_id in wanted and e.kind in (EventKind.NODE_END, EventKind.NODE_ERROR):
                found[e.trace_id] |= {(e.workflow or "", e.name), (e.workflow or "", "__run__")}
        return found

    return {(s.workflow, s.node): s for s in stats_from_events([e for e in everything if query.matches(e)], nodes_of_traces)}


def assert_same_stats(got: list, expected: dict, quantiles_exact: bool = False) -> None:
    got = {(s.workflow, s.node): s for s in got}
    assert set(got) == set(expected)
    for key, want in expected.items():
        have = got[key]
        exact = ("count", "errors", "input_tokens", "output_tokens", "negative_feedback")
        assert {f: getattr(have, f) for f in exact} == {f: getattr(want, f) for f in exact}, key
        assert have.mean_ms == pytest.approx(want.mean_ms, rel=1e-9), key
        for q in ("p50_ms", "p95_ms"):
            if getattr(want, q) is None:
                assert getattr(have, q) is None, key
            else:
                assert getattr(have, q) == pytest.approx(getattr(want, q), rel=1e-9 if quantiles_exact else 0.02), (key, q)
