"""What the history, hot-spot and trace pages show, read from the config and trace stores.

Sync functions (the stores have a sync API); the app calls them through ``asyncio.to_thread``. Every
read is bounded: a page of the change log, one window of statistics, one page of runs, one trace.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from graphtune.backends.config_store import ConfigStore, UnknownVersionError
from graphtune.backends.traces import EventQuery, RunQuery, TraceStore
from graphtune.spec import ObserveSpec
from graphtune.tracing.events import EventKind, TrajectoryEvent
from graphtune.tuning.config_paths import config_diff
from graphtune.tuning.hotspots import find_hot_spots

HISTORY_PAGE = 50
TRACE_EVENTS_LIMIT = 5000  # one trace's events shown at most; a runaway loop stays readable
TREE_KINDS = (EventKind.RUN_END, EventKind.NODE_END, EventKind.NODE_ERROR, EventKind.TOOL_CALL, EventKind.LLM_USAGE)


def history_page(store: ConfigStore, workflow: str | None) -> dict[str, Any]:
    """The change log of each workflow (newest first) with the config diff of every version change."""
    workflows = store.workflows()
    chosen = [workflow] if workflow else workflows
    logs = []
    for name in chosen:
        active = store.active(name)
        split = store.split(name)
        entries = []
        for entry in store.history(name, limit=HISTORY_PAGE):
            entries.append({**entry.model_dump(mode="json"), "diff": _diff(store, name, entry.from_version, entry.version)})
        logs.append({"workflow": name, "active": active.version if active else None,
                     "split": split.weights if split else None, "entries": entries})
    return {"workflows": workflows, "workflow": workflow, "logs": logs}


def _diff(store: ConfigStore, workflow: str, old: int | None, new: int | None) -> list[tuple[str, Any, Any]]:
    if old is None or new is None or old == new:
        return []
    try:
        return config_diff(store.get(workflow, old).config, store.get(workflow, new).config)
    except UnknownVersionError:
        return []


def hotspots_page(traces: TraceStore, workflows: list[str], workflow: str | None, window_s: float,
                  now: float | None = None) -> dict[str, Any]:
    """Each workflow's hot spots over the window, judged with the default observe thresholds."""
    now = time.time() if now is None else now
    observations = []
    for name in [workflow] if workflow else workflows:
        obs = find_hot_spots(traces, name, ObserveSpec(), now=now, window_s=window_s, max_samples=3)
        observations.append(obs.model_dump(mode="json"))
    return {"observations": observations, "workflows": workflows, "workflow": workflow}


def traces_page(traces: TraceStore, query: RunQuery) -> dict[str, Any]:
    """One page of finished runs, newest first, under the page's filters."""
    runs = traces.recent_runs(query)
    return {"runs": [_run_row(e) for e in runs], "query": query}


def _run_row(event: TrajectoryEvent) -> dict[str, Any]:
    return {"trace_id": event.trace_id, "time": event.time, "workflow": event.workflow, "version": event.config_version,
            "source": event.source, "status": event.status, "duration_ms": event.duration_ms,
            "thread_id": event.thread_id, "variant": event.variant}


def trace_page(traces: TraceStore, trace_id: str) -> dict[str, Any]:
    """One run as a tree of spans (run, nodes, tools, model calls) and its per-node statistics."""
    events = traces.read(EventQuery(trace_id=trace_id, limit=TRACE_EVENTS_LIMIT))
    spans = [e for e in events if e.kind in TREE_KINDS]
    children: dict[str | None, list[TrajectoryEvent]] = defaultdict(list)
    known = {e.span_id for e in spans}
    for e in sorted(spans, key=lambda e: (e.start_time, e.time)):
        children[e.parent_span_id if e.parent_span_id in known else None].append(e)
    rows: list[dict[str, Any]] = []

    def walk(parent: str | None, depth: int) -> None:
        for e in children.get(parent, []):
            rows.append({"depth": depth, "kind": e.kind.value, "name": e.name, "status": e.status,
                         "duration_ms": e.duration_ms, "tokens": (e.input_tokens or 0) + (e.output_tokens or 0),
                         "error": (e.attributes or {}).get("error.message") or (e.attributes or {}).get("error")})
            if e.span_id != parent:
                walk(e.span_id, depth + 1)

    walk(None, 0)
    stats: dict[str, dict[str, Any]] = {}
    for e in spans:
        if e.kind in (EventKind.NODE_END, EventKind.NODE_ERROR):
            row = stats.setdefault(e.name, {"node": e.name, "count": 0, "errors": 0, "total_ms": 0.0})
            row["count"] += 1
            row["errors"] += e.status == "error"
            row["total_ms"] += e.duration_ms or 0.0
    head = next((e for e in events if e.kind is EventKind.RUN_END), events[0] if events else None)
    return {"trace_id": trace_id, "found": bool(events), "tree": rows, "truncated": len(events) >= TRACE_EVENTS_LIMIT,
            "node_stats": sorted(stats.values(), key=lambda r: -r["total_ms"]),
            "run": _run_row(head) if head else None,
            "feedback": [{"score": e.score, "comment": (e.attributes or {}).get("comment")} for e in events if e.kind is EventKind.FEEDBACK]}
