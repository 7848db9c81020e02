"""The trajectory data model: what every recorder writes and every store reads.

Field and attribute names follow the OpenTelemetry GenAI conventions where one exists:
``input_tokens``/``output_tokens`` export as ``gen_ai.usage.input_tokens``/``output_tokens``, and
attributes use ``gen_ai.request.model``, ``gen_ai.tool.name``, ``gen_ai.tool.call.id``,
``gen_ai.operation.name`` and ``error.type``. Message events are named after the GenAI event names
(``gen_ai.user.message``, ``gen_ai.assistant.message``, ``gen_ai.tool.message``, ...).
"""

from __future__ import annotations

import enum
import random
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Run tags travel in LangChain ``config["metadata"]`` under these keys (shared/DESIGN.md).
TAG_WORKFLOW = "graphtune_workflow"
TAG_CONFIG_VERSION = "graphtune_config_version"
TAG_VARIANT = "graphtune_variant"
TAG_SOURCE = "graphtune_source"
TAG_USER_ID = "graphtune_user_id"
USER_ID_KEYS = (TAG_USER_ID, "user_id", "langfuse_user_id")
TRACEPARENT_KEY = "traceparent"

SOURCES = ("production", "eval", "controller", "demo")
DEFAULT_SOURCE = "production"

Status = Literal["ok", "error", "interrupted"]


class EventKind(str, enum.Enum):
    RUN_START = "run_start"
    RUN_END = "run_end"
    NODE_START = "node_start"
    NODE_END = "node_end"
    NODE_ERROR = "node_error"
    MESSAGE = "message"
    TOOL_CALL = "tool_call"
    LLM_USAGE = "llm_usage"
    FEEDBACK = "feedback"
    CUSTOM = "custom"


# Kinds whose duration describes one node execution: what hot-spot statistics are made of.
NODE_OUTCOME_KINDS = (EventKind.NODE_END, EventKind.NODE_ERROR)
# Feedback scores live in [0, 1]; below this is negative ("thumbs down" is 0).
NEGATIVE_FEEDBACK_BELOW = 0.5

MESSAGE_EVENT_NAMES = {
    "human": "gen_ai.user.message",
    "ai": "gen_ai.assistant.message",
    "tool": "gen_ai.tool.message",
    "system": "gen_ai.system.message",
}


_ids = random.Random()  # ids need uniqueness, not secrecy; this is ~5x cheaper than os.urandom


def new_event_id() -> str:
    """A time-ordered id, 32 hex digits in UUIDv7 layout (PostgreSQL's uuid type reads it as is):
    new ids append at the right edge of a B-tree index."""
    return f"{int(time.time() * 1000):012x}7{_ids.getrandbits(76):019x}"


class TrajectoryEvent(BaseModel):
    """One thing that happened in a workflow run, placed in its trace tree and tagged with its run tags."""

    model_config = ConfigDict(use_enum_values=False, extra="forbid")

    event_id: str = Field(default_factory=new_event_id)
    kind: EventKind
    time: float = Field(description="Unix seconds when the event happened (the end, for *_end events).")
    trace_id: str
    span_id: str
    parent_span_id: str | None = None
    name: str = ""
    node: str | None = Field(default=None, description="The graph node the event belongs to, if any.")
    workflow: str | None = None
    config_version: int | None = None
    variant: str | None = None
    source: str = DEFAULT_SOURCE
    thread_id: str | None = None
    user_hash: str | None = None
    duration_ms: float | None = None
    status: Status | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    score: float | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    @property
    def start_time(self) -> float:
        return self.time - (self.duration_ms or 0.0) / 1000.0

    @classmethod
    def build(cls, **fields: Any) -> TrajectoryEvent:
        """Construct without validation, for the writer thread where the caller guarantees every
        field is present and well typed (``model_construct`` costs ~4x more)."""
        event = cls.__new__(cls)
        object.__setattr__(event, "__dict__", fields)
        object.__setattr__(event, "__pydantic_fields_set__", _ALL_FIELDS)
        object.__setattr__(event, "__pydantic_extra__", None)
        object.__setattr__(event, "__pydantic_private__", None)
        return event

    def to_record(self) -> dict[str, Any]:
        """Plain dict for JSON serialization (faster than ``model_dump`` on the writer thread)."""
        record = dict(self.__dict__)
        record["kind"] = self.kind.value
        return record


# Shared by every built event: adding a field name that is already present never changes it.
_ALL_FIELDS = set(TrajectoryEvent.model_fields)


class NodeStats(BaseModel):
    """Per-node statistics over a time window: the raw material of hot spots.

    ``node`` is ``"__run__"`` for whole workflow runs.
    """

    workflow: str
    node: str
    count: int
    errors: int
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    mean_ms: float | None
    input_tokens: int
    output_tokens: int
    negative_feedback: int


RUN_NODE = "__run__"


class TraceSummary(BaseModel):
    """One line of ``graphtune traces list``."""

    trace_id: str
    workflow: str | None
    thread_id: str | None
    source: str | None
    start: float
    duration_ms: float | None
    status: Status | None
    events: int
    errors: int
    input_tokens: int
    output_tokens: int
