"""One compiled, recorded graph per (workflow, config version): what a server runs for each request.

Compiling a workflow (its retrieval index, prompts, agents) costs far more than running a request,
so each config version is built once per process and kept. A request names a version, or gets the
workflow's active one; a promotion reaches new requests as soon as the active version is re-read
(``graphtune.configs.active_version``'s few-second cache). The spec's config becomes version 1 on a
workflow's first use, as in the controller.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from graphtune.backends.configs import ConfigVersion, database_url_from_env, open_config_store
from graphtune.tracing.recorder import TrajectoryRecorder, recorder_for, run_tags

MAX_CACHED_VERSIONS = 16


class VersionedGraphs:
    """Graphs of one config store, built on first use and cached (least recently used out)."""

    def __init__(self, database_url: str | None = None, *, recorder: TrajectoryRecorder | None = None,
                 max_cached: int = MAX_CACHED_VERSIONS):
        self.database_url = database_url
        self._recorder = recorder
        self.max_cached = max_cached
        self._graphs: OrderedDict[tuple[str, int], Any] = OrderedDict()
        self._lock = threading.Lock()

    def version(self, workflow: str, version: int | None = None) -> ConfigVersion:
        """The stored version asked for, or the active one (the spec's config on first use)."""
        from graphtune.configs import active_version
        from graphtune.spec import load_spec

        url = self.database_url or database_url_from_env()
        if version is None:
            active = active_version(workflow, url=url)
            if active is not None:
                return active
            with open_config_store(url) as store:
                return store.ensure_active(workflow, load_spec(workflow).config, actor="graphtune")
        with open_config_store(url) as store:
            return store.get(workflow, version)  # UnknownVersionError lists the known ones

    def get(self, workflow: str, version: int | None = None) -> tuple[ConfigVersion, Any]:
        """(the config version, its compiled graph, recorded and tagged ``production``). Blocking: call
        it from a thread when inside an event loop."""
        from graphtune.spec import load_spec

        stored = self.version(workflow, version)
        key = (workflow, stored.version)
        with self._lock:
            graph = self._graphs.get(key)
            if graph is not None:
                self._graphs.move_to_end(key)
                return stored, graph
        built = load_spec(workflow).build_graph(stored.config)
        recorder = self._recorder or recorder_for(None)
        graph = built.with_config(callbacks=[recorder], metadata=run_tags(
            workflow, config_version=stored.version, source="production"))
        with self._lock:
            graph = self._graphs.setdefault(key, graph)  # two first requests at once keep one graph
            while len(self._graphs) > self.max_cached:
                self._graphs.popitem(last=False)
        return stored, graph

    def cached_versions(self, workflow: str) -> list[int]:
        with self._lock:
            return [v for (w, v) in self._graphs if w == workflow]
