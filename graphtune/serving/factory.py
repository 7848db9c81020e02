"""Routing inside a LangGraph server graph factory.

The LangGraph server calls a graph factory for every run and runs whatever graph it returns, so a
served workflow is routed there: the factory finds the run's unit key, asks the process's
:class:`~graphtune.serving.routing.LiveRouting` for a version and returns that version's cached graph,
bound to the per-run tags (variant, user id). The same router and snapshot rules as
``ServedWorkflow`` apply, so a user keeps one version across the server's runs and an application's
own calls alike.

The unit key of a run, first found of:

1. the run's context: ``user_id``, then ``session_id``;
2. the run's metadata: ``user_id`` (or ``graphtune_user_id``), then ``session_id``;
3. the thread id: a conversation keeps its version; a stateless run (a new thread each time) is
   placed afresh on every request.

Only a ``user_id`` is also recorded as the run's user (hashed in the store).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from graphtune.graphs.versions import VersionedGraphs, WorkflowRef
from graphtune.serving.routing import shared_routing
from graphtune.tracing.events import TAG_USER_ID
from graphtune.tracing.recorder import run_tags

_USER_KEYS = ("user_id", TAG_USER_ID)


def unit_key_of_run(config: Mapping[str, Any] | None, context: Any) -> tuple[str | None, str | None]:
    """(unit key, user id) of a server run: see the module docstring for the order. The user id is the
    unit key when it came from a ``user_id``, else None. Values are used as strings; empty ones skipped."""
    config = config or {}
    context = context if isinstance(context, Mapping) else {}
    metadata = config.get("metadata") or {}
    for source, keys in ((context, ("user_id",)), (context, ("session_id",)),
                         (metadata, _USER_KEYS), (metadata, ("session_id",))):
        for key in keys:
            value = source.get(key)
            if value is not None and str(value) != "":
                text = str(value)
                return text, text if key in _USER_KEYS else None
    thread = (config.get("configurable") or {}).get("thread_id")
    return (str(thread) if thread not in (None, "") else None), None


async def routed_graph(graphs: VersionedGraphs, workflow: WorkflowRef, database_url: str,
                       config: Mapping[str, Any] | None, context: Any) -> Any:
    """The graph a server run of ``workflow`` should execute: its unit routed by the store's split,
    the version's graph from ``graphs``, tagged with the variant and user id. Store reads and graph
    builds run in a thread, and only when the snapshot is due or the version is not built yet."""
    spec = await asyncio.to_thread(graphs.spec, workflow)
    routing = shared_routing(spec, database_url, recorder=graphs.recorder)
    snapshot = routing.peek()
    if snapshot is None or routing.needs_refresh():
        snapshot = await asyncio.to_thread(routing.refresh_if_due)
    unit_key, user_id = unit_key_of_run(config, context)
    route = routing.route(unit_key, snapshot)
    graph = graphs.cached(spec, route.version)
    if graph is None:
        stored = None if route.version is None else snapshot.configs[route.version]
        graph = await asyncio.to_thread(graphs.graph, spec, stored)
    return graph.with_config(metadata=run_tags(variant=route.variant, user_id=user_id))
