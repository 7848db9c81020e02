"""Opt-in: Langfuse's own LangChain ``CallbackHandler`` beside graphtune's recorder.

graphtune's exporter already sends every run to Langfuse as OTLP spans (one per node, model call
and tool call). Teams that also want Langfuse's native observation types for every LangChain
runnable (chains, retrievers, prompts) can add its handler; it costs about ten times graphtune's
recorder per node (``benchmarks/recording_overhead.py``: ``us_per_node_langfuse``), so it is off
unless asked for. The run tags are translated into the metadata keys the handler reads.

The handler copies LangChain ``config["metadata"]`` to Langfuse as it is, so while it is attached
never put a plain user id in run metadata: pass ``user_hash`` (from ``recorder.pipeline``'s
hashing, as :func:`langfuse_metadata` does) instead.
"""

from __future__ import annotations

from typing import Any

from graphtune.backends.langfuse_settings import langfuse_settings_from_env
from graphtune.extras import needs_extra
from graphtune.tracing.recorder import TrajectoryRecorder, default_recorder, run_tags


def langfuse_handler():
    """Langfuse's ``CallbackHandler`` (from the environment's ``LANGFUSE_*`` keys), or None without keys."""
    if langfuse_settings_from_env() is None:
        return None
    with needs_extra("langfuse", "Langfuse's callback handler"):
        from langfuse.langchain import CallbackHandler

    return CallbackHandler()


def langfuse_metadata(workflow: str, *, user_id: Any = None, recorder: TrajectoryRecorder | None = None,
                      thread_id: str | None = None, variant: str | None = None, environment: str = "default",
                      service: str = "graphtune") -> dict[str, Any]:
    """``config["metadata"]`` entries the Langfuse handler reads, matching graphtune's exported spans.
    ``user_id`` is hashed with the recorder's salt; only the hash is in the result."""
    tags = [f"env:{environment}", f"service:{service}", f"workflow:{workflow}"] + ([f"variant:{variant}"] if variant else [])
    metadata: dict[str, Any] = {"langfuse_trace_name": workflow, "langfuse_tags": tags}
    if thread_id is not None:
        metadata["langfuse_session_id"] = thread_id
    if user_id is not None:
        metadata["langfuse_user_id"] = (recorder or default_recorder()).pipeline._hash_user(user_id)
    return metadata


def with_langfuse_callback(graph, workflow: str, *, recorder: TrajectoryRecorder | None = None,
                           variant: str | None = None, **tags: Any):
    """``graph`` with graphtune's recorder and, when Langfuse keys are set, Langfuse's handler attached."""
    recorder = recorder or default_recorder()
    callbacks: list[Any] = [recorder]
    metadata = run_tags(workflow, variant=variant, **tags)
    handler = langfuse_handler()
    if handler is not None:
        callbacks.append(handler)
        metadata.update(langfuse_metadata(workflow, variant=variant))
    return graph.with_config(callbacks=callbacks, metadata=metadata)
