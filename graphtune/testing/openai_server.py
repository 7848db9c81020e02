"""A local OpenAI-compatible HTTP server for tests and benchmarks.

There is no LLM service in graphtune's tests; this server stands in for one so the *real*
``langchain_openai.ChatOpenAI`` (and the ``openai`` client under it) is exercised end to end:
HTTP, retries, streaming, token usage, tool calls and structured output all go over a socket.

    with OpenAITestServer(scripted("hello", Reply(tool_calls=[...]))) as server:
        llm = ChatOpenAI(model="test-model", base_url=server.base_url, api_key="test")

Standard library only. Each request runs in its own daemon thread, so many requests can sleep
their simulated latency at once (benchmarks measure concurrency with :meth:`max_concurrency`).

A provider's throttling is simulated before the responder is asked: :meth:`throttle` answers 429
(with ``Retry-After``) or 503 to the next N chat requests or for a while, and :meth:`limit_rate`
refuses whatever exceeds a requests/s budget, as a provider's rate limit does::

    server.throttle(429, requests=4, retry_after_s=0.05)   # the next 4 chat requests are refused
    server.limit_rate(20, burst=2)                          # beyond 20 requests/s: 429 + Retry-After
"""

from __future__ import annotations

import json
import re
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["OpenAITestServer", "Reply", "Responder", "scripted"]


@dataclass
class Reply:
    """One scripted answer. Exactly one of ``content`` / ``json`` may be set; ``tool_calls`` may
    accompany either. A ``status`` other than 200 turns the reply into an OpenAI-style error."""

    content: str | None = None
    tool_calls: list[dict] | None = None
    """``[{"name": ..., "args": {...}}]`` (optional ``"id"``); sent as OpenAI ``tool_calls``."""
    json: dict | None = None
    """Sent as the message content string, which is how ``with_structured_output`` parses it."""
    status: int = 200
    """E.g. 429 or 500 to exercise the client's retries; ``content`` becomes the error message."""
    latency_s: float | None = None
    """Overrides the server's default latency for this reply."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    """Token usage to report; by default rough word counts of the request and the reply."""
    retry_after_s: float | None = None
    """For error replies: sent as ``retry-after-ms`` so the client's retry waits this long
    instead of its ~0.5 s backoff (keeps retry tests fast)."""

    def __post_init__(self) -> None:
        if self.content is not None and self.json is not None:
            raise ValueError("Reply takes content or json, not both")


Responder = Callable[[dict], "Reply | str | dict"]
"""``responder(request_body) -> Reply | str | dict``; a str is the content, a dict the JSON."""


def scripted(*replies: Reply | str | dict) -> Responder:
    """A responder that returns ``replies`` in order, then keeps repeating the last one.

    Thread-safe: concurrent requests take the next reply in arrival order.
    """
    if not replies:
        raise ValueError("scripted() needs at least one reply")
    lock = threading.Lock()
    position = 0

    def responder(request: dict) -> Reply | str | dict:
        nonlocal position
        with lock:
            reply = replies[min(position, len(replies) - 1)]
            position += 1
        return reply

    return responder


def default_responder(request: dict) -> Reply:
    """Deterministic echo: ``"ok: <first 40 chars of the last user message>"``."""
    users = [m for m in request.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
    last = _text_of(users[-1].get("content")) if users else ""
    return Reply(content=f"ok: {last[:40]}")


class OpenAITestServer:
    """Serves ``POST /v1/chat/completions`` (plain and SSE streaming) and ``GET /v1/models``.

    ``requests`` holds every chat request body received, in arrival order, so tests can assert on
    what ``ChatOpenAI`` actually sent (model, messages, tools, response_format, ...). With
    ``api_key`` set, a request without ``Authorization: Bearer <api_key>`` gets OpenAI's 401.
    """

    def __init__(self, responder: Responder | None = None, *, latency_s: float = 0.0, model: str = "test-model",
                 api_key: str | None = None):
        self.responder: Responder = responder or default_responder
        self.latency_s = latency_s
        self.model = model
        self.api_key = api_key
        self.requests: list[dict] = []
        self.base_url = ""
        self._lock = threading.Lock()
        self._in_flight = 0
        self._max_in_flight = 0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.throttled: dict[int, int] = {}
        """status -> chat requests refused by :meth:`throttle` / :meth:`limit_rate` (not in ``requests``)."""
        self._outage: _Outage | None = None
        self._bucket: _Bucket | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> OpenAITestServer:
        """Bind a free port on 127.0.0.1 and serve from a background daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("server already started")
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.app = self
        self._httpd = httpd
        self.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="openai-test-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close the listening socket and every open connection.

        Requests still in flight are cut off (their clients see a connection error), so stopping
        never waits on a long simulated latency.
        """
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OpenAITestServer:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def max_concurrency(self) -> int:
        """The highest number of chat requests observed in flight at once."""
        with self._lock:
            return self._max_in_flight

    # -- throttling ------------------------------------------------------------------------------
    def throttle(self, status: int = 429, *, requests: int | None = None, seconds: float | None = None,
                 retry_after_s: float | None = None) -> None:
        """Answer ``status`` (429, 503, ...) to the next ``requests`` chat requests, or to every one for
        ``seconds`` from now; ``retry_after_s`` is sent as ``Retry-After`` (seconds, fractions allowed)."""
        if (requests is None) == (seconds is None):
            raise ValueError("throttle() takes requests= or seconds=, one of them")
        until = None if seconds is None else time.monotonic() + seconds
        with self._lock:
            self._outage = _Outage(status, requests, until, retry_after_s)

    def limit_rate(self, requests_per_s: float | None, *, burst: int = 1) -> None:
        """Refuse chat requests beyond ``requests_per_s`` (a token bucket holding ``burst``) with 429 and a
        ``Retry-After`` of the wait for the next free slot; None lifts the limit."""
        with self._lock:
            self._bucket = None if requests_per_s is None else _Bucket(requests_per_s, burst)

    def _refusal(self) -> tuple[int, float | None] | None:
        """(status, Retry-After seconds) when this request is throttled, else None; counts it."""
        with self._lock:
            refusal = None
            if self._outage is not None:
                refusal = self._outage.take()
                if self._outage.over():
                    self._outage = None
            if refusal is None and self._bucket is not None:
                wait = self._bucket.take()
                refusal = None if wait is None else (429, wait)
            if refusal is not None:
                self.throttled[refusal[0]] = self.throttled.get(refusal[0], 0) + 1
            return refusal

    # -- request handling (called from handler threads) ----------------------------------------
    def _enter(self, body: dict) -> None:
        with self._lock:
            self.requests.append(body)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _reply_for(self, body: dict) -> Reply:
        """Call the responder and normalise its answer; raises on anything a test got wrong."""
        reply = self.responder(body)
        if isinstance(reply, str):
            reply = Reply(content=reply)
        elif isinstance(reply, dict):
            reply = Reply(json=reply)
        elif not isinstance(reply, Reply):
            raise TypeError(f"responder returned {type(reply).__name__}; expected Reply, str or dict")
        if reply.status == 200 and reply.tool_calls:
            declared = {name for t in body.get("tools") or [] if (name := _tool_name(t))}
            if not declared:
                raise ValueError("reply has tool_calls but the request declared no tools (forgot bind_tools?)")
            unknown = [c.get("name") for c in reply.tool_calls if c.get("name") not in declared]
            if unknown:
                raise ValueError(f"reply calls undeclared tools {unknown}; request declared {sorted(declared)}")
        return reply


@dataclass
class _Outage:
    status: int
    left: int | None  # requests still to refuse; None: refuse until ``until``
    until: float | None
    retry_after_s: float | None

    def take(self) -> tuple[int, float | None] | None:
        if self.left is not None:
            if self.left <= 0:
                return None
            self.left -= 1
        elif time.monotonic() >= self.until:
            return None
        return self.status, self.retry_after_s

    def over(self) -> bool:
        return self.left == 0 if self.left is not None else time.monotonic() >= self.until


class _Bucket:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self.tokens, self.at = float(burst), time.monotonic()

    def take(self) -> float | None:
        """None when a token was free (and is now spent), else the seconds until one is."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return (1 - self.tokens) / self.rate


# -- HTTP plumbing ---------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops bursts of concurrent connects
    app: OpenAITestServer

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake handler threads idling on keep-alive connections so they exit."""
        with self._open_lock:
            open_, self._open = list(self._open), set()
        for sock in open_:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Quiet: a client that hangs up (or stop() closing its socket) is not worth a traceback.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API; streams use chunked encoding
    disable_nagle_algorithm = True  # small SSE writes must not wait on delayed ACKs
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    # routing
    def _authorized(self) -> bool:
        """OpenAI's answer to a missing or wrong key: 401 ``invalid_api_key``, never retried."""
        key = self.server.app.api_key
        if key is None or self.headers.get("Authorization") == f"Bearer {key}":
            return True
        self._drain()
        self._send_error(401, "Incorrect API key provided.", "invalid_request_error", retry=False)
        return False

    def do_GET(self) -> None:
        if not self._authorized():
            return
        if self._path() == "/v1/models":
            app = self.server.app
            self._send_json(200, {"object": "list", "data": [_model_card(app.model)]})
        else:
            self._not_found()

    def do_POST(self) -> None:
        if not self._authorized():
            return
        if self._path() != "/v1/chat/completions":
            self._drain()
            self._not_found()
            return
        raw = self._drain()
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._send_error(400, f"We could not parse the JSON body of your request. ({exc})", "invalid_request_error")
            return
        if not isinstance(body, dict):
            self._send_error(400, "The request body must be a JSON object.", "invalid_request_error")
            return
        if not isinstance(body.get("messages"), list):
            self._send_error(400, "Missing required parameter: 'messages'.", "invalid_request_error", param="messages")
            return
        app = self.server.app
        refusal = app._refusal()
        if refusal is not None:
            status, wait = refusal
            headers = {} if wait is None else {"retry-after": f"{wait:.3f}"}
            self._send_error(status, _DEFAULT_ERRORS.get(status, f"Simulated error {status}."), _error_type(status),
                             headers=headers)
            return
        app._enter(body)
        try:
            self._chat(app, body)
        finally:
            app._leave()

    def do_PUT(self) -> None:
        self._drain()
        self._not_found()

    do_PATCH = do_DELETE = do_PUT

    def _chat(self, app: OpenAITestServer, body: dict) -> None:
        try:
            reply = app._reply_for(body)
        except Exception as exc:  # a test bug, not a transient fault: tell the client not to retry
            time.sleep(app.latency_s)
            self._send_error(500, f"responder failed: {type(exc).__name__}: {exc}", "server_error", retry=False)
            return
        time.sleep(reply.latency_s if reply.latency_s is not None else app.latency_s)
        if reply.status != 200:
            headers = {} if reply.retry_after_s is None else {"retry-after-ms": str(int(reply.retry_after_s * 1000))}
            message = reply.content or _DEFAULT_ERRORS.get(reply.status, f"Simulated error {reply.status}.")
            self._send_error(reply.status, message, _error_type(reply.status), headers=headers)
            return
        completion = _Completion(body, reply, app.model)
        if body.get("stream"):
            self._send_stream(completion, include_usage=bool((body.get("stream_options") or {}).get("include_usage")))
        else:
            self._send_json(200, completion.message_response())

    # responses
    def _send_stream(self, completion: _Completion, *, include_usage: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", completion.id)
        self.end_headers()
        for chunk in completion.stream_chunks(include_usage):
            self._write_chunk(f"data: {json.dumps(chunk)}\n\n".encode())
        self._write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _send_json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:24]}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_error(
        self,
        status: int,
        message: str,
        type_: str,
        *,
        param: str | None = None,
        retry: bool | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        headers = dict(headers or {})
        if retry is not None:
            headers["x-should-retry"] = "true" if retry else "false"  # honoured by the openai client
        error = {"message": message, "type": type_, "param": param, "code": _ERROR_CODES.get(status)}
        self._send_json(status, {"error": error}, headers)

    def _not_found(self) -> None:
        self._send_error(404, f"Unknown request URL: {self.command} {self._path()}.", "invalid_request_error")

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/") or "/"

    def _drain(self) -> bytes:
        """Read the request body (so a keep-alive connection stays in sync)."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""


# -- response bodies -------------------------------------------------------------------------------


class _Completion:
    """Builds the chat.completion / chat.completion.chunk bodies for one successful reply."""

    def __init__(self, request: dict, reply: Reply, default_model: str):
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.model = request.get("model") or default_model
        self.content = json.dumps(reply.json) if reply.json is not None else reply.content
        self.tool_calls = [
            {
                "id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": call["name"], "arguments": json.dumps(call.get("args") or {})},
            }
            for call in reply.tool_calls or []
        ]
        if self.content is None and not self.tool_calls:
            self.content = ""
        self.finish_reason = "tool_calls" if self.tool_calls else "stop"
        prompt = reply.prompt_tokens
        if prompt is None:
            prompt = _words(" ".join(_text_of(m.get("content")) for m in request["messages"] if isinstance(m, dict)))
        completion = reply.completion_tokens
        if completion is None:
            completion = _words(self.content or "") + sum(
                _words(f"{c['function']['name']} {c['function']['arguments']}") for c in self.tool_calls
            )
        self.usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _envelope(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def message_response(self) -> dict:
        message: dict[str, Any] = {"role": "assistant", "content": self.content, "refusal": None}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish_reason}
        return {**self._envelope("chat.completion"), "choices": [choice], "usage": self.usage}

    def stream_chunks(self, include_usage: bool) -> list[dict]:
        """Role first, then the content word by word, one chunk per tool call, finish, usage."""
        first = {"role": "assistant", "content": "" if self.content else None}
        deltas: list[tuple[dict, str | None]] = [(first, None)]
        deltas += [({"content": piece}, None) for piece in re.findall(r"\s*\S+|\s+$", self.content or "")]
        for i, call in enumerate(self.tool_calls):
            name, arguments = call["function"]["name"], call["function"]["arguments"]
            head = {"index": i, "id": call["id"], "type": "function", "function": {"name": name, "arguments": ""}}
            deltas.append(({"tool_calls": [head]}, None))
            deltas.append(({"tool_calls": [{"index": i, "function": {"arguments": arguments}}]}, None))
        deltas.append(({}, self.finish_reason))
        chunks = []
        for delta, finish in deltas:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            chunk = {**self._envelope("chat.completion.chunk"), "choices": [choice]}
            if include_usage:
                chunk["usage"] = None
            chunks.append(chunk)
        if include_usage:
            chunks.append({**self._envelope("chat.completion.chunk"), "choices": [], "usage": self.usage})
        return chunks


_DEFAULT_ERRORS = {
    429: "Rate limit reached for test-model. Please try again later.",
    500: "The server had an error while processing your request.",
    503: "The engine is currently overloaded, please try again later.",
}
_ERROR_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded", 404: "not_found"}


def _error_type(status: int) -> str:
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def _model_card(model: str) -> dict:
    return {"id": model, "object": "model", "created": 0, "owned_by": "graphtune-test"}


def _tool_name(tool: Any) -> str | None:
    if isinstance(tool, dict):
        return (tool.get("function") or {}).get("name") or tool.get("name")
    return None


def _text_of(content: Any) -> str:
    """Text of a message's content: a string, or the text parts of a content-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _words(text: str) -> int:
    return len(text.split())
