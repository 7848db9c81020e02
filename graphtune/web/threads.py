"""Where the web view reads and answers tuning threads: the LangGraph server's own API, or a local database.

- ``ServerThreads``: the page runs inside the LangGraph server (``langgraph.json``'s ``http.app``). It
  calls the server's HTTP API at its own address *with the caller's own credentials*, so an answer
  from a form passes the same auth handlers (``graphtune/graphs/auth.py``) and the same write-time
  checks in the nodes as the SDK; the approver is whoever the server authenticated.
- ``LocalThreads``: ``graphtune ui --db URL`` with no server: the controller runs in this process on
  the database's checkpoints, as ``graphtune approve`` does; the approver is the authenticated caller
  of the page (the OS user when auth is off), never a name typed in a form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

WAIT_KINDS = ("approval", "experiment_pending")
HISTORY_LIMIT = 100  # checkpoints read for an experiment's looks


@dataclass
class ThreadView:
    thread_id: str
    values: dict[str, Any]
    waiting: dict[str, Any] | None = None  # the interrupt payload the thread waits at
    created_at: str | None = None

    @property
    def pending(self) -> dict[str, Any] | None:
        return self.waiting if (self.waiting or {}).get("kind") == "approval" else None


@dataclass
class Waiting:
    thread_id: str
    kind: str
    workflow: str
    candidate_id: str
    created_at: str | None = None
    request: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


class Threads(Protocol):
    async def waiting(self) -> list[Waiting]: ...

    async def get(self, thread_id: str) -> ThreadView: ...

    async def past_values(self, thread_id: str) -> list[dict[str, Any]]:
        """The thread's state at each of its latest checkpoints, newest first."""

    async def answer(self, thread_id: str, answer: dict[str, Any]) -> ThreadView: ...


def _waiting(thread_id: str, payload: dict, created_at: str | None, values: dict) -> Waiting:
    return Waiting(thread_id, payload["kind"], payload.get("workflow", ""), payload.get("candidate_id", ""),
                   created_at, (values.get("request") or {}).get("text", ""), payload)


class LocalThreads:
    """The controller in this process, on the checkpoints in ``database_url``."""

    def __init__(self, database_url: str, actor: str):
        from graphtune.graphs.context import ControllerContext
        from graphtune.graphs.local_controller import LocalController

        self.actor = actor
        self.controller = LocalController(context=ControllerContext(database_url=database_url))

    async def waiting(self) -> list[Waiting]:
        return [Waiting(t.thread_id, t.kind, t.workflow, t.candidate_id, t.created_at, t.request)
                for t in await self.controller.pending()]

    async def get(self, thread_id: str) -> ThreadView:
        result = await self.controller.state(thread_id)
        return ThreadView(thread_id, result.values, result.waiting)

    async def past_values(self, thread_id: str) -> list[dict[str, Any]]:
        return await self.controller.history(thread_id, limit=HISTORY_LIMIT)

    async def answer(self, thread_id: str, answer: dict[str, Any]) -> ThreadView:
        result = await self.controller.resume(thread_id, {**answer, "actor": self.actor})
        return ThreadView(thread_id, result.values, result.waiting)


class ServerThreads:
    """The LangGraph server's API at ``url``, called with the page's caller's credentials."""

    def __init__(self, url: str, headers: dict[str, str]):
        from langgraph_sdk import get_client

        self.client = get_client(url=url, api_key=None, headers=headers)

    async def waiting(self) -> list[Waiting]:
        found = []
        for thread in await self.client.threads.search(status="interrupted", limit=100):
            for items in (thread.get("interrupts") or {}).values():
                for item in items:
                    payload = item.get("value") if isinstance(item, dict) else None
                    if isinstance(payload, dict) and payload.get("kind") in WAIT_KINDS:
                        found.append(_waiting(thread["thread_id"], payload, str(thread.get("created_at") or ""),
                                              thread.get("values") or {}))
        return found

    async def get(self, thread_id: str) -> ThreadView:
        try:
            state = await self.client.threads.get_state(thread_id)
        except Exception as error:  # noqa: BLE001  (the SDK raises httpx errors)
            if getattr(getattr(error, "response", None), "status_code", None) == 404:
                raise LookupError(f"no thread {thread_id!r} on this server") from None
            raise
        return ThreadView(thread_id, state.get("values") or {}, _first_wait(state), str(state.get("created_at") or ""))

    async def past_values(self, thread_id: str) -> list[dict[str, Any]]:
        return [s.get("values") or {} for s in await self.client.threads.get_history(thread_id, limit=HISTORY_LIMIT)]

    async def answer(self, thread_id: str, answer: dict[str, Any]) -> ThreadView:
        """Resume the thread as its last run ran (same assistant, same context): the settings the
        operator chose for the tuning run hold for the approver's answer too."""
        runs = await self.client.runs.list(thread_id, limit=1)
        last = runs[0] if runs else {}
        kwargs = last.get("kwargs") or {}
        await self.client.runs.wait(thread_id, last.get("assistant_id") or "controller", command={"resume": answer},
                                    context=kwargs.get("context") or None, raise_error=False)
        return await self.get(thread_id)


def _first_wait(state: dict) -> dict | None:
    for task in state.get("tasks") or []:
        for item in task.get("interrupts") or []:
            payload = item.get("value") if isinstance(item, dict) else None
            if isinstance(payload, dict):
                return payload
    return None
