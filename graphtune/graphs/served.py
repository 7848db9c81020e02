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

from graphtune.backends.configs import UnknownVersionError, database_url_from_env
from graphtune.graphs.versions import VersionedGraphs

_graphs: dict[str, VersionedGraphs] = {}  # per database URL: one compiled graph per config version


def controller():
    """The controller, recording its own runs into the trace store the environment names."""
    from graphtune.backends.traces import traces_url_from_env
    from graphtune.graphs.controller import create_controller
    from graphtune.tracing.recorder import recorder_for

    return create_controller(None, recorder=recorder_for(traces_url_from_env(), capture_state=False))


async def support_qa(config: RunnableConfig, runtime: ServerRuntime) -> Any:
    """support_qa at the config version the run's context names (``{"config_version": 3}``), else the
    active one. Each version is compiled once and cached; its runs are recorded as production traffic."""
    url = database_url_from_env()
    graphs = _graphs.get(url) or _graphs.setdefault(url, VersionedGraphs(url))
    try:
        _, graph = await asyncio.to_thread(graphs.get, "support_qa", requested_version(config, runtime))
    except UnknownVersionError as error:  # the server shows a ValueError's message to the caller
        raise ValueError(f"context.config_version: {error}") from None
    return graph


def requested_version(config: RunnableConfig, runtime: ServerRuntime) -> int | None:
    """``config_version`` from the run's context (or, for state reads, which carry no context, the
    configurable); None means the active version. A value that is not a version number is an error."""
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
