"""The config store: versioned workflow configs, the active version, traffic splits and a change log.

Each distinct config of a workflow gets an integer version (1, 2, ...) the first time it is stored,
found again by its content hash; stored configs never change. A workflow has at most one active
version and one traffic split. Promotions and split changes are compare-and-set, so two controllers
(or a controller and a person at the CLI) cannot overwrite each other's decision unseen. Every change
is appended to a change log that has no update or delete.

The API is sync (called from threads); async code goes through ``asyncio.to_thread``. Both stores
(SQLite, PostgreSQL) share the SQL below and pass ``tests/backends/test_config_store_contract.py``.
"""

from __future__ import annotations

import json
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from graphtune.backends.traces import DEFAULT_DATABASE_URL, UnknownBackendError
from graphtune.extras import needs_extra
from graphtune.tuning.config_paths import canonical_json, config_hash

ACCEPTED_SCHEMES = ("sqlite:///FILE", "postgresql://...")
Action = Literal["register", "promote", "rollback", "split", "clear_split", "reject", "release"]


class ConfigVersion(BaseModel):
    """One stored config of a workflow. ``config`` is the caller's own copy: changing it changes nothing stored."""

    model_config = ConfigDict(frozen=True)

    workflow: str
    version: int
    hash: str
    config: dict[str, Any]
    created_at: float
    created_by: str
    source: str
    note: str = ""


class TrafficSplit(BaseModel):
    """Share of live traffic per version; ``revision`` grows on every change, for compare-and-set."""

    model_config = ConfigDict(frozen=True)

    workflow: str
    weights: dict[int, float]
    revision: int
    updated_at: float

    @field_validator("weights")
    @classmethod
    def _weights_are_shares(cls, weights: dict[int, float]) -> dict[int, float]:
        if not weights:
            raise ValueError("a traffic split needs at least one version")
        bad = {v: w for v, w in weights.items() if not (math.isfinite(w) and w > 0)}
        if bad:
            raise ValueError(f"weights must be positive numbers; got {bad}")
        total = math.fsum(weights.values())
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"weights must sum to 1; they sum to {total!r}")
        return weights


class ChangeLogEntry(BaseModel):
    """Who changed what, when, why, and on which evidence (a link or an eval run id)."""

    model_config = ConfigDict(frozen=True)

    id: int
    workflow: str
    at: float
    actor: str
    action: Action
    version: int | None
    from_version: int | None
    reason: str = ""
    evidence: str = ""
    details: dict[str, Any] = {}


class TuningClaim(BaseModel):
    """Which tuning run holds a workflow: one at a time, from its first observation to its outcome."""

    workflow: str
    thread_id: str
    actor: str
    since: float


class ConfigStoreError(Exception):
    """Anything the config store refuses."""


class TuningBusyError(ConfigStoreError):
    """Another tuning run holds the workflow."""

    def __init__(self, holder: TuningClaim):
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.since))
        super().__init__(
            f"workflow {holder.workflow!r} is being tuned by thread {holder.thread_id} (started by {holder.actor} "
            f"at {since}); approve or reject that run first (`graphtune pending`), or release it with "
            f"`graphtune unlock {holder.workflow}`"
        )
        self.holder = holder


class ConflictError(ConfigStoreError):
    """A compare-and-set lost: the state changed since the caller read it."""

    def __init__(self, message: str, *, expected: Any, found: Any):
        super().__init__(message)
        self.expected, self.found = expected, found


class UnknownVersionError(ConfigStoreError):
    """A version the workflow does not have."""

    def __init__(self, workflow: str, version: int, known: Sequence[int]):
        listed = f"known versions: {', '.join(map(str, known))}" if known else "it has no stored versions"
        super().__init__(f"workflow {workflow!r} has no config version {version} ({listed})")
        self.workflow, self.version, self.known = workflow, version, list(known)


class ConfigStore(ABC):
    """Versioned configs of workflows. One small protocol, several real implementations."""

    url: str

    @abstractmethod
    def put(self, workflow: str, config: dict, *, actor: str, source: str, note: str = "") -> ConfigVersion:
        """Store ``config``, or return its existing version when an identical one is stored (key order ignored)."""

    @abstractmethod
    def get(self, workflow: str, version: int) -> ConfigVersion:
        """One version; ``UnknownVersionError`` listing the known ones."""

    @abstractmethod
    def find(self, workflow: str, config_hash: str) -> ConfigVersion | None:
        """The version with this content hash, if stored."""

    @abstractmethod
    def versions(self, workflow: str) -> list[ConfigVersion]:
        """Every stored version, oldest first."""

    @abstractmethod
    def workflows(self) -> list[str]:
        """Workflows with at least one stored version, sorted."""

    @abstractmethod
    def active(self, workflow: str) -> ConfigVersion | None:
        """The version applications run, or None before the first promotion."""

    @abstractmethod
    def promote(
        self, workflow: str, version: int, *, expected_active: int | None, actor: str, reason: str,
        evidence: str = "", action: Action = "promote",
    ) -> ConfigVersion:
        """Make ``version`` active if the active version is still ``expected_active`` (None: none yet),
        else ``ConflictError``. Clears the traffic split and logs the change."""

    @abstractmethod
    def split(self, workflow: str) -> TrafficSplit | None:
        """The current traffic split, if any."""

    @abstractmethod
    def set_split(
        self, workflow: str, weights: dict[int, float], *, expected_revision: int | None, actor: str, reason: str,
        evidence: str = "",
    ) -> TrafficSplit:
        """Replace the split if its revision is still ``expected_revision`` (None: no split now)."""

    @abstractmethod
    def clear_split(self, workflow: str, *, expected_revision: int | None, actor: str, reason: str) -> None:
        """Remove the split if its revision is still ``expected_revision``; nothing to do when there is none."""

    @abstractmethod
    def history(self, workflow: str, limit: int = 50) -> list[ChangeLogEntry]:
        """Change-log entries, newest first."""

    @abstractmethod
    def claim_tuning(self, workflow: str, thread_id: str, *, actor: str) -> TuningClaim:
        """Hold the workflow for one tuning run (re-entrant for the same thread), else ``TuningBusyError``."""

    @abstractmethod
    def tuning_claim(self, workflow: str) -> TuningClaim | None:
        """The run holding the workflow, if any."""

    @abstractmethod
    def release_tuning(self, workflow: str, thread_id: str | None, *, actor: str, reason: str = "") -> TuningClaim | None:
        """Let go of the workflow if ``thread_id`` holds it; ``None`` releases whichever run holds it
        (a stale claim) and logs who did. Returns the released claim, or None if there was nothing to release."""

    @abstractmethod
    def record_rejection(self, workflow: str, version: int, *, actor: str, reason: str, evidence: str = "") -> ChangeLogEntry:
        """Log that a person rejected ``version`` (a stored candidate); the active version is unchanged."""

    def ensure_active(self, workflow: str, config: dict, *, actor: str) -> ConfigVersion:
        """The active version; on a workflow's first use, ``config`` (the spec's) stored and made active.

        Two processes starting at once both store the same version (put is idempotent) and one
        promotion wins; the other reads the winner.
        """
        current = self.active(workflow)
        if current is not None:
            return current
        stored = self.put(workflow, config, actor=actor, source="spec")
        try:
            return self.promote(workflow, stored.version, expected_active=None, actor=actor, reason="initial config from the spec")
        except ConflictError:
            return self.active(workflow)

    def rollback(self, workflow: str, version: int, *, actor: str, reason: str, evidence: str = "") -> ConfigVersion:
        """Make an earlier stored version active again, unless someone promoted meanwhile (``ConflictError``)."""
        current = self.active(workflow)
        if current is None:
            raise ConfigStoreError(f"workflow {workflow!r} has no active config version to roll back")
        if current.version == version:
            raise ConfigStoreError(f"workflow {workflow!r}: version {version} is already active")
        return self.promote(
            workflow, version, expected_active=current.version, actor=actor, reason=reason, evidence=evidence, action="rollback"
        )

    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> ConfigStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


Execute = Callable[[str, Sequence], Any]  # runs one statement (``?`` placeholders), returns a cursor

_VERSION_COLUMNS = "workflow, version, hash, CAST(config AS TEXT), created_at, created_by, source, note"
_LOG_COLUMNS = "id, workflow, at, actor, action, version, from_version, reason, evidence, CAST(details AS TEXT)"


class SqlConfigStore(ConfigStore):
    """The semantics both SQL stores share. A backend supplies ``_read`` (a statement runner) and
    ``_write`` (one transaction that serializes writers), and ``_lock_row``, the suffix that locks the
    workflow's state row until commit where ``_write`` alone does not serialize."""

    _lock_row = ""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Execute]: ...

    @abstractmethod
    def _write(self) -> AbstractContextManager[Execute]: ...

    # -- versions ------------------------------------------------------------------------
    def put(self, workflow, config, *, actor, source, note=""):
        if not isinstance(config, dict):
            raise TypeError(f"workflow {workflow!r}: a config is a dict, got {type(config).__name__}")
        stored_json = json.dumps(config, ensure_ascii=False, allow_nan=False)  # the author's key order
        digest = config_hash(config)
        with self._write() as ex:
            self._state(ex, workflow)  # locks the workflow: one version number per new config
            existing = self._find(ex, workflow, digest)
            if existing is not None:
                return existing
            (version,) = ex("SELECT coalesce(max(version), 0) + 1 FROM graphtune_config_versions WHERE workflow = ?", (workflow,)).fetchone()
            now = time.time()
            ex(
                "INSERT INTO graphtune_config_versions (workflow, version, hash, config, created_at, created_by, source, note) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (workflow, version, digest, stored_json, now, actor, source, note),
            )
            self._log(ex, workflow, now, actor, "register", version, None, note, "", {"hash": digest, "source": source})
            return ConfigVersion(workflow=workflow, version=version, hash=digest, config=json.loads(stored_json),
                                 created_at=now, created_by=actor, source=source, note=note)

    def get(self, workflow, version):
        with self._read() as ex:
            return self._get(ex, workflow, version)

    def find(self, workflow, config_hash):
        with self._read() as ex:
            return self._find(ex, workflow, config_hash)

    def versions(self, workflow):
        with self._read() as ex:
            rows = ex(f"SELECT {_VERSION_COLUMNS} FROM graphtune_config_versions WHERE workflow = ? ORDER BY version", (workflow,)).fetchall()
        return [_version_of(r) for r in rows]

    def workflows(self):
        with self._read() as ex:
            return [r[0] for r in ex("SELECT DISTINCT workflow FROM graphtune_config_versions ORDER BY workflow", ()).fetchall()]

    def active(self, workflow):
        with self._read() as ex:
            row = ex(
                f"SELECT {_VERSION_COLUMNS} FROM graphtune_config_versions WHERE workflow = ? "
                "AND version = (SELECT active_version FROM graphtune_config_state WHERE workflow = ?)",
                (workflow, workflow),
            ).fetchone()
        return _version_of(row) if row else None

    # -- promotion -----------------------------------------------------------------------
    def promote(self, workflow, version, *, expected_active, actor, reason, evidence="", action="promote"):
        with self._write() as ex:
            active, weights, revision = self._state(ex, workflow)
            target = self._get(ex, workflow, version)
            if active != expected_active:
                raise ConflictError(
                    f"workflow {workflow!r}: cannot {action} to version {version}: expected active version "
                    f"{_show(expected_active)}, found {_show(active)}; read the state again and retry",
                    expected=expected_active, found=active,
                )
            now = time.time()
            ex("UPDATE graphtune_config_state SET active_version = ? WHERE workflow = ?", (version, workflow))
            details = {}
            if weights:
                self._drop_split(ex, workflow, revision + 1, now)
                details = {"cleared_split": json.loads(weights), "revision": revision + 1}
            self._log(ex, workflow, now, actor, action, version, active, reason, evidence, details)
            return target

    # -- traffic split -------------------------------------------------------------------
    def split(self, workflow):
        with self._read() as ex:
            row = ex(
                "SELECT CAST(split_weights AS TEXT), split_revision, split_updated_at FROM graphtune_config_state "
                "WHERE workflow = ? AND split_weights IS NOT NULL",
                (workflow,),
            ).fetchone()
        return TrafficSplit(workflow=workflow, weights=json.loads(row[0]), revision=row[1], updated_at=row[2]) if row else None

    def set_split(self, workflow, weights, *, expected_revision, actor, reason, evidence=""):
        now = time.time()
        proposed = TrafficSplit(workflow=workflow, weights=weights, revision=0, updated_at=now)  # validates the weights
        with self._write() as ex:
            active, current, revision = self._state(ex, workflow)
            self._check_revision(workflow, "set the traffic split", expected_revision, revision if current else None)
            known = self._known(ex, workflow)
            for version in proposed.weights:
                if version not in known:
                    raise UnknownVersionError(workflow, version, known)
            stored = json.dumps({str(v): w for v, w in sorted(proposed.weights.items())})
            ex(
                "UPDATE graphtune_config_state SET split_weights = ?, split_revision = ?, split_updated_at = ? WHERE workflow = ?",
                (stored, revision + 1, now, workflow),
            )
            self._log(ex, workflow, now, actor, "split", None, active, reason, evidence,
                      {"weights": json.loads(stored), "revision": revision + 1})
        return proposed.model_copy(update={"revision": revision + 1})

    def clear_split(self, workflow, *, expected_revision, actor, reason):
        with self._write() as ex:
            active, current, revision = self._state(ex, workflow)
            self._check_revision(workflow, "clear the traffic split", expected_revision, revision if current else None)
            if not current:
                return
            now = time.time()
            self._drop_split(ex, workflow, revision + 1, now)
            self._log(ex, workflow, now, actor, "clear_split", None, active, reason, "",
                      {"cleared_split": json.loads(current), "revision": revision + 1})

    # -- one tuning run per workflow -----------------------------------------------------
    def claim_tuning(self, workflow, thread_id, *, actor):
        if not thread_id:
            raise ValueError(f"workflow {workflow!r}: a tuning claim needs the run's thread id")
        with self._write() as ex:
            self._state(ex, workflow)  # locks the row: two claims cannot both see it free
            holder = self._claim(ex, workflow)
            if holder is not None and holder.thread_id != thread_id:
                raise TuningBusyError(holder)
            if holder is not None:
                return holder
            now = time.time()
            ex("UPDATE graphtune_config_state SET tuning_thread = ?, tuning_actor = ?, tuning_since = ? WHERE workflow = ?",
               (thread_id, actor, now, workflow))
            return TuningClaim(workflow=workflow, thread_id=thread_id, actor=actor, since=now)

    def tuning_claim(self, workflow):
        with self._read() as ex:
            return self._claim(ex, workflow)

    def release_tuning(self, workflow, thread_id, *, actor, reason=""):
        with self._write() as ex:
            active, _, _ = self._state(ex, workflow)
            holder = self._claim(ex, workflow)
            if holder is None or (thread_id is not None and holder.thread_id != thread_id):
                return None
            ex("UPDATE graphtune_config_state SET tuning_thread = NULL, tuning_actor = NULL, tuning_since = NULL "
               "WHERE workflow = ?", (workflow,))
            if thread_id is None:  # someone else's claim: say who let it go
                self._log(ex, workflow, time.time(), actor, "release", None, active,
                          reason or f"released the tuning run of thread {holder.thread_id}", "",
                          holder.model_dump(mode="json"))
            return holder

    @staticmethod
    def _claim(ex: Execute, workflow: str) -> TuningClaim | None:
        row = ex("SELECT tuning_thread, tuning_actor, tuning_since FROM graphtune_config_state "
                 "WHERE workflow = ? AND tuning_thread IS NOT NULL", (workflow,)).fetchone()
        return TuningClaim(workflow=workflow, thread_id=row[0], actor=row[1], since=row[2]) if row else None

    # -- change log ----------------------------------------------------------------------
    def record_rejection(self, workflow, version, *, actor, reason, evidence=""):
        with self._write() as ex:
            active, _, _ = self._state(ex, workflow)
            self._get(ex, workflow, version)
            self._log(ex, workflow, time.time(), actor, "reject", version, active, reason, evidence, {})
        return self.history(workflow, limit=1)[0]

    def history(self, workflow, limit=50):
        with self._read() as ex:
            rows = ex(
                f"SELECT {_LOG_COLUMNS} FROM graphtune_config_log WHERE workflow = ? ORDER BY id DESC LIMIT ?",
                (workflow, int(limit)),
            ).fetchall()
        return [
            ChangeLogEntry(id=r[0], workflow=r[1], at=r[2], actor=r[3], action=r[4], version=r[5], from_version=r[6],
                           reason=r[7], evidence=r[8], details=json.loads(r[9]))
            for r in rows
        ]

    # -- inside a transaction ------------------------------------------------------------
    def _state(self, ex: Execute, workflow: str) -> tuple[int | None, str | None, int]:
        """The workflow's (active version, split weights as JSON, split revision), its row locked until commit."""
        ex("INSERT INTO graphtune_config_state (workflow, split_revision) VALUES (?, 0) ON CONFLICT (workflow) DO NOTHING", (workflow,))
        return tuple(ex(
            "SELECT active_version, CAST(split_weights AS TEXT), split_revision FROM graphtune_config_state "
            f"WHERE workflow = ?{self._lock_row}",
            (workflow,),
        ).fetchone())

    @staticmethod
    def _drop_split(ex: Execute, workflow: str, revision: int, now: float) -> None:
        ex(
            "UPDATE graphtune_config_state SET split_weights = NULL, split_revision = ?, split_updated_at = ? WHERE workflow = ?",
            (revision, now, workflow),
        )

    @staticmethod
    def _check_revision(workflow: str, what: str, expected: int | None, found: int | None) -> None:
        if expected != found:
            raise ConflictError(
                f"workflow {workflow!r}: cannot {what}: expected split revision {_show(expected, 'no split')}, "
                f"found {_show(found, 'no split')}; read the split again and retry",
                expected=expected, found=found,
            )

    @staticmethod
    def _known(ex: Execute, workflow: str) -> list[int]:
        return [r[0] for r in ex("SELECT version FROM graphtune_config_versions WHERE workflow = ? ORDER BY version", (workflow,)).fetchall()]

    def _get(self, ex: Execute, workflow: str, version: int) -> ConfigVersion:
        row = ex(f"SELECT {_VERSION_COLUMNS} FROM graphtune_config_versions WHERE workflow = ? AND version = ?", (workflow, version)).fetchone()
        if row is None:
            raise UnknownVersionError(workflow, version, self._known(ex, workflow))
        return _version_of(row)

    @staticmethod
    def _find(ex: Execute, workflow: str, digest: str) -> ConfigVersion | None:
        row = ex(f"SELECT {_VERSION_COLUMNS} FROM graphtune_config_versions WHERE workflow = ? AND hash = ?", (workflow, digest)).fetchone()
        return _version_of(row) if row else None

    @staticmethod
    def _log(ex: Execute, workflow, at, actor, action, version, from_version, reason, evidence, details) -> None:
        ex(
            "INSERT INTO graphtune_config_log (workflow, at, actor, action, version, from_version, reason, evidence, details) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (workflow, at, actor, action, version, from_version, reason, evidence, canonical_json(details)),
        )


def _version_of(row: Sequence) -> ConfigVersion:
    workflow, version, digest, config, created_at, created_by, source, note = row
    return ConfigVersion(workflow=workflow, version=version, hash=digest, config=json.loads(config),
                         created_at=created_at, created_by=created_by, source=source, note=note)


def _show(value: int | None, none: str = "none") -> str:
    return none if value is None else str(value)


def database_url_from_env() -> str:
    return os.environ.get("GRAPHTUNE_DATABASE_URL") or DEFAULT_DATABASE_URL


def open_config_store(url: str | None = None) -> ConfigStore:
    """The config store a URL names; with no URL, ``GRAPHTUNE_DATABASE_URL`` or the default."""
    url = url or database_url_from_env()
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from graphtune.backends.config_sqlite import SqliteConfigStore

        return SqliteConfigStore(url)
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        with needs_extra("postgres", "a PostgreSQL config store"):
            from graphtune.backends.config_postgres import PostgresConfigStore

        return PostgresConfigStore(url)
    if scheme == "jsonl":
        raise UnknownBackendError(f"{url!r}: jsonl:// holds traces only; configs need one of {', '.join(ACCEPTED_SCHEMES)}")
    raise UnknownBackendError(f"unknown config store URL {url!r}: expected one of {', '.join(ACCEPTED_SCHEMES)}")
