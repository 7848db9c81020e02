"""Turn raw callback tuples into trajectory events, on the writer thread.

The recorder's hot path only appends ``(code, run_id, parent_run_id, trace_id, name, time,
metadata, payload)`` to a queue. Everything costly happens here: placing runs in the span tree,
deciding which runs are graph nodes, reading run tags, extracting token usage, and making state
values JSON-safe.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphtune.tracing.context import parse_traceparent, span_id_from_run
from graphtune.tracing.events import (
    DEFAULT_SOURCE,
    TAG_CONFIG_VERSION,
    TAG_SOURCE,
    TAG_VARIANT,
    TAG_WORKFLOW,
    TRACEPARENT_KEY,
    USER_ID_KEYS,
    EventKind,
    TrajectoryEvent,
    new_event_id,
)
from graphtune.tracing.serialization import to_jsonable, type_name

# Raw item codes (the first element of each queued tuple).
CHAIN_START, CHAIN_END, CHAIN_ERROR = 0, 1, 2
LLM_START, LLM_END, LLM_ERROR = 3, 4, 5
TOOL_START, TOOL_END, TOOL_ERROR = 6, 7, 8
CUSTOM = 9

_ROOT, _NODE, _CHAIN, _LLM, _TOOL = "root", "node", "chain", "llm", "tool"
_STARTS = (EventKind.RUN_START, EventKind.NODE_START)
MAX_OPEN_RUNS = 100_000


@dataclass(frozen=True, slots=True)
class RunTags:
    """The run tags of DESIGN.md, read once per root run and shared by all its events."""

    workflow: str | None
    config_version: int | None
    variant: str | None
    source: str
    thread_id: str | None
    user_hash: str | None


@dataclass(slots=True)
class RunInfo:
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str | None  # the nearest recorded ancestor's span
    node: str | None  # the enclosing graph node
    name: str
    start: float
    tags: RunTags
    emitted: bool
    extra: Any = None  # LLM runs: the requested model; tool runs: (input, tool_call_id)


def read_tags(metadata: dict | None, fallback_workflow: str | None, hash_user: Callable[[Any], str]) -> RunTags:
    md = metadata or {}
    version = md.get(TAG_CONFIG_VERSION)
    try:
        version = int(version) if version is not None else None
    except (TypeError, ValueError):
        version = None
    user = next((md[k] for k in USER_ID_KEYS if md.get(k) is not None), None)
    thread = md.get("thread_id")
    return RunTags(
        workflow=md.get(TAG_WORKFLOW) or fallback_workflow,
        config_version=version,
        variant=md.get(TAG_VARIANT),
        source=md.get(TAG_SOURCE) or DEFAULT_SOURCE,
        thread_id=str(thread) if thread is not None else None,
        user_hash=hash_user(user) if user is not None else None,
    )


def is_interrupt(error: BaseException) -> bool:
    """LangGraph signals interrupts and parent commands with GraphBubbleUp: a pause, not a failure."""
    try:
        from langgraph.errors import GraphBubbleUp
    except ImportError:  # pragma: no cover - langgraph is a dependency
        return False
    return isinstance(error, GraphBubbleUp)


def error_attributes(error: BaseException) -> dict[str, Any]:
    return {"error.type": type_name(error), "error.message": str(error)[:2000]}


class Assembler:
    """Keeps the open runs of every trace and emits events as runs start and end."""

    def __init__(self, hash_user: Callable[[Any], str], capture_state: bool = True):
        self.hash_user = hash_user
        self.capture_state = capture_state
        self.runs: dict[uuid.UUID, RunInfo] = {}
        self.interrupted_traces: set[str] = set()

    def feed(self, item: tuple) -> TrajectoryEvent | None:
        code, run_id, parent_run_id, trace_id, name, t, metadata, payload = item
        if code in (CHAIN_START, LLM_START, TOOL_START):
            return self._start(code, run_id, parent_run_id, trace_id, name, t, metadata, payload)
        if code == CUSTOM:
            return self._custom(run_id, trace_id, name, t, metadata, payload)
        return self._end(code, run_id, t, payload)

    # -- starts --------------------------------------------------------------------------
    def _start(self, code, run_id, parent_run_id, trace_id, name, t, metadata, payload) -> TrajectoryEvent | None:
        if len(self.runs) >= MAX_OPEN_RUNS:
            self._forget_oldest_runs()
        parent = self.runs.get(parent_run_id) if parent_run_id is not None else None
        span_id = span_id_from_run(run_id)
        name = name or ""
        if parent is None:  # a root: a graph run, or a model or tool called on its own
            incoming = parse_traceparent((metadata or {}).get(TRACEPARENT_KEY))
            trace_id = incoming.trace_id if incoming else (trace_id or run_id.hex)
            tags, node, parent_span = read_tags(metadata, name, self.hash_user), None, incoming and incoming.span_id
        else:
            trace_id, tags, node = parent.trace_id, parent.tags, parent.node
            parent_span = parent.span_id if parent.emitted else parent.parent_span_id
        if code == LLM_START:
            model = (metadata or {}).get("ls_model_name")
            self.runs[run_id] = RunInfo(_LLM, trace_id, span_id, parent_span, node, name, t, tags, False, model)
            return None
        if code == TOOL_START:
            self.runs[run_id] = RunInfo(_TOOL, trace_id, span_id, parent_span, node, name, t, tags, False, payload)
            return None
        if parent is None:
            info = RunInfo(_ROOT, trace_id, span_id, parent_span, None, name, t, tags, True)
            self.runs[run_id] = info
            return self._event(EventKind.RUN_START, info, t, attributes=self._state("input", payload))
        if (metadata or {}).get("langgraph_node") == name and name:
            info = RunInfo(_NODE, trace_id, span_id, parent_span, name, name, t, tags, True)
            self.runs[run_id] = info
            return self._event(EventKind.NODE_START, info, t, attributes=self._state("input", payload))
        self.runs[run_id] = RunInfo(_CHAIN, trace_id, span_id, parent_span, node, name, t, tags, False)
        return None

    # -- ends ----------------------------------------------------------------------------
    def _end(self, code, run_id, t, payload) -> TrajectoryEvent | None:
        info = self.runs.pop(run_id, None)
        if info is None:
            return None
        if info.kind == _LLM:
            return self._llm_event(info, t, payload, failed=code == LLM_ERROR)
        if info.kind == _TOOL:
            return self._tool_event(info, t, payload, failed=code == TOOL_ERROR)
        if not info.emitted:
            return None
        kind = EventKind.RUN_END if info.kind == _ROOT else EventKind.NODE_END
        if info.kind == _ROOT and info.trace_id in self.interrupted_traces:
            # LangGraph ends the graph run normally when a node interrupts: the run is parked, not done.
            self.interrupted_traces.discard(info.trace_id)
            if code == CHAIN_END:
                return self._event(kind, info, t, status="interrupted", attributes=self._state("output", payload))
        if code == CHAIN_ERROR:
            if is_interrupt(payload):
                self.interrupted_traces.add(info.trace_id)
                return self._event(kind, info, t, status="interrupted", attributes={"graphtune.interrupt": type_name(payload)})
            kind = EventKind.RUN_END if info.kind == _ROOT else EventKind.NODE_ERROR
            return self._event(kind, info, t, status="error", attributes=error_attributes(payload))
        return self._event(kind, info, t, status="ok", attributes=self._state("output", payload))

    def _llm_event(self, info: RunInfo, t: float, result: Any, failed: bool) -> TrajectoryEvent:
        if failed:
            attrs = {"gen_ai.operation.name": "chat", **error_attributes(result)}
            if info.extra:
                attrs["gen_ai.request.model"] = info.extra
            return self._event(EventKind.LLM_USAGE, info, t, status="error", attributes=attrs)
        input_tokens, output_tokens, response_model, finish = usage_from_result(result)
        attrs = {"gen_ai.operation.name": "chat"}
        if info.extra:
            attrs["gen_ai.request.model"] = info.extra
        if response_model:
            attrs["gen_ai.response.model"] = response_model
        if finish:
            attrs["gen_ai.response.finish_reasons"] = [finish]
        return self._event(
            EventKind.LLM_USAGE, info, t, status="ok", attributes=attrs, name=response_model or info.extra or info.name,
            input_tokens=input_tokens, output_tokens=output_tokens,
        )

    def _tool_event(self, info: RunInfo, t: float, payload: Any, failed: bool) -> TrajectoryEvent:
        tool_input, call_id = info.extra
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": info.name,
            "phase": "executed",
            "input": to_jsonable(tool_input),
        }
        status = "ok"
        if failed:
            status = "error"
            attrs.update(error_attributes(payload))
        else:
            call_id = call_id or getattr(payload, "tool_call_id", None)
            if getattr(payload, "status", None) == "error":
                status = "error"
                attrs["error.type"] = "ToolError"
            attrs["output"] = to_jsonable(getattr(payload, "content", payload))
        if call_id:
            attrs["gen_ai.tool.call.id"] = call_id
        return self._event(EventKind.TOOL_CALL, info, t, status=status, attributes=attrs)

    def _custom(self, run_id, trace_id, name, t, metadata, payload) -> TrajectoryEvent:
        parent = self.runs.get(run_id)
        if parent is None:
            tags = read_tags(metadata, None, self.hash_user)
            info = RunInfo(_CHAIN, trace_id or run_id.hex, span_id_from_run(run_id), None, None, name, t, tags, False)
        else:
            span = parent.span_id if parent.emitted else parent.parent_span_id
            info = RunInfo(_CHAIN, parent.trace_id, span, span, parent.node, name, t, parent.tags, False)
        return TrajectoryEvent.build(
            event_id=new_event_id(), kind=EventKind.CUSTOM, time=t, trace_id=info.trace_id,
            span_id=_fresh_span(), parent_span_id=info.parent_span_id, name=name or "", node=info.node,
            **_tag_fields(info.tags), duration_ms=None, status=None, input_tokens=None, output_tokens=None,
            score=None, attributes={"data": to_jsonable(payload)},
        )

    # -- helpers -------------------------------------------------------------------------
    def _state(self, key: str, value: Any) -> dict[str, Any]:
        return {key: to_jsonable(value)} if self.capture_state and value is not None else {}

    def _event(self, kind, info: RunInfo, t, *, status=None, attributes=None, name=None, input_tokens=None, output_tokens=None):
        tags = info.tags
        return TrajectoryEvent.build(
            event_id=new_event_id(), kind=kind, time=t, trace_id=info.trace_id, span_id=info.span_id,
            parent_span_id=info.parent_span_id, name=name or info.name, node=info.node, workflow=tags.workflow,
            config_version=tags.config_version, variant=tags.variant, source=tags.source, thread_id=tags.thread_id,
            user_hash=tags.user_hash, duration_ms=None if kind in _STARTS else round((t - info.start) * 1000.0, 3),
            status=status, input_tokens=input_tokens, output_tokens=output_tokens, score=None,
            attributes=attributes or {},
        )

    def _forget_oldest_runs(self) -> None:
        """Runs whose end was dropped (queue full) would stay open forever: forget the oldest tenth."""
        for run_id in list(self.runs)[: MAX_OPEN_RUNS // 10]:
            info = self.runs.pop(run_id)
            self.interrupted_traces.discard(info.trace_id)


def _tag_fields(tags: RunTags) -> dict[str, Any]:
    return {
        "workflow": tags.workflow, "config_version": tags.config_version, "variant": tags.variant,
        "source": tags.source, "thread_id": tags.thread_id, "user_hash": tags.user_hash,
    }


def _fresh_span() -> str:
    return uuid.uuid4().hex[:16]


def usage_from_result(result: Any) -> tuple[int | None, int | None, str | None, str | None]:
    """(input tokens, output tokens, response model, finish reason) from an ``LLMResult``."""
    input_tokens = output_tokens = None
    model = finish = None
    try:
        generations = result.generations[0] if result.generations else []
        for generation in generations:
            message = getattr(generation, "message", None)
            usage = getattr(message, "usage_metadata", None)
            if usage:
                input_tokens = (input_tokens or 0) + int(usage.get("input_tokens") or 0)
                output_tokens = (output_tokens or 0) + int(usage.get("output_tokens") or 0)
            meta = getattr(message, "response_metadata", None) or {}
            model = model or meta.get("model_name") or meta.get("model")
            finish = finish or meta.get("finish_reason") or (generation.generation_info or {}).get("finish_reason")
        llm_output = result.llm_output or {}
        model = model or llm_output.get("model_name")
        if input_tokens is None:
            usage = llm_output.get("token_usage") or llm_output.get("usage") or {}
            if usage:
                input_tokens = usage.get("prompt_tokens", usage.get("input_tokens"))
                output_tokens = usage.get("completion_tokens", usage.get("output_tokens"))
    except Exception:  # a provider's odd result shape must not stop recording
        pass
    return input_tokens, output_tokens, model, finish
