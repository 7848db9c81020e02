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
``gen_ai.usage.input_tokens`` / ``output_tokens``, failures to ``error.type`` and an ERROR status.

Captured content goes to ``input.value`` / ``output.value`` on run spans (the workflow's input and
final state), tool spans, messages and custom events. Node spans carry their input and output state
only with ``node_io=True`` (``GRAPHTUNE_OTLP_NODE_IO=on``): JSON-encoding the whole graph state
twice per node was most of the export's cost, and it grows with the state; graphtune's own trace
store keeps every node's state either way.

For Langfuse (``langfuse=True``) the spans also carry the attributes Langfuse documents for its
OpenTelemetry endpoint: ``langfuse.trace.name`` (the workflow), ``langfuse.trace.tags``
(``env:``, ``service:``, ``workflow:``, ``variant:``, ``source:``), ``langfuse.trace.metadata.*``,
``langfuse.observation.type`` and, on errors, ``langfuse.observation.level``. Trace attributes go
on every span because Langfuse v4 stores them per observation.

Everything that repeats (a run's shared attributes, a node's name and constant attributes, the
status) is cached as encoded bytes, so a node span is a few lookups and one join.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from operator import itemgetter
from typing import Any

import orjson

from graphtune.tracing import otlp_wire as wire
from graphtune.tracing.events import EventKind, TrajectoryEvent

MAX_VALUE_CHARS = 16_000  # longer input/output values are cut: backends reject or truncate huge attributes
_MAX_PENDING_INPUTS = 20_000
_MAX_CACHED = 4_096
_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
_fromhex = bytes.fromhex
_run_tags = itemgetter("workflow", "config_version", "variant", "source", "thread_id", "user_hash")


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


def _head(d: dict) -> bytes:
    """The span's ids (W3C hex in the event; ValueError if not) and times (the event's time is its end)."""
    end_ns = int(d["time"] * 1e9)
    duration = d["duration_ms"]
    parent = d["parent_span_id"]
    return wire.span_head(_fromhex(d["trace_id"]), _fromhex(d["span_id"]), _fromhex(parent) if parent else None,
                          end_ns - int(duration * 1e6) if duration else end_ns, end_ns)


class SpanEncoder:
    """Turns events into encoded OTLP spans. Used on one thread (the exporter's sender)."""

    def __init__(self, *, langfuse: bool = False, environment: str = "default", service: str = "graphtune",
                 node_io: bool = False):
        self.langfuse = langfuse
        self.environment = environment
        self.service = service
        self.invalid = 0  # events that could not be encoded (ids that are not W3C hex, ...): skipped
        self._inputs: dict[str, bytes] = {}  # start events' encoded input, until their end event comes
        self._shared: dict[tuple, bytes] = {}
        self._node_names: dict[str, bytes] = {}
        self._run_names: dict[str, bytes] = {}

        def const(*pairs: tuple[str, Any]) -> bytes:
            return wire.span_attributes(p for p in pairs if langfuse or not p[0].startswith("langfuse."))

        self._node_const = const(("gen_ai.operation.name", "invoke_agent"), ("langfuse.observation.type", "agent"))
        self._run_const = const(("gen_ai.operation.name", "invoke_workflow"), ("langfuse.observation.type", "chain"))
        self._status = {  # the graphtune.status attribute and the span status, per status
            "ok": const(("graphtune.status", "ok")) + wire.status_field(wire.STATUS_OK),
            "interrupted": const(("graphtune.status", "interrupted")),
            None: b"",
        }
        self._error_const = const(("graphtune.status", "error"), ("langfuse.observation.level", "ERROR"))
        point = self._point
        self._handlers = {
            EventKind.RUN_START: self._start, EventKind.NODE_START: self._start if node_io else None,
            EventKind.RUN_END: self._run_end,
            EventKind.NODE_END: self._node_end_with_content if node_io else self._node_end,
            EventKind.NODE_ERROR: self._node_end_with_content if node_io else self._node_end,
            EventKind.LLM_USAGE: point, EventKind.TOOL_CALL: point, EventKind.MESSAGE: point,
            EventKind.FEEDBACK: point, EventKind.CUSTOM: point,
        }

    def encode(self, events: Iterable[TrajectoryEvent]) -> list[bytes]:
        """The encoded spans for a batch of events, in one loop (start events only remember their
        input); events that cannot be encoded are skipped and counted in ``invalid``."""
        handlers = self._handlers
        spans: list[bytes] = []
        append = spans.append
        for event in events:
            d = event.__dict__
            handler = handlers.get(d["kind"])
            if handler is None:
                continue
            try:
                encoded = handler(d)
            except Exception:  # one odd event must not cost the batch
                self.invalid += 1
                continue
            if encoded is not None:
                append(encoded)
        return spans

    # -- the hot path: runs and nodes ----------------------------------------------------------
    def _start(self, d: dict) -> None:
        """Remember the encoded input until the end event, which makes the span."""
        attrs = d["attributes"]
        if "input" in attrs:
            inputs = self._inputs
            if len(inputs) >= _MAX_PENDING_INPUTS:  # starts whose end never came must not pile up
                for key in list(islice(inputs, _MAX_PENDING_INPUTS // 10)):
                    del inputs[key]
            inputs[d["span_id"]] = wire.string_attribute("input.value", _json_bytes(attrs["input"]))

    def _node_end(self, d: dict) -> bytes:
        status = d["status"]
        return b"".join((
            _head(d), self._node_names.get(d["name"]) or self._name(True, d["name"]),
            self._shared.get(_run_tags(d)) or self._shared_attributes(d),
            self._status[status] if status != "error" else self._error(d),
        ))

    def _node_end_with_content(self, d: dict) -> bytes:
        return self._with_content(d, self._node_end(d))

    def _run_end(self, d: dict) -> bytes:
        label = d["workflow"] or d["name"]
        status = d["status"]
        return self._with_content(d, b"".join((
            _head(d), self._run_names.get(label) or self._name(False, label),
            self._shared.get(_run_tags(d)) or self._shared_attributes(d),
            self._status[status] if status != "error" else self._error(d),
        )))

    def _with_content(self, d: dict, span: bytes) -> bytes:
        """``span`` plus the remembered input and the output (fields may come in any order)."""
        attrs = d["attributes"]
        output = wire.string_attribute("output.value", _json_bytes(attrs["output"])) if "output" in attrs else b""
        return b"".join((span, self._inputs.pop(d["span_id"], b""), output))

    def _name(self, node: bool, label: str) -> bytes:
        """Name, kind and the attributes every span of this node (or workflow) has."""
        names = self._node_names if node else self._run_names
        if len(names) >= _MAX_CACHED:
            names.clear()
        if node:
            name = f"invoke_agent {label}"
            attrs = wire.span_attributes((("gen_ai.agent.name", label),)) + self._node_const
        else:
            name = f"invoke_workflow {label}" if label else "invoke_workflow"
            attrs = wire.span_attributes((("gen_ai.workflow.name", label or None),)) + self._run_const
        encoded = names[label] = wire.name_and_kind(name, wire.SPAN_KIND_INTERNAL) + attrs
        return encoded

    def _error(self, d: dict) -> bytes:
        """The status attributes and the span status of a failed node or run."""
        attrs = d["attributes"]
        message = attrs.get("error.message")
        return self._error_const + wire.span_attributes((
            ("error.type", attrs.get("error.type") or "_OTHER"),
            ("langfuse.observation.status_message", message if self.langfuse else None),
        )) + wire.status_field(wire.STATUS_ERROR, message)

    # -- shared per-run attributes ---------------------------------------------------------------
    def _shared_attributes(self, d: dict) -> bytes:
        key = _run_tags(d)
        if len(self._shared) >= _MAX_CACHED:
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

    # -- everything else: LLM calls, tools, messages, feedback, custom events ---------------------
    def _point(self, d: dict) -> bytes:
        kind = d["kind"]
        attrs = d["attributes"]
        duration = d["duration_ms"]
        span_kind = wire.SPAN_KIND_INTERNAL
        observation = "event"
        pairs: list[tuple[str, Any]]
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
            ]
        elif kind is EventKind.FEEDBACK:
            name = f"feedback {d['name']}"
            pairs = [("graphtune.feedback.score", d["score"]), ("graphtune.feedback.comment", attrs.get("comment"))]
        elif kind is EventKind.TOOL_CALL:  # requested by the model, not (yet) executed
            tool = attrs.get("gen_ai.tool.name") or d["name"]
            name = f"tool_call {tool}"
            pairs = [("gen_ai.tool.name", tool), ("gen_ai.tool.call.id", attrs.get("gen_ai.tool.call.id")),
                     ("input.value", _json(attrs.get("gen_ai.tool.call.arguments")))]
        elif kind is EventKind.MESSAGE:
            name = d["name"] or "message"
            pairs = [("graphtune.message.role", attrs.get("role")), ("input.value", _json(attrs.get("content")))]
        else:
            name = d["name"] or kind.value
            pairs = [("input.value", _json(attrs["data"]) if "data" in attrs else None)]
        pairs.append(("graphtune.node", d["node"]))
        status = d["status"]
        message = None
        if status == "error":
            message = attrs.get("error.message")
            pairs += [("error.type", attrs.get("error.type") or "_OTHER")]
            if self.langfuse:
                pairs += [("langfuse.observation.level", "ERROR"), ("langfuse.observation.status_message", message)]
            status_code = wire.STATUS_ERROR
        else:
            status_code = wire.STATUS_OK if status == "ok" else 0
        pairs.append(("graphtune.status", status))
        if self.langfuse:
            pairs.append(("langfuse.observation.type", observation))
        return wire.span(
            head=_head(d), name=name,
            kind=span_kind, attributes=(self._shared.get(_run_tags(d)) or self._shared_attributes(d))
            + wire.span_attributes(pairs), status_code=status_code, status_message=message,
        )
