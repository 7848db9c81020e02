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
from graphtune.backends.traces import path_from_url


@asynccontextmanager
async def open_checkpointer(url: str | None = None) -> AsyncIterator[BaseCheckpointSaver]:
    """An async checkpointer for ``url`` (``sqlite:///file.db`` or ``postgresql://...``), schema set up."""
    url = url or database_url_from_env()
    if url.startswith("sqlite://"):
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
    elif url.startswith(("postgresql://", "postgres://")):
        async with _postgres_checkpointer(url) as saver:
            yield saver
    else:
        raise ValueError(f"checkpoints need a sqlite:/// or postgresql:// URL, got {url!r}")


@asynccontextmanager
async def _postgres_checkpointer(url: str) -> AsyncIterator[BaseCheckpointSaver]:
    """``AsyncPostgresSaver`` over a connection pool that checks each connection before lending it.

    ``from_conn_string`` holds one connection for the saver's life: after a database restart every
    checkpoint read and write fails ("the connection is closed") until the process restarts. The
    pool's check drops a dead connection and connects anew, so a long-lived server outlives
    database restarts. The schema is set up first on a connection of its own, so a database that
    cannot be reached fails here with libpq's reason instead of a pool timeout.
    """
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg import AsyncConnection
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    from graphtune.backends.postgres import libpq_url

    conninfo = libpq_url(url)
    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}  # what from_conn_string sets
    async with await AsyncConnection.connect(conninfo, connect_timeout=15, **kwargs) as conn:
        await AsyncPostgresSaver(conn).setup()
    pool = AsyncConnectionPool(
        conninfo, min_size=1, max_size=4, kwargs=kwargs, check=AsyncConnectionPool.check_connection,
        open=False, name="graphtune-checkpoints",
    )
    async with pool:
        yield AsyncPostgresSaver(pool)
