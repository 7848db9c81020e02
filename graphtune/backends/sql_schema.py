"""The events table both SQL stores share: column order, row conversion, schema version."""

from __future__ import annotations

from typing import Any

import orjson

from graphtune.backends.traces import EventQuery
from graphtune.tracing.events import EventKind, TrajectoryEvent

SCHEMA_VERSION = 2
# Finished runs by time, overall and per workflow: the trace browser's newest-first pages walk these
# (partial: one row in ~8 events, so writes barely pay for them). Queries must say kind = 'run_end'.
RUN_INDEXES = [
    "CREATE INDEX IF NOT EXISTS graphtune_events_runs_time ON graphtune_events (time) WHERE kind = 'run_end'",
    "CREATE INDEX IF NOT EXISTS graphtune_events_runs_workflow_time ON graphtune_events (workflow, time) WHERE kind = 'run_end'",
]

COLUMNS = (
    "event_id", "kind", "time", "trace_id", "span_id", "parent_span_id", "name", "node", "workflow",
    "config_version", "variant", "source", "thread_id", "user_hash", "duration_ms", "status",
    "input_tokens", "output_tokens", "score", "attributes",
)
COLUMN_LIST = ", ".join(COLUMNS)


def dumps_attributes(attributes: dict[str, Any]) -> str:
    return orjson.dumps(attributes, option=orjson.OPT_NON_STR_KEYS).decode()


def event_to_row(e: TrajectoryEvent) -> tuple:
    return (
        e.event_id, e.kind.value, e.time, e.trace_id, e.span_id, e.parent_span_id, e.name, e.node, e.workflow,
        e.config_version, e.variant, e.source, e.thread_id, e.user_hash, e.duration_ms, e.status,
        e.input_tokens, e.output_tokens, e.score, dumps_attributes(e.attributes),
    )


def row_to_event(row: tuple) -> TrajectoryEvent:
    data = dict(zip(COLUMNS, row))
    attributes = data["attributes"]
    data["attributes"] = orjson.loads(attributes) if isinstance(attributes, (str, bytes)) else (attributes or {})
    data["kind"] = EventKind(data["kind"])
    data["event_id"] = str(data["event_id"])
    return TrajectoryEvent.model_construct(**data)


def recent_traces_sql(where: list[str], limit: int) -> str:
    """The ids of the newest traces matching ``where``: the first step of ``traces()`` in both SQL stores."""
    sql = "SELECT trace_id FROM graphtune_events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + f" GROUP BY trace_id ORDER BY min(time) DESC LIMIT {int(limit)}"


def where_clauses(query, placeholder: str) -> tuple[list[str], list]:
    """An ``EventQuery`` as WHERE conditions and parameters; ``placeholder`` is ``?`` (SQLite) or ``%s`` (psycopg)."""
    where: list[str] = []
    params: list = []
    for column, value in (("trace_id", query.trace_id), ("workflow", query.workflow), ("thread_id", query.thread_id)):
        if value is not None:
            where.append(f"{column} = {placeholder}")
            params.append(value)
    for column, values in (("kind", query.kinds and [k.value for k in query.kinds]), ("source", query.sources)):
        if values is not None:
            where.append(f"{column} IN ({', '.join([placeholder] * len(values))})" if values else "FALSE")
            params.extend(values)
    if query.since is not None:
        where.append(f"time >= {placeholder}")
        params.append(query.since)
    if query.until is not None:
        where.append(f"time < {placeholder}")
        params.append(query.until)
    return where, params


def recent_runs_sql(query, placeholder: str) -> tuple[str, list]:
    """The ``run_end`` rows matching a ``RunQuery``, newest first: walks the time index backwards and
    stops at ``limit``, so a page of runs costs the same on a table of any size (``slowest``: longest first)."""
    where, params = where_clauses(EventQuery(workflow=query.workflow, sources=(query.source,) if query.source else None,
                                             since=query.since, until=query.until), placeholder)
    where.append("kind = 'run_end'")  # a literal, so the partial RUN_INDEXES apply
    if query.config_version is not None:
        where.append(f"config_version = {placeholder}")
        params.append(query.config_version)
    if query.errors_only:
        where.append("status = 'error'")
    order = "time DESC"
    if query.slowest:  # sorts the window's runs: a day of busy traffic is ~20k rows, sorted in ~10 ms
        where += ["duration_ms IS NOT NULL", "(status IS NULL OR status <> 'interrupted')"]
        order = "duration_ms DESC, time"
    sql = f"SELECT {COLUMN_LIST} FROM graphtune_events WHERE {' AND '.join(where)} ORDER BY {order} LIMIT {int(query.limit)}"
    return sql, params
