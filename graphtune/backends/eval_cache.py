"""The eval result cache: one row per (config hash, dataset hash, evaluator version, example id).

A re-run of the same config on the same dataset, or a run resumed after a crash, skips every example
already scored. It lives in the database ``GRAPHTUNE_DATABASE_URL`` names (SQLite or PostgreSQL).
"""

from __future__ import annotations

import json
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

from graphtune.backends.traces import DEFAULT_DATABASE_URL, UnknownBackendError, path_from_url
from graphtune.extras import needs_extra


@dataclass(frozen=True)
class CacheKey:
    config_hash: str
    dataset_hash: str
    evaluator_version: str


class EvalCache(ABC):
    url: str

    @abstractmethod
    def get_many(self, key: CacheKey, example_ids: Iterable[str]) -> dict[str, dict]:
        """Stored results of those examples (missing ones are absent)."""

    @abstractmethod
    def put(self, key: CacheKey, example_id: str, result: dict) -> None:
        """Store one example's result; storing it again replaces it."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SqliteEvalCache(EvalCache):
    def __init__(self, url: str):
        from graphtune.backends.sqlite import connect_sqlite, migrate

        self.url = url
        self._conn = connect_sqlite(path_from_url(url, "sqlite"))
        self._lock = threading.Lock()
        migrate(self._conn, "eval_cache", {1: [
            """CREATE TABLE IF NOT EXISTS graphtune_eval_results (
                config_hash TEXT NOT NULL, dataset_hash TEXT NOT NULL, evaluator_version TEXT NOT NULL,
                example_id TEXT NOT NULL, result TEXT NOT NULL, created_at REAL NOT NULL,
                PRIMARY KEY (config_hash, dataset_hash, evaluator_version, example_id))""",
        ]})

    def get_many(self, key, example_ids):
        ids = list(example_ids)
        found: dict[str, dict] = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                rows = self._conn.execute(
                    f"SELECT example_id, result FROM graphtune_eval_results WHERE config_hash = ? AND dataset_hash = ? "
                    f"AND evaluator_version = ? AND example_id IN ({','.join('?' * len(chunk))})",
                    (key.config_hash, key.dataset_hash, key.evaluator_version, *chunk),
                ).fetchall()
                found.update((example_id, json.loads(result)) for example_id, result in rows)
        return found

    def put(self, key, example_id, result):
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO graphtune_eval_results VALUES (?, ?, ?, ?, ?, ?)",
                (key.config_hash, key.dataset_hash, key.evaluator_version, example_id, json.dumps(result), time.time()),
            )

    def close(self):
        self._conn.close()


class PostgresEvalCache(EvalCache):
    def __init__(self, url: str):
        with needs_extra("postgres", "a PostgreSQL eval cache"):
            import psycopg

            from graphtune.backends.postgres import libpq_url, migrate

        self.url = url
        self._conn = psycopg.connect(libpq_url(url), autocommit=True, connect_timeout=15)
        self._lock = threading.Lock()
        migrate(self._conn, "eval_cache", {1: [
            """CREATE TABLE IF NOT EXISTS graphtune_eval_results (
                config_hash text NOT NULL, dataset_hash text NOT NULL, evaluator_version text NOT NULL,
                example_id text NOT NULL, result jsonb NOT NULL, created_at double precision NOT NULL,
                PRIMARY KEY (config_hash, dataset_hash, evaluator_version, example_id))""",
        ]})

    def get_many(self, key, example_ids):
        with self._lock:
            rows = self._conn.execute(
                "SELECT example_id, result FROM graphtune_eval_results WHERE config_hash = %s AND dataset_hash = %s "
                "AND evaluator_version = %s AND example_id = ANY(%s)",
                (key.config_hash, key.dataset_hash, key.evaluator_version, list(example_ids)),
            ).fetchall()
        return {example_id: result for example_id, result in rows}

    def put(self, key, example_id, result):
        from psycopg.types.json import Jsonb

        with self._lock:
            self._conn.execute(
                "INSERT INTO graphtune_eval_results VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (config_hash, dataset_hash, evaluator_version, example_id) "
                "DO UPDATE SET result = excluded.result, created_at = excluded.created_at",
                (key.config_hash, key.dataset_hash, key.evaluator_version, example_id, Jsonb(result), time.time()),
            )

    def close(self):
        self._conn.close()


def open_eval_cache(url: str | None = None) -> EvalCache:
    url = url or os.environ.get("GRAPHTUNE_DATABASE_URL") or DEFAULT_DATABASE_URL
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        return SqliteEvalCache(url)
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        return PostgresEvalCache(url)
    raise UnknownBackendError(f"unknown eval cache URL {url!r}: expected sqlite:///FILE or postgresql://...")
