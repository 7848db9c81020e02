"""``ServedWorkflow``: run a workflow for live users the way a live experiment needs it.

An application that serves a tuned workflow wraps it once::

    served = ServedWorkflow("support_qa", "postgresql://...")
    run = await served.ainvoke({"messages": [...]}, unit_key=user_id)
    ...                                   # show run.output; keep run.trace_id with the answer
    served.feedback(run.trace_id, thumbs_up=True)

Per request it routes the unit key (a user, a session) by the config store's traffic split
(``graphtune.serving.routing``: sticky, re-read every few seconds, robust to store outages), runs
that version's graph (compiled once per version, ``graphtune.graphs.versions``) with the recorder,
and tags the run: ``graphtune_workflow``, ``graphtune_config_version``, ``graphtune_variant``
(``baseline`` / ``candidate`` / ``unassigned``), ``graphtune_source=production`` and the user id.
These tags are what the live evidence reader (``graphtune.live``) and hot spots count; a caller's
own metadata cannot override them.

The trace id of every run is known before it starts (the root run id, or the trace of an incoming W3C
``traceparent``), returned with the output and attached as a note to the exception of a failed run,
so an application can collect feedback for any answer it showed. Feedback is checked and counted
(``graphtune.serving.feedback``), never raises for bad input, and is recorded at most once per run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from graphtune.backends.config_store import ConfigStore
from graphtune.graphs.versions import VersionedGraphs
from graphtune.serving.feedback import DEFAULT_REMEMBERED_RUNS, FeedbackLedger, FeedbackOutcome, FeedbackStats, ServedRunInfo, StoredRun
from graphtune.serving.routing import DEFAULT_REFRESH_S, LiveRouting, Route, RoutingSnapshot, Variant
from graphtune.spec import WorkflowSpec
from graphtune.tracing.context import parse_traceparent
from graphtune.tracing.events import (
    TAG_CONFIG_VERSION,
    TAG_SOURCE,
    TAG_USER_ID,
    TAG_VARIANT,
    TAG_WORKFLOW,
    TRACEPARENT_KEY,
    USER_ID_KEYS,
    EventKind,
)
from graphtune.tracing.recorder import TrajectoryRecorder, recorder_for, run_tags
from graphtune.tuning.router import UnitKey

log = logging.getLogger("graphtune.serving")

_SERVING_TAGS = frozenset({TAG_WORKFLOW, TAG_CONFIG_VERSION, TAG_VARIANT, TAG_SOURCE, *USER_ID_KEYS})


class ServedRun(BaseModel):
    """One served request: the graph's output and where it went. Keep ``trace_id`` for feedback."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    output: Any
    trace_id: str
    run_id: uuid.UUID
    workflow: str
    config_version: int | None = Field(description="None: the spec's own config (the store was never reached)")
    variant: Variant
    stale: bool = Field(False, description="Routed from the last known state: the config store was unreachable")


class ServingStats(BaseModel):
    """Counters of one ServedWorkflow since it was created."""

    workflow: str
    requests: int
    failed: int
    by_version: dict[int, int] = Field(description="Requests per config version")
    unversioned: int = Field(description="Requests that ran the spec's own config (store never reached)")
    by_variant: dict[str, int]
    stale_routes: int
    store_outages: int
    store_reachable: bool
    active_version: int | None
    split: dict[int, float] | None
    split_revision: int | None
    graphs_built: int
    feedback: FeedbackStats


class ServedWorkflow:
    """Routes, runs, tags and takes feedback for one workflow. Thread-safe; one per process and workflow.

    - ``spec``: a bundled workflow's name, a spec file, or a loaded ``WorkflowSpec``.
    - ``database_url``: the config store (default ``GRAPHTUNE_DATABASE_URL``); ``config_store`` passes
      an open store instead (used as is, not closed).
    - ``recorder``: default, the process's recorder for ``GRAPHTUNE_TRACES_URL``, else ``database_url``.
    - ``refresh_s``: how often the active version and split are re-read.
    - ``salt``: a fixed router salt; default derived per experiment (``routing.experiment_salt``).
    - ``unit``: what ``unit_key`` identifies. ``"user"`` also records it as the run's user id (hashed
      in the store); for ``"session"`` or ``"request"`` keys pass ``user_id=`` to ``invoke`` if known.
    - ``remember_runs``: served runs kept in memory for feedback checks.
    - ``feedback_lookup``: ask the trace store about runs this process does not remember (another
      worker served them); off, such feedback counts as ``unknown_trace``.
    """

    def __init__(self, spec: str | Path | WorkflowSpec, database_url: str | None = None, *,
                 recorder: TrajectoryRecorder | None = None, traces_url: str | None = None,
                 config_store: ConfigStore | None = None, graphs: VersionedGraphs | None = None,
                 refresh_s: float = DEFAULT_REFRESH_S, salt: str | None = None,
                 unit: Literal["user", "session", "request"] = "user",
                 remember_runs: int = DEFAULT_REMEMBERED_RUNS, feedback_lookup: bool = True):
        if unit not in ("user", "session", "request"):
            raise ValueError(f"unit is what a unit key identifies: 'user', 'session' or 'request'; got {unit!r}")
        self.database_url = database_url
        self.unit = unit
        self.recorder = recorder or recorder_for(traces_url or os.environ.get("GRAPHTUNE_TRACES_URL") or database_url)
        self.graphs = graphs or VersionedGraphs(database_url, recorder=self.recorder)
        self.spec = self.graphs.spec(spec)
        self.workflow = self.spec.workflow
        self.routing = LiveRouting(self.spec, database_url, config_store=config_store, recorder=self.recorder,
                                   refresh_s=refresh_s, salt=salt)
        self._traces_url = traces_url or self.recorder.pipeline.store_url
        self._trace_store = None
        self._trace_store_lock = threading.Lock()
        self.ledger = FeedbackLedger(remember=remember_runs, lookup=self._stored_run if feedback_lookup else None)
        self._lock = threading.Lock()
        self._requests = 0
        self._failed = 0
        self._by_version: dict[int | None, int] = {}

    # -- serving ---------------------------------------------------------------------------
    def invoke(self, inputs: Any, *, unit_key: UnitKey, run_id: uuid.UUID | str | None = None,
               config: dict | None = None, user_id: Any = None) -> ServedRun:
        """Route ``unit_key``, run that version's graph and record it. Blocking (store refresh when due,
        the first build of a version, the run itself); async code uses :meth:`ainvoke`.

        A graph with ``async def`` nodes has no sync path (``graph.invoke`` would fail every request
        with 'No synchronous function provided'): it runs through :meth:`ainvoke` on graphtune's
        serving event loop, one per process, so its async clients always see the same loop.

        ``config`` is the caller's LangChain run config (``configurable.thread_id`` for a checkpointed
        graph, extra callbacks, ``metadata.traceparent`` to join an incoming trace). Raises what the
        graph raises, with the run's trace id added as a note."""
        snapshot = self.routing.refresh_if_due()
        route = self.routing.route(unit_key, snapshot)
        graph = self.graphs.graph(self.spec, self._config_of(route, snapshot))
        call, trace_id = self._call(route, unit_key, user_id, run_id, config)
        if needs_event_loop(graph):
            run = lambda: run_on_serving_loop(graph.ainvoke(inputs, call))  # noqa: E731
        else:
            run = lambda: graph.invoke(inputs, call)  # noqa: E731
        return self._served(route, trace_id, call, run)

    async def ainvoke(self, inputs: Any, *, unit_key: UnitKey, run_id: uuid.UUID | str | None = None,
                      config: dict | None = None, user_id: Any = None) -> ServedRun:
        """:meth:`invoke` for async code: store reads and graph builds run in a thread, only when needed."""
        snapshot = self.routing.peek()
        if snapshot is None or self.routing.needs_refresh():
            snapshot = await asyncio.to_thread(self.routing.refresh_if_due)
        route = self.routing.route(unit_key, snapshot)
        graph = self.graphs.cached(self.spec, route.version)
        if graph is None:
            graph = await asyncio.to_thread(self.graphs.graph, self.spec, self._config_of(route, snapshot))
        call, trace_id = self._call(route, unit_key, user_id, run_id, config)
        self._start(route, trace_id, call)
        try:
            output = await graph.ainvoke(inputs, call)
        except Exception as error:
            raise self._failed_run(error, trace_id)
        return self._result(route, trace_id, call, output)

    def route(self, unit_key: UnitKey) -> Route:
        """Where ``unit_key`` would go now, without running anything (blocking when a refresh is due)."""
        return self.routing.route(unit_key, self.routing.refresh_if_due(), count=False)

    def _config_of(self, route: Route, snapshot: RoutingSnapshot):
        return None if route.version is None else snapshot.configs[route.version]

    def _call(self, route: Route, unit_key: UnitKey, user_id: Any, run_id, config: dict | None) -> tuple[dict, str]:
        """The run config: the caller's, plus the run id and the serving tags (which win)."""
        if run_id is None:
            run_id = uuid.uuid4()
        elif not isinstance(run_id, uuid.UUID):
            try:
                run_id = uuid.UUID(str(run_id))
            except ValueError:
                raise ValueError(f"run_id must be a UUID (the root run id becomes the trace id); got {run_id!r}") from None
        if config is not None and not isinstance(config, dict):
            raise TypeError(f"config is a LangChain run config (a dict); got {type(config).__name__}")
        call = dict(config or {})
        if user_id is None and self.unit == "user" and unit_key not in (None, "", b""):
            user_id = unit_key.decode("utf-8", "replace") if isinstance(unit_key, bytes) else unit_key
        caller_metadata = {k: v for k, v in (call.get("metadata") or {}).items() if k not in _SERVING_TAGS}
        call["metadata"] = {**caller_metadata, **run_tags(self.workflow, config_version=route.version, variant=route.variant,
                                                          source="production", user_id=user_id)}
        call["run_id"] = run_id
        incoming = parse_traceparent(caller_metadata.get(TRACEPARENT_KEY)) if TRACEPARENT_KEY in caller_metadata else None
        return call, incoming.trace_id if incoming else run_id.hex

    def _served(self, route: Route, trace_id: str, call: dict, run: Callable[[], Any]) -> ServedRun:
        self._start(route, trace_id, call)
        try:
            output = run()
        except Exception as error:
            raise self._failed_run(error, trace_id)
        return self._result(route, trace_id, call, output)

    def _start(self, route: Route, trace_id: str, call: dict) -> None:
        user = call["metadata"].get(TAG_USER_ID)
        self.ledger.served(trace_id, ServedRunInfo(config_version=route.version, variant=route.variant, user_id=user))
        with self._lock:
            self._requests += 1
            self._by_version[route.version] = self._by_version.get(route.version, 0) + 1

    def _failed_run(self, error: Exception, trace_id: str) -> Exception:
        with self._lock:
            self._failed += 1
        error.add_note(f"graphtune trace id: {trace_id}")
        return error

    def _result(self, route: Route, trace_id: str, call: dict, output: Any) -> ServedRun:
        return ServedRun(output=output, trace_id=trace_id, run_id=call["run_id"], workflow=self.workflow,
                         config_version=route.version, variant=route.variant, stale=route.stale)

    # -- feedback --------------------------------------------------------------------------
    def feedback(self, trace_id: str, *, thumbs_up: bool | None = None, score: float | None = None,
                 user_id: Any = None, comment: str | None = None) -> FeedbackOutcome:
        """Record a user's verdict on a served run: ``thumbs_up=True/False`` or a ``score`` in [0, 1].

        Returns ``"recorded"``, or why it was ignored: ``"missing_value"``, ``"invalid_value"``,
        ``"unknown_trace"``, ``"duplicate"`` (see ``graphtune.serving.feedback``). Never raises for bad
        input. Blocking only when the run is not in memory and the trace store is asked."""
        outcome, value, info = self.ledger.check(trace_id, thumbs_up, score)
        if outcome != "recorded":
            log.debug("graphtune serving %s: feedback for trace %r ignored: %s", self.workflow, trace_id, outcome)
            return outcome
        user = user_id if user_id is not None else (info.user_id if info is not None else None)
        try:
            self.recorder.feedback(trace_id, value, comment=comment, workflow=self.workflow, user_id=user, source="production")
        except Exception:
            self.ledger.undo(trace_id)
            raise
        return "recorded"

    async def afeedback(self, trace_id: str, *, thumbs_up: bool | None = None, score: float | None = None,
                        user_id: Any = None, comment: str | None = None) -> FeedbackOutcome:
        """:meth:`feedback` for async code (a trace store lookup runs in a thread)."""
        if isinstance(trace_id, str) and self.ledger.run(trace_id) is not None:
            return self.feedback(trace_id, thumbs_up=thumbs_up, score=score, user_id=user_id, comment=comment)
        return await asyncio.to_thread(self.feedback, trace_id, thumbs_up=thumbs_up, score=score, user_id=user_id,
                                       comment=comment)

    def _stored_run(self, trace_id: str) -> StoredRun:
        """Ask the trace store whether ``trace_id`` is a production run of this workflow, and whether it
        already has feedback. An unreachable store answers "unknown" (logged), never an exception."""
        from graphtune.backends.traces import EventQuery, open_trace_store

        query = EventQuery(trace_id=trace_id, sources=("production",),
                           kinds=(EventKind.RUN_START, EventKind.RUN_END, EventKind.FEEDBACK))
        try:
            with self._trace_store_lock:
                if self._trace_store is None:
                    self._trace_store = open_trace_store(self._traces_url)
                store = self._trace_store
            events = store.read(query)
        except Exception as error:  # noqa: BLE001 - feedback must not fail the caller
            log.warning("graphtune serving %s: cannot check feedback for trace %s in the trace store (%s: %s)",
                        self.workflow, trace_id, type(error).__name__, error)
            return StoredRun(known=False, has_feedback=False)
        known = any(e.kind in (EventKind.RUN_START, EventKind.RUN_END) and e.workflow == self.workflow for e in events)
        return StoredRun(known=known, has_feedback=any(e.kind == EventKind.FEEDBACK for e in events))

    # -- lifecycle -------------------------------------------------------------------------
    def stats(self) -> ServingStats:
        routing = self.routing.stats()
        with self._lock:
            by_version = dict(sorted((v, n) for v, n in self._by_version.items() if v is not None))
            unversioned, requests, failed = self._by_version.get(None, 0), self._requests, self._failed
        return ServingStats(
            workflow=self.workflow, requests=requests, failed=failed, by_version=by_version, unversioned=unversioned,
            by_variant=routing["routes"], stale_routes=routing["stale_routes"], store_outages=routing["outages"],
            store_reachable=routing["store_reachable"], active_version=routing["active_version"], split=routing["split"],
            split_revision=routing["split_revision"], graphs_built=self.graphs.builds, feedback=self.ledger.stats(),
        )

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until the recorded runs and feedback are written."""
        return self.recorder.flush(timeout)

    def close(self) -> None:
        """Flush the recorder and close the stores this object opened (a shared recorder stays open)."""
        self.recorder.flush()
        self.routing.close()
        with self._trace_store_lock:
            store, self._trace_store = self._trace_store, None
        if store is not None:
            store.close()

    def __enter__(self) -> ServedWorkflow:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def needs_event_loop(graph: Any) -> bool:
    """True when a node of ``graph`` (or of a subgraph used as a node) is ``async def`` only, so the
    graph can run with ``ainvoke`` alone. LangGraph wraps such a node with ``func=None``."""
    for node in getattr(graph, "nodes", {}).values():
        bound = getattr(node, "bound", None)
        if getattr(bound, "afunc", None) is not None and getattr(bound, "func", True) is None:
            return True
        if bound is not graph and hasattr(bound, "nodes") and needs_event_loop(bound):
            return True
    return False


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def run_on_serving_loop(coro: Any) -> Any:
    """Run ``coro`` on the process's serving event loop (a daemon thread, started on first use) and
    wait for its result. The caller's context variables travel with it."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="graphtune-serving-loop", daemon=True).start()
    return asyncio.run_coroutine_threadsafe(coro, _loop).result()
