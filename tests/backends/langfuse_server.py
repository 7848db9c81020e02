"""A local HTTP server answering in the shapes Langfuse documents for its public API.

- ``GET /api/public/v2/observations``: ``{"data": [...], "meta": {"cursor": "..."}}``, cursor
  pagination (``limit`` <= 1000), ``fromStartTime``/``toStartTime``/``traceId``/``type`` filters,
  observations newest first, fields as in the v2 API (``traceId``, ``startTime``, ``endTime``,
  ``parentObservationId``, ``type``, ``name``, ``level``, ``usageDetails``, ``metadata``, ...).
- ``POST /api/public/otel/v1/traces``: OTLP protobuf, stored as observations with Langfuse's
  documented attribute mapping (``langfuse.trace.name`` -> traceName, ``session.id`` -> sessionId,
  ``user.id`` -> userId, ``langfuse.trace.tags`` -> tags, ``gen_ai.usage.*`` -> usageDetails,
  ``langfuse.observation.type``/``level``/``status_message``, ``input.value``/``output.value``,
  ``langfuse.observation.metadata.*`` -> metadata, every other attribute under metadata.attributes).
- ``POST /api/public/scores``: a JSON array of scores, as the current API and the Langfuse SDK define it
  (``CreateScoresRequest = List[CreateScoreRequest]``; the SDK's score consumer posts such batches):
  202 ``{"message": "Accepted"}``; scores without a name, a numeric value or a trace id are
  rejected with 207 ``{"accepted", "rejected", "errors"}``; a body that is not an array is a 400.

Every request needs Basic auth with the configured keys (401 otherwise). ``script`` queues raw
answers (status, body, headers) for the next requests, to test 429s, 500s and malformed pages.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import deque
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.tracing.otlp_receiver import value_of


def iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _valid_score(score: Any) -> bool:
    return (isinstance(score, dict) and isinstance(score.get("name"), str) and isinstance(score.get("traceId"), str)
            and isinstance(score.get("value"), (int, float)) and not isinstance(score.get("value"), bool))


def observation_from_span(span, resource: dict[str, Any]) -> dict[str, Any]:
    attrs = {kv.key: value_of(kv.value) for kv in span.attributes}
    metadata = {k.removeprefix("langfuse.observation.metadata."): v for k, v in attrs.items()
                if k.startswith("langfuse.observation.metadata.")}
    metadata["attributes"] = {k: v for k, v in attrs.items() if not k.startswith("langfuse.")}
    metadata["resourceAttributes"] = resource
    usage = {k: attrs[f"gen_ai.usage.{k}_tokens"] for k in ("input", "output") if f"gen_ai.usage.{k}_tokens" in attrs}
    if usage:
        usage["total"] = sum(usage.values())
    level = attrs.get("langfuse.observation.level") or ("ERROR" if span.status.code == 2 else "DEFAULT")
    return {
        "id": span.span_id.hex(), "traceId": span.trace_id.hex(), "projectId": "project-1",
        "startTime": iso(span.start_time_unix_nano), "endTime": iso(span.end_time_unix_nano),
        "parentObservationId": span.parent_span_id.hex() or None,
        "type": str(attrs.get("langfuse.observation.type") or "span").upper(), "name": span.name,
        "level": level, "statusMessage": attrs.get("langfuse.observation.status_message") or span.status.message or None,
        "version": attrs.get("langfuse.version"), "environment": attrs.get("langfuse.environment") or "default",
        "userId": attrs.get("user.id"), "sessionId": attrs.get("session.id"),
        "traceName": attrs.get("langfuse.trace.name"), "tags": attrs.get("langfuse.trace.tags") or [],
        "metadata": metadata, "model": attrs.get("gen_ai.request.model") or attrs.get("gen_ai.response.model"),
        "usageDetails": usage or None, "input": attrs.get("input.value"), "output": attrs.get("output.value"),
        "isRootObservation": not span.parent_span_id,
    }


class FakeLangfuse:
    def __init__(self, public_key: str = "pk-lf-test", secret_key: str = "sk-lf-test"):
        self.auth = "Basic " + base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
        self.observations: list[dict[str, Any]] = []
        self.scores: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, dict[str, list[str]], dict[str, str]]] = []
        self.answers: deque[tuple[int, bytes, dict[str, str]]] = deque()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else each reply waits ~40 ms for the client's delayed ACK

            def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with fake._lock:
                    fake.requests.append((method, parts.path, parse_qs(parts.query), dict(self.headers)))
                    scripted = fake.answers.popleft() if fake.answers else None
                if self.headers.get("Authorization") != fake.auth:
                    return self._reply(401, b'{"message": "Invalid credentials"}')
                if scripted is not None:
                    return self._reply(*scripted)
                if method == "GET" and parts.path == "/api/public/v2/observations":
                    return self._reply(200, json.dumps(fake.page(parse_qs(parts.query))).encode())
                if method == "POST" and parts.path == "/api/public/otel/v1/traces":
                    fake.ingest(body)
                    return self._reply(200, b"{}")
                if method == "POST" and parts.path == "/api/public/scores":
                    scores = json.loads(body)
                    if not isinstance(scores, list):
                        return self._reply(400, b'{"message": "expected an array of scores"}')
                    valid = [s for s in scores if _valid_score(s)]
                    with fake._lock:
                        fake.scores.extend(valid)
                    if len(valid) < len(scores):
                        rejected = len(scores) - len(valid)
                        return self._reply(207, json.dumps({"accepted": len(valid), "rejected": rejected, "errors": [
                            {"message": "a score needs name, a numeric value and traceId"}]}).encode())
                    return self._reply(202, b'{"message": "Accepted"}')
                return self._reply(404, b'{"message": "not found"}')

            def do_GET(self):  # noqa: N802
                self._handle("GET")

            def do_POST(self):  # noqa: N802
                self._handle("POST")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_port}"

    def script(self, status: int, body: bytes | str = b"{}", headers: dict[str, str] | None = None) -> None:
        self.answers.append((status, body.encode() if isinstance(body, str) else body, headers or {}))

    def ingest(self, body: bytes) -> None:
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        with self._lock:
            for resource_spans in message.resource_spans:
                resource = {kv.key: value_of(kv.value) for kv in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    self.observations += [observation_from_span(s, resource) for s in scope_spans.spans]

    def page(self, query: dict[str, list[str]]) -> dict[str, Any]:
        one = {k: v[-1] for k, v in query.items()}
        limit = min(int(one.get("limit", 50)), 1000)
        offset = int(base64.b64decode(one["cursor"]).decode()) if "cursor" in one else 0
        with self._lock:
            items = list(self.observations)
        def keep(o: Any, test) -> bool:
            return not isinstance(o, dict) or "startTime" not in o or test(o)  # malformed items are served as they are

        if "traceId" in one:
            items = [o for o in items if keep(o, lambda o: o.get("traceId") == one["traceId"])]
        if "type" in one:
            items = [o for o in items if keep(o, lambda o: o.get("type") == one["type"])]
        if "fromStartTime" in one:
            items = [o for o in items if keep(o, lambda o: parse_iso(o["startTime"]) >= parse_iso(one["fromStartTime"]))]
        if "toStartTime" in one:
            items = [o for o in items if keep(o, lambda o: parse_iso(o["startTime"]) < parse_iso(one["toStartTime"]))]
        items.sort(key=lambda o: o.get("startTime", "") if isinstance(o, dict) else "", reverse=True)
        chunk = items[offset : offset + limit]
        meta: dict[str, Any] = {}
        if offset + limit < len(items):
            meta["cursor"] = base64.b64encode(str(offset + limit).encode()).decode()
        return {"data": chunk, "meta": meta}

    def observation_requests(self) -> list[dict[str, list[str]]]:
        return [q for method, path, q, _ in self.requests if path == "/api/public/v2/observations"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
