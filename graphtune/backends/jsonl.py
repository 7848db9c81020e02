"""Append-only JSONL trace files: one event per line, one file per writing process.

Several processes write to one directory at once without locks because none shares a file.
Readers skip (and count) corrupt or truncated lines and drop repeated event ids, so a replayed
spill never shows twice. Prune and user deletion rewrite files atomically.
"""

from __future__ import annotations

import glob
import logging
import os
import socket
import uuid
from collections.abc import Iterator, Sequence

import orjson

from graphtune.backends.aggregate import stats_of_loaded_events
from graphtune.backends.traces import EventQuery, TraceStore, path_from_url
from graphtune.tracing.events import NodeStats, TraceSummary, TrajectoryEvent

log = logging.getLogger("graphtune.backends.jsonl")

SCHEMA_VERSION = 1
_META_DIR = "meta"


def event_line(event: TrajectoryEvent) -> bytes:
    return orjson.dumps(event.to_record(), option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS) + b"\n"


def parse_line(line: bytes) -> TrajectoryEvent | None:
    """One stored line as an event, or None when the line is corrupt or truncated."""
    try:
        return TrajectoryEvent.model_validate(orjson.loads(line))
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return None


def read_jsonl_events(path: str) -> tuple[list[TrajectoryEvent], int]:
    """Events of one file and the number of lines skipped as corrupt."""
    events: list[TrajectoryEvent] = []
    skipped = 0
    with open(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            event = parse_line(line)
            if event is None:
                skipped += 1
            else:
                events.append(event)
    return events, skipped


class JsonlTraceStore(TraceStore):
    def __init__(self, url: str):
        self.url = url
        self.directory = path_from_url(url, "jsonl")
        os.makedirs(self.directory, exist_ok=True)
        self._check_schema()
        self._file = None
        self._path = os.path.join(
            self.directory, f"events-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        )
        self.skipped_lines = 0

    def _check_schema(self) -> None:
        version = int(self.get_or_create_meta("schema_version", str(SCHEMA_VERSION)))
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.directory}: trace files use schema {version}, newer than this graphtune ({SCHEMA_VERSION})")

    def get_or_create_meta(self, key: str, default: str) -> str:
        """Each key is a file created with link(2): atomic, so the first writer wins across processes."""
        meta_dir = os.path.join(self.directory, _META_DIR)
        os.makedirs(meta_dir, exist_ok=True)
        final = os.path.join(meta_dir, key)
        if not os.path.exists(final):
            tmp = f"{final}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "w") as fh:
                fh.write(default)
            try:
                os.link(tmp, final)
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        with open(final) as fh:
            return fh.read()

    # -- writing -------------------------------------------------------------------------
    def write(self, events: Sequence[TrajectoryEvent]) -> None:
        if self._file is None or self._rewritten_under_us():
            if self._file is not None:
                self._file.close()
            self._file = open(self._path, "ab")
        self._file.write(b"".join(map(event_line, events)))
        self._file.flush()

    def _rewritten_under_us(self) -> bool:
        """Prune may have replaced our file; reopen so new lines land in the live one."""
        try:
            return os.stat(self._path).st_ino != os.fstat(self._file.fileno()).st_ino
        except FileNotFoundError:
            return True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- reading -------------------------------------------------------------------------
    def _files(self) -> list[str]:
        return sorted(glob.glob(os.path.join(self.directory, "events-*.jsonl")))

    def _all_events(self) -> Iterator[TrajectoryEvent]:
        seen: set[str] = set()
        skipped = 0
        for path in self._files():
            try:
                events, bad = read_jsonl_events(path)
            except FileNotFoundError:  # pruned away by another process meanwhile
                continue
            skipped += bad
            for event in events:
                if event.event_id not in seen:
                    seen.add(event.event_id)
                    yield event
        if skipped:
            log.warning("skipped %d corrupt or truncated lines in %s", skipped, self.directory)
        self.skipped_lines = skipped

    def read(self, query: EventQuery = EventQuery()) -> list[TrajectoryEvent]:
        events = sorted((e for e in self._all_events() if query.matches(e)), key=lambda e: e.time)
        return events[: query.limit] if query.limit else events

    def traces(self, *, workflow=None, sources=None, since=None, limit=20) -> list[TraceSummary]:
        from graphtune.backends.summaries import summarize_traces

        query = EventQuery(workflow=workflow, sources=sources, since=since)
        return summarize_traces(self.read(query), limit)

    def aggregate(self, *, workflow=None, since=None, until=None, sources=("production",)) -> list[NodeStats]:
        query = EventQuery(workflow=workflow, sources=sources, since=since, until=until)
        return stats_of_loaded_events(list(self._all_events()), query)

    # -- retention -----------------------------------------------------------------------
    def _rewrite(self, keep) -> int:
        deleted = 0
        for path in self._files():
            try:
                events, _ = read_jsonl_events(path)
            except FileNotFoundError:
                continue
            kept = [e for e in events if keep(e)]
            if len(kept) == len(events):
                continue
            deleted += len(events) - len(kept)
            if not kept:
                os.unlink(path)
                continue
            tmp = f"{path}.{os.getpid()}.rewrite"
            with open(tmp, "wb") as fh:
                fh.write(b"".join(map(event_line, kept)))
            os.replace(tmp, path)
        return deleted

    def prune(self, before: float) -> int:
        return self._rewrite(lambda e: e.time >= before)

    def delete_user(self, user_hash: str) -> int:
        return self._rewrite(lambda e: e.user_hash != user_hash)
