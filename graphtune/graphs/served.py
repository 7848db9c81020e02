"""What ``langgraph.json`` names: the graphs the LangGraph server serves, and its checkpointer.

Graphs are compiled without a checkpointer (the server brings its own). The checkpointer factory
gives the server graphtune's database (PostgreSQL in production), so a run parked at approval
survives a server restart. Nothing runs at import: the server calls these factories.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph_sdk.runtime import ServerRuntime

from graphtune.backends.config_store import UnknownVersionError, database_url_from_env
from graphtune.graphs.versions import VersionedGraphs

_graphs: dict[str, VersionedGraphs] = {}  # per database URL: one compiled graph per config version


def controller():
    """The controller, recording its own runs into the trace store the environment names. Marks the
    process as served under the environment's auth policy, so the nodes that write require an
    authenticated caller when tokens are on, even in a worker process that never loaded auth.py."""
    from graphtune.backends.traces import traces_url_from_env
    from graphtune.graphs.access import load_policy, serve_with
    from graphtune.graphs.controller import create_controller
    from graphtune.tracing.recorder import recorder_for

    serve_with(load_policy())

    return create_controller(None, recorder=recorder_for(traces_url_from_env(), capture_state=False))


async def support_qa(config: RunnableConfig, runtime: ServerRuntime) -> Any:
    """support_qa for one server run. A run whose context names a version (``{"config_version": 3}``)
    gets that version; any other run is routed by the workflow's traffic split, by its unit key (the
    context's ``user_id`` / ``session_id``, the metadata's, else the thread id), so a user keeps one
    version through a live experiment (``graphtune.serving.factory``); with no split that is the
    active version. Calls that do not execute the graph (schemas, state reads) get the active version.
    Each version is compiled once and cached; its runs are recorded as production traffic."""
    url = database_url_from_env()
    graphs = _graphs.get(url) or _graphs.setdefault(url, VersionedGraphs(url))
    version = requested_version(config, runtime)
    execution = runtime.execution_runtime
    if version is None and execution is not None:
        from graphtune.serving.factory import routed_graph

        return await routed_graph(graphs, "support_qa", url, config, execution.context)
    try:
        _, graph = await asyncio.to_thread(graphs.get, "support_qa", version)
    except UnknownVersionError as error:  # the server shows a ValueError's message to the caller
        raise ValueError(f"context.config_version: {error}") from None
    return graph


def requested_version(config: RunnableConfig, runtime: ServerRuntime) -> int | None:
    """``config_version`` from the run's context (or, for state reads, which carry no context, the
    configurable); None means "not named": the run is routed (or, outside a run, gets the active
    version). A value that is not a version number is an error."""
    execution = runtime.execution_runtime
    context = execution.context if execution is not None else None
    source = context if isinstance(context, dict) else (config.get("configurable") or {})
    value = source.get("config_version")
    if value is None:
        return None
    if isinstance(value, bool) or not str(value).isdigit():
        raise ValueError(f"context.config_version: expected a config version number (1, 2, ...), got {value!r}")
    return int(value)


@asynccontextmanager
async def checkpointer() -> AsyncIterator[BaseCheckpointSaver]:
    """``checkpointer.path`` in langgraph.json: the checkpoints live in ``GRAPHTUNE_DATABASE_URL``
    (``AsyncPostgresSaver`` for PostgreSQL, SQLite otherwise), beside traces and configs."""
    from graphtune.backends.checkpoints import open_checkpointer

    async with open_checkpointer(database_url_from_env()) as saver:
        yield saver
