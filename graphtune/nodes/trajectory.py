"""``TrajectoryNode``: add it anywhere in a graph to record the conversation's new messages.

It diffs ``state["messages"]`` against a cursor of what it recorded before and records the new
human, AI and tool messages and tool calls. The cursor lives in graph state under
``graphtune_trajectory`` when the state declares that key (inherit ``TrajectoryState``), so it
survives restarts with the checkpoint; otherwise it is kept in memory per thread. Either way message
event ids derive from (thread, message id), so recording a message twice stores it once.

A new human message after a finished turn (the last AI message had no tool calls) starts a new
trace: one trace per turn, grouped by thread.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from typing_extensions import NotRequired, TypedDict

from langchain_core.runnables import RunnableConfig

from graphtune.tracing.context import new_span_id, new_trace_id, span_id_from_run
from graphtune.tracing.events import (
    DEFAULT_SOURCE,
    MESSAGE_EVENT_NAMES,
    TAG_CONFIG_VERSION,
    TAG_SOURCE,
    TAG_VARIANT,
    TAG_WORKFLOW,
    USER_ID_KEYS,
    EventKind,
    TrajectoryEvent,
    new_event_id,
)
from graphtune.tracing.recorder import TrajectoryRecorder, default_recorder, find_recorder
from graphtune.tracing.serialization import to_jsonable

log = logging.getLogger("graphtune.trajectory")

CURSOR_KEY = "graphtune_trajectory"
_EVENT_NAMESPACE = uuid.UUID("5b3f6f0e-8a4c-4f4e-9a55-6d1f2f0c7a11")


class TrajectoryState(TypedDict):
    """Mix into your state (``class State(MessagesState, TrajectoryState)``) to keep the cursor in checkpoints."""

    graphtune_trajectory: NotRequired[dict[str, Any]]


def new_cursor() -> dict[str, Any]:
    return {"last_id": None, "count": 0, "trace_id": None, "turn_open": False}


def message_id(message: Any, index: int) -> str:
    """The message's own id, or a stable stand-in from its position and content."""
    mid = getattr(message, "id", None) if not isinstance(message, dict) else message.get("id")
    if mid:
        return str(mid)
    content = message.get("content") if isinstance(message, dict) else getattr(message, "content", "")
    return f"pos{index}-{uuid.uuid5(_EVENT_NAMESPACE, repr(content)).hex[:12]}"


def new_messages(messages: Sequence[Any], cursor: dict[str, Any]) -> list[tuple[int, Any]]:
    """(index, message) pairs added since the cursor. Survives trimmed or rewritten histories."""
    last_id = cursor.get("last_id")
    if last_id is None:
        return list(enumerate(messages))
    for index in range(len(messages) - 1, -1, -1):
        if message_id(messages[index], index) == last_id:
            return [(i, messages[i]) for i in range(index + 1, len(messages))]
    # The last recorded message is gone (trimmed, summarized or replaced), so positions say nothing
    # about what is new: offer every message. Message event ids derive from (thread, message id),
    # so the ones recorded before are stored once; counting from the old length would skip new ones.
    return list(enumerate(messages))


def _field(message: Any, name: str, default: Any = None) -> Any:
    return message.get(name, default) if isinstance(message, dict) else getattr(message, name, default)


def _role(message: Any) -> str:
    role = _field(message, "type") or _field(message, "role") or "unknown"
    return {"user": "human", "assistant": "ai"}.get(role, role)


class MessageTrajectory:
    """The diff-and-record logic shared by TrajectoryNode and the agent hooks."""

    def __init__(self, recorder: TrajectoryRecorder | None = None, messages_key: str = "messages"):
        self.recorder = recorder
        self.messages_key = messages_key
        self._memory: dict[str, dict[str, Any]] = {}

    def record(self, state: Any, config: RunnableConfig | None) -> dict[str, Any]:
        """Record what is new in ``state`` and return the state update holding the new cursor."""
        try:
            return self._record(state, config or {})
        except Exception:  # recording never breaks the workflow
            log.exception("graphtune: TrajectoryNode could not record messages")
            return {}

    def _record(self, state: Any, config: RunnableConfig) -> dict[str, Any]:
        messages = _get(state, self.messages_key) or []
        metadata = config.get("metadata") or {}
        thread_id = (config.get("configurable") or {}).get("thread_id") or metadata.get("thread_id")
        thread_id = str(thread_id) if thread_id is not None else None
        stored = _get(state, CURSOR_KEY)
        cursor = dict(stored or (self._memory.get(thread_id) if thread_id else None) or new_cursor())

        found, node_run = find_recorder(config)
        recorder = self.recorder or found or default_recorder()
        run_trace = recorder.trace_id_of(node_run) if found is recorder else None
        parent_span = span_id_from_run(node_run) if run_trace and node_run else None
        used_run_trace = False

        user_id = next((metadata[k] for k in USER_ID_KEYS if metadata.get(k) is not None), None)
        for index, message in new_messages(messages, cursor):
            role = _role(message)
            if cursor["trace_id"] is None or (role == "human" and not cursor["turn_open"]):
                fresh = run_trace and not used_run_trace and run_trace != cursor["trace_id"]
                cursor["trace_id"] = run_trace if fresh else new_trace_id()
                used_run_trace = used_run_trace or bool(fresh)
            cursor["turn_open"] = not (role == "ai" and not _field(message, "tool_calls"))
            mid = message_id(message, index)
            same_trace_parent = parent_span if cursor["trace_id"] == run_trace else None
            for event in message_events(message, role, mid, cursor["trace_id"], same_trace_parent, thread_id, metadata):
                recorder.record(event, user_id)
            cursor["last_id"] = mid
        cursor["count"] = len(messages)
        if thread_id:
            self._memory[thread_id] = cursor
        return {CURSOR_KEY: cursor}


def _get(state: Any, key: str) -> Any:
    return state.get(key) if isinstance(state, dict) else getattr(state, key, None)


def message_events(
    message: Any, role: str, mid: str, trace_id: str, parent_span: str | None, thread_id: str | None, metadata: dict
) -> list[TrajectoryEvent]:
    """One message event, plus one tool_call event per tool call an AI message requests."""
    import time

    version = metadata.get(TAG_CONFIG_VERSION)
    common = {
        "trace_id": trace_id, "parent_span_id": parent_span, "thread_id": thread_id, "time": time.time(),
        "workflow": metadata.get(TAG_WORKFLOW), "config_version": int(version) if isinstance(version, int) else None,
        "variant": metadata.get(TAG_VARIANT), "source": metadata.get(TAG_SOURCE) or DEFAULT_SOURCE,
        "node": metadata.get("langgraph_node"),
    }

    def event_id(suffix: str) -> str:
        if thread_id is None:
            return new_event_id()
        return uuid.uuid5(_EVENT_NAMESPACE, f"{thread_id}:{mid}:{suffix}").hex

    attributes: dict[str, Any] = {"role": role, "message_id": mid, "content": to_jsonable(_field(message, "content"))}
    status = None
    if role == "tool":
        attributes["tool_call_id"] = _field(message, "tool_call_id")
        attributes["gen_ai.tool.name"] = _field(message, "name")
        if _field(message, "status") == "error":
            status = "error"
            attributes["error.type"] = "ToolError"
    tool_calls = _field(message, "tool_calls") or []
    if tool_calls:
        attributes["tool_calls"] = to_jsonable(tool_calls)
    usage = _field(message, "usage_metadata") or {}
    events = [
        TrajectoryEvent(
            event_id=event_id("message"), kind=EventKind.MESSAGE, span_id=new_span_id(),
            name=MESSAGE_EVENT_NAMES.get(role, f"gen_ai.{role}.message"), status=status,
            input_tokens=usage.get("input_tokens"), output_tokens=usage.get("output_tokens"),
            attributes=attributes, **common,
        )
    ]
    for call in tool_calls:
        name = call.get("name") if isinstance(call, dict) else getattr(call, "name", None)
        call_id = call.get("id") if isinstance(call, dict) else getattr(call, "id", None)
        args = call.get("args") if isinstance(call, dict) else getattr(call, "args", None)
        events.append(TrajectoryEvent(
            event_id=event_id(f"tool_call:{call_id}"), kind=EventKind.TOOL_CALL, span_id=new_span_id(),
            name=name or "tool",
            attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
                        "gen_ai.tool.call.id": call_id, "gen_ai.tool.call.arguments": to_jsonable(args),
                        "phase": "requested"},
            **common,
        ))
    return events


class TrajectoryNode:
    """A graph node that records new messages: ``builder.add_node("trajectory", TrajectoryNode())``."""

    def __init__(self, recorder: TrajectoryRecorder | None = None, *, messages_key: str = "messages"):
        self._trajectory = MessageTrajectory(recorder, messages_key)

    def __call__(self, state: Any, config: RunnableConfig) -> dict[str, Any]:
        return self._trajectory.record(state, config)
