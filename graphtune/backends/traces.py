"""The trace store protocol and the URL that chooses one.

Stores have a sync API: the recorder's writer thread and sync nodes call them directly; async code
goes through ``asyncio.to_thread``. Each store creates and migrates its own schema and keeps a
schema-version table. All stores pass ``tests/backends/test_trace_store_contract.py``.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from graphtune.extras import needs_extra
from graphtune.tracing.events import EventKind, NodeStats, TraceSummary, TrajectoryEvent

DEFAULT_DATABASE_URL = "sqlite:///.graphtune/graphtune.db"
ACCEPTED_SCHEMES = ("jsonl:///DIR", "sqlite:///FILE", "postgresql://...", "langfuse:// (read-only)")
# Trace sources graphtune reads but never writes: recorders write to the database URL instead.
READ_ONLY_SCHEMES = ("langfuse", "langfuse+http", "langfuse+https")


class UnknownBackendError(ValueError):
    """A store URL with a scheme graphtune does not know."""


class ReadOnlyTraceStoreError(RuntimeError):
    """A write, prune or delete on a trace source graphtune only reads (``langfuse://``)."""


@dataclass(frozen=True)
class EventQuery:
    """Which events to read. Times are unix seconds; ``since`` inclusive, ``until`` exclusive."""

    trace_id: str | None = None
    workflow: str | None = None
    thread_id: str | None = None
    kinds: tuple[EventKind, ...] | None = None
    sources: tuple[str, ...] | None = None
    since: float | None = None
    until: float | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.kinds is not None:  # callers may pass plain strings such as "run_end"
            object.__setattr__(self, "kinds", tuple(EventKind(k) for k in self.kinds))

    def matches(self, event: TrajectoryEvent) -> bool:
        return (
            (self.trace_id is None or event.trace_id == self.trace_id)
            and (self.workflow is None or event.workflow == self.workflow)
            and (self.thread_id is None or event.thread_id == self.thread_id)
            and (self.kinds is None or event.kind in self.kinds)
            and (self.sources is None or event.source in self.sources)
            and (self.since is None or event.time >= self.since)
            and (self.until is None or event.time < self.until)
        )


@dataclass(frozen=True)
class RunQuery:
    """Which finished runs to list (the web view's trace browser, hot-spot samples); times are unix seconds.

    ``slowest``: longest first, among runs with a duration that were not interrupted, instead of newest first.
    """

    workflow: str | None = None
    config_version: int | None = None
    source: str | None = None
    since: float | None = None
    until: float | None = None
    errors_only: bool = False
    slowest: bool = False
    limit: int = 50

    def matches(self, event: TrajectoryEvent) -> bool:
        return (
            (self.config_version is None or event.config_version == self.config_version)
            and (not self.errors_only or event.status == "error")
            and (not self.slowest or (event.duration_ms is not None and event.status != "interrupted"))
        )

    def sort(self, events: list[TrajectoryEvent]) -> list[TrajectoryEvent]:
        """In the query's order: newest first, or longest first (the earlier of equally long runs first)."""
        if self.slowest:
            return sorted(events, key=lambda e: (-e.duration_ms, e.time))
        return sorted(events, key=lambda e: e.time, reverse=True)


class TraceStore(ABC):
    """Where trajectory events live. One small protocol, several real implementations."""

    url: str

    @abstractmethod
    def write(self, events: Sequence[TrajectoryEvent]) -> None:
        """Store a batch. May raise; the recorder's pipeline spills the batch and retries later."""

    def write_replay(self, events: Sequence[TrajectoryEvent]) -> None:
        """Store a batch that may have been stored before (spill replay): never duplicates an event_id."""
        self.write(events)

    @abstractmethod
    def read(self, query: EventQuery = EventQuery()) -> list[TrajectoryEvent]:
        """Events matching ``query``, oldest first, each event_id once."""

    @abstractmethod
    def traces(
        self, *, workflow: str | None = None, sources: tuple[str, ...] | None = None, since: float | None = None, limit: int = 20
    ) -> list[TraceSummary]:
        """The most recent traces, newest first."""

    def recent_runs(self, query: RunQuery = RunQuery()) -> list[TrajectoryEvent]:
        """The ``run_end`` events matching ``query``, newest (or slowest) first. SQL stores answer from
        an index without reading older events; this default reads the window and sorts."""
        events = self.read(EventQuery(kinds=(EventKind.RUN_END,), workflow=query.workflow,
                                      sources=(query.source,) if query.source else None, since=query.since, until=query.until))
        return query.sort([e for e in events if query.matches(e)])[: query.limit]

    @abstractmethod
    def aggregate(
        self,
        *,
        workflow: str | None = None,
        since: float | None = None,
        until: float | None = None,
        sources: tuple[str, ...] | None = ("production",),
    ) -> list[NodeStats]:
        """Per workflow and node over a window: count, error rate, p50/p95 latency, tokens, negative feedback."""

    @abstractmethod
    def prune(self, before: float) -> int:
        """Delete events older than ``before`` (unix seconds); returns how many were deleted."""

    @abstractmethod
    def delete_user(self, user_hash: str) -> int:
        """Delete every event of one (hashed) user; returns how many were deleted."""

    @abstractmethod
    def get_or_create_meta(self, key: str, default: str) -> str:
        """The value kept under ``key``, storing ``default`` first if there is none (first writer wins)."""

    def close(self) -> None:
        """Release connections and file handles."""

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def traces_url_from_env() -> str:
    return os.environ.get("GRAPHTUNE_TRACES_URL") or os.environ.get("GRAPHTUNE_DATABASE_URL") or DEFAULT_DATABASE_URL


def scheme_of(url: str) -> str:
    return url.split(":", 1)[0].lower() if ":" in url else ""


def recording_url(url: str | None) -> str | None:
    """Where a recorder writes: ``url`` (None: the environment's), unless that names a read-only
    source such as ``langfuse://``; then ``GRAPHTUNE_DATABASE_URL`` or the default database, so
    graphtune's own eval and controller runs are still recorded (and exported, when export is on)."""
    effective = url or traces_url_from_env()
    if scheme_of(effective) not in READ_ONLY_SCHEMES:
        return url
    target = os.environ.get("GRAPHTUNE_DATABASE_URL") or DEFAULT_DATABASE_URL
    if scheme_of(target) in READ_ONLY_SCHEMES:
        target = DEFAULT_DATABASE_URL
    return target


def open_trace_store(url: str | None = None) -> TraceStore:
    """The trace store a URL names; with no URL, ``GRAPHTUNE_TRACES_URL``, ``GRAPHTUNE_DATABASE_URL`` or the default."""
    url = url or traces_url_from_env()
    scheme = scheme_of(url)
    if scheme == "jsonl":
        from graphtune.backends.jsonl import JsonlTraceStore

        return JsonlTraceStore(url)
    if scheme == "sqlite":
        from graphtune.backends.sqlite import SqliteTraceStore

        return SqliteTraceStore(url)
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        with needs_extra("postgres", "a PostgreSQL trace store"):
            from graphtune.backends.postgres import PostgresTraceStore

        return PostgresTraceStore(url)
    if scheme in READ_ONLY_SCHEMES:
        from graphtune.backends.langfuse_source import LangfuseTraceSource

        return LangfuseTraceSource(url)
    raise UnknownBackendError(f"unknown trace store URL {url!r}: expected one of {', '.join(ACCEPTED_SCHEMES)}")


def path_from_url(url: str, scheme: str) -> str:
    """``sqlite:///rel.db`` -> ``rel.db``; ``sqlite:////abs.db`` -> ``/abs.db`` (SQLAlchemy's convention).

    Anything else is an error rather than a guess: ``sqlite:/tmp/x.db`` (one slash) or
    ``sqlite://tmp/x.db`` (a host) would otherwise quietly name a file nobody asked for."""
    expected = f"expected {scheme}:///relative/path or {scheme}:////absolute/path"
    prefix = f"{scheme}:///"
    if url.lower().rstrip("/") == f"{scheme}:":
        raise UnknownBackendError(f"{url!r} names no path: {expected}")
    if url[: len(prefix)].lower() != prefix:
        raise UnknownBackendError(f"{url!r} is not a {scheme} URL with a path: {expected}")
    rest = url[len(prefix):]
    if not rest:
        raise UnknownBackendError(f"{url!r} names no path: {expected}")
    return rest


def iter_chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
