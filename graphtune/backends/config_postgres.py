"""PostgreSQL config store: the traces' database, its own tables, writers serialized per workflow by a row lock.

Every write transaction first locks the workflow's row in ``graphtune_config_state`` (created on
first use), so version assignment and compare-and-set read a state no other writer can change
before commit. Configs are ``json`` (the author's key order kept); the split and log details ``jsonb``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import ConnectionPool

from graphtune.backends.config_store import Execute, SqlConfigStore
from graphtune.backends.postgres import libpq_url, migrate

_MIGRATIONS = {
    1: [
        """CREATE TABLE IF NOT EXISTS graphtune_config_versions (
            workflow text NOT NULL, version integer NOT NULL, hash text NOT NULL, config json NOT NULL,
            created_at double precision NOT NULL, created_by text NOT NULL, source text NOT NULL, note text NOT NULL,
            PRIMARY KEY (workflow, version), UNIQUE (workflow, hash))""",
        """CREATE TABLE IF NOT EXISTS graphtune_config_state (
            workflow text PRIMARY KEY, active_version integer, split_weights jsonb,
            split_revision integer NOT NULL, split_updated_at double precision)""",
        """CREATE TABLE IF NOT EXISTS graphtune_config_log (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, workflow text NOT NULL, at double precision NOT NULL,
            actor text NOT NULL, action text NOT NULL, version integer, from_version integer, reason text NOT NULL,
            evidence text NOT NULL, details jsonb NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS graphtune_config_log_workflow ON graphtune_config_log (workflow, id)",
    ],
    2: [  # one tuning run per workflow
        "ALTER TABLE graphtune_config_state ADD COLUMN IF NOT EXISTS tuning_thread text, "
        "ADD COLUMN IF NOT EXISTS tuning_actor text, ADD COLUMN IF NOT EXISTS tuning_since double precision",
    ],
}


class PostgresConfigStore(SqlConfigStore):
    """Thread-safe: every call borrows its own connection from a small pool."""

    _lock_row = " FOR UPDATE"

    def __init__(self, url: str, *, pool_size: int = 4):
        self.url = url
        conninfo = libpq_url(url)
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=15) as conn:
            migrate(conn, "configs", _MIGRATIONS)
        self._pool = ConnectionPool(
            conninfo, min_size=1, max_size=pool_size, kwargs={"autocommit": True},
            check=ConnectionPool.check_connection, open=True, name="graphtune-configs",
        )

    @contextmanager
    def _read(self) -> Iterator[Execute]:
        with self._pool.connection() as conn:
            yield _runner(conn)

    @contextmanager
    def _write(self) -> Iterator[Execute]:
        with self._pool.connection() as conn, conn.transaction():
            yield _runner(conn)

    def close(self) -> None:
        self._pool.close()


def _runner(conn: psycopg.Connection) -> Execute:
    """The shared SQL's ``?`` placeholders as psycopg's ``%s`` (the statements hold no other ``?`` or ``%``)."""
    return lambda sql, params=(): conn.execute(sql.replace("?", "%s"), params)
