"""Trace summaries (one line per trace) from raw events, for stores without SQL."""

from __future__ import annotations

from collections.abc import Iterable

from graphtune.tracing.events import EventKind, TraceSummary, TrajectoryEvent


def summarize_traces(events: Iterable[TrajectoryEvent], limit: int) -> list[TraceSummary]:
    by_trace: dict[str, list[TrajectoryEvent]] = {}
    for event in events:
        by_trace.setdefault(event.trace_id, []).append(event)
    summaries = [summarize_trace(trace_id, evs) for trace_id, evs in by_trace.items()]
    summaries.sort(key=lambda s: s.start, reverse=True)
    return summaries[:limit]


def summarize_trace(trace_id: str, events: list[TrajectoryEvent]) -> TraceSummary:
    start = min(e.start_time for e in events)
    end = max(e.time for e in events)
    run_end = next((e for e in events if e.kind is EventKind.RUN_END), None)
    errors = sum(1 for e in events if e.status == "error")
    first = events[0]
    status = run_end.status if run_end else ("error" if errors else None)
    return TraceSummary(
        trace_id=trace_id,
        workflow=first.workflow,
        thread_id=first.thread_id,
        source=first.source,
        start=start,
        duration_ms=run_end.duration_ms if run_end else round((end - start) * 1000, 3),
        status=status,
        events=len(events),
        errors=errors,
        input_tokens=sum(e.input_tokens or 0 for e in events if e.kind is EventKind.LLM_USAGE),
        output_tokens=sum(e.output_tokens or 0 for e in events if e.kind is EventKind.LLM_USAGE),
    )
