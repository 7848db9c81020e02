"""A local OTLP/HTTP receiver for tests: decodes every request with opentelemetry-proto.

Answers are scripted: ``receiver.script(401, 429, 500)`` makes the next three requests fail with
those statuses. ``receiver.hold()`` makes every request wait, unanswered, until ``receiver.release()``
(``close()`` releases too, so no handler thread is left waiting): a hanging endpoint that lasts
exactly as long as a test needs, however busy the machine. ``received`` counts requests read,
``answered`` replies written. Everything accepted is kept, decoded, in ``receiver.spans``.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def value_of(any_value) -> Any:
    which = any_value.WhichOneof("value")
    if which == "array_value":
        return [value_of(v) for v in any_value.array_value.values]
    return getattr(any_value, which) if which else None


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    resource: dict[str, Any]


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    spans: list[ReceivedSpan] = field(default_factory=list)


class OtlpReceiver:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.answers: deque[int] = deque()
        self.received = 0
        self.answered = 0
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else each reply waits ~40 ms for the client's delayed ACK

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.received += 1
                    status = receiver.answers.popleft() if receiver.answers else 200
                receiver._open.wait()
                if status == 200:
                    receiver._accept(self.path, dict(self.headers), body)
                payload = b"{}"
                try:
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", "0")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client timed out first, as a hanging-endpoint test intends
                with receiver._lock:
                    receiver.answered += 1

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def script(self, *statuses: int) -> None:
        self.answers.extend(statuses)

    def hold(self) -> None:
        """Keep every request from now on unanswered until :meth:`release`."""
        self._open.clear()

    def release(self) -> None:
        """Answer the held requests (and all later ones) again."""
        self._open.set()

    def _accept(self, path: str, headers: dict[str, str], body: bytes) -> None:
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        request = Request(path=path, headers={k.lower(): v for k, v in headers.items()})
        for resource_spans in message.resource_spans:
            resource = {kv.key: value_of(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    request.spans.append(ReceivedSpan(
                        name=span.name, trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(), kind=span.kind,
                        start_ns=span.start_time_unix_nano, end_ns=span.end_time_unix_nano,
                        status_code=span.status.code, status_message=span.status.message,
                        attributes={kv.key: value_of(kv.value) for kv in span.attributes}, resource=resource,
                    ))
        with self._lock:
            self.requests.append(request)

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return [s for r in self.requests for s in r.spans]

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
