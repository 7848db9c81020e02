"""SQLite config store: the traces' database file, its own tables, writers serialized by ``BEGIN IMMEDIATE``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from graphtune.backends.config_store import Execute, SqlConfigStore
from graphtune.backends.sqlite import connect_sqlite, migrate
from graphtune.backends.traces import path_from_url

_MIGRATIONS = {
    1: [
        """CREATE TABLE IF NOT EXISTS graphtune_config_versions (
            workflow TEXT NOT NULL, version INTEGER NOT NULL, hash TEXT NOT NULL, config TEXT NOT NULL,
            created_at REAL NOT NULL, created_by TEXT NOT NULL, source TEXT NOT NULL, note TEXT NOT NULL,
            PRIMARY KEY (workflow, version), UNIQUE (workflow, hash))""",
        """CREATE TABLE IF NOT EXISTS graphtune_config_state (
            workflow TEXT PRIMARY KEY, active_version INTEGER, split_weights TEXT,
            split_revision INTEGER NOT NULL, split_updated_at REAL)""",
        """CREATE TABLE IF NOT EXISTS graphtune_config_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT, workflow TEXT NOT NULL, at REAL NOT NULL, actor TEXT NOT NULL,
            action TEXT NOT NULL, version INTEGER, from_version INTEGER, reason TEXT NOT NULL, evidence TEXT NOT NULL,
            details TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS graphtune_config_log_workflow ON graphtune_config_log (workflow, id)",
    ],
    2: [  # one tuning run per workflow
        "ALTER TABLE graphtune_config_state ADD COLUMN tuning_thread TEXT",
        "ALTER TABLE graphtune_config_state ADD COLUMN tuning_actor TEXT",
        "ALTER TABLE graphtune_config_state ADD COLUMN tuning_since REAL",
    ],
}


class SqliteConfigStore(SqlConfigStore):
    """One connection per store, shared by threads under a lock; other processes wait on SQLite's write lock."""

    def __init__(self, url: str):
        self.url = url
        self.path = path_from_url(url, "sqlite")
        self._conn = connect_sqlite(self.path)
        self._lock = threading.Lock()
        migrate(self._conn, "configs", _MIGRATIONS)

    @contextmanager
    def _read(self) -> Iterator[Execute]:
        with self._lock:
            yield self._conn.execute

    @contextmanager
    def _write(self) -> Iterator[Execute]:
        """``BEGIN IMMEDIATE`` takes the file's write lock before the first read, so a compare-and-set
        cannot interleave with another process's (a deferred transaction would read, then fail to upgrade)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn.execute
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
