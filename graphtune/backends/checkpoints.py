"""Checkpointers for the controller when graphtune runs it (CLI, demo): SQLite by default, Postgres by URL.

Graphs served by ``langgraph dev`` / the LangGraph server get the server's checkpointer instead;
they are exported without one. The same URL that holds traces and configs holds the checkpoints
(``GRAPHTUNE_DATABASE_URL``), so a thread parked at approval survives the process that started it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver

from graphtune.backends.configs import database_url_from_env
from graphtune.backends.traces import path_from_url, scheme_of


@asynccontextmanager
async def open_checkpointer(url: str | None = None) -> AsyncIterator[BaseCheckpointSaver]:
    """An async checkpointer for ``url`` (``sqlite:///file.db`` or ``postgresql://...``), schema set up."""
    url = url or database_url_from_env()
    scheme = scheme_of(url)
    if scheme == "sqlite":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        path = path_from_url(url, "sqlite")
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        import aiosqlite

        # graphtune's own SQLite writers wait 30 s for the file's lock; the checkpointer waits as long
        # (aiosqlite's default is 5 s), so a busy moment under load is a wait, not a failed run
        async with aiosqlite.connect(path, timeout=30) as conn:
            saver = AsyncSqliteSaver(conn)
            await saver.setup()
            yield saver
    elif scheme in ("postgresql", "postgres"):
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        async with AsyncPostgresSaver.from_conn_string(url) as saver:
            await saver.setup()
            yield saver
    else:
        raise ValueError(f"checkpoints need a sqlite:/// or postgresql:// URL, got {url!r}")
