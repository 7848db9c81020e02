"""Run the controller in this process with a durable checkpointer: what the CLI and the demo use.

Each call opens the checkpointer for the configured database, runs the graph until it ends or
parks at approval, and closes it again, so ``graphtune tune`` and a later ``graphtune approve`` (in
another process, maybe days later) meet at the same thread.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage
from langgraph.types import Command

from graphtune.backends.checkpoints import open_checkpointer, waiting_thread_ids
from graphtune.graphs.context import ControllerContext
from graphtune.graphs.controller import CONTROLLER, create_controller
from graphtune.tracing.recorder import recorder_for


@dataclass
class RunResult:
    thread_id: str
    values: dict[str, Any]
    pending: dict[str, Any] | None = None  # the approval interrupt's payload while parked
    waiting: dict[str, Any] | None = None  # whatever interrupt the thread waits at (approval, experiment_pending)

    @property
    def outcome(self) -> dict[str, Any] | None:
        return self.values.get("outcome")


@dataclass
class PendingThread:
    thread_id: str
    workflow: str
    candidate_id: str
    created_at: str | None
    request: str
    kind: str = "approval"  # or experiment_pending: a live experiment collecting data
    detail: str = ""


@dataclass
class LocalController:
    context: ControllerContext = field(default_factory=ControllerContext)
    on_message: Callable[[str, BaseMessage], None] | None = None  # progress: (node, message)
    on_event: Callable[[dict], None] | None = None  # custom stream events, e.g. evaluate's eval_progress
    record: bool = True

    async def start(self, text: str, *, spec: str | None = None, request: dict | None = None,
                    thread_id: str | None = None) -> RunResult:
        """A new tuning run from a chat request (``text``) or a structured ``request``."""
        thread_id = thread_id or f"tune-{uuid.uuid4().hex[:12]}"
        state: dict[str, Any] = {"messages": [HumanMessage(text or "tune")]}
        if spec:
            state["spec"] = spec
        if request:
            state["request"] = request
        return await self._run(thread_id, state)

    async def resume(self, thread_id: str, answer: Any) -> RunResult:
        """Answer the approval interrupt of ``thread_id`` (approve, reject or edit)."""
        async with self._graph() as graph:
            snapshot = await graph.aget_state(self._config(thread_id))
            if not snapshot.values:
                raise LookupError(f"no tuning thread {thread_id!r} in {self.context.resolved_database_url()}")
            if not _interrupts(snapshot):
                raise LookupError(f"thread {thread_id!r} is not waiting for approval")
        return await self._run(thread_id, Command(resume=answer))

    async def continue_run(self, thread_id: str) -> RunResult:
        """Carry on a run that stopped mid-way (its process died) from its last checkpoint.

        Nothing finished is done again: evaluate tasks that completed are in the checkpoint, and the
        examples an interrupted task had already scored are in the eval cache."""
        async with self._graph() as graph:
            snapshot = await graph.aget_state(self._config(thread_id))
        if not snapshot.values:
            raise LookupError(f"no tuning thread {thread_id!r} in {self.context.resolved_database_url()}")
        if _interrupts(snapshot) or not snapshot.next:  # waiting for approval, or finished: nothing to carry on
            return _result(thread_id, snapshot)
        return await self._run(thread_id, None)

    async def state(self, thread_id: str) -> RunResult:
        async with self._graph() as graph:
            snapshot = await graph.aget_state(self._config(thread_id))
        if not snapshot.values:
            raise LookupError(f"no tuning thread {thread_id!r} in {self.context.resolved_database_url()}")
        return _result(thread_id, snapshot)

    async def history(self, thread_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The thread's state at each of its latest ``limit`` checkpoints, newest first (the web view
        reads a live experiment's looks from them)."""
        async with self._graph() as graph:
            return [dict(s.values) async for s in graph.aget_state_history(self._config(thread_id), limit=limit)]

    async def check_experiments(self) -> list[RunResult]:
        """One look at every live experiment: each thread parked at ``experiment_pending`` is resumed
        once; it parks again, or returns to approval with the evidence when the data decide."""
        return [await self._run(t.thread_id, Command(resume={"action": "check"}))
                for t in await self.pending() if t.kind == "experiment_pending"]

    async def pending(self) -> list[PendingThread]:
        """Threads parked at approval or in a live experiment, newest first."""
        found: list[PendingThread] = []
        async with self._graph() as graph:
            for thread_id in await waiting_thread_ids(graph.checkpointer):
                snapshot = await graph.aget_state(self._config(thread_id))
                for payload in _interrupts(snapshot):
                    if isinstance(payload, dict) and payload.get("kind") in ("approval", "experiment_pending"):
                        detail = (f"{payload['stage']} at {payload['share']:.0%}, {payload['looks']} looks"
                                  if payload["kind"] == "experiment_pending" else "")
                        found.append(PendingThread(thread_id, payload["workflow"], payload["candidate_id"],
                                                   snapshot.created_at, (snapshot.values.get("request") or {}).get("text", ""),
                                                   payload["kind"], detail))
        return found

    # -- internals ---------------------------------------------------------------------------
    def _config(self, thread_id: str) -> dict:
        return {"configurable": {"thread_id": thread_id}}

    @asynccontextmanager
    async def _graph(self) -> AsyncIterator[Any]:
        async with open_checkpointer(self.context.resolved_database_url()) as saver:
            recorder = recorder_for(self.context.resolved_traces_url(), capture_state=False) if self.record else None
            yield create_controller(saver, recorder=recorder, record=self.record)

    async def _run(self, thread_id: str, graph_input: Any) -> RunResult:
        async with self._graph() as graph:
            config = self._config(thread_id)
            modes = ["updates", "custom"] if self.on_event else ["updates"]
            async for mode, chunk in graph.astream(graph_input, config, context=self.context, stream_mode=modes):
                if mode == "custom":
                    if isinstance(chunk, dict):
                        self.on_event(chunk)
                    continue
                for node, values in chunk.items():
                    if self.on_message and isinstance(values, dict):
                        for message in values.get("messages", []) or []:
                            self.on_message(node, message)
            snapshot = await graph.aget_state(config)
        if self.record:
            await asyncio.to_thread(recorder_for(self.context.resolved_traces_url(), capture_state=False).flush, 10.0)
        return _result(thread_id, snapshot)


def _interrupts(snapshot) -> list[Any]:
    return [i.value for task in snapshot.tasks for i in task.interrupts]


def _result(thread_id: str, snapshot) -> RunResult:
    waits = [p for p in _interrupts(snapshot) if isinstance(p, dict)]
    pending = next((p for p in waits if p.get("kind") == "approval"), None)
    return RunResult(thread_id=thread_id, values=dict(snapshot.values), pending=pending, waiting=waits[0] if waits else None)


__all__ = ["CONTROLLER", "LocalController", "PendingThread", "RunResult"]
