"""OTLP export from a helper process: the workflow's process only hands events over a pipe.

Encoding spans and POSTing them (HTTP, TLS, retries) is pure-Python work that would otherwise
share the workflow's GIL with the recorder: measured on sync runs, in-process export cost 1.2-1.9x
the recorder alone. Here the workflow process does one ``orjson.dumps`` per queued batch and an
``os.write`` (which releases the GIL); a child process (``python -m graphtune.backends.otlp_process``)
runs the ordinary in-thread :class:`~graphtune.backends.otlp_exporter.OtlpExporter` on the other
core.

The pipe speaks frames: one type byte, a 4-byte big-endian length, the payload.

- parent -> child: ``S`` settings (JSON, first frame; secrets never go on the command line),
  ``E`` a batch of events, ``F`` flush (an ack number).
- an event travels as ``[[fields in _FIELDS order], attributes]``: no repeated keys, and without
  what the spans will not use (node start events, a finished node's output state) unless
  ``node_io`` asks for node state.
- child -> parent (its real stdout; stray prints go to stderr): JSON lines ``{"ack": n, "stats": {...}}``.

End of input makes the child flush, close and exit, so the child never outlives the parent. If the
child cannot start or dies, the exporter says so once and carries on with an in-process sender:
tracing never breaks a workflow.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any, BinaryIO

import orjson

try:
    import fcntl
except ImportError:  # Windows: the pipe keeps its default size
    fcntl = None

from graphtune.backends.otlp_exporter import OtlpExporter, OtlpSettings, _Marker, register_live
from graphtune.tracing.events import EventKind, TrajectoryEvent

log = logging.getLogger("graphtune.export")

_HEADER = struct.Struct(">cI")
_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
_STATS_KEYS = ("sent_spans", "dropped_spans", "queue_dropped_events", "retries", "failed_batches", "requests",
               "invalid_events", "queued_events")
_PIPE_BYTES = 1 << 20
_FIELDS = tuple(f for f in TrajectoryEvent.model_fields if f not in ("event_id", "attributes"))
_row = itemgetter(*_FIELDS)
_dict_of = attrgetter("__dict__")
_NODE_END = EventKind.NODE_END
_NO_ATTRIBUTES: dict = {}


def write_frame(fd: int, kind: bytes, payload: bytes) -> None:
    """One frame, straight to the file descriptor (``os.write`` releases the GIL while it copies)."""
    data = memoryview(_HEADER.pack(kind, len(payload)) + payload)
    while data:
        data = data[os.write(fd, data):]


def read_frame(stream: BinaryIO) -> tuple[bytes, bytes] | None:
    """The next frame, or None at end of input (a frame cut short counts as the end)."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    kind, length = _HEADER.unpack(header)
    payload = stream.read(length)
    return (kind, payload) if len(payload) == length else None


class SubprocessExporter:
    """Same interface as :class:`OtlpExporter` (``submit``, ``flush``, ``close``, ``stats``)."""

    def __init__(self, settings: OtlpSettings):
        self.settings = settings
        # Node start events and a finished node's state only matter when node spans carry state.
        self._skip = frozenset() if settings.node_io else frozenset({EventKind.NODE_START})
        self._lean_node_end = not settings.node_io
        self._inbox: deque = deque()
        self._queued = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self.counts = {"queue_dropped_events": 0, "lost_events": 0}
        self._child_stats: dict[str, int] = dict.fromkeys(_STATS_KEYS, 0)
        self._acks: dict[int, _Marker] = {}
        self._next_ack = 0
        self._fallback: OtlpExporter | None = None
        self._proc: subprocess.Popen | None = None
        try:
            self._proc = self._spawn()
        except Exception as exc:
            self._fall_back(f"could not start the sender process ({type(exc).__name__}: {exc})")
        self._pump = threading.Thread(target=self._run_pump, name="graphtune-otlp-pipe", daemon=True)
        self._pump.start()
        if self._proc is not None:
            self._reader = threading.Thread(target=self._read_replies, args=(self._proc,), name="graphtune-otlp-acks",
                                            daemon=True)
            self._reader.start()
        register_live(self)

    def _spawn(self) -> subprocess.Popen:
        env = dict(os.environ)
        source_root = str(Path(__file__).resolve().parents[2])  # graphtune importable when run from a checkout
        env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH")) if p)
        proc = subprocess.Popen([sys.executable, "-m", "graphtune.backends.otlp_process"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, env=env, close_fds=True)
        if hasattr(fcntl, "F_SETPIPE_SZ"):  # Linux: fewer, larger copies; the kernel may refuse, which is fine
            try:
                fcntl.fcntl(proc.stdin.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
            except OSError:
                pass
        write_frame(proc.stdin.fileno(), b"S", self.settings.model_dump_json().encode())
        return proc

    # -- producer side ------------------------------------------------------------------------
    def submit(self, events: Sequence[Any]) -> None:
        """Queue a batch of finished, redacted events; drop and count it when the queue is full."""
        fallback = self._fallback
        if fallback is not None:
            fallback.submit(events)
            return
        n = len(events)
        if not n:
            return
        with self._lock:
            if self._closed or self._queued + n > self.settings.max_queue:
                self.counts["queue_dropped_events"] += n
                return
            self._queued += n
        self._inbox.append(events)
        if self._queued >= self.settings.max_batch_spans:
            self._wake.set()

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until everything submitted so far was sent (or dropped) by the sender process."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._fallback is None and self._pump.is_alive():
            marker = _Marker()
            self._inbox.append(marker)
            self._wake.set()
            if not marker.done.wait(timeout):
                return False
        fallback = self._fallback
        if fallback is not None:
            return fallback.flush(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return True

    def close(self, timeout: float | None = 10.0) -> None:
        if self._closed:
            return
        self.flush(timeout)
        with self._lock:
            self._closed = True
        self._stop.set()
        self._wake.set()
        self._pump.join(timeout)
        proc = self._proc
        if proc is not None:
            try:
                proc.stdin.close()  # end of input: the child flushes, reports and exits
            except OSError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self._reader.join(timeout)  # the child's last reply carries its final counts
        if self._fallback is not None:
            self._fallback.close(timeout)

    def stats(self) -> dict[str, int]:
        stats = dict(self._child_stats)
        if self._fallback is not None:
            for key, value in self._fallback.stats().items():
                stats[key] = stats.get(key, 0) + value
        stats["queue_dropped_events"] += self.counts["queue_dropped_events"]
        stats["queued_events"] += self._queued
        stats["lost_events"] = self.counts["lost_events"]
        return stats

    # -- the pipe ---------------------------------------------------------------------------------
    def _run_pump(self) -> None:
        interval = self.settings.flush_interval_s
        while True:
            self._wake.wait(interval)
            self._wake.clear()
            try:
                self._pump_inbox()
            except Exception:  # pragma: no cover - the pump must never take the process down
                log.exception("graphtune OTLP export: pipe error")
            if self._stop.is_set() and not self._inbox:
                return

    def _pump_inbox(self) -> None:
        while self._inbox:
            item = self._inbox.popleft()
            if type(item) is _Marker:
                self._send_marker(item)
                continue
            with self._lock:
                self._queued -= len(item)
            if self._fallback is not None:
                self._fallback.submit(item)
                continue
            rows = self._rows(item)
            if rows:
                payload = orjson.dumps(rows, default=str, option=_OPTIONS)
                if not self._write(b"E", payload):
                    self.counts["lost_events"] += len(rows)

    def _rows(self, events: Sequence[TrajectoryEvent]) -> list[tuple]:
        skip, row, end = self._skip, _row, (_NODE_END if self._lean_node_end else None)
        return [
            (row(d), _NO_ATTRIBUTES if d["kind"] is end and d["status"] != "error" else d["attributes"])
            for d in map(_dict_of, events) if d["kind"] not in skip
        ]

    def _send_marker(self, marker: _Marker) -> None:
        if self._fallback is not None:
            marker.done.set()
            return
        with self._lock:
            number = self._next_ack
            self._next_ack += 1
            self._acks[number] = marker
        if not self._write(b"F", str(number).encode()):
            marker.done.set()

    def _write(self, kind: bytes, payload: bytes) -> bool:
        proc = self._proc
        if proc is None or self._fallback is not None:
            return False
        try:
            write_frame(proc.stdin.fileno(), kind, payload)
            return True
        except (OSError, ValueError) as exc:  # the child is gone (broken pipe) or its stdin was closed
            self._fall_back(f"the sender process stopped ({type(exc).__name__})")
            return False

    def _read_replies(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            try:
                reply = json.loads(line)
                self._child_stats = {k: int(reply["stats"].get(k, 0)) for k in _STATS_KEYS}
                ack = reply.get("ack")
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            if ack is not None:
                with self._lock:
                    marker = self._acks.pop(int(ack), None)
                if marker is not None:
                    marker.done.set()
        if not self._closed:
            self._fall_back(f"the sender process exited (code {proc.wait()})")

    def _fall_back(self, reason: str) -> None:
        """Carry on with an in-process sender; release anyone waiting on the child."""
        with self._lock:
            if self._fallback is not None or self._closed:
                return
            self._fallback = OtlpExporter(self.settings)
            waiting = list(self._acks.values())
            self._acks.clear()
        log.warning("graphtune OTLP export: %s; sending from this process from now on", reason)
        for marker in waiting:
            marker.done.set()


# -- the child ----------------------------------------------------------------------------------
def _events(payload: bytes, exporter: OtlpExporter) -> list[TrajectoryEvent]:
    events = []
    for row in orjson.loads(payload):
        try:
            values, attributes = row
            fields = dict(zip(_FIELDS, values, strict=True))
            fields["kind"] = EventKind(fields["kind"])
            events.append(TrajectoryEvent.build(event_id="", attributes=attributes, **fields))
        except (KeyError, TypeError, ValueError):
            exporter.encoder.invalid += 1
    return events


def _reply(out: BinaryIO, exporter: OtlpExporter, ack: int | None) -> None:
    out.write(orjson.dumps({"ack": ack, "stats": exporter.stats()}) + b"\n")
    out.flush()


def main() -> None:
    """The sender process: frames from stdin into an in-thread exporter, acks and counts to stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent; end of input stops us
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed by accident goes to stderr, not into the replies
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    stdin = sys.stdin.buffer
    first = read_frame(stdin)
    if first is None or first[0] != b"S":
        sys.exit("graphtune OTLP sender: expected the settings frame first")
    exporter = OtlpExporter(OtlpSettings.model_validate_json(first[1]))
    while (frame := read_frame(stdin)) is not None:
        kind, payload = frame
        if kind == b"E":
            try:
                exporter.submit(_events(payload, exporter))
            except orjson.JSONDecodeError:
                exporter.encoder.invalid += 1
        elif kind == b"F":
            exporter.flush(timeout=None)
            _reply(out, exporter, int(payload))
    exporter.close(timeout=exporter.settings.timeout_s * (exporter.settings.max_retries + 1) + 5)
    _reply(out, exporter, None)


if __name__ == "__main__":
    main()
