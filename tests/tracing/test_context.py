"""W3C trace context: id shapes, traceparent parsing, and joining an incoming trace."""

from __future__ import annotations

import re
import uuid
from typing import TypedDict

import pytest
from langgraph.graph import START, StateGraph
from pydantic import ValidationError

from graphtune import EventKind, EventQuery, TrajectoryRecorder
from graphtune.backends.sqlite import SqliteTraceStore
from graphtune.tracing.context import (
    TraceContext,
    new_span_id,
    new_trace_id,
    parse_traceparent,
    span_id_from_run,
    trace_id_from_run,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_new_ids_have_w3c_shapes_and_differ():
    traces = {new_trace_id() for _ in range(100)}
    spans = {new_span_id() for _ in range(100)}
    assert len(traces) == 100 and len(spans) == 100
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in traces)
    assert all(re.fullmatch(r"[0-9a-f]{16}", s) for s in spans)


def test_run_ids_map_to_trace_and_span_ids_without_lookup():
    run_id = uuid.UUID("0123456789abcdef0123456789abcdef")
    assert trace_id_from_run(run_id) == "0123456789abcdef0123456789abcdef"
    assert span_id_from_run(run_id) == "0123456789abcdef"
    other = uuid.uuid4()
    assert re.fullmatch(r"[0-9a-f]{16}", span_id_from_run(other))


def test_parse_valid_traceparent():
    ctx = parse_traceparent(f"00-{TRACE}-{SPAN}-01")
    assert ctx == TraceContext(trace_id=TRACE, span_id=SPAN)
    # upper case and surrounding whitespace are tolerated
    assert parse_traceparent(f"  00-{TRACE.upper()}-{SPAN.upper()}-00 ") == ctx
    # a future version with the same layout is accepted
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-01") == ctx


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        f"00-{TRACE}-{SPAN}",  # no flags
        f"00-{TRACE[:-1]}-{SPAN}-01",  # short trace id
        f"00-{TRACE}-{SPAN}0-01",  # long span id
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
        f"ff-{TRACE}-{SPAN}-01",  # forbidden version
        f"00-{TRACE.replace('4', 'g')}-{SPAN}-01",  # not hex
    ],
)
def test_invalid_traceparent_is_ignored(header):
    assert parse_traceparent(header) is None


def test_trace_context_validates_and_renders_traceparent():
    ctx = TraceContext(trace_id=TRACE, span_id=SPAN, parent_span_id="a" * 16)
    assert ctx.traceparent() == f"00-{TRACE}-{SPAN}-01"
    assert ctx.traceparent(sampled=False) == f"00-{TRACE}-{SPAN}-00"
    assert parse_traceparent(ctx.traceparent()) == TraceContext(trace_id=TRACE, span_id=SPAN)
    for bad in ({"trace_id": "0" * 32, "span_id": SPAN}, {"trace_id": TRACE.upper(), "span_id": SPAN},
                {"trace_id": TRACE, "span_id": "xyz"}, {"trace_id": TRACE, "span_id": SPAN, "parent_span_id": "0" * 16}):
        with pytest.raises(ValidationError):
            TraceContext(**bad)


# -- joining through the recorder ------------------------------------------------------------------


class S(TypedDict):
    x: int


def _graph():
    builder = StateGraph(S)
    builder.add_node("a", lambda s: {"x": s["x"] + 1})
    builder.add_node("b", lambda s: {"x": s["x"] + 1})
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    return builder.compile()


@pytest.fixture
def store_and_recorder(tmp_path):
    store = SqliteTraceStore(f"sqlite:///{tmp_path}/t.db")
    rec = TrajectoryRecorder(store, sample_rate=1.0, spill_dir=str(tmp_path / "spill"), flush_interval=0.05)
    yield store, rec
    rec.close()
    store.close()


def test_incoming_traceparent_is_joined(store_and_recorder):
    store, rec = store_and_recorder
    _graph().invoke({"x": 0}, config={"callbacks": [rec], "metadata": {"traceparent": f"00-{TRACE}-{SPAN}-01"}})
    rec.flush()
    events = store.read()
    assert len(events) == 6
    assert {e.trace_id for e in events} == {TRACE}
    root = events[0]
    assert root.kind is EventKind.RUN_START
    assert root.parent_span_id == SPAN
    assert root.span_id != SPAN
    assert {e.parent_span_id for e in events if e.node} == {root.span_id}
    run_end = events[-1]
    assert run_end.kind is EventKind.RUN_END and run_end.parent_span_id == SPAN


def test_joined_trace_wins_over_run_id_and_two_runs_share_it(store_and_recorder):
    store, rec = store_and_recorder
    header = f"00-{TRACE}-{SPAN}-01"
    for _ in range(2):
        _graph().invoke({"x": 0}, config={"callbacks": [rec], "run_id": uuid.uuid4(), "metadata": {"traceparent": header}})
    rec.flush()
    events = store.read(EventQuery(trace_id=TRACE))
    assert len(events) == 12
    roots = [e for e in events if e.kind is EventKind.RUN_START]
    assert len(roots) == 2 and {r.parent_span_id for r in roots} == {SPAN}
    assert roots[0].span_id != roots[1].span_id


def test_invalid_incoming_traceparent_starts_a_fresh_trace(store_and_recorder):
    store, rec = store_and_recorder
    run_id = uuid.uuid4()
    _graph().invoke({"x": 0}, config={"callbacks": [rec], "run_id": run_id, "metadata": {"traceparent": "00-nothex-01"}})
    rec.flush()
    events = store.read()
    assert {e.trace_id for e in events} == {run_id.hex}
    assert events[0].parent_span_id is None
