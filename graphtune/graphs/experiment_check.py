"""``experiment_check``: one ``graphtune experiment check`` pass inside the LangGraph server, for a server cron.

On a LangGraph server the controller's threads live in the server, so a look at a live experiment must
be a run on that thread through the server's API, not a resume with a local checkpointer. This graph's
one node does what ``graphtune experiment check`` does on a laptop:

1. every ``controller`` thread interrupted at an ``experiment_pending`` wait gets one look: a run
   resuming it with ``{"action": "check", "actor": "graphtune-cron"}``, started through the server's
   in-process client (``langgraph_sdk.get_client()``) and not waited for (the summary names its run).
   A thread with a run already in flight or queued (a person looking at the same moment, or the last
   pass's look) is skipped (``multitask_strategy="reject"``: the server answers 409); the next pass
   looks at it;
2. every recent promotion is checked against its guardrails (``graphtune.guard``); a broken one is
   rolled back;
3. the pass's summary is the run's output.

Run it with ``client.runs.wait(None, "experiment_check", input={})`` (the input may set ``within_hours``,
default 24), or schedule it with a server cron (``client.crons.create("experiment_check", schedule=
"*/10 * * * *")``). The server starts a cron's runs as the cron's creator without roles: with auth
off that is allowed; with auth on (``graphtune.graphs.auth``) those runs are refused, so run the pass
from an outside scheduler with an operator token, or use ``graphtune experiment check``.

The looks this pass starts go through the server's in-process client and carry no authenticated
caller. With auth on they may take a losing candidate's traffic back (as any look may), but a ramp
they find complete returns to approval: the promotion is an approver's (``graphtune.nodes.experiment``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from langgraph.graph import END, START, StateGraph
from typing_extensions import NotRequired, TypedDict

log = logging.getLogger("graphtune.experiment_check")

CONTROLLER = "controller"
CRON_ACTOR = "graphtune-cron"
CHECK = {"action": "check", "actor": CRON_ACTOR}
PAGE = 100


class CheckState(TypedDict):
    within_hours: NotRequired[float]  # promotions made within this many hours are checked (default 24)
    threads: NotRequired[list[dict]]  # one line per experiment thread looked at (or skipped)
    promotions: NotRequired[list[dict]]  # one PromotionCheck per recent promotion
    summary: NotRequired[dict]  # the counts


def pending_experiments(thread: dict) -> list[dict]:
    """The ``experiment_pending`` payloads a server thread (``threads.search``/``threads.get``) waits at."""
    found = []
    for interrupts in (thread.get("interrupts") or {}).values():
        for item in interrupts or []:
            payload = item.get("value") if isinstance(item, dict) else None
            if isinstance(payload, dict) and payload.get("kind") == "experiment_pending":
                found.append(payload)
    return found


def _status(error: BaseException) -> int | None:
    return getattr(getattr(error, "response", None), "status_code", None)


async def _controller_threads(client, status: str) -> list[dict]:
    threads, offset = [], 0
    while True:
        page = await client.threads.search(metadata={"graph_id": CONTROLLER}, status=status, limit=PAGE, offset=offset)
        threads.extend(page)
        if len(page) < PAGE:
            return threads
        offset += PAGE


async def _look(client, thread: dict, payload: dict) -> dict:
    """Start one look at one thread: a resume run, queued behind this one. Not waited for: ``langgraph
    dev`` runs one job at a time, so waiting here would wait forever; on a platform with more workers
    the looks run beside the rest of the pass. A thread with a run in flight or queued (a person looking,
    or the previous pass's look) is refused with 409 (``multitask_strategy="reject"``) and skipped."""
    thread_id = str(thread["thread_id"])
    line: dict[str, Any] = {"thread_id": thread_id, "workflow": payload.get("workflow"), "stage": payload.get("stage"),
                            "share": payload.get("share"), "looks": payload.get("looks")}
    try:
        run = await client.runs.create(thread_id, CONTROLLER, command={"resume": CHECK}, multitask_strategy="reject")
    except Exception as error:  # noqa: BLE001 - the SDK raises httpx errors
        if _status(error) == 409:
            return {**line, "status": "busy", "detail": "a run is in flight or queued on this thread; skipped"}
        log.warning("cannot resume thread %s: %s", thread_id, error)
        return {**line, "status": "error", "detail": str(error)[:500]}
    return {**line, "status": "resumed", "run_id": str(run["run_id"])}


def _check_promotions(within_hours: float) -> list[dict]:
    from graphtune.backends.config_store import open_config_store
    from graphtune.backends.traces import open_trace_store, traces_url_from_env
    from graphtune.guard import check_recent_promotions

    with open_config_store() as configs, open_trace_store(traces_url_from_env()) as traces:
        return [c.model_dump(mode="json") for c in check_recent_promotions(configs, traces, within_s=within_hours * 3600)]


async def check_pass(state: CheckState) -> dict:
    from langgraph_sdk import get_client

    client = get_client()  # in-process: the server's own API
    lines = []
    # both lists first: a thread this pass resumes turns busy
    interrupted = await _controller_threads(client, "interrupted")
    busy = await _controller_threads(client, "busy")
    seen: set[str] = set()
    for thread in interrupted:
        for payload in pending_experiments(thread)[:1]:  # one look per thread
            seen.add(str(thread["thread_id"]))
            lines.append(await _look(client, thread, payload))
    for thread in busy:  # a run in flight or queued: the next pass looks again
        for payload in pending_experiments(thread)[:1]:
            if str(thread["thread_id"]) not in seen:
                lines.append({"thread_id": str(thread["thread_id"]), "workflow": payload.get("workflow"),
                              "stage": payload.get("stage"), "share": payload.get("share"),
                              "looks": payload.get("looks"), "status": "busy",
                              "detail": "a run is in flight or queued on this thread; skipped"})
    promotions = await asyncio.to_thread(_check_promotions, float(state.get("within_hours") or 24.0))
    summary = {
        "experiments": len(lines),
        "resumed": sum(1 for line in lines if line["status"] == "resumed"),
        "skipped_busy": sum(1 for line in lines if line["status"] == "busy"),
        "errors": sum(1 for line in lines if line["status"] == "error"),
        "promotions_checked": len(promotions),
        "rollbacks": sum(1 for p in promotions if p["status"] == "rolled_back"),
    }
    log.info("experiment check: %s", summary)
    return {"threads": lines, "promotions": promotions, "summary": summary}


def build_graph() -> StateGraph:
    builder = StateGraph(CheckState)
    builder.add_node("check", check_pass)
    builder.add_edge(START, "check")
    builder.add_edge("check", END)
    return builder


def experiment_check():
    """``graphs.experiment_check`` in langgraph.json (the server calls it; it needs no checkpointer)."""
    return build_graph().compile(name="experiment_check")
