"""Trajectory events as OpenTelemetry spans, following the GenAI semantic conventions.

One span per finished thing, built from its end event (which carries the duration), so no run has
to be held in memory until it ends:

| event | span name | kind | ``gen_ai.operation.name`` |
|---|---|---|---|
| run_end | ``invoke_workflow {workflow}`` | INTERNAL | ``invoke_workflow`` |
| node_end / node_error | ``invoke_agent {node}`` | INTERNAL | ``invoke_agent`` |
| llm_usage | ``chat {model}`` | CLIENT | ``chat`` |
| tool_call (executed) | ``execute_tool {tool}`` | INTERNAL | ``execute_tool`` |
| message, custom, feedback, requested tool call | the event's name | INTERNAL, zero length | - |

Span and trace ids are the events' own W3C ids, so parent-child links are exactly the recorder's.
Every span carries the run's tags (``graphtune.workflow``, ``graphtune.config_version``,
``graphtune.variant``, ``graphtune.source``), the thread id as ``session.id`` and
``gen_ai.conversation.id``, and the hashed user as ``user.id`` (the pipeline hashes user ids
before any exporter sees them: a plain id never leaves the process). Token counts go to
``gen_ai.usage.input_tokens`` / ``output_tokens``, failures to ``error.type`` and an ERROR status,
captured state to ``input.value`` / ``output.value``.

For Langfuse (``langfuse=True``) the spans also carry the attributes Langfuse documents for its
OpenTelemetry endpoint: ``langfuse.trace.name`` (the workflow), ``langfuse.trace.tags``
(``env:``, ``service:``, ``workflow:``, ``variant:``, ``source:``), ``langfuse.trace.metadata.*``,
``langfuse.observation.type`` and, on errors, ``langfuse.observation.level``. Trace attributes go
on every span because Langfuse v4 stores them per observation.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

import orjson

from graphtune.tracing import otlp_wire as wire
from graphtune.tracing.events import EventKind, TrajectoryEvent

MAX_VALUE_CHARS = 16_000  # longer input/output values are cut: backends reject or truncate huge attributes
_MAX_PENDING_INPUTS = 20_000
_MAX_SHARED = 4_096


_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _json_bytes(value: Any) -> bytes:
    """UTF-8 JSON of a captured value (strings as they are), cut at ``MAX_VALUE_CHARS`` bytes."""
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
    else:
        try:
            data = orjson.dumps(value, default=str, option=_OPTIONS)
        except (TypeError, ValueError):
            data = str(value).encode("utf-8", "surrogatepass")
    if len(data) > MAX_VALUE_CHARS:
        data = data[:MAX_VALUE_CHARS].decode("utf-8", "ignore").encode() + "…".encode()
    return data


def _json(value: Any) -> str:
    return _json_bytes(value).decode("utf-8", "surrogatepass")


def _value_attribute(key: str, value: Any) -> bytes:
    return wire.string_attribute(key, _json_bytes(value))


class SpanEncoder:
    """Turns events into encoded OTLP spans. Used on one thread (the exporter's sender)."""

    def __init__(self, *, langfuse: bool = False, environment: str = "default", service: str = "graphtune"):
        self.langfuse = langfuse
        self.environment = environment
        self.service = service
        self.invalid = 0  # events whose ids are not W3C hex: skipped
        self._inputs: dict[str, bytes] = {}
        self._shared: dict[tuple, bytes] = {}
        self._names: dict[tuple[str, str], tuple[str, bytes]] = {}
        lf = langfuse

        def const(*pairs: tuple[str, Any]) -> bytes:
            return wire.span_attributes(p for p in pairs if lf or not p[0].startswith("langfuse."))

        # Attributes that never change for a kind of span are encoded once.
        self._node_const = const(("gen_ai.operation.name", "invoke_agent"), ("langfuse.observation.type", "agent"))
        self._run_const = const(("gen_ai.operation.name", "invoke_workflow"), ("langfuse.observation.type", "chain"))
        self._status = {"ok": const(("graphtune.status", "ok")), "interrupted": const(("graphtune.status", "interrupted")),
                        "error": const(("graphtune.status", "error"), ("langfuse.observation.level", "ERROR")), None: b""}
        self._status_fields = {"ok": wire.status_field(wire.STATUS_OK)}

    # -- shared per-run attributes ------------------------------------------------------
    def _shared_attributes(self, d: dict) -> bytes:
        key = (d["workflow"], d["config_version"], d["variant"], d["source"], d["thread_id"], d["user_hash"])
        encoded = self._shared.get(key)
        if encoded is None:
            if len(self._shared) >= _MAX_SHARED:
                self._shared.clear()
            encoded = self._shared[key] = wire.span_attributes(self._shared_pairs(*key))
        return encoded

    def _shared_pairs(self, workflow, config_version, variant, source, thread_id, user_hash) -> list[tuple[str, Any]]:
        pairs: list[tuple[str, Any]] = [
            ("graphtune.workflow", workflow), ("graphtune.config_version", config_version),
            ("graphtune.variant", variant), ("graphtune.source", source),
            ("session.id", thread_id), ("gen_ai.conversation.id", thread_id), ("user.id", user_hash),
        ]
        if self.langfuse:
            tags = [f"env:{self.environment}", f"service:{self.service}"]
            if workflow:
                tags.append(f"workflow:{workflow}")
            if variant:
                tags.append(f"variant:{variant}")
            tags.append(f"source:{source}")
            pairs += [
                ("langfuse.trace.name", workflow), ("langfuse.trace.tags", tags),
                ("langfuse.environment", self.environment),
                ("langfuse.version", None if config_version is None else str(config_version)),
                ("langfuse.trace.metadata.graphtune_workflow", workflow),
                ("langfuse.trace.metadata.graphtune_config_version", config_version),
                ("langfuse.trace.metadata.graphtune_variant", variant),
                ("langfuse.trace.metadata.graphtune_source", source),
                ("langfuse.observation.metadata.graphtune_workflow", workflow),
                ("langfuse.observation.metadata.graphtune_config_version", config_version),
                ("langfuse.observation.metadata.graphtune_variant", variant),
                ("langfuse.observation.metadata.graphtune_source", source),
            ]
        return pairs

    # -- events -> spans --------------------------------------------------------------------
    def encode(self, event: TrajectoryEvent) -> bytes | None:
        """The encoded span for ``event``, or None (start events only remember their input)."""
        d = event.__dict__
        kind = d["kind"]
        attrs = d["attributes"]
        if kind is EventKind.NODE_START or kind is EventKind.RUN_START:
            if "input" in attrs:
                inputs = self._inputs
                if len(inputs) >= _MAX_PENDING_INPUTS:
                    self._forget_oldest_inputs()
                inputs[d["span_id"]] = wire.string_attribute("input.value", _json_bytes(attrs["input"]))
            return None
        try:
            trace_id = bytes.fromhex(d["trace_id"])
            span_id = bytes.fromhex(d["span_id"])
            parent = bytes.fromhex(d["parent_span_id"]) if d["parent_span_id"] else None
        except (TypeError, ValueError):
            self.invalid += 1
            return None
        if len(trace_id) != 16 or len(span_id) != 8 or (parent is not None and len(parent) != 8):
            self.invalid += 1
            return None
        end_ns = int(d["time"] * 1e9)
        duration = d["duration_ms"]
        start_ns = end_ns - int(duration * 1e6) if duration else end_ns
        status = d["status"]
        pairs: list[tuple[str, Any]]
        span_kind = wire.SPAN_KIND_INTERNAL
        observation = "event"
        if kind is EventKind.NODE_END or kind is EventKind.NODE_ERROR or kind is EventKind.RUN_END:
            return self._node_or_run(kind, d, attrs, trace_id, span_id, parent, start_ns, end_ns, status)
        if kind is EventKind.LLM_USAGE:
            model = attrs.get("gen_ai.request.model") or attrs.get("gen_ai.response.model") or d["name"]
            name = f"chat {model}" if model else "chat"
            span_kind = wire.SPAN_KIND_CLIENT
            observation = "generation"
            pairs = [
                ("gen_ai.operation.name", "chat"),
                ("gen_ai.request.model", attrs.get("gen_ai.request.model")),
                ("gen_ai.response.model", attrs.get("gen_ai.response.model")),
                ("gen_ai.response.finish_reasons", attrs.get("gen_ai.response.finish_reasons")),
                ("gen_ai.usage.input_tokens", d["input_tokens"]),
                ("gen_ai.usage.output_tokens", d["output_tokens"]),
                ("graphtune.node", d["node"]),
            ]
        elif kind is EventKind.TOOL_CALL and duration is not None:
            tool = attrs.get("gen_ai.tool.name") or d["name"]
            name = f"execute_tool {tool}"
            observation = "tool"
            pairs = [
                ("gen_ai.operation.name", "execute_tool"), ("gen_ai.tool.name", tool),
                ("gen_ai.tool.call.id", attrs.get("gen_ai.tool.call.id")),
                ("input.value", _json(attrs["input"]) if "input" in attrs else None),
                ("output.value", _json(attrs["output"]) if "output" in attrs else None),
                ("graphtune.node", d["node"]),
            ]
        else:
            name, pairs = self._point(kind, d, attrs)
        if status == "error":
            message = attrs.get("error.message")
            pairs += [("error.type", attrs.get("error.type") or "_OTHER")]
            if self.langfuse:
                pairs += [("langfuse.observation.level", "ERROR"), ("langfuse.observation.status_message", message)]
            status_code = wire.STATUS_ERROR
        else:
            message = None
            status_code = wire.STATUS_OK if status == "ok" else 0
        pairs.append(("graphtune.status", status))
        if self.langfuse:
            pairs.append(("langfuse.observation.type", observation))
        return wire.span(
            trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name, kind=span_kind,
            start_ns=start_ns, end_ns=end_ns,
            attributes=self._shared_attributes(d) + wire.span_attributes(pairs),
            status_code=status_code, status_message=message,
        )

    def _node_or_run(self, kind, d, attrs, trace_id, span_id, parent, start_ns, end_ns, status) -> bytes:
        """The hot path (one span per node): every part that repeats is cached as encoded bytes."""
        node = kind is not EventKind.RUN_END
        label = d["name"] if node else (d["workflow"] or d["name"])
        cached = self._names.get((node, label))
        if cached is None:
            if len(self._names) >= _MAX_SHARED:
                self._names.clear()
            if node:
                name = f"invoke_agent {label}"
                named = wire.span_attributes((("gen_ai.agent.name", label),)) + self._node_const
            else:
                name = f"invoke_workflow {label}" if label else "invoke_workflow"
                named = wire.span_attributes((("gen_ai.workflow.name", label or None),)) + self._run_const
            cached = self._names[(node, label)] = (wire.name_field(name), named)
        name_field, named = cached
        if status == "error":
            message = attrs.get("error.message")
            tail = wire.span_attributes((("error.type", attrs.get("error.type") or "_OTHER"),
                                         ("langfuse.observation.status_message", message if self.langfuse else None)))
            status_bytes = wire.status_field(wire.STATUS_ERROR, message)
        else:
            tail = b""
            status_bytes = self._status_fields.get(status, b"")
        pack = wire.pack_fixed64
        return b"".join((
            b"\x0a\x10", trace_id, b"\x12\x08", span_id, b"\x22\x08" + parent if parent else b"",
            name_field, wire.INTERNAL_KIND_FIELD, b"\x39", pack(start_ns), b"\x41", pack(end_ns),
            self._shared_attributes(d), self._inputs.pop(d["span_id"], b""), named, self._status[status],
            _value_attribute("output.value", attrs["output"]) if "output" in attrs else b"", tail, status_bytes,
        ))

    def _point(self, kind: EventKind, d: dict, attrs: dict) -> tuple[str, list[tuple[str, Any]]]:
        """Messages, custom events, feedback and requested tool calls: zero-length spans."""
        if kind is EventKind.FEEDBACK:
            return f"feedback {d['name']}", [("graphtune.feedback.score", d["score"]),
                                             ("graphtune.feedback.comment", attrs.get("comment"))]
        if kind is EventKind.TOOL_CALL:
            tool = attrs.get("gen_ai.tool.name") or d["name"]
            return f"tool_call {tool}", [
                ("gen_ai.tool.name", tool), ("gen_ai.tool.call.id", attrs.get("gen_ai.tool.call.id")),
                ("input.value", _json(attrs.get("gen_ai.tool.call.arguments"))), ("graphtune.node", d["node"]),
            ]
        if kind is EventKind.MESSAGE:
            return d["name"] or "message", [
                ("graphtune.message.role", attrs.get("role")),
                ("input.value", _json(attrs.get("content"))), ("graphtune.node", d["node"]),
            ]
        return d["name"] or kind.value, [("input.value", _json(attrs["data"]) if "data" in attrs else None),
                                         ("graphtune.node", d["node"])]

    def _forget_oldest_inputs(self) -> None:
        """Starts whose end never came (dropped, or a crash) must not pile up."""
        for key in list(islice(self._inputs, _MAX_PENDING_INPUTS // 10)):
            del self._inputs[key]
