"""The one pipeline every recording path feeds: bounded queue -> background writer -> store.

Recording must never slow or break the workflow, so producers only append to a bounded deque.
A daemon thread drains it in batches, builds events, applies sampling, user hashing and
redaction (thread ids that carry personal data are hashed), and writes to the store. When the store fails, the batch spills to a local JSONL file
at once (written and fsynced before the writer moves on, so a crash loses nothing that reached
the writer) and is replayed once the store answers again. After a failed write, batches spill
directly while the store is retried after a short backoff (0.5 s doubling to ``RETRY_MAX_S``):
an outage costs one connect timeout per retry, not per batch, and writing and replay resume
within ``RETRY_MAX_S`` of the store's return. When the queue is full, events are dropped,
counted, logged and recorded as a ``graphtune.events_dropped`` event: never silently. When OTLP/Langfuse
export is on, each written batch is also handed to the exporter's own queue and thread
(``graphtune.backends.otlp_exporter``), which never delays the store write.
"""

from __future__ import annotations

import atexit
import glob
import hashlib
import logging
import os
import secrets
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks
    fcntl = None

from graphtune.backends.jsonl import event_line, read_jsonl_events
from graphtune.backends.otlp_exporter import SpanExporter, exporter_from_env
from graphtune.backends.traces import TraceStore, iter_chunks, open_trace_store, recording_url
from graphtune.tracing.assembler import Assembler
from graphtune.tracing.context import new_span_id, new_trace_id
from graphtune.tracing.events import EventKind, TrajectoryEvent
from graphtune.tracing.privacy import SALT_ENV, hash_user_id, resolve_salt
from graphtune.tracing.redaction import ContentMode, Redactor, default_redact

log = logging.getLogger("graphtune.recorder")

DEFAULT_MAX_QUEUE = 50_000
FROM_ENV: Any = object()  # exporter default: whatever GRAPHTUNE_OTLP_* / LANGFUSE_* ask for
DEFAULT_BATCH_SIZE = 2_000
_MAX_HELD_TRACES = 10_000
_DROP_LOG_EVERY_S = 10.0
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0


def default_spill_dir() -> str:
    return os.environ.get("GRAPHTUNE_SPILL_DIR") or os.path.join(".graphtune", "spill")


class _Marker:
    """Queued by flush(); set when the writer has handled everything queued before it."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class _UserEvent:
    """A finished event from TrajectoryNode, a hook or feedback, with its plain user id to hash."""

    __slots__ = ("event", "user_id")

    def __init__(self, event: TrajectoryEvent, user_id: Any):
        self.event = event
        self.user_id = user_id


class EventPipeline:
    def __init__(
        self,
        store: TraceStore | str | None = None,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = 0.2,
        sample_rate: float | None = None,
        redact: Callable[[str], str] | None = default_redact,
        content_mode: ContentMode = "full",
        capture_state: bool = True,
        spill_dir: str | None = None,
        exporter: SpanExporter | None = FROM_ENV,
    ):
        if sample_rate is None:
            sample_rate = float(os.environ.get("GRAPHTUNE_SAMPLE_RATE", "1.0"))
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be within [0, 1], got {sample_rate}")
        self._store_arg = store
        self._store: TraceStore | None = store if isinstance(store, TraceStore) else None
        self.store_url = store.url if isinstance(store, TraceStore) else recording_url(store)
        # Export (OTLP / Langfuse) gets each batch after sampling, hashing and redaction, on its own thread.
        self.exporter: SpanExporter | None = exporter_from_env() if exporter is FROM_ENV else exporter
        self.queue: deque = deque()
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.sample_rate = sample_rate
        self.redactor = Redactor(redact, content_mode)
        self.assembler = Assembler(self._hash_user, capture_state=capture_state)
        self._salt: str | None = os.environ.get(SALT_ENV) or None
        self._fallback_salt: str | None = None
        self._held: dict[str, list[TrajectoryEvent]] = {}
        self._thread_keys: dict[str, str] = {}  # thread id -> as stored (hashed when it carries PII)
        self._kept_traces: set[str] = set()
        self._spill_dir_root = spill_dir or default_spill_dir()
        self._spill_file = None
        self._retry_at = 0.0  # monotonic time before which the store is not tried again (after a failure)
        self._retry_backoff = RETRY_FIRST_S
        self._drop_lock = threading.Lock()
        self._dropped = 0
        self._dropped_reported = 0
        self._last_drop_log = float("-inf")  # the first drop always logs (monotonic time may be < 10 s)
        self.counts = {"written": 0, "spilled": 0, "replayed": 0, "sampled_out": 0, "store_errors": 0, "dropped": 0}
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="graphtune-writer", daemon=True)
        self._thread.start()
        _LIVE.add(self)

    # -- producer side (any thread; must stay cheap) ----------------------------------------
    def submit(self, item: Any) -> None:
        """Queue a raw callback tuple; drop and count it when the queue is full."""
        queue = self.queue
        if len(queue) < self.max_queue:
            queue.append(item)
            if len(queue) > self.batch_size:
                self._wake.set()
        else:
            self.drop()

    def submit_event(self, event: TrajectoryEvent, user_id: Any = None) -> None:
        """Queue a finished event; ``user_id`` (plain) is hashed on the writer thread."""
        self.submit(_UserEvent(event, user_id))

    def drop(self, n: int = 1) -> None:
        with self._drop_lock:
            self._dropped += n

    @property
    def dropped(self) -> int:
        return self._dropped

    def stats(self) -> dict[str, int]:
        stats = {**self.counts, "dropped": self._dropped, "queued": len(self.queue)}
        if self.exporter is not None:
            stats.update({f"export_{k}": v for k, v in self.exporter.stats().items()})
        return stats

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until everything queued so far is written (or spilled); True if it finished in time."""
        if self._closed or not self._thread.is_alive():
            return not self.queue
        marker = _Marker()
        self.queue.append(marker)  # markers bypass the bound: flush must never be dropped
        self._wake.set()
        return marker.done.wait(timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        self._wake.set()
        self._thread.join(timeout)
        self._close_spill_file()
        if self._dropped:
            log.warning("graphtune recorder dropped %d trajectory events in all (queue full)", self._dropped)
        if self._store is not None and self._store_arg is not self._store:
            self._store.close()
        _LIVE.discard(self)

    # -- writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                self._drain()
                self._maybe_replay()
            except Exception:  # the writer must survive anything a batch throws at it
                log.exception("graphtune recorder: writer error (events of this batch may be lost)")
            if self._closed and not self.queue:
                return

    def _drain(self) -> None:
        queue = self.queue
        while queue:
            batch: list[TrajectoryEvent] = []
            markers: list[_Marker] = []
            feed = self.assembler.feed
            for _ in range(min(len(queue), self.batch_size)):
                item = queue.popleft()
                if type(item) is tuple:
                    event = feed(item)
                    if event is not None:
                        self._admit(event, batch)
                elif type(item) is _UserEvent:
                    event = item.event
                    if item.user_id is not None:
                        event.user_hash = self._hash_user(item.user_id)
                    self._admit(event, batch)
                else:
                    markers.append(item)
            self._report_drops(batch)
            if batch:
                self._write(batch, retry_now=bool(markers))
            if markers:
                self._maybe_replay(force=True)
                for marker in markers:
                    marker.done.set()

    def _admit(self, event: TrajectoryEvent, out: list) -> None:
        """Trace-level sampling that always keeps a trace containing an error."""
        if self.sample_rate >= 1.0:
            out.append(event)
            return
        trace_id = event.trace_id
        if trace_id in self._kept_traces or _trace_sampled(trace_id, self.sample_rate):
            out.append(event)
            return
        held = self._held.get(trace_id)
        if event.status == "error":
            self._kept_traces.add(trace_id)
            if len(self._kept_traces) > _MAX_HELD_TRACES:
                self._kept_traces.pop()
            out.extend(self._held.pop(trace_id, ()))
            out.append(event)
            return
        if event.kind is EventKind.RUN_END:
            self.counts["sampled_out"] += 1 + len(self._held.pop(trace_id, ()))
            return
        if held is None:
            if len(self._held) >= _MAX_HELD_TRACES:
                _, evicted = self._held.popitem()
                self.counts["sampled_out"] += len(evicted)
            held = self._held[trace_id] = []
        held.append(event)

    def _prepare(self, batch: list[TrajectoryEvent]) -> None:
        apply = self.redactor.apply
        for event in batch:
            fields = event.__dict__  # skips pydantic's setattr bookkeeping
            attributes = fields["attributes"]
            if attributes:
                fields["attributes"] = apply(attributes)
            thread = fields["thread_id"]
            if thread:
                fields["thread_id"] = self._thread_keys.get(thread) or self._thread_key(thread)

    def _thread_key(self, thread_id: str) -> str:
        """The thread id as stored and exported (``session.id``): as is, unless the redaction hook
        finds something in it (``thread-jane.doe@example.com-1``); then ``hashed-`` and its salted
        hash, which still groups the thread's runs without holding what it carried."""
        hook = self.redactor.hook
        key = thread_id if hook is None or hook(thread_id) == thread_id else f"hashed-{self._hash_user(thread_id)}"
        if len(self._thread_keys) >= _MAX_HELD_TRACES:
            self._thread_keys.clear()
        self._thread_keys[thread_id] = key
        return key

    def _write(self, batch: list[TrajectoryEvent], retry_now: bool = False) -> None:
        """Store the batch, or spill it: at once while the store is backing off (unless a flush
        asks to ``retry_now``), else after the write fails."""
        self._prepare(batch)
        if self.exporter is not None:
            self.exporter.submit(batch)  # a deque append: the export never delays the store write
        if not retry_now and time.monotonic() < self._retry_at:
            self._spill(batch)
            return
        try:
            self._get_store().write(batch)
            self.counts["written"] += len(batch)
            self._retry_backoff = RETRY_FIRST_S
        except Exception as exc:
            self.counts["store_errors"] += 1
            log.warning("graphtune recorder: trace store write failed (%s: %s); spilling %d events to %s",
                        type(exc).__name__, exc, len(batch), self._spill_dir())
            self._store_failed()
            self._spill(batch)

    def _store_failed(self) -> None:
        self._retry_at = time.monotonic() + self._retry_backoff
        self._retry_backoff = min(self._retry_backoff * 2, RETRY_MAX_S)

    def _get_store(self) -> TraceStore:
        if self._store is None:
            self._store = open_trace_store(self.store_url)
            self.store_url = self._store.url
        return self._store

    # -- user hashing -------------------------------------------------------------------------
    def _hash_user(self, user_id: Any) -> str:
        if self._salt is None and time.monotonic() >= self._retry_at:
            try:
                self._salt = resolve_salt(self._get_store())
            except Exception:
                self._store_failed()
        if self._salt is None:
            # The store is unreachable and no GRAPHTUNE_HASH_SALT is set: never store a plain id.
            # A process-only salt keeps ids hashed; such hashes will not match later ones.
            if self._fallback_salt is None:
                self._fallback_salt = secrets.token_hex(16)
                log.warning("graphtune recorder: hash salt unavailable (store unreachable); set %s for stable user hashes", SALT_ENV)
            return hash_user_id(user_id, self._fallback_salt)
        return hash_user_id(user_id, self._salt)

    # -- drops ----------------------------------------------------------------------------------
    def _report_drops(self, batch: list[TrajectoryEvent]) -> None:
        dropped = self._dropped
        new = dropped - self._dropped_reported
        if new <= 0:
            return
        self._dropped_reported = dropped
        self.counts["dropped"] = dropped
        batch.append(TrajectoryEvent(
            kind=EventKind.CUSTOM, time=time.time(), trace_id=new_trace_id(), span_id=new_span_id(),
            name="graphtune.events_dropped", source="controller",
            attributes={"dropped": new, "dropped_total": dropped, "reason": "queue_full", "max_queue": self.max_queue},
        ))
        now = time.monotonic()
        if now - self._last_drop_log >= _DROP_LOG_EVERY_S:
            self._last_drop_log = now
            log.warning("graphtune recorder: queue full (max_queue=%d); dropped %d events so far", self.max_queue, dropped)

    # -- spill and replay ----------------------------------------------------------------------
    def _spill_dir(self) -> str:
        key = hashlib.sha256(str(self.store_url).encode()).hexdigest()[:12]
        return os.path.join(self._spill_dir_root, key)

    def _spill(self, batch: list[TrajectoryEvent]) -> None:
        try:
            if self._spill_file is None:
                directory = self._spill_dir()
                os.makedirs(directory, exist_ok=True)
                name = f"spill-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
                pending = os.path.join(directory, f".{name}.new")  # unseen by replayers until locked
                spill_file = open(pending, "ab")
                _try_lock(spill_file)  # held while open: other pipelines must not replay a file still written to
                os.rename(pending, os.path.join(directory, name))
                _fsync_dir(directory)  # the file's name survives a power loss too
                self._spill_file = spill_file
            self._spill_file.write(b"".join(map(event_line, batch)))
            self._spill_file.flush()
            os.fsync(self._spill_file.fileno())
            self.counts["spilled"] += len(batch)
        except Exception as exc:  # an unwritable disk, or an event the encoder rejects: count, never lose silently
            self.drop(len(batch))
            log.error("graphtune recorder: cannot spill to %s (%s); %d events dropped", self._spill_dir(), exc, len(batch))

    def _close_spill_file(self) -> None:
        if self._spill_file is not None:
            self._spill_file.close()
            self._spill_file = None

    def _maybe_replay(self, force: bool = False) -> None:
        """Replay spilled batches (ours and those left by dead processes) once the store answers."""
        directory = self._spill_dir()
        if not os.path.isdir(directory) or (not force and time.monotonic() < self._retry_at):
            return
        self._close_spill_file()
        # With file locks, files claimed by a replayer that died (spill-*.jsonl.replaying-PID) are
        # unlocked and get picked up again; without them only unclaimed files are safe to take.
        pattern = "spill-*.jsonl*" if fcntl is not None else "spill-*.jsonl"
        for path in sorted(glob.glob(os.path.join(directory, pattern))):
            original = path.split(".replaying-", 1)[0]
            claimed = f"{original}.replaying-{os.getpid()}"
            try:
                lock = open(path, "rb")
            except FileNotFoundError:
                continue
            with lock:
                if not _try_lock(lock):
                    continue  # a live pipeline still writes (or replays) this file
                try:
                    os.rename(path, claimed)  # atomic: of several replaying processes, one gets the file
                except FileNotFoundError:
                    continue
                try:
                    events, corrupt = read_jsonl_events(claimed)
                    for chunk in iter_chunks(events, self.batch_size):
                        self._get_store().write_replay(chunk)
                    os.unlink(claimed)
                    self.counts["replayed"] += len(events)
                    if corrupt:
                        log.warning("graphtune recorder: %d corrupt lines skipped while replaying %s", corrupt, path)
                    self._retry_backoff = RETRY_FIRST_S
                except Exception as exc:
                    os.rename(claimed, original)
                    self._store_failed()
                    log.info("graphtune recorder: store still unavailable for replay (%s)", exc)
                    return


def _try_lock(fh) -> bool:
    """An exclusive, non-blocking advisory lock on an open file; released when the file closes
    (or its process dies). Always True where ``fcntl`` is missing."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _fsync_dir(directory: str) -> None:
    """Make a new directory entry durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _trace_sampled(trace_id: str, rate: float) -> bool:
    """Deterministic per trace, so every process keeps or drops the same traces."""
    return int(trace_id[-8:], 16) / 0xFFFFFFFF < rate


_LIVE: weakref.WeakSet[EventPipeline] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """A clean flush at interpreter exit."""
    for pipeline in list(_LIVE):
        try:
            pipeline.close(timeout=10.0)
        except Exception:  # pragma: no cover - exit must not raise
            pass
