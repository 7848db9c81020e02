"""PostgreSQL trace store: COPY for ingest, a per-minute rollup for hot-spot queries.

Tables (created and migrated here, version kept in ``graphtune_schema`` under component "traces"):

- ``events``: one row per event, the columns of ``sql_schema.COLUMNS``. Indexes are few on purpose,
  because every index is paid on every COPY:
    * primary key on ``event_id`` (uuid): ids are UUIDv7-shaped, so inserts append at the right
      edge of the B-tree, and replayed batches need it to skip stored events. Ids must be 32 hex
      digits (dashes allowed) and read back as 32 lowercase hex digits, ``new_event_id``'s form;
    * BRIN on ``time``: tiny and nearly free to maintain, because events arrive roughly in time
      order; it serves time windows (aggregate edges, prune, ``read(since=...)``).
      ``autosummarize`` lets autovacuum summarize filled ranges without a manual VACUUM;
    * hash index on ``trace_id``: showing one trace and joining feedback to the nodes of its trace
      need equality only, and a hash index stores 4-byte codes instead of 32-character keys
      (measured: ~13% more COPY rows/s than a B-tree beside the other indexes);
    * partial index on ``time`` for ``kind = 'feedback'`` rows only: negative feedback in a window
      without scanning the window's other rows, at no cost for the other kinds.
  There is deliberately no index on ``user_hash`` or ``workflow``: user deletion is rare and may
  scan, and per-workflow hot spots come from the rollup.
- ``graphtune_node_rollup``: per (workflow, node, source, config_version, variant, minute) the count,
  errors, duration sum, tokens and a log-bucket latency histogram (``aggregate.bucket_of``),
  upserted in the same transaction as the events. ``aggregate`` reads whole minutes from it and
  raw rows only for the partial minutes at the window's edges. Untagged workflow and variant are
  stored as '' and an untagged config version as 0 (versions start at 1), so the key can be unique.
- ``graphtune_meta``: key/value pairs, first writer wins.
"""

from __future__ import annotations

import math
import operator
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import orjson
import psycopg
from psycopg.adapt import Dumper, Loader
from psycopg.pq import Format
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool

from graphtune.backends.aggregate import StatsBuilder, bucket_of
from graphtune.backends.sql_schema import COLUMN_LIST, COLUMNS, RUN_INDEXES, recent_runs_sql, recent_traces_sql, row_to_event, where_clauses
from graphtune.backends.summaries import summarize_traces
from graphtune.backends.traces import EventQuery, RunQuery, TraceStore
from graphtune.tracing.events import NEGATIVE_FEEDBACK_BELOW, RUN_NODE, NodeStats, TraceSummary, TrajectoryEvent

SCHEMA_VERSION = 2
# How long a connection attempt may take before the caller hears it failed (libpq's minimum is 2 s).
CONNECT_TIMEOUT_S = 5
T = TypeVar("T")
# One advisory lock for every graphtune migration in a database (the key is arbitrary but fixed).
MIGRATION_LOCK_KEY = 0x6772617068747500  # b"graphtu\0"

_EVENTS_DDL = """CREATE TABLE IF NOT EXISTS graphtune_events (
    event_id uuid PRIMARY KEY, kind text NOT NULL, time double precision NOT NULL, trace_id text NOT NULL,
    span_id text NOT NULL, parent_span_id text, name text NOT NULL, node text, workflow text,
    config_version integer, variant text, source text NOT NULL, thread_id text, user_hash text,
    duration_ms double precision, status text, input_tokens bigint, output_tokens bigint,
    score double precision, attributes jsonb NOT NULL)"""

_MIGRATIONS = {
    1: [
        _EVENTS_DDL,
        "CREATE INDEX IF NOT EXISTS graphtune_events_time_brin ON graphtune_events USING brin (time) WITH (pages_per_range = 16, autosummarize = on)",
        "CREATE INDEX IF NOT EXISTS graphtune_events_trace ON graphtune_events USING hash (trace_id)",
        "CREATE INDEX IF NOT EXISTS graphtune_events_feedback_time ON graphtune_events (time) WHERE kind = 'feedback'",
        """CREATE TABLE IF NOT EXISTS graphtune_node_rollup (
            workflow text NOT NULL, minute bigint NOT NULL, node text NOT NULL, source text NOT NULL,
            config_version integer NOT NULL, variant text NOT NULL,
            count bigint NOT NULL, errors bigint NOT NULL, duration_sum double precision NOT NULL,
            input_tokens bigint NOT NULL, output_tokens bigint NOT NULL, hist jsonb NOT NULL,
            PRIMARY KEY (workflow, minute, node, source, config_version, variant))""",
        # Adds histogram b ({bucket: count}) into a. Only b's keys are visited: b is one batch's
        # minute, usually smaller than the stored a. ~2x faster than regrouping both.
        """CREATE OR REPLACE FUNCTION graphtune_hist_add(a jsonb, b jsonb) RETURNS jsonb
            LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            SELECT a || coalesce(jsonb_object_agg(key, value::bigint + coalesce((a ->> key)::bigint, 0)), '{}'::jsonb)
            FROM jsonb_each_text(b)
            $$""",
        "CREATE TABLE IF NOT EXISTS graphtune_meta (key text PRIMARY KEY, value text NOT NULL)",
    ],
    2: RUN_INDEXES,
}

_ROLLUP_KINDS = frozenset(("node_end", "node_error", "run_end", "llm_usage"))
# Binary COPY: the server skips parsing text numbers and uuids (~20% more rows/s with our indexes).
_COPY_EVENTS = f"COPY graphtune_events ({COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = (
    "uuid", "text", "float8", "text", "text", "text", "text", "text", "text", "int4", "text", "text", "text", "text",
    "float8", "text", "int8", "int8", "float8", "jsonb",
)
_UPSERT_ROLLUP = """
INSERT INTO graphtune_node_rollup AS r (workflow, minute, node, source, config_version, variant,
                              count, errors, duration_sum, input_tokens, output_tokens, hist)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)
ON CONFLICT (workflow, minute, node, source, config_version, variant) DO UPDATE SET
    count = r.count + excluded.count, errors = r.errors + excluded.errors,
    duration_sum = r.duration_sum + excluded.duration_sum,
    input_tokens = r.input_tokens + excluded.input_tokens, output_tokens = r.output_tokens + excluded.output_tokens,
    hist = graphtune_hist_add(r.hist, excluded.hist)"""


class SchemaTooNewError(RuntimeError):
    """The database was migrated by a newer graphtune than this one."""


def libpq_url(url: str) -> str:
    """``postgresql+psycopg://...`` (SQLAlchemy style) -> ``postgresql://...``; libpq takes the rest as is."""
    scheme, sep, rest = url.partition("://")
    if not sep or not (scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+")):
        raise ValueError(f"{url!r} is not a PostgreSQL URL: expected postgresql://user:password@host/dbname")
    return f"postgresql://{rest}"


def migrate(conn: psycopg.Connection, component: str, migrations: dict[int, list[str]]) -> None:
    """Apply the migrations newer than the recorded version of ``component``, in one transaction.

    A transaction-scoped advisory lock serializes processes that start at once: without it two
    ``CREATE TABLE IF NOT EXISTS`` can race and one fails on the catalog's unique index.
    """
    latest = max(migrations)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        conn.execute("CREATE TABLE IF NOT EXISTS graphtune_schema (component text PRIMARY KEY, version integer NOT NULL)")
        row = conn.execute("SELECT version FROM graphtune_schema WHERE component = %s", (component,)).fetchone()
        current = row[0] if row else 0
        if current > latest:
            raise SchemaTooNewError(
                f"database {conn.info.dbname!r}: {component} schema version {current} is newer than this graphtune "
                f"supports ({latest}); upgrade graphtune"
            )
        for version in range(current + 1, latest + 1):
            for statement in migrations[version]:
                conn.execute(statement)
        if current != latest:
            conn.execute(
                "INSERT INTO graphtune_schema (component, version) VALUES (%s, %s) "
                "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (component, latest),
            )


def minute_of(t: float) -> int:
    """The minute m with m*60 <= t < (m+1)*60, exactly (float division alone can round across the edge)."""
    m = math.floor(t / 60)
    if m * 60 > t:
        m -= 1
    elif (m + 1) * 60 <= t:
        m += 1
    return m


def first_minute_from(t: float) -> int:
    """The first minute starting at or after t."""
    m = minute_of(t)
    return m if m * 60 == t else m + 1


class _HexUuidBinaryDumper(Dumper):
    """COPY's binary uuid from our id strings (32 hex digits, dashed or not)."""

    format = Format.BINARY
    oid = psycopg.adapters.types["uuid"].oid

    def dump(self, obj: str) -> bytes:
        if isinstance(obj, uuid.UUID):
            return obj.bytes
        try:
            raw = bytes.fromhex(obj.replace("-", ""))
        except (ValueError, AttributeError):
            raw = b""
        if len(raw) != 16:
            raise ValueError(f"event_id {obj!r} is not a UUID: expected 32 hex digits (graphtune.tracing.events.new_event_id)")
        return raw


class _JsonbBinaryDumper(Dumper):
    """COPY's binary jsonb (version byte 1 + JSON text) from an attributes dict, serialized like
    ``sql_schema.dumps_attributes``, or from a JSON string already serialized."""

    format = Format.BINARY
    oid = psycopg.adapters.types["jsonb"].oid

    def dump(self, obj) -> bytes:
        if isinstance(obj, str):
            return b"\x01" + obj.encode()
        return b"\x01" + orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)


class _HexUuidLoader(Loader):
    """Event ids come back as 32 hex digits, the form ``new_event_id`` makes, not uuid's dashed text."""

    def load(self, data) -> str:
        return bytes(data).decode().replace("-", "")


def _configure(conn: psycopg.Connection) -> None:
    set_json_loads(orjson.loads, conn)
    conn.adapters.register_loader("uuid", _HexUuidLoader)
    # Registered without a Python type: used only where COPY's set_types asks for these oids.
    conn.adapters.register_dumper(None, _HexUuidBinaryDumper)
    conn.adapters.register_dumper(None, _JsonbBinaryDumper)


# One C call per event instead of ``sql_schema.event_to_row``'s twenty attribute reads: the kind
# stays an EventKind (a str subclass, so COPY sends its value) and the attributes a dict (the jsonb
# dumper serializes it). Measured ~1.5 us less per event on the writer thread.
_row_of_fields = operator.itemgetter(*COLUMNS)


def _send_rows(copy: psycopg.Copy, events: Sequence[TrajectoryEvent]) -> list[tuple]:
    """Stream the events into a binary COPY; returns the rows sent (``sql_schema.COLUMNS`` order)."""
    copy.set_types(_COPY_TYPES)
    rows = []
    write_row, keep = copy.write_row, rows.append
    for e in events:
        row = _row_of_fields(e.__dict__)
        write_row(row)
        keep(row)
    return rows


def _rollup_of(rows: Iterable[tuple]) -> list[tuple]:
    """Rollup upsert parameters for rows in ``sql_schema.COLUMNS`` order, sorted by key.

    Same semantics as ``aggregate.stats_from_events``. Sorted keys make concurrent writers lock
    rollup rows in the same order, so they cannot deadlock.
    """
    acc: dict[tuple, list] = {}
    lo = hi = 0.0
    minute = 0
    for row in rows:
        if row[1] not in _ROLLUP_KINDS:
            continue
        (_, kind, t, _, _, _, name, node, workflow, config_version, variant, source, _, _, duration_ms, status,
         input_tokens, output_tokens, _, _) = row
        if not lo <= t < hi:  # a batch mostly falls in one minute
            minute = minute_of(t)
            lo, hi = minute * 60.0, minute * 60.0 + 60.0
        workflow = workflow or ""
        tags = (source, config_version or 0, variant or "")
        if kind == "llm_usage":
            for target in (node, RUN_NODE) if node else (RUN_NODE,):
                r = acc.get((workflow, minute, target, *tags))
                if r is None:
                    r = acc[(workflow, minute, target, *tags)] = [0, 0, 0.0, 0, 0, {}]
                r[3] += input_tokens or 0
                r[4] += output_tokens or 0
            continue
        target = RUN_NODE if kind == "run_end" else name
        r = acc.get((workflow, minute, target, *tags))
        if r is None:
            r = acc[(workflow, minute, target, *tags)] = [0, 0, 0.0, 0, 0, {}]
        r[0] += 1
        if kind == "node_error" or (kind == "run_end" and status == "error"):
            r[1] += 1
        if duration_ms is not None:
            r[2] += duration_ms
            bucket = bucket_of(duration_ms)
            r[5][bucket] = r[5].get(bucket, 0) + 1
    dumps, option = orjson.dumps, orjson.OPT_NON_STR_KEYS
    return [(*key, c, e, d, i, o, dumps(h, option=option).decode()) for key, (c, e, d, i, o, h) in sorted(acc.items())]


class PostgresTraceStore(TraceStore):
    """Thread-safe. Reads borrow connections from a small pool; writes go through one connection of
    their own (``_writing``), so a write never waits on the pool."""

    def __init__(self, url: str, *, pool_size: int = 4):
        self.url = url
        self._conninfo = libpq_url(url)
        self._writer: psycopg.Connection | None = None
        self._writer_lock = threading.Lock()
        with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            migrate(conn, "traces", _MIGRATIONS)
        self._pool = ConnectionPool(
            self._conninfo, min_size=1, max_size=pool_size, kwargs={"autocommit": True}, configure=_configure,
            check=ConnectionPool.check_connection, open=True, name="graphtune-traces",
        )

    # -- writing -------------------------------------------------------------------------
    def _writing(self, work: Callable[[psycopg.Connection], T]) -> T:
        """Run ``work`` on the write connection, connecting on demand.

        The recorder spills a batch whose write fails, and the batch is safe only once spilled. A
        pool would hold a failing write for its 30 s checkout timeout, and after an outage keep it
        waiting for the pool's reconnect backoff (which grows with the outage). Here a write while
        the database is down fails within ``CONNECT_TIMEOUT_S`` with libpq's reason, and the first
        write once it is back connects at once. A connection that dies under a write (a database
        restart) is replaced and the write tried once more: a batch that did commit is then found
        by its event ids, which ``write`` handles.
        """
        with self._writer_lock:
            for attempt in range(2):
                fresh = self._writer is None
                if fresh:
                    self._writer = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
                    _configure(self._writer)
                try:
                    return work(self._writer)
                except psycopg.OperationalError:
                    if not self._writer.closed and not self._writer.broken:
                        raise  # a statement failed on a live connection: not a connection problem
                    self._writer.close()
                    self._writer = None
                    if fresh:
                        raise
            raise AssertionError("unreachable")  # pragma: no cover

    def write(self, events: Sequence[TrajectoryEvent]) -> None:
        """COPY the batch and upsert its rollup in one transaction; stored ids fall back to replay."""
        if not events:
            return
        try:
            self._writing(lambda conn: _copy_batch(conn, events))
        except psycopg.errors.UniqueViolation:
            # Part of the batch is stored already (a retried batch): keep the new events only.
            self.write_replay(events)

    def write_replay(self, events: Sequence[TrajectoryEvent]) -> None:
        """Insert only unseen event ids, and roll up only the rows actually inserted."""
        if events:
            self._writing(lambda conn: _replay_batch(conn, events))

    # -- reading -------------------------------------------------------------------------
    @staticmethod
    def _where(query: EventQuery) -> tuple[list[str], list]:
        return where_clauses(query, "%s")

    def _fetch(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self._pool.connection() as conn:
            return conn.execute(sql, params).fetchall()

    def _select(self, where: list[str], params: list, limit: int | None = None) -> list[TrajectoryEvent]:
        sql = f"SELECT {COLUMN_LIST} FROM graphtune_events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time, event_id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [row_to_event(r) for r in self._fetch(sql, params)]

    def read(self, query: EventQuery = EventQuery()) -> list[TrajectoryEvent]:
        where, params = self._where(query)
        return self._select(where, params, limit=query.limit)

    def traces(self, *, workflow=None, sources=None, since=None, limit=20) -> list[TraceSummary]:
        where, params = self._where(EventQuery(workflow=workflow, sources=sources, since=since))
        sql = recent_traces_sql(where, limit)
        trace_ids = [r[0] for r in self._fetch(sql, params)]
        if not trace_ids:
            return []
        return summarize_traces(self._select(["trace_id = ANY(%s)"], [trace_ids]), limit)

    def recent_runs(self, query: RunQuery = RunQuery()) -> list[TrajectoryEvent]:
        sql, params = recent_runs_sql(query, "%s")
        return [row_to_event(r) for r in self._fetch(sql, params)]

    def aggregate(self, *, workflow=None, since=None, until=None, sources=("production",)) -> list[NodeStats]:
        """``stats_from_events`` semantics, from the rollup for whole minutes and raw rows at the edges.

        Counts, errors, tokens and means are exact. Quantiles are exact when the window holds no
        whole minute, and from log-bucket histograms (within 1%) otherwise.
        """
        lo = None if since is None else first_minute_from(since)
        hi = None if until is None else minute_of(until)
        rolled = lo is None or hi is None or lo < hi  # whether the window holds whole minutes
        builder = StatsBuilder()
        filters, params = [], []
        if workflow is not None:
            filters.append("workflow = %s")
            params.append(workflow)
        if sources is not None:
            filters.append("source = ANY(%s)")
            params.append(list(sources))
        with self._pool.connection() as conn, conn.transaction():
            # One snapshot for the three reads, so a batch committed meanwhile counts fully or not at all.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            span = None
            if rolled:
                self._add_rollup(conn, builder, filters, params, lo, hi)
                span = (None if lo is None else lo * 60.0, None if hi is None else hi * 60.0)
            self._add_edges(conn, builder, filters, params, since, until, span)
            self._add_negative_feedback(conn, builder, filters, params, since, until)
        return builder.build()

    @staticmethod
    def _add_rollup(conn, builder: StatsBuilder, filters: list[str], params: list, lo: int | None, hi: int | None) -> None:
        where, args = list(filters), list(params)
        _within(where, args, "minute", lo, hi)
        cond = " AND ".join(where) or "true"
        for wf, node, count, errors, duration_sum, tin, tout in conn.execute(
            "SELECT workflow, node, sum(count), sum(errors), sum(duration_sum), sum(input_tokens), sum(output_tokens) "
            f"FROM graphtune_node_rollup WHERE {cond} GROUP BY workflow, node", args,
        ):
            acc = builder[(wf, node)]
            acc.count += int(count)
            acc.errors += int(errors)
            acc.duration_sum += duration_sum
            acc.input_tokens += int(tin)
            acc.output_tokens += int(tout)
        for wf, node, bucket, n in conn.execute(
            "SELECT r.workflow, r.node, h.key::int, sum(h.value::bigint) "
            f"FROM graphtune_node_rollup AS r, jsonb_each_text(r.hist) AS h WHERE {cond} GROUP BY 1, 2, 3", args,
        ):
            builder[(wf, node)].hist[bucket] += int(n)

    @staticmethod
    def _add_edges(conn, builder, filters, params, since, until, span: tuple[float | None, float | None] | None) -> None:
        """Raw rows of the window outside the rollup's ``span`` of whole minutes (all rows when it is None)."""
        where, args = list(filters), list(params)
        where.append("kind = ANY(%s)")
        args.append(sorted(_ROLLUP_KINDS))
        _within(where, args, "time", since, until)
        if span is not None:
            outside = []
            if span[0] is not None:
                outside.append("time < %s")
                args.append(span[0])
            if span[1] is not None:
                outside.append("time >= %s")
                args.append(span[1])
            if not outside:
                return  # the rollup covers the whole window
            where.append("(" + " OR ".join(outside) + ")")
        rows = conn.execute(
            "SELECT kind, coalesce(workflow, ''), name, node, duration_ms, status, input_tokens, output_tokens "
            f"FROM graphtune_events WHERE {' AND '.join(where)}", args,
        )
        for kind, wf, name, node, duration_ms, status, tin, tout in rows:
            if kind == "llm_usage":
                builder.add_tokens((wf, node or RUN_NODE), tin, tout)
                if node:
                    builder.add_tokens((wf, RUN_NODE), tin, tout)
            elif kind == "run_end":
                builder[(wf, RUN_NODE)].add(duration_ms, status == "error")
            else:
                builder[(wf, name)].add(duration_ms, kind == "node_error")

    @staticmethod
    def _add_negative_feedback(conn, builder, filters, params, since, until) -> None:
        """Each negative feedback in the window counts once for every node its trace ran (at any time) and for the run."""
        where, args = list(filters), list(params)
        where += ["kind = 'feedback'", "score < %s"]
        args.append(NEGATIVE_FEEDBACK_BELOW)
        _within(where, args, "time", since, until)
        rows = conn.execute(
            f"""WITH neg AS (SELECT trace_id, count(*) AS n FROM graphtune_events WHERE {' AND '.join(where)} GROUP BY trace_id),
            ran AS (SELECT DISTINCT e.trace_id, coalesce(e.workflow, '') AS wf, e.name AS node
                    FROM graphtune_events AS e JOIN neg USING (trace_id) WHERE e.kind IN ('node_end', 'node_error')),
            targets AS (SELECT trace_id, wf, node FROM ran UNION SELECT trace_id, wf, %s FROM ran)
            SELECT wf, node, sum(n) FROM targets JOIN neg USING (trace_id) GROUP BY wf, node""",
            [*args, RUN_NODE],
        ).fetchall()
        builder.add_negative_feedback((wf, node, int(n)) for wf, node, n in rows)

    # -- retention -----------------------------------------------------------------------
    def prune(self, before: float) -> int:
        """Delete events older than ``before`` and the rollup minutes that end at or before it.

        The minute that straddles ``before`` keeps its rollup row until a later prune passes it.
        """
        with self._pool.connection() as conn, conn.transaction():
            deleted = conn.execute("DELETE FROM graphtune_events WHERE time < %s", (before,)).rowcount
            conn.execute("DELETE FROM graphtune_node_rollup WHERE minute < %s", (minute_of(before),))
        return deleted

    def delete_user(self, user_hash: str) -> int:
        """Delete the user's events. Rollups need no change: they hold per-node counts, latencies and
        tokens per minute, with no user, trace or thread ids."""
        with self._pool.connection() as conn:
            return conn.execute("DELETE FROM graphtune_events WHERE user_hash = %s", (user_hash,)).rowcount

    def get_or_create_meta(self, key: str, default: str) -> str:
        """On the write connection: the recorder asks for its hash salt here, and must not wait on the pool."""
        def work(conn: psycopg.Connection) -> str:
            conn.execute("INSERT INTO graphtune_meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING", (key, default))
            return conn.execute("SELECT value FROM graphtune_meta WHERE key = %s", (key,)).fetchone()[0]

        return self._writing(work)

    def close(self) -> None:
        self._pool.close()
        with self._writer_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None


def _copy_batch(conn: psycopg.Connection, events: Sequence[TrajectoryEvent]) -> None:
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy(_COPY_EVENTS) as copy:
            rows = _send_rows(copy, events)
            rollup = _rollup_of(rows)  # computed while the server still digests the rows
        if rollup:
            cur.executemany(_UPSERT_ROLLUP, rollup)


def _replay_batch(conn: psycopg.Connection, events: Sequence[TrajectoryEvent]) -> None:
    returning = COLUMN_LIST.replace("attributes", "NULL")  # the rollup needs no attributes
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS graphtune_replay (LIKE graphtune_events) ON COMMIT DELETE ROWS")
        with cur.copy(f"COPY graphtune_replay ({COLUMN_LIST}) FROM STDIN (FORMAT BINARY)") as copy:
            _send_rows(copy, events)
        cur.execute(
            f"INSERT INTO graphtune_events ({COLUMN_LIST}) SELECT {COLUMN_LIST} FROM graphtune_replay "
            f"ON CONFLICT (event_id) DO NOTHING RETURNING {returning}"
        )
        rollup = _rollup_of(cur.fetchall())
        if rollup:
            cur.executemany(_UPSERT_ROLLUP, rollup)


def _within(where: list[str], args: list, column: str, low, high) -> None:
    """Add ``low <= column < high`` to a WHERE list, each bound only when given."""
    if low is not None:
        where.append(f"{column} >= %s")
        args.append(low)
    if high is not None:
        where.append(f"{column} < %s")
        args.append(high)
