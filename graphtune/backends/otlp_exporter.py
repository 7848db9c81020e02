"""OTLP/HTTP export of trajectory events: to Langfuse, Phoenix, Jaeger or any OpenTelemetry collector.

The recorder's writer thread hands each written batch (already sampled, user-hashed and redacted)
to :meth:`OtlpExporter.submit`, which only appends to a bounded queue. The exporter's own sender
thread turns events into spans (:mod:`graphtune.tracing.otel_spans`), batches them and POSTs
protobuf to the endpoint. A failing endpoint (401, 429, 5xx, timeouts) is retried with backoff,
then the batch is dropped and counted: neither the workflow nor the trace store ever waits for it.

Switched on from the environment, where every recorder is created (``EventPipeline``):

- ``GRAPHTUNE_OTLP_ENDPOINT``: an OTLP/HTTP base URL (``http://collector:4318``, ``/v1/traces`` is
  appended) or the full traces URL; ``GRAPHTUNE_OTLP_HEADERS``: ``key=value,key2=value2``.
- else ``LANGFUSE_PUBLIC_KEY`` + ``LANGFUSE_SECRET_KEY`` (+ ``LANGFUSE_BASE_URL``/``LANGFUSE_HOST``):
  Langfuse's ``/api/public/otel/v1/traces`` with Basic auth and its ingestion-version header.
- ``GRAPHTUNE_OTLP_EXPORT=off`` switches export off whatever else is set.
- ``GRAPHTUNE_ENV`` (or ``LANGFUSE_TRACING_ENVIRONMENT``) names the environment, ``OTEL_SERVICE_NAME``
  the service; both become resource attributes and Langfuse tags.
- ``GRAPHTUNE_OTLP_NODE_IO=on`` adds each node's input and output state to its span. Off by default:
  run spans carry the workflow's input and final state and tool spans their arguments and result,
  node spans only their timing, status and tags (encoding the state twice per node would be most
  of the export's cost).

Where the work runs (``GRAPHTUNE_OTLP_SENDER``): ``process`` (the default) encodes and sends in a
helper process (:mod:`graphtune.backends.otlp_process`), so the workflow's process only serialises
each batch once; ``thread`` does it all in a thread of this process (no child process, but the
encoding and HTTP share the workflow's GIL). Either way the sender below does the work.

The sender wakes when a batch's worth of events is queued, every ``flush_interval_s`` or on flush,
and then encodes everything queued in one loop: few, large bursts of work beside the workflow.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol
from urllib.parse import unquote

from pydantic import BaseModel, Field

from graphtune.backends.http_retry import RetryPolicy, call_with_retry
from graphtune.backends.langfuse_settings import OTEL_TRACES_PATH, langfuse_settings_from_env, tracing_disabled

log = logging.getLogger("graphtune.export")

_DROP_LOG_EVERY_S = 10.0
_RETRY_STATUSES = frozenset({401, 403, 408, 425, 429, 500, 502, 503, 504})


class OtlpSettings(BaseModel):
    """Where and how spans are sent. ``endpoint`` is the full traces URL (``.../v1/traces``)."""

    endpoint: str
    headers: dict[str, str] = Field(default_factory=dict)
    langfuse: bool = Field(False, description="Add the attributes Langfuse reads (trace name, tags, observation types).")
    node_io: bool = Field(False, description="Put each node's input/output state on its span (GRAPHTUNE_OTLP_NODE_IO).")
    sender: Literal["process", "thread"] = Field(
        "process", description="Encode and send in a helper process (default) or a thread of this one (GRAPHTUNE_OTLP_SENDER).")
    environment: str = "default"
    service: str = "graphtune"
    timeout_s: float = 5.0
    max_queue: int = Field(20_000, description="Events waiting for the sender; more are dropped and counted.")
    max_batch_spans: int = 1_000
    max_batch_bytes: int = 3_000_000
    flush_interval_s: float = 1.0
    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(max_retries=self.max_retries, backoff_s=self.backoff_s, max_backoff_s=self.max_backoff_s,
                           retry_statuses=_RETRY_STATUSES)

    def cache_key(self) -> str:
        return self.model_dump_json()


def traces_url(endpoint: str) -> str:
    """``http://host:4318`` -> ``http://host:4318/v1/traces``; a URL already ending in /v1/traces is kept."""
    endpoint = endpoint.strip().rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def parse_headers(text: str | None) -> dict[str, str]:
    """``key=value,key2=value2`` (values URL-decoded, as in ``OTEL_EXPORTER_OTLP_HEADERS``)."""
    headers: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"GRAPHTUNE_OTLP_HEADERS entry {item.strip()!r} is not key=value")
        headers[key.strip()] = unquote(value.strip())
    return headers


def otlp_settings_from_env(env: Mapping[str, str] | None = None) -> OtlpSettings | None:
    """The export the environment asks for, or None (export off)."""
    env = os.environ if env is None else env
    if str(env.get("GRAPHTUNE_OTLP_EXPORT", "")).strip().lower() in ("0", "off", "false", "no"):
        return None
    environment = env.get("GRAPHTUNE_ENV") or env.get("LANGFUSE_TRACING_ENVIRONMENT") or "default"
    service = env.get("OTEL_SERVICE_NAME") or "graphtune"
    node_io = str(env.get("GRAPHTUNE_OTLP_NODE_IO", "")).strip().lower() in ("1", "on", "true", "yes")
    sender = str(env.get("GRAPHTUNE_OTLP_SENDER") or "process").strip().lower()
    if sender not in ("process", "thread"):
        log.warning("graphtune: GRAPHTUNE_OTLP_SENDER=%r is not 'process' or 'thread'; using 'process'", sender)
        sender = "process"
    common = dict(environment=environment, service=service, node_io=node_io, sender=sender)
    endpoint = env.get("GRAPHTUNE_OTLP_ENDPOINT")
    if endpoint:
        try:
            headers = parse_headers(env.get("GRAPHTUNE_OTLP_HEADERS"))
        except ValueError as exc:
            log.warning("graphtune: OTLP export off: %s", exc)
            return None
        url = traces_url(endpoint)
        langfuse = url.endswith(OTEL_TRACES_PATH)
        if langfuse and not any(k.lower() == "authorization" for k in headers):
            settings = langfuse_settings_from_env(env)
            if settings is not None:
                headers = {**settings.otel_headers(), **headers}
        return OtlpSettings(endpoint=url, headers=headers, langfuse=langfuse, **common)
    if tracing_disabled(env):
        return None
    settings = langfuse_settings_from_env(env)
    if settings is None:
        return None
    return OtlpSettings(endpoint=settings.otel_traces_url(), headers=settings.otel_headers(), langfuse=True, **common)


def _graphtune_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("graphtune")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0"


class SpanExporter(Protocol):
    """What the recorder pipeline needs of an exporter (a thread sender or a sender process)."""

    settings: OtlpSettings

    def submit(self, events: Sequence[Any]) -> None: ...
    def flush(self, timeout: float | None = 10.0) -> bool: ...
    def close(self, timeout: float | None = 10.0) -> None: ...
    def stats(self) -> dict[str, int]: ...


class _Marker:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class OtlpExporter:
    """A bounded queue and one sender thread per endpoint. Thread-safe; ``submit`` never blocks."""

    def __init__(self, settings: OtlpSettings):
        from graphtune.tracing.otel_spans import SpanEncoder

        version = _graphtune_version()

        self.settings = settings
        self.encoder = SpanEncoder(langfuse=settings.langfuse, environment=settings.environment, service=settings.service,
                                   node_io=settings.node_io)
        self._resource = (
            ("service.name", settings.service), ("deployment.environment.name", settings.environment),
            ("telemetry.sdk.name", "graphtune"), ("telemetry.sdk.language", "python"),
            ("telemetry.sdk.version", version),
        )
        self._scope_version = version
        self._policy = settings.retry_policy()
        self._inbox: deque = deque()
        self._queued = 0
        self._lock = threading.Lock()
        self.counts = {"sent_spans": 0, "dropped_spans": 0, "queue_dropped_events": 0, "retries": 0,
                       "failed_batches": 0, "requests": 0}
        self._last_drop_log = float("-inf")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="graphtune-otlp", daemon=True)
        self._thread.start()
        register_live(self)

    # -- producer side ------------------------------------------------------------------------
    def submit(self, events: Sequence[Any]) -> None:
        """Queue a batch of finished, redacted events; drop and count it when the queue is full."""
        n = len(events)
        if not n:
            return
        with self._lock:
            if self._closed or self._queued + n > self.settings.max_queue:
                self.counts["queue_dropped_events"] += n
                self._log_drop("queue full" if not self._closed else "exporter closed")
                return
            self._queued += n
        self._inbox.append(events)
        if self._queued >= self.settings.max_batch_spans:
            self._wake.set()

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until everything submitted so far was sent (or dropped); True if that happened in time."""
        if not self._thread.is_alive():
            return not self._inbox
        marker = _Marker()
        self._inbox.append(marker)
        self._wake.set()
        return marker.done.wait(timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        if self._closed:
            return
        self.flush(timeout)
        with self._lock:
            self._closed = True
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def stats(self) -> dict[str, int]:
        return {**self.counts, "invalid_events": self.encoder.invalid, "queued_events": self._queued}

    # -- sender thread ------------------------------------------------------------------------
    def _run(self) -> None:
        import httpx

        client = httpx.Client(timeout=self.settings.timeout_s)
        pending: list[bytes] = []
        size = 0
        oldest = 0.0
        interval = self.settings.flush_interval_s
        try:
            while True:
                self._wake.wait(interval)
                self._wake.clear()
                markers: list[_Marker] = []
                encode = self.encoder.encode
                while self._inbox:
                    item = self._inbox.popleft()
                    if type(item) is _Marker:
                        markers.append(item)
                        continue
                    with self._lock:
                        self._queued -= len(item)
                    spans = encode(item)
                    if not spans:
                        continue
                    if not pending:
                        oldest = time.monotonic()
                    pending += spans
                    size += sum(map(len, spans))
                    if len(pending) >= self.settings.max_batch_spans or size >= self.settings.max_batch_bytes:
                        self._send_all(client, pending, size)
                        pending, size = [], 0
                if pending and (markers or self._stop.is_set() or time.monotonic() - oldest >= interval):
                    self._send_all(client, pending, size)
                    pending, size = [], 0
                for marker in markers:
                    marker.done.set()
                if self._stop.is_set() and not self._inbox:
                    return
        except Exception:  # pragma: no cover - the sender must never take the process down
            log.exception("graphtune OTLP exporter stopped")
        finally:
            client.close()

    def _send_all(self, client, spans: list[bytes], size: int) -> None:
        """POST ``spans`` (``size`` bytes) in as few requests as the batch limits allow."""
        max_spans, max_bytes = self.settings.max_batch_spans, self.settings.max_batch_bytes
        if len(spans) <= max_spans and size <= max_bytes:
            self._send(client, spans)
            return
        start = batch_bytes = 0
        for i, span in enumerate(spans):
            if i > start and (i - start >= max_spans or batch_bytes + len(span) > max_bytes):
                self._send(client, spans[start:i])
                start, batch_bytes = i, 0
            batch_bytes += len(span)
        self._send(client, spans[start:])

    def _send(self, client, spans: list[bytes]) -> None:
        from graphtune.tracing.otlp_wire import export_request

        body = export_request(self._resource, "graphtune", self._scope_version, spans)
        headers = {**self.settings.headers, "Content-Type": "application/x-protobuf"}

        def send():
            self.counts["requests"] += 1
            return client.post(self.settings.endpoint, content=body, headers=headers)

        def on_retry(_reason: str) -> None:
            self.counts["retries"] += 1

        outcome = call_with_retry(send, self._policy, sleep=self._stop.wait, on_retry=on_retry)
        if outcome.ok:
            self.counts["sent_spans"] += len(spans)
            return
        self.counts["dropped_spans"] += len(spans)
        self.counts["failed_batches"] += 1
        self._log_drop(f"{outcome.describe()} from {self.settings.endpoint} after {outcome.attempts} attempts")

    def _log_drop(self, reason: str) -> None:
        now = time.monotonic()
        if now - self._last_drop_log >= _DROP_LOG_EVERY_S:
            self._last_drop_log = now
            log.warning("graphtune OTLP export dropped data (%s); totals: %d spans, %d queued events",
                        reason, self.counts["dropped_spans"], self.counts["queue_dropped_events"])


_shared: dict[str, SpanExporter] = {}
_shared_lock = threading.Lock()
_LIVE: weakref.WeakSet = weakref.WeakSet()


def register_live(exporter: SpanExporter) -> None:
    """Close ``exporter`` at exit (after the recorder pipelines flushed into it)."""
    _LIVE.add(exporter)


def open_exporter(settings: OtlpSettings) -> SpanExporter:
    """The exporter ``settings.sender`` asks for: a helper process (``SubprocessExporter``) or a thread."""
    if settings.sender == "thread":
        return OtlpExporter(settings)
    from graphtune.backends.otlp_process import SubprocessExporter

    return SubprocessExporter(settings)


def exporter_from_env(env: Mapping[str, str] | None = None) -> SpanExporter | None:
    """The process's exporter for what the environment asks (one per endpoint), or None."""
    settings = otlp_settings_from_env(env)
    if settings is None:
        return None
    key = settings.cache_key()
    with _shared_lock:
        exporter = _shared.get(key)
        if exporter is None or exporter._closed:
            exporter = _shared[key] = open_exporter(settings)
            log.info("graphtune: exporting traces over OTLP to %s", settings.endpoint)
        return exporter


@atexit.register
def _close_all() -> None:
    """Registered before the recorder pipelines' own exit hook, so it runs after they flushed into it."""
    for exporter in list(_LIVE):
        try:
            exporter.close(timeout=5.0)
        except Exception:  # pragma: no cover - exit must not raise
            pass
