"""What ``langgraph.json`` names: the graphs the LangGraph server serves, and its checkpointer.

Graphs are compiled without a checkpointer (the server brings its own). The checkpointer factory
gives the server graphtune's database (PostgreSQL in production), so a run parked at approval
survives a server restart. Nothing runs at import: the server calls these factories.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from langgraph.checkpoint.base import BaseCheckpointSaver

from graphtune.backends.configs import database_url_from_env


def controller():
    """The controller, recording its own runs into the trace store the environment names."""
    from graphtune.backends.traces import traces_url_from_env
    from graphtune.graphs.controller import create_controller
    from graphtune.tracing.recorder import recorder_for

    return create_controller(None, recorder=recorder_for(traces_url_from_env(), capture_state=False))


@asynccontextmanager
async def checkpointer() -> AsyncIterator[BaseCheckpointSaver]:
    """``checkpointer.path`` in langgraph.json: the checkpoints live in ``GRAPHTUNE_DATABASE_URL``
    (``AsyncPostgresSaver`` for PostgreSQL, SQLite otherwise), beside traces and configs."""
    from graphtune.backends.checkpoints import open_checkpointer

    async with open_checkpointer(database_url_from_env()) as saver:
        yield saver
