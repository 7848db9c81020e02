"""Checkpointers for the controller when graphtune runs it (CLI, demo) and for the graphs the LangGraph
server serves (``langgraph.json``'s ``checkpointer.path``): SQLite by default, Postgres by URL.

The same URL that holds traces and configs holds the checkpoints (``GRAPHTUNE_DATABASE_URL``), so a
thread parked at approval survives the process that started it.

Checkpoints hold a run's raw state (a user's question, an e-mail address, a card number), so they
are private at rest:

- every serialized value is encrypted with LangGraph's ``EncryptedSerializer`` (AES-EAX, key from
  ``LANGGRAPH_AES_KEY``; without it, a key generated once into ``GRAPHTUNE_CHECKPOINT_KEY_FILE``,
  default ``.graphtune/checkpoint.key``, mode 0600). The Postgres saver keeps strings and numbers of
  the state inline in its ``checkpoints`` JSON, outside the serializer; here they go through it too;
- the metadata LangGraph copies from a run's config into each checkpoint (stored as plain JSON) is
  redacted, and user ids in it are stored as the trace store's salted hash, which is how
  ``graphtune forget-user`` finds a user's threads;
- a thread id that carries personal data is stored under ``hashed-`` and its salted hash, as in the
  trace store.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

from graphtune.backends.config_store import database_url_from_env
from graphtune.backends.traces import path_from_url, scheme_of
from graphtune.extras import needs_extra

log = logging.getLogger("graphtune.checkpoints")

KEY_ENV = "LANGGRAPH_AES_KEY"
KEY_FILE_ENV = "GRAPHTUNE_CHECKPOINT_KEY_FILE"
_STRUCTURAL = frozenset({"thread_id", "checkpoint_ns", "checkpoint_id", "checkpoint_map"})


def checkpoint_key() -> bytes:
    """The AES key: ``LANGGRAPH_AES_KEY`` (16, 24 or 32 characters), else the key file (created once)."""
    value = os.environ.get(KEY_ENV)
    if value:
        key = value.encode()
        if len(key) not in (16, 24, 32):
            raise ValueError(f"{KEY_ENV} must be 16, 24 or 32 bytes long (AES-128/192/256); got {len(key)}")
        return key
    path = Path(os.environ.get(KEY_FILE_ENV) or os.path.join(".graphtune", "checkpoint.key"))
    try:
        return _read_key(path)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return _read_key(path)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(16))
        log.warning("graphtune: no %s set; checkpoints are encrypted with a key generated into %s "
                    "(share one key, e.g. through %s, between processes that read the same checkpoints)",
                    KEY_ENV, path, KEY_ENV)
        return _read_key(path)


def _read_key(path: Path) -> bytes:
    key = path.read_text().strip().encode()
    if len(key) not in (16, 24, 32):
        raise ValueError(f"{path}: a checkpoint key must be 16, 24 or 32 characters; got {len(key)}")
    return key


class _Inline:
    """A state value the Postgres saver would keep inline in plain JSON: boxed so it goes to the
    (encrypted) blobs instead. The serializer unboxes it, so it loads back as the plain value."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


class PrivateSerializer(SerializerProtocol):
    """``EncryptedSerializer`` that also takes boxed inline values."""

    def __init__(self, key: bytes):
        self.encrypted = EncryptedSerializer.from_pycryptodome_aes(key=key)

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        return self.encrypted.dumps_typed(obj.value if type(obj) is _Inline else obj)

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        return self.encrypted.loads_typed(data)


def private_config(config: dict, hash_user: Any, redact: Any) -> dict:
    """``config`` with the values LangGraph copies into checkpoint metadata made safe: user ids
    hashed, every other string redacted. Keys the saver itself needs stay."""
    from graphtune.tracing.events import USER_ID_KEYS

    def clean(values: dict | None) -> dict | None:
        if not values:
            return values
        out = {}
        for key, value in values.items():
            if isinstance(value, str) and key not in _STRUCTURAL and not key.startswith("__"):
                value = hash_user(value) if key in USER_ID_KEYS else redact(value)
            out[key] = value
        return out

    return {**config, "metadata": clean(config.get("metadata")), "configurable": clean(config.get("configurable"))}


class _Private:
    """Mixin for a saver: redacted metadata, hashed user ids, and a thread id that carries personal
    data (``thread-jane@example.com-1``) stored under ``hashed-<salted hash>``, the key the trace
    store uses for it too. The mapping is idempotent, so configs the saver hands back work as given."""

    hash_user: Any
    redact: Any

    def _thread(self, thread_id: Any) -> Any:
        if not isinstance(thread_id, str) or self.redact(thread_id) == thread_id:
            return thread_id
        return f"hashed-{self.hash_user(thread_id)}"

    def _mapped(self, config: Any) -> Any:
        configurable = (config or {}).get("configurable") or {}
        if "thread_id" not in configurable:
            return config
        return {**config, "configurable": {**configurable, "thread_id": self._thread(configurable["thread_id"])}}

    async def aget_tuple(self, config):
        return await super().aget_tuple(self._mapped(config))

    async def alist(self, config, **kwargs):
        async for item in super().alist(self._mapped(config), **kwargs):
            yield item

    async def aput(self, config, checkpoint, metadata, new_versions):
        config = private_config(self._mapped(config), self.hash_user, self.redact)
        return await super().aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config, writes, task_id, task_path=""):
        return await super().aput_writes(self._mapped(config), writes, task_id, task_path)

    async def adelete_thread(self, thread_id):
        return await super().adelete_thread(self._thread(thread_id))


async def _privacy(url: str) -> tuple[Any, Any]:
    """(hash_user, redact) with the salt of the trace store beside the checkpoints (``url``, unless
    ``GRAPHTUNE_TRACES_URL`` moves the traces), as the recorder hashes user ids."""
    from graphtune.backends.traces import open_trace_store
    from graphtune.tracing.privacy import hash_user_id, resolve_salt
    from graphtune.tracing.redaction import default_redact

    def salt() -> str:
        with open_trace_store(os.environ.get("GRAPHTUNE_TRACES_URL") or url) as store:
            return resolve_salt(store)

    value = await asyncio.to_thread(salt)
    return (lambda user: hash_user_id(user, value)), default_redact


@asynccontextmanager
async def open_checkpointer(url: str | None = None) -> AsyncIterator[BaseCheckpointSaver]:
    """An async checkpointer for ``url`` (``sqlite:///file.db`` or ``postgresql://...``), schema set
    up, private at rest (see the module docstring)."""
    url = url or database_url_from_env()
    scheme = scheme_of(url)
    if scheme not in ("sqlite", "postgresql", "postgres"):
        raise ValueError(f"checkpoints need a sqlite:/// or postgresql:// URL, got {url!r}")
    path = path_from_url(url, "sqlite") if scheme == "sqlite" else None  # a bad URL fails before any key is made
    serde = PrivateSerializer(await asyncio.to_thread(checkpoint_key))
    hash_user, redact = await _privacy(url)
    if scheme == "sqlite":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        class PrivateSqliteSaver(_Private, AsyncSqliteSaver):
            pass

        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        import aiosqlite

        # graphtune's own SQLite writers wait 30 s for the file's lock; the checkpointer waits as long
        # (aiosqlite's default is 5 s), so a busy moment under load is a wait, not a failed run
        async with aiosqlite.connect(path, timeout=30) as conn:
            saver = PrivateSqliteSaver(conn, serde=serde)
            saver.hash_user, saver.redact = hash_user, redact
            await saver.setup()
            yield saver
    else:
        async with _postgres_checkpointer(url, serde) as saver:
            saver.hash_user, saver.redact = hash_user, redact
            yield saver


_WAITING_SQL = """SELECT c.thread_id FROM (
    SELECT thread_id, max(checkpoint_id) AS last FROM checkpoints WHERE checkpoint_ns = '' GROUP BY thread_id) c
WHERE EXISTS (SELECT 1 FROM {writes} w WHERE w.thread_id = c.thread_id AND w.checkpoint_ns = ''
              AND w.checkpoint_id = c.last AND w.channel = '__interrupt__')
ORDER BY c.last DESC"""


async def waiting_thread_ids(saver: BaseCheckpointSaver) -> list[str]:
    """Threads whose latest checkpoint holds an interrupt (a run parked at approval or in a live
    experiment), newest first. Read from the savers' own tables without decrypting any checkpoint:
    listing every checkpoint to find them costs seconds once a few threads have run."""
    if hasattr(saver, "_cursor"):  # AsyncPostgresSaver
        async with saver._cursor() as cursor:
            await cursor.execute(_WAITING_SQL.format(writes="checkpoint_writes"))
            return [row["thread_id"] for row in await cursor.fetchall()]
    async with saver.lock, saver.conn.execute(_WAITING_SQL.format(writes="writes")) as cursor:
        return [row[0] for row in await cursor.fetchall()]


@asynccontextmanager
async def _postgres_checkpointer(url: str, serde) -> AsyncIterator[BaseCheckpointSaver]:
    """The private ``AsyncPostgresSaver`` over a connection pool that checks each connection before lending it.

    ``from_conn_string`` holds one connection for the saver's life: after a database restart every
    checkpoint read and write fails ("the connection is closed") until the process restarts. The
    pool's check drops a dead connection and connects anew, so a long-lived server outlives
    database restarts. The schema is set up first on a connection of its own, so a database that
    cannot be reached fails here with libpq's reason instead of a pool timeout.
    """
    with needs_extra("postgres", "PostgreSQL checkpoints"):
        from psycopg import AsyncConnection
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        from graphtune.backends.postgres import libpq_url

    saver_class = _postgres_saver_class()
    conninfo = libpq_url(url)
    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}  # what from_conn_string sets
    async with await AsyncConnection.connect(conninfo, connect_timeout=15, **kwargs) as conn:
        await saver_class(conn, serde=serde).setup()
    pool = AsyncConnectionPool(
        conninfo, min_size=1, max_size=4, kwargs=kwargs, check=AsyncConnectionPool.check_connection,
        open=False, name="graphtune-checkpoints",
    )
    async with pool:
        yield saver_class(pool, serde=serde)


def _postgres_saver_class():
    """AsyncPostgresSaver that sends the state's strings and numbers through the serializer too
    (imported on use: the ``postgres`` extra is only needed for PostgreSQL URLs)."""
    with needs_extra("postgres", "PostgreSQL checkpoints"):
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    class PrivatePostgresSaver(_Private, AsyncPostgresSaver):
        async def aput(self, config, checkpoint, metadata, new_versions):
            values = {k: _Inline(v) if isinstance(v, (str, int, float)) and not isinstance(v, bool) else v
                      for k, v in checkpoint["channel_values"].items()}
            return await super().aput(config, {**checkpoint, "channel_values": values}, metadata, new_versions)

    return PrivatePostgresSaver


async def forget_threads_of(user_hash: str, url: str | None = None) -> list[str]:
    """Delete every checkpointed thread whose checkpoints name ``user_hash`` as their user; returns
    the thread ids deleted."""
    from graphtune.tracing.events import USER_ID_KEYS

    async with open_checkpointer(url) as saver:
        threads: list[str] = []
        for key in USER_ID_KEYS:
            async for item in saver.alist(None, filter={key: user_hash}):
                thread = item.config["configurable"]["thread_id"]
                if thread not in threads:
                    threads.append(thread)
        for thread in threads:
            await saver.adelete_thread(thread)
    return threads
