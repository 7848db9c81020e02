"""W3C trace context: ids in the shape OpenTelemetry and Langfuse expect.

Trace ids are 32 lowercase hex characters, span ids 16. A LangChain run id (a UUID) maps to ids
without any lookup: the root run's UUID is the trace id and the low 64 bits of any run's UUID are
its span id, so callers who pass ``config={"run_id": ...}`` know their trace id in advance.
"""

from __future__ import annotations

import os
import re
import uuid

from pydantic import BaseModel, field_validator

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def new_trace_id() -> str:
    return os.urandom(16).hex()


def new_span_id() -> str:
    return os.urandom(8).hex()


def trace_id_from_run(run_id: uuid.UUID) -> str:
    return run_id.hex


def span_id_from_run(run_id: uuid.UUID) -> str:
    return run_id.hex[16:]


class TraceContext(BaseModel):
    """Where an event sits in a trace tree."""

    trace_id: str
    span_id: str
    parent_span_id: str | None = None

    @field_validator("trace_id")
    @classmethod
    def _check_trace_id(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{32}", value) or value == _ZERO_TRACE:
            raise ValueError(f"trace_id must be 32 lowercase hex characters, not all zero; got {value!r}")
        return value

    @field_validator("span_id", "parent_span_id")
    @classmethod
    def _check_span_id(cls, value: str | None) -> str | None:
        if value is not None and (not re.fullmatch(r"[0-9a-f]{16}", value) or value == _ZERO_SPAN):
            raise ValueError(f"span ids must be 16 lowercase hex characters, not all zero; got {value!r}")
        return value

    def traceparent(self, sampled: bool = True) -> str:
        """This span as a W3C ``traceparent`` header value, for propagating to other services."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if sampled else '00'}"


def parse_traceparent(header: str | None) -> TraceContext | None:
    """Parse an incoming W3C ``traceparent``; an invalid header is ignored (returns None), as the spec asks."""
    if not header:
        return None
    match = _TRACEPARENT.match(header.strip().lower())
    if not match:
        return None
    version, trace_id, span_id, _flags = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return TraceContext(trace_id=trace_id, span_id=span_id)
