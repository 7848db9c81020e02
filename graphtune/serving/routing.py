"""Live routing: which config version serves a request, from the config store's split, kept fresh.

A request path cannot read the config store on every request, and cannot stop serving when the store
is down. :class:`LiveRouting` therefore keeps a snapshot of the workflow's active version, traffic
split and the configs they name, re-read at most every ``refresh_s`` seconds (as
``graphtune.active.active_version`` does), with one :class:`~graphtune.tuning.router.Router` per
(active version, split revision). Assignment itself is pure and takes microseconds.

When a refresh fails (the store is unreachable, or answers with an error) the last known snapshot
keeps serving: the last known active version and split, so a user on the candidate stays there
through a short outage. If the store was never reached, requests run the spec's own config, tagged
without a version. The outage is recorded once, as a ``custom`` event named
:data:`OUTAGE_EVENT` in the trace store, logged once, and retried every ``refresh_s``; the recovery
is recorded too (:data:`RECOVERY_EVENT`, with the outage's length and the requests routed meanwhile).

The ``graphtune_variant`` run tag says how a request was placed:

- ``baseline``: the split (or, with no split, the default of everything) assigned the unit to the
  workflow's active version;
- ``candidate``: the split assigned the unit to another version;
- ``unassigned``: not placed by the split: the unit key was empty (such requests always run the
  baseline version: they cannot be kept sticky), or the store was never reached (the spec's
  config). Live statistics and the sample-ratio check leave these out, since they would make the
  baseline look bigger than its share.

The router's salt defaults to :func:`experiment_salt`, derived from the split's baseline and
candidate versions: it stays fixed while an experiment ramps (5% -> 20% -> 50%), so the router's
ramp guarantee holds, and changes with the next experiment's candidate, so a new experiment
reshuffles users instead of always keeping the same ones on the baseline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from graphtune.backends.config_store import ConfigStore, ConfigVersion, TrafficSplit, open_config_store
from graphtune.spec import WorkflowSpec
from graphtune.tracing.context import new_span_id, new_trace_id
from graphtune.tracing.events import EventKind, TrajectoryEvent
from graphtune.tuning.router import Router, RouterError, UnitKey

log = logging.getLogger("graphtune.serving")

DEFAULT_REFRESH_S = 5.0
VARIANT_BASELINE = "baseline"
VARIANT_CANDIDATE = "candidate"
VARIANT_UNASSIGNED = "unassigned"
ASSIGNED_VARIANTS = (VARIANT_BASELINE, VARIANT_CANDIDATE)
Variant = Literal["baseline", "candidate", "unassigned"]
OUTAGE_EVENT = "graphtune.config_store_unreachable"
RECOVERY_EVENT = "graphtune.config_store_recovered"


def experiment_salt(split: TrafficSplit | Mapping[int, float] | None, baseline_version: int) -> str:
    """The router salt of an experiment: its baseline and the split's other versions, e.g.
    ``"baseline=1;candidates=2"``. Unchanged by ramp steps (only weights change), new with each
    experiment's candidate. No split: ``""`` (everything runs the baseline; the salt cannot matter)."""
    if split is None:
        return ""
    weights = getattr(split, "weights", split)
    candidates = ",".join(str(v) for v in sorted(weights) if v != baseline_version)
    return f"baseline={baseline_version};candidates={candidates}"


class Route(BaseModel):
    """Where one request goes: the config version, how it was placed (the variant tag) and whether the
    choice came from a stale snapshot because the config store is unreachable."""

    model_config = ConfigDict(frozen=True)

    workflow: str
    version: int | None  # None: the spec's own config (the store was never reached)
    variant: Variant
    baseline_version: int | None
    split_revision: int | None = None
    stale: bool = False


@dataclass(frozen=True)
class RoutingSnapshot:
    """What the store said at ``read_at`` (monotonic seconds): active version, split, the configs they
    name, and the router built for them. ``active`` is None only when the store was never reached."""

    active: ConfigVersion | None
    split: TrafficSplit | None
    configs: Mapping[int, ConfigVersion]
    router: Router | None
    read_at: float
    stale: bool = False
    salt: str = ""


@dataclass
class _Outage:
    started: float  # wall clock, for the recovery event
    error: str
    stale_routes: int = 0


@dataclass
class _Counters:
    refreshes: int = 0
    refresh_failures: int = 0
    outages: int = 0
    stale_routes: int = 0
    bad_splits: int = 0
    routes: dict[str, int] = field(default_factory=dict)


class LiveRouting:
    """Routes requests of one workflow by the config store's current split. Thread-safe.

    - ``spec``: the workflow (its name keys the store; its config is version 1 on first use, and the
      fallback when the store was never reached).
    - ``database_url`` or ``config_store``: where configs live (a given store is used as is, never closed).
    - ``recorder``: where outage and recovery events go (anything with ``record(event)``); None logs only.
    - ``refresh_s``: how old a snapshot may get before the next request re-reads the store.
    - ``salt``: a fixed router salt; None derives it from the split (:func:`experiment_salt`).

    Blocking calls: :meth:`refresh_if_due` (store I/O when due). :meth:`route` never blocks, so async
    code checks :meth:`needs_refresh` and only then hops to a thread.
    """

    def __init__(self, spec: WorkflowSpec, database_url: str | None = None, *, config_store: ConfigStore | None = None,
                 recorder: Any = None, refresh_s: float = DEFAULT_REFRESH_S, salt: str | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if not isinstance(spec, WorkflowSpec):
            raise TypeError(f"spec is a loaded WorkflowSpec (graphtune.spec.load_spec); got {type(spec).__name__}")
        if not refresh_s >= 0:
            raise ValueError(f"refresh_s is a number of seconds >= 0; got {refresh_s!r}")
        self.spec = spec
        self.workflow = spec.workflow
        self.database_url = database_url
        self.recorder = recorder
        self.refresh_s = float(refresh_s)
        self.salt = salt
        self._clock = clock
        self._given_store = config_store
        self._store: ConfigStore | None = config_store
        self._snapshot: RoutingSnapshot | None = None
        self._outage: _Outage | None = None
        self._counters = _Counters()
        self._lock = threading.Lock()  # counters and the snapshot swap
        self._refreshing = threading.Lock()  # one refresh at a time

    # -- the snapshot ----------------------------------------------------------------------
    def needs_refresh(self) -> bool:
        snapshot = self._snapshot
        return snapshot is None or self._clock() - snapshot.read_at >= self.refresh_s

    def refresh_if_due(self) -> RoutingSnapshot:
        """The current snapshot, re-read from the store when older than ``refresh_s``. While another
        thread refreshes, the others keep routing with the snapshot they have instead of waiting."""
        snapshot = self._snapshot
        if snapshot is not None and self._clock() - snapshot.read_at < self.refresh_s:
            return snapshot
        if not self._refreshing.acquire(blocking=snapshot is None):
            return snapshot
        try:
            snapshot = self._snapshot
            if snapshot is None or self._clock() - snapshot.read_at >= self.refresh_s:
                snapshot = self._refresh(snapshot)
            return snapshot
        finally:
            self._refreshing.release()

    def peek(self) -> RoutingSnapshot | None:
        """The snapshot as it is, without refreshing (None before the first refresh). Never blocks."""
        return self._snapshot

    def snapshot(self) -> RoutingSnapshot:
        """The snapshot routing uses now (refreshed first when due). Blocking when due."""
        return self.refresh_if_due()

    def _refresh(self, previous: RoutingSnapshot | None) -> RoutingSnapshot:
        now = self._clock()
        try:
            active, split, configs = self._read_store(previous)
        except Exception as error:  # unreachable or failing store: keep serving what we know
            snapshot = self._keep_serving(previous, error, now)
        else:
            snapshot = self._fresh(previous, active, split, configs, now)
        with self._lock:
            self._counters.refreshes += 1
            self._snapshot = snapshot
        return snapshot

    def _read_store(self, previous: RoutingSnapshot | None) -> tuple[ConfigVersion, TrafficSplit | None, dict[int, ConfigVersion]]:
        store = self._store
        if store is None:
            store = self._store = open_config_store(self.database_url)
        active = store.active(self.workflow)
        if active is None:  # first use of the workflow: the spec's config becomes version 1, as in the controller
            active = store.ensure_active(self.workflow, self.spec.config, actor="graphtune")
        split = store.split(self.workflow)
        configs = dict(previous.configs) if previous is not None else {}
        configs[active.version] = active
        for version in sorted(split.weights) if split is not None else ():
            if version not in configs:  # stored configs never change: each version is read once
                configs[version] = store.get(self.workflow, version)
        return active, split, configs

    def _fresh(self, previous, active, split, configs, now) -> RoutingSnapshot:
        if self._outage is not None:
            self._recovered()
        same = (previous is not None and previous.active is not None and previous.active.version == active.version
                and _revision(previous.split) == _revision(split) and previous.router is not None)
        if same:  # same active version and split revision: keep the router
            return RoutingSnapshot(active, split, configs, previous.router, now, salt=previous.salt)
        salt = self.salt if self.salt is not None else experiment_salt(split, active.version)
        try:
            router = Router(split, active.version, workflow=self.workflow, salt=salt)
        except RouterError as error:
            with self._lock:
                self._counters.bad_splits += 1
            log.error("graphtune serving %s: ignoring traffic split revision %s (%s); all traffic runs the active version %s",
                      self.workflow, _revision(split), error, active.version)
            router = Router(None, active.version, workflow=self.workflow, salt=salt)
        return RoutingSnapshot(active, split, configs, router, now, salt=salt)

    def _keep_serving(self, previous: RoutingSnapshot | None, error: Exception, now: float) -> RoutingSnapshot:
        if self._given_store is None and self._store is not None:  # reconnect on the next attempt
            store, self._store = self._store, None
            try:
                store.close()
            except Exception:  # noqa: BLE001 - a broken store may fail to close too
                pass
        with self._lock:
            self._counters.refresh_failures += 1
        described = f"{type(error).__name__}: {error}"
        if self._outage is None:
            with self._lock:
                self._outage = _Outage(started=time.time(), error=described)
                self._counters.outages += 1
            serving = (f"the last known active version {previous.active.version}"
                       + (f" and traffic split revision {previous.split.revision}" if previous.split else "")
                       if previous is not None and previous.active is not None else "the spec's own config (no version known yet)")
            log.warning("graphtune serving %s: config store %s unreachable (%s); serving %s until it answers",
                        self.workflow, self._store_label(), described, serving)
            self._record_event(OUTAGE_EVENT, "error", {
                "error.type": type(error).__name__, "error.message": str(error)[:2000],
                "graphtune.fallback": "last_known" if previous is not None and previous.active is not None else "spec_config",
                "graphtune.serving_version": previous.active.version if previous is not None and previous.active else None,
                "graphtune.split_revision": _revision(previous.split) if previous is not None else None,
            })
        if previous is None:
            return RoutingSnapshot(None, None, {}, None, now, stale=True, salt="")
        return RoutingSnapshot(previous.active, previous.split, previous.configs, previous.router, now, stale=True,
                               salt=previous.salt)

    def _recovered(self) -> None:
        with self._lock:
            outage, self._outage = self._outage, None
        seconds = max(0.0, time.time() - outage.started)
        log.warning("graphtune serving %s: config store %s answers again after %.1f s (%d requests routed from the "
                    "last known state meanwhile)", self.workflow, self._store_label(), seconds, outage.stale_routes)
        self._record_event(RECOVERY_EVENT, "ok", {"graphtune.outage_s": round(seconds, 3),
                                                  "graphtune.stale_routes": outage.stale_routes,
                                                  "error.message": outage.error[:2000]})

    def _record_event(self, name: str, status: str, attributes: dict[str, Any]) -> None:
        if self.recorder is None:
            return
        event = TrajectoryEvent(kind=EventKind.CUSTOM, time=time.time(), trace_id=new_trace_id(), span_id=new_span_id(),
                                name=name, workflow=self.workflow, source="production", status=status,
                                attributes={k: v for k, v in attributes.items() if v is not None})
        try:
            self.recorder.record(event)
        except Exception as error:  # noqa: BLE001 - recording must never stop serving
            log.warning("graphtune serving %s: could not record %s: %s", self.workflow, name, error)

    def _store_label(self) -> str:
        url = getattr(self._given_store, "url", None) or self.database_url or "(GRAPHTUNE_DATABASE_URL)"
        return _without_password(url)

    # -- routing ---------------------------------------------------------------------------
    def route(self, unit_key: UnitKey, snapshot: RoutingSnapshot | None = None, *, count: bool = True) -> Route:
        """The version for this unit under ``snapshot`` (default: the current one, which must exist:
        call :meth:`refresh_if_due` first). Non-blocking. ``count=False`` previews a route without
        counting it as served."""
        snapshot = snapshot or self._snapshot
        if snapshot is None:
            raise RuntimeError("LiveRouting.route before the first refresh: call refresh_if_due() first")
        if snapshot.active is None:
            route = Route(workflow=self.workflow, version=None, variant=VARIANT_UNASSIGNED, baseline_version=None, stale=True)
        else:
            baseline = snapshot.active.version
            version = snapshot.router.assign(unit_key)  # raises RouterError naming a bad key type
            if _is_empty(unit_key):
                variant = VARIANT_UNASSIGNED
            else:
                variant = VARIANT_BASELINE if version == baseline else VARIANT_CANDIDATE
            route = Route(workflow=self.workflow, version=version, variant=variant, baseline_version=baseline,
                          split_revision=_revision(snapshot.split), stale=snapshot.stale)
        if not count:
            return route
        with self._lock:
            routes = self._counters.routes
            routes[route.variant] = routes.get(route.variant, 0) + 1
            if route.stale:
                self._counters.stale_routes += 1
                if self._outage is not None:
                    self._outage.stale_routes += 1
        return route

    def config_of(self, route: Route) -> ConfigVersion | None:
        """The stored config a route runs (None: the spec's own config)."""
        if route.version is None:
            return None
        snapshot = self._snapshot
        config = snapshot.configs.get(route.version) if snapshot is not None else None
        if config is None:
            raise LookupError(f"workflow {self.workflow!r}: version {route.version} is not in the routing snapshot")
        return config

    def stats(self) -> dict[str, Any]:
        """Refreshes, failures, outages, routes per variant and stale routes, plus what is served now."""
        with self._lock:
            counters = self._counters
            snapshot = self._snapshot
            return {
                "refreshes": counters.refreshes, "refresh_failures": counters.refresh_failures,
                "outages": counters.outages, "stale_routes": counters.stale_routes, "bad_splits": counters.bad_splits,
                "routes": dict(counters.routes), "store_reachable": self._outage is None,
                "active_version": snapshot.active.version if snapshot is not None and snapshot.active else None,
                "split": dict(snapshot.split.weights) if snapshot is not None and snapshot.split else None,
                "split_revision": _revision(snapshot.split) if snapshot is not None else None,
            }

    def close(self) -> None:
        """Close the config store this object opened (a given one is left to its owner)."""
        if self._given_store is None and self._store is not None:
            store, self._store = self._store, None
            store.close()


def _revision(split: TrafficSplit | None) -> int | None:
    return None if split is None else split.revision


def _is_empty(unit_key: UnitKey) -> bool:
    return unit_key is None or (isinstance(unit_key, (str, bytes)) and not unit_key)


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# -- one routing per (store, workflow) per process ---------------------------------------------
_shared: dict[tuple[str, str], LiveRouting] = {}
_shared_lock = threading.Lock()


def shared_routing(spec: WorkflowSpec, database_url: str, *, recorder: Any = None,
                   refresh_s: float = DEFAULT_REFRESH_S) -> LiveRouting:
    """The process's :class:`LiveRouting` for a workflow in a store (what the LangGraph server's graph
    factories use: they are called per run, so the snapshot must outlive the call)."""
    key = (database_url, spec.workflow)
    with _shared_lock:
        routing = _shared.get(key)
        if routing is None:
            routing = _shared[key] = LiveRouting(spec, database_url, recorder=recorder, refresh_s=refresh_s)
        return routing
