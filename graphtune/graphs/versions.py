"""One compiled, recorded graph per (workflow, config version): what a server runs for each request.

Compiling a workflow (its retrieval index, prompts, agents) costs far more than running a request,
so each config version is built once per process and kept. A request names a version, or gets the
workflow's active one; a promotion reaches new requests as soon as the active version is re-read
(``graphtune.active.active_version``'s few-second cache). The spec's config becomes version 1 on a
workflow's first use, as in the controller.

Stored configs never change, so a version's config is kept beside its graph: once a version has been
served, serving it again needs no config store at all. That is what lets a router keep serving the
last known versions while the store is unreachable (``graphtune.serving.routing``).

Each graph carries the recorder and the run tags that never vary for it (workflow, config version,
source ``production``); per-request tags (variant, user id) are added by the caller, at invoke time or
with ``graph.with_config`` (a cheap copy of a compiled graph).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from graphtune.backends.config_store import ConfigVersion, database_url_from_env, open_config_store
from graphtune.spec import WorkflowSpec, load_spec
from graphtune.tracing.recorder import TrajectoryRecorder, recorder_for, run_tags

MAX_CACHED_VERSIONS = 16

WorkflowRef = str | Path | WorkflowSpec  # a bundled workflow's name, a spec file, or a loaded spec
_Key = tuple[str, int | None]  # (workflow, version); None: the spec's own config, never stored


class VersionedGraphs:
    """Graphs of one config store, built on first use and cached (least recently used out).

    Thread-safe; each graph is built once even when many requests ask for a new version at the same
    time (the others wait for the first build instead of compiling their own copy).
    """

    def __init__(self, database_url: str | None = None, *, recorder: TrajectoryRecorder | None = None,
                 max_cached: int = MAX_CACHED_VERSIONS):
        if max_cached < 1:
            raise ValueError(f"max_cached is the number of graphs kept, at least 1; got {max_cached}")
        self.database_url = database_url
        self._recorder = recorder
        self.max_cached = max_cached
        self._graphs: OrderedDict[_Key, tuple[ConfigVersion | None, Any]] = OrderedDict()
        self._building: dict[_Key, threading.Lock] = {}
        self._specs: dict[str, WorkflowSpec] = {}
        self._lock = threading.Lock()
        self.builds = 0  # graphs compiled by this cache (tests and stats read it)

    @property
    def recorder(self) -> TrajectoryRecorder:
        """The recorder this cache's graphs record with (default: the process's, from the environment)."""
        return self._recorder or recorder_for(None)

    # -- specs -----------------------------------------------------------------------------
    def spec(self, workflow: WorkflowRef) -> WorkflowSpec:
        """The spec a name or path refers to, read once per process."""
        if isinstance(workflow, WorkflowSpec):
            return workflow
        key = str(workflow)
        with self._lock:
            spec = self._specs.get(key)
        if spec is None:
            spec = load_spec(workflow)
            with self._lock:
                spec = self._specs.setdefault(key, spec)
        return spec

    # -- versions --------------------------------------------------------------------------
    def version(self, workflow: WorkflowRef, version: int | None = None) -> ConfigVersion:
        """The stored version asked for, or the active one (the spec's config on first use)."""
        from graphtune.active import active_version

        spec = self.spec(workflow)
        url = self.database_url or database_url_from_env()
        if version is None:
            active = active_version(spec.workflow, url=url)
            if active is not None:
                return active
            with open_config_store(url) as store:
                return store.ensure_active(spec.workflow, spec.config, actor="graphtune")
        with self._lock:
            hit = self._graphs.get((spec.workflow, version))
        if hit is not None and hit[0] is not None:
            return hit[0]  # stored configs never change: no need to read the store again
        with open_config_store(url) as store:
            return store.get(spec.workflow, version)  # UnknownVersionError lists the known ones

    def get(self, workflow: WorkflowRef, version: int | None = None) -> tuple[ConfigVersion, Any]:
        """(the config version, its compiled graph, recorded and tagged ``production``). Blocking: call
        it from a thread when inside an event loop."""
        stored = self.version(workflow, version)
        return stored, self.graph(workflow, stored)

    # -- graphs ----------------------------------------------------------------------------
    def cached(self, workflow: WorkflowRef, version: int | None) -> Any | None:
        """The graph of ``version`` if it is built already (None: the spec's own config); never blocks
        on I/O, so async code can skip the thread hop on a hit."""
        key = (self._name(workflow), version)
        with self._lock:
            hit = self._graphs.get(key)
            if hit is None:
                return None
            self._graphs.move_to_end(key)
            return hit[1]

    def graph(self, workflow: WorkflowRef, stored: ConfigVersion | None) -> Any:
        """The compiled graph of a stored version, built on first use; ``stored=None`` builds the spec's
        own config, tagged without a version (what a server runs when it has never reached the store).

        Needs no config store: the caller already holds the version. Blocking on a miss (the build)."""
        spec = self.spec(workflow)
        if stored is not None and stored.workflow != spec.workflow:
            raise ValueError(f"config version {stored.version} belongs to workflow {stored.workflow!r}, not {spec.workflow!r}")
        key = (spec.workflow, None if stored is None else stored.version)
        graph = self.cached(spec, key[1])
        if graph is not None:
            return graph
        with self._lock:
            building = self._building.setdefault(key, threading.Lock())
        with building:  # one build per version; the others wait for it
            graph = self.cached(spec, key[1])
            if graph is not None:
                return graph
            built = spec.build_graph(spec.config if stored is None else stored.config)
            graph = built.with_config(callbacks=[self.recorder], metadata=run_tags(
                spec.workflow, config_version=key[1], source="production"))
            with self._lock:
                self.builds += 1
                self._graphs[key] = (stored, graph)
                self._building.pop(key, None)
                while len(self._graphs) > self.max_cached:
                    self._graphs.popitem(last=False)
        return graph

    def cached_versions(self, workflow: WorkflowRef) -> list[int | None]:
        name = self._name(workflow)
        with self._lock:
            return [v for (w, v) in self._graphs if w == name]

    def _name(self, workflow: WorkflowRef) -> str:
        """The workflow name of a reference (a spec file is read once to learn it)."""
        return self.spec(workflow).workflow
