"""``TrajectoryRecorder``: a LangChain callback handler that records every graph run and node.

The callbacks run inside the workflow, so each one only takes a timestamp, a shallow copy of the
inputs (what the node saw, even if the state is mutated later) and appends a tuple to the
pipeline's bounded queue. Building events, serialization and redaction happen on the writer thread.
"""

from __future__ import annotations

import time
import threading
import uuid
from collections.abc import Callable
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler

from graphtune.backends.otlp_exporter import SpanExporter
from graphtune.backends.traces import TraceStore
from graphtune.tracing import assembler as raw
from graphtune.tracing.context import new_span_id, parse_traceparent, span_id_from_run
from graphtune.tracing.events import (
    DEFAULT_SOURCE,
    TAG_CONFIG_VERSION,
    TAG_SOURCE,
    TAG_VARIANT,
    TAG_WORKFLOW,
    TRACEPARENT_KEY,
    EventKind,
    TrajectoryEvent,
)
from graphtune.tracing.pipeline import DEFAULT_MAX_QUEUE, FROM_ENV, EventPipeline
from graphtune.tracing.redaction import ContentMode, default_redact

_now = time.time


def _snapshot(value: Any) -> Any:
    return value.copy() if type(value) is dict else value


class TrajectoryRecorder(BaseCallbackHandler):
    """Records runs, nodes, LLM usage, tool calls and custom events into a trace store.

    Attach with ``graph.invoke(x, config={"callbacks": [recorder]})`` or ``graphtune.trace(graph)``.
    """

    run_inline = True  # called in the workflow's own thread/loop, never via an executor
    raise_error = False
    ignore_retriever = True
    # ignore_agent stays False: LangChain gates the tool callbacks (on_tool_start/end/error) on it.

    def __init__(
        self,
        store: TraceStore | str | None = None,
        *,
        sample_rate: float | None = None,
        redact: Callable[[str], str] | None = default_redact,
        content_mode: ContentMode = "full",
        capture_state: bool = True,
        max_queue: int = DEFAULT_MAX_QUEUE,
        flush_interval: float = 0.2,
        spill_dir: str | None = None,
        pipeline: EventPipeline | None = None,
        exporter: SpanExporter | None = FROM_ENV,
    ):
        self.pipeline = pipeline or EventPipeline(
            store, sample_rate=sample_rate, redact=redact, content_mode=content_mode, capture_state=capture_state,
            max_queue=max_queue, flush_interval=flush_interval, spill_dir=spill_dir, exporter=exporter,
        )
        self._queue = self.pipeline.queue
        self._max = self.pipeline.max_queue
        self._submit = self.pipeline.submit
        self._traces: dict[uuid.UUID, str] = {}

    # -- the hot path ---------------------------------------------------------------------
    def _trace_of(self, run_id: uuid.UUID, parent_run_id: uuid.UUID | None, metadata: dict | None) -> str:
        traces = self._traces
        trace = traces.get(parent_run_id) if parent_run_id is not None else None
        if trace is None:
            incoming = parse_traceparent(metadata.get(TRACEPARENT_KEY)) if metadata and TRACEPARENT_KEY in metadata else None
            trace = incoming.trace_id if incoming else run_id.hex
        traces[run_id] = trace
        return trace

    def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, tags=None, metadata=None, **kwargs):
        trace = self._trace_of(run_id, parent_run_id, metadata)
        self._submit((raw.CHAIN_START, run_id, parent_run_id, trace, kwargs.get("name"), _now(), metadata, _snapshot(inputs)))

    def on_chain_end(self, outputs, *, run_id, parent_run_id=None, **kwargs):
        self._traces.pop(run_id, None)
        self._submit((raw.CHAIN_END, run_id, None, None, None, _now(), None, _snapshot(outputs)))

    def on_chain_error(self, error, *, run_id, parent_run_id=None, **kwargs):
        self._traces.pop(run_id, None)
        self._submit((raw.CHAIN_ERROR, run_id, None, None, None, _now(), None, error))

    def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None, tags=None, metadata=None, **kwargs):
        trace = self._trace_of(run_id, parent_run_id, metadata)
        self._submit((raw.LLM_START, run_id, parent_run_id, trace, kwargs.get("name"), _now(), metadata, None))

    def on_llm_start(self, serialized, prompts, *, run_id, parent_run_id=None, tags=None, metadata=None, **kwargs):
        trace = self._trace_of(run_id, parent_run_id, metadata)
        self._submit((raw.LLM_START, run_id, parent_run_id, trace, kwargs.get("name"), _now(), metadata, None))

    def on_llm_end(self, response, *, run_id, parent_run_id=None, **kwargs):
        self._traces.pop(run_id, None)
        self._submit((raw.LLM_END, run_id, None, None, None, _now(), None, response))

    def on_llm_error(self, error, *, run_id, parent_run_id=None, **kwargs):
        self._traces.pop(run_id, None)
        self._submit((raw.LLM_ERROR, run_id, None, None, None, _now(), None, error))

    def on_tool_start(self, serialized, input_str, *, run_id, parent_run_id=None, tags=None, metadata=None, inputs=None, **kwargs):
        trace = self._trace_of(run_id, parent_run_id, metadata)
        name = kwargs.get("name") or (serialized or {}).get("name") or "tool"
        payload = (_snapshot(inputs) if inputs is not None else input_str, kwargs.get("tool_call_id"))
        self._submit((raw.TOOL_START, run_id, parent_run_id, trace, name, _now(), metadata, payload))

    def on_tool_end(self, output, *, run_id, parent_run_id=None, **kwargs):
        self._traces.pop(run_id, None)
        self._submit((raw.TOOL_END, run_id, None, None, None, _now(), None, output))

    def on_tool_error(self, error, *, run_id, parent_run_id=None, **kwargs):
        self._traces.pop(run_id, None)
        self._submit((raw.TOOL_ERROR, run_id, None, None, None, _now(), None, error))

    def on_custom_event(self, name, data, *, run_id, tags=None, metadata=None, **kwargs):
        self._submit((raw.CUSTOM, run_id, None, self._traces.get(run_id), name, _now(), metadata, _snapshot(data)))

    # -- API for nodes, hooks and applications ---------------------------------------------
    def trace_id_of(self, run_id: uuid.UUID | None) -> str | None:
        """The trace id of a run that is still open (e.g. the node a TrajectoryNode runs in)."""
        return self._traces.get(run_id) if run_id is not None else None

    def record(self, event: TrajectoryEvent, user_id: Any = None) -> None:
        """Queue a finished event (from TrajectoryNode, an agent hook or the application)."""
        self.pipeline.submit_event(event, user_id)

    def feedback(
        self,
        trace_id: str,
        score: float | None = None,
        *,
        thumbs_up: bool | None = None,
        comment: str | None = None,
        name: str = "user_feedback",
        workflow: str | None = None,
        user_id: Any = None,
        source: str = DEFAULT_SOURCE,
    ) -> None:
        """Attach user feedback to a trace: ``thumbs_up=True/False`` or a ``score`` in [0, 1]."""
        if (score is None) == (thumbs_up is None):
            raise ValueError("feedback needs exactly one of score (0..1) or thumbs_up (True/False)")
        if thumbs_up is not None:
            score = 1.0 if thumbs_up else 0.0
        if not 0.0 <= float(score) <= 1.0:
            raise ValueError(f"feedback score must be within [0, 1], got {score}")
        attributes = {"comment": comment} if comment else {}
        self.record(
            TrajectoryEvent(
                kind=EventKind.FEEDBACK, time=_now(), trace_id=trace_id, span_id=new_span_id(), name=name,
                workflow=workflow, source=source, score=float(score), attributes=attributes,
            ),
            user_id,
        )

    def flush(self, timeout: float | None = 30.0) -> bool:
        return self.pipeline.flush(timeout)

    def close(self) -> None:
        self.pipeline.close()

    def stats(self) -> dict[str, int]:
        return self.pipeline.stats()


def node_span_id(run_id: uuid.UUID) -> str:
    return span_id_from_run(run_id)


def run_tags(
    workflow: str | None = None,
    *,
    config_version: int | None = None,
    variant: str | None = None,
    source: str | None = None,
    user_id: Any = None,
) -> dict[str, Any]:
    """The ``config["metadata"]`` entries that tag a run (DESIGN.md run tags)."""
    from graphtune.tracing.events import TAG_USER_ID

    tags = {
        TAG_WORKFLOW: workflow, TAG_CONFIG_VERSION: config_version, TAG_VARIANT: variant,
        TAG_SOURCE: source, TAG_USER_ID: user_id,
    }
    return {k: v for k, v in tags.items() if v is not None}


def trace(graph, *, workflow: str | None = None, recorder: TrajectoryRecorder | None = None, **tags: Any):
    """Trace an existing compiled graph in one line: ``graph = graphtune.trace(graph, workflow="support_qa")``.

    Returns the same graph with the recorder attached to every invocation, plus the run tags.
    ``recorder`` defaults to the process-wide one from ``GRAPHTUNE_TRACES_URL`` / ``GRAPHTUNE_DATABASE_URL``.
    """
    recorder = recorder or default_recorder()
    metadata = run_tags(workflow or getattr(graph, "name", None), **tags)
    return graph.with_config(callbacks=[recorder], metadata=metadata)


_by_url: dict[tuple[str, bool], TrajectoryRecorder] = {}
_by_url_lock = threading.Lock()


def recorder_for(url: str | None = None, *, capture_state: bool = True) -> TrajectoryRecorder:
    """One recorder per process, trace store URL (default: the one the environment names) and state capture.

    graphtune's own bulk runs (evals, the controller) record without node state: eval answers and
    scores live in the eval cache, the controller's messages are recorded by its TrajectoryNode,
    and copying large states per node would cost more CPU than the runs themselves.
    """
    from graphtune.backends.traces import traces_url_from_env

    key = (url or traces_url_from_env(), capture_state)
    with _by_url_lock:
        recorder = _by_url.get(key)
        if recorder is None or recorder.pipeline._closed:
            recorder = _by_url[key] = TrajectoryRecorder(key[0], capture_state=capture_state)
        return recorder


def default_recorder() -> TrajectoryRecorder:
    """The process's recorder for the store the environment names (read at each call)."""
    return recorder_for(None)


def find_recorder(config: dict | None) -> tuple[TrajectoryRecorder | None, uuid.UUID | None]:
    """The TrajectoryRecorder among a node's callbacks, and the node's own run id."""
    callbacks = (config or {}).get("callbacks")
    handlers = getattr(callbacks, "handlers", None) or (callbacks if isinstance(callbacks, list) else [])
    for handler in handlers:
        if isinstance(handler, TrajectoryRecorder):
            return handler, getattr(callbacks, "parent_run_id", None)
    return None, getattr(callbacks, "parent_run_id", None)
