"""Langfuse observations (public API v2 shape) as trajectory events, so hot spots work on Langfuse data.

Two kinds of traces arrive here, and both map:

- spans graphtune exported (:mod:`graphtune.tracing.otel_spans`): the root is ``invoke_workflow``,
  nodes are ``invoke_agent`` spans, run tags are ``graphtune.*`` attributes / ``graphtune_*`` metadata;
- traces from Langfuse's own LangChain ``CallbackHandler``: the root is the graph run, a node is an
  observation whose ``langgraph_node`` metadata equals its name (as graphtune's recorder decides),
  run tags come from ``graphtune_*`` metadata when the application set them, else the trace name.

Observations that are neither a run, a node, a model call, a tool call nor an event (chains
inside a node) become no event, but links through them are kept: each event's parent is its
nearest mapped ancestor. User ids are kept only as hashes: a value that is not already a
graphtune hash is hashed with ``GRAPHTUNE_HASH_SALT`` (or a per-process salt).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from graphtune.tracing.events import DEFAULT_SOURCE, MESSAGE_EVENT_NAMES, EventKind, TrajectoryEvent
from graphtune.tracing.privacy import SALT_ENV, hash_user_id

_NAMESPACE = uuid.UUID("5b0d3f6e-2a8c-4f51-9d3e-7c1a2b4e6f80")
_HASHED = re.compile(r"^[0-9a-f]{32}$")
_MESSAGE_NAMES = frozenset(MESSAGE_EVENT_NAMES.values())
_process_salt = secrets.token_hex(16)


class Observation(BaseModel):
    """One item of ``GET /api/public/v2/observations`` (only the fields graphtune reads)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    trace_id: str | None = Field(None, alias="traceId")
    start_time: datetime = Field(alias="startTime")
    end_time: datetime | None = Field(None, alias="endTime")
    parent_observation_id: str | None = Field(None, alias="parentObservationId")
    type: str = "SPAN"
    name: str | None = None
    level: str | None = None
    status_message: str | None = Field(None, alias="statusMessage")
    user_id: str | None = Field(None, alias="userId")
    session_id: str | None = Field(None, alias="sessionId")
    environment: str | None = None
    trace_name: str | None = Field(None, alias="traceName")
    tags: list[str] | None = None
    version: str | None = None
    metadata: dict[str, Any] | None = None
    model: str | None = None
    usage_details: dict[str, Any] | None = Field(None, alias="usageDetails")
    input: Any = None
    output: Any = None


def parse_observation(item: Any) -> Observation | None:
    """The observation, or None when the item lacks the fields every observation has."""
    if not isinstance(item, dict):
        return None
    try:
        return Observation.model_validate(item)
    except ValidationError:
        return None


def _decode(value: Any) -> Any:
    """Langfuse returns input/output (and, from v5 SDKs, metadata values) as JSON text."""
    if isinstance(value, str) and value[:1] in ('{', '[', '"'):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class _Meta:
    """One lookup over an observation's metadata: top level (``graphtune_workflow``) or the span
    attributes Langfuse keeps under ``attributes`` (``graphtune.workflow``)."""

    def __init__(self, metadata: dict[str, Any] | None):
        self.top = metadata or {}
        nested = self.top.get("attributes")
        self.attrs = nested if isinstance(nested, dict) else {}

    def get(self, *keys: str) -> Any:
        for key in keys:
            for source in (self.top, self.attrs):
                if key in source and source[key] not in (None, ""):
                    return _decode(source[key])
        return None


def _tag(tags: list[str] | None, prefix: str) -> str | None:
    for tag in tags or ():
        if tag.startswith(prefix):
            return tag[len(prefix):]
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _usage(details: dict[str, Any] | None) -> tuple[int | None, int | None]:
    if not details:
        return None, None
    def pick(*keys):
        for key in keys:
            if details.get(key) is not None:
                return _int(details[key])
        return None
    return pick("input", "prompt_tokens", "input_tokens"), pick("output", "completion_tokens", "output_tokens")


def _score(value: Any) -> float | None:
    try:
        score = float(value)
    except (TypeError, ValueError):
        return None
    return score if 0.0 <= score <= 1.0 else None


def _user_hash(user: str | None) -> str | None:
    if not user:
        return None
    if _HASHED.match(user):
        return user  # graphtune's own exports carry the salted hash already
    return hash_user_id(user, os.environ.get(SALT_ENV) or _process_salt)


def _event_id(observation_id: str, suffix: str) -> str:
    return uuid.uuid5(_NAMESPACE, f"{observation_id}:{suffix}").hex


class _Role:
    RUN, NODE, LLM, TOOL, POINT, FEEDBACK, OTHER = range(7)


def _role(obs: Observation, meta: _Meta, is_root: bool) -> int:
    op = meta.get("gen_ai.operation.name")
    kind = obs.type.upper()
    if meta.get("graphtune.feedback.score") is not None:
        return _Role.FEEDBACK
    if op == "invoke_workflow" or (is_root and kind in ("SPAN", "CHAIN", "AGENT") and op is None):
        return _Role.RUN
    if kind in ("GENERATION", "EMBEDDING") or op == "chat":
        return _Role.LLM
    if kind == "TOOL" or op == "execute_tool":
        return _Role.TOOL
    if op == "invoke_agent" or kind == "AGENT" or (obs.name and meta.get("langgraph_node") == obs.name):
        return _Role.NODE
    if kind == "EVENT":
        return _Role.POINT
    return _Role.OTHER


def events_from_observations(observations: Iterable[Observation]) -> tuple[list[TrajectoryEvent], int]:
    """Trajectory events for the observations, and how many observations were still running (no end)."""
    by_id = {o.id: o for o in observations if o.trace_id}
    metas = {oid: _Meta(o.metadata) for oid, o in by_id.items()}
    roles: dict[str, int] = {}
    for oid, obs in by_id.items():
        parent = obs.parent_observation_id
        roles[oid] = _role(obs, metas[oid], is_root=parent is None or parent not in by_id)
    run_tags: dict[str, dict[str, Any]] = {}
    for oid, obs in by_id.items():
        if roles[oid] == _Role.RUN:
            run_tags.setdefault(obs.trace_id, _tags_of(obs, metas[oid]))

    events: list[TrajectoryEvent] = []
    unfinished = 0
    for oid, obs in by_id.items():
        role = roles[oid]
        if role == _Role.OTHER:
            continue
        meta = metas[oid]
        tags = run_tags.get(obs.trace_id) or _tags_of(obs, meta)
        parent, node = _mapped_ancestor(obs, by_id, roles)
        if role == _Role.NODE:
            node = _node_name(obs, meta)
        common = dict(trace_id=obs.trace_id, span_id=obs.id, parent_span_id=parent, node=node, **tags)
        start = obs.start_time.timestamp()
        end = obs.end_time.timestamp() if obs.end_time else None
        failed = (obs.level or "").upper() == "ERROR"
        error = {"error.type": meta.get("error.type") or "_OTHER", "error.message": obs.status_message or ""} if failed else {}
        status = "error" if failed else "ok"
        if role in (_Role.POINT, _Role.FEEDBACK):
            events.append(_point_event(obs, meta, role, start, common))
            continue
        if end is None:
            unfinished += 1
        duration = round((end - start) * 1000.0, 3) if end is not None else None
        if role == _Role.RUN:
            name = tags["workflow"] or obs.name or ""
            events.append(TrajectoryEvent(event_id=_event_id(oid, "start"), kind=EventKind.RUN_START, time=start,
                                          name=name, **{**common, "node": None}))
            if end is not None:
                attrs = {**error, **({"output": _decode(obs.output)} if obs.output is not None else {})}
                events.append(TrajectoryEvent(event_id=_event_id(oid, "end"), kind=EventKind.RUN_END, time=end, name=name,
                                              duration_ms=duration, status=status, attributes=attrs, **{**common, "node": None}))
        elif role == _Role.NODE:
            events.append(TrajectoryEvent(event_id=_event_id(oid, "start"), kind=EventKind.NODE_START, time=start,
                                          name=node, **common))
            if end is not None:
                kind = EventKind.NODE_ERROR if failed else EventKind.NODE_END
                attrs = {**error, **({"output": _decode(obs.output)} if obs.output is not None else {})}
                events.append(TrajectoryEvent(event_id=_event_id(oid, "end"), kind=kind, time=end, name=node,
                                              duration_ms=duration, status=status, attributes=attrs, **common))
        elif end is not None and role == _Role.LLM:
            input_tokens, output_tokens = _usage(obs.usage_details)
            model = obs.model or meta.get("gen_ai.request.model", "gen_ai.response.model")
            attrs = {"gen_ai.operation.name": "chat", **({"gen_ai.request.model": model} if model else {}), **error}
            events.append(TrajectoryEvent(event_id=_event_id(oid, "end"), kind=EventKind.LLM_USAGE, time=end,
                                          name=model or obs.name or "", duration_ms=duration, status=status,
                                          input_tokens=input_tokens, output_tokens=output_tokens, attributes=attrs, **common))
        elif end is not None and role == _Role.TOOL:
            tool = meta.get("gen_ai.tool.name") or (obs.name or "tool").removeprefix("execute_tool ")
            attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool, "phase": "executed", **error}
            if obs.input is not None:
                attrs["input"] = _decode(obs.input)
            if obs.output is not None:
                attrs["output"] = _decode(obs.output)
            events.append(TrajectoryEvent(event_id=_event_id(oid, "end"), kind=EventKind.TOOL_CALL, time=end, name=tool,
                                          duration_ms=duration, status=status, attributes=attrs, **common))
    return events, unfinished


def _tags_of(obs: Observation, meta: _Meta) -> dict[str, Any]:
    workflow = (meta.get("graphtune_workflow", "graphtune.workflow") or _tag(obs.tags, "workflow:")
                or obs.trace_name or None)
    source = meta.get("graphtune_source", "graphtune.source") or _tag(obs.tags, "source:") or DEFAULT_SOURCE
    version = _int(meta.get("graphtune_config_version", "graphtune.config_version"))
    thread = obs.session_id or meta.get("thread_id", "gen_ai.conversation.id")
    return {
        "workflow": workflow,
        "config_version": version if version is not None else _int(obs.version),
        "variant": meta.get("graphtune_variant", "graphtune.variant") or _tag(obs.tags, "variant:"),
        "source": str(source),
        "thread_id": str(thread) if thread is not None else None,
        "user_hash": _user_hash(obs.user_id),
    }


def _mapped_ancestor(obs: Observation, by_id: dict[str, Observation], roles: dict[str, int]) -> tuple[str | None, str | None]:
    """(nearest mapped ancestor's id, the enclosing node's name), walking up through unmapped chains."""
    parent_id = obs.parent_observation_id
    first: str | None = None
    seen = 0
    while parent_id is not None and seen < 1000:
        parent = by_id.get(parent_id)
        if parent is None:
            return first or parent_id, None
        role = roles[parent_id]
        if first is None and role != _Role.OTHER:
            first = parent_id
        if role == _Role.NODE:
            return first, _node_name(parent, _Meta(parent.metadata))
        if role == _Role.RUN:
            return first, None
        parent_id = parent.parent_observation_id
        seen += 1
    return first, None


def _node_name(obs: Observation, meta: _Meta) -> str:
    return str(meta.get("gen_ai.agent.name") or (obs.name or "").removeprefix("invoke_agent "))


def _point_event(obs: Observation, meta: _Meta, role: int, start: float, common: dict) -> TrajectoryEvent:
    name = obs.name or ""
    score = _score(meta.get("graphtune.feedback.score")) if role == _Role.FEEDBACK else None
    if score is not None:
        comment = meta.get("graphtune.feedback.comment")
        return TrajectoryEvent(event_id=_event_id(obs.id, "feedback"), kind=EventKind.FEEDBACK, time=start,
                               name=name.removeprefix("feedback "), score=score,
                               attributes={"comment": comment} if comment else {}, **common)
    content = _decode(obs.input) if obs.input is not None else None
    if name in _MESSAGE_NAMES:
        role_name = meta.get("graphtune.message.role") or name.split(".")[1]
        return TrajectoryEvent(event_id=_event_id(obs.id, "message"), kind=EventKind.MESSAGE, time=start, name=name,
                               attributes={"role": role_name, "content": content}, **common)
    return TrajectoryEvent(event_id=_event_id(obs.id, "custom"), kind=EventKind.CUSTOM, time=start, name=name,
                           attributes={"data": content} if content is not None else {}, **common)
