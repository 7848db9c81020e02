"""SQLite trace store: one file, WAL mode and a busy timeout so several processes can write."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Sequence

from graphtune.backends.sqlite_stats import node_stats
from graphtune.backends.summaries import summarize_traces
from graphtune.backends.sql_schema import COLUMN_LIST, COLUMNS, RUN_INDEXES, SCHEMA_VERSION, event_to_row, recent_runs_sql, recent_traces_sql, row_to_event, where_clauses
from graphtune.backends.traces import EventQuery, RunQuery, TraceStore, path_from_url
from graphtune.tracing.events import NodeStats, TraceSummary, TrajectoryEvent

_MIGRATIONS = {
    1: [
        """CREATE TABLE IF NOT EXISTS graphtune_events (
            event_id TEXT PRIMARY KEY, kind TEXT NOT NULL, time REAL NOT NULL, trace_id TEXT NOT NULL,
            span_id TEXT NOT NULL, parent_span_id TEXT, name TEXT NOT NULL, node TEXT, workflow TEXT,
            config_version INTEGER, variant TEXT, source TEXT NOT NULL, thread_id TEXT, user_hash TEXT,
            duration_ms REAL, status TEXT, input_tokens INTEGER, output_tokens INTEGER, score REAL,
            attributes TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS graphtune_events_time ON graphtune_events (time)",
        "CREATE INDEX IF NOT EXISTS graphtune_events_trace ON graphtune_events (trace_id)",
        "CREATE INDEX IF NOT EXISTS graphtune_events_workflow_time ON graphtune_events (workflow, time)",
        "CREATE INDEX IF NOT EXISTS graphtune_events_user ON graphtune_events (user_hash) WHERE user_hash IS NOT NULL",
        "CREATE TABLE IF NOT EXISTS graphtune_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ],
    2: RUN_INDEXES,
}


def connect_sqlite(path: str) -> sqlite3.Connection:
    if path != ":memory:" and os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=30000")
    # Switching a new database to WAL needs an exclusive lock and SQLite does not wait for it with the
    # busy handler: several processes opening one new file at once must retry.
    deadline = time.monotonic() + 30
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def migrate(conn: sqlite3.Connection, component: str, migrations: dict[int, list[str]]) -> None:
    """Apply the migrations newer than the recorded version of ``component``, in one transaction."""
    conn.execute("CREATE TABLE IF NOT EXISTS graphtune_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT version FROM graphtune_schema WHERE component = ?", (component,)).fetchone()
        current = row[0] if row else 0
        latest = max(migrations)
        if current > latest:
            raise RuntimeError(f"{component} schema version {current} is newer than this graphtune supports ({latest})")
        for version in range(current + 1, latest + 1):
            for statement in migrations[version]:
                conn.execute(statement)
        conn.execute(
            "INSERT INTO graphtune_schema (component, version) VALUES (?, ?) "
            "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
            (component, latest),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class SqliteTraceStore(TraceStore):
    def __init__(self, url: str):
        self.url = url
        self.path = path_from_url(url, "sqlite")
        self._conn = connect_sqlite(self.path)
        self._lock = threading.Lock()
        assert max(_MIGRATIONS) == SCHEMA_VERSION
        migrate(self._conn, "traces", _MIGRATIONS)

    def write(self, events: Sequence[TrajectoryEvent]) -> None:
        placeholders = ", ".join("?" * len(COLUMNS))
        rows = [event_to_row(e) for e in events]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(f"INSERT OR IGNORE INTO graphtune_events ({COLUMN_LIST}) VALUES ({placeholders})", rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _select(self, where: list[str], params: list, order: str = "time", limit: int | None = None) -> list[TrajectoryEvent]:
        sql = f"SELECT {COLUMN_LIST} FROM graphtune_events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order}"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [row_to_event(r) for r in rows]

    @staticmethod
    def _where(query: EventQuery) -> tuple[list[str], list]:
        return where_clauses(query, "?")

    def read(self, query: EventQuery = EventQuery()) -> list[TrajectoryEvent]:
        where, params = self._where(query)
        return self._select(where, params, limit=query.limit)

    def traces(self, *, workflow=None, sources=None, since=None, limit=20) -> list[TraceSummary]:
        where, params = self._where(EventQuery(workflow=workflow, sources=sources, since=since))
        sql = recent_traces_sql(where, limit)
        with self._lock:
            trace_ids = [r[0] for r in self._conn.execute(sql, params).fetchall()]
        if not trace_ids:
            return []
        events = self._select([f"trace_id IN ({', '.join('?' * len(trace_ids))})"], trace_ids)
        return summarize_traces(events, limit)

    def recent_runs(self, query: RunQuery = RunQuery()) -> list[TrajectoryEvent]:
        sql, params = recent_runs_sql(query, "?")
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [row_to_event(r) for r in rows]

    def aggregate(self, *, workflow=None, since=None, until=None, sources=("production",)) -> list[NodeStats]:
        where, params = self._where(EventQuery(workflow=workflow, sources=sources, since=since, until=until))
        with self._lock:
            return node_stats(self._conn, where, params)

    def _delete(self, where: str, params: tuple) -> int:
        with self._lock:
            return self._conn.execute(f"DELETE FROM graphtune_events WHERE {where}", params).rowcount

    def prune(self, before: float) -> int:
        return self._delete("time < ?", (before,))

    def delete_user(self, user_hash: str) -> int:
        return self._delete("user_hash = ?", (user_hash,))

    def get_or_create_meta(self, key: str, default: str) -> str:
        with self._lock:
            self._conn.execute("INSERT OR IGNORE INTO graphtune_meta (key, value) VALUES (?, ?)", (key, default))
            return self._conn.execute("SELECT value FROM graphtune_meta WHERE key = ?", (key,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
