"""``auth.path`` in langgraph.json: tokens (``Authorization: Bearer`` or ``X-Api-Key``), and who may do
what on the LangGraph server.

The LangGraph server calls ``authenticate`` on every request (401 without a valid token) and the
``auth.on`` handlers before every action. A refusal is a 403 before anything runs, so the thread stays
exactly where it was:

- reads need a valid token; every other action needs the ``operator`` role;
- a run on a thread that waits at an approval interrupt (a resume, or new input that would bypass
  it) needs the ``approver`` role. The wait is read from the thread's checkpoint, so a copy of the
  thread (``threads.copy``) waits at the same approval;
- writing a thread's state directly (``threads.update_state``, ``supersteps`` of ``threads.create``),
  a run with ``command.update`` or ``command.goto``, a resume that stops a live experiment, and
  creating or changing assistants (whose defaults every run through them gets) need the ``approver``
  role: an operator drives runs, it does not edit what they decided or what they start from.

A run whose only command is ``goto: "__end__"`` on a thread waiting for approval (Agent Chat UI's
"Mark as Resolved") is turned into what it means, a rejection (``graphtune.graphs.hitl.end_as_reject``),
here because this is the one place that sees a run's command before the graph runs.

These handlers keep the obvious doors shut; they are not what makes a promotion safe. The nodes that
write (approve, promote, experiment) check the run's authenticated caller and role again as they
write, and record that caller (``graphtune.graphs.context.actor_for``), whatever the state says.

The policy is read when the server imports this module: a token file that is named but missing or
invalid stops the server from starting (see ``graphtune.graphs.access``).
"""

from __future__ import annotations

import logging
from typing import Any

from langgraph_sdk import Auth

from graphtune.graphs.access import APPROVER, OPERATOR, AuthenticationError, load_policy, serve_with
from graphtune.graphs.hitl import end_as_reject

log = logging.getLogger("graphtune.auth")

POLICY = serve_with(load_policy())
if POLICY.mode == "off":
    log.warning(POLICY.describe())
else:
    log.info(POLICY.describe())

auth = Auth()


@auth.authenticate
async def authenticate(authorization: str | None, headers: dict[bytes, bytes] | None) -> Auth.types.MinimalUserDict:
    api_key = (headers or {}).get(b"x-api-key")
    try:
        principal = POLICY.authenticate(authorization, api_key.decode("utf-8", "replace") if api_key else None)
    except AuthenticationError as error:
        raise Auth.exceptions.HTTPException(status_code=401, detail=str(error)) from None
    return {"identity": principal.identity, "permissions": list(principal.permissions)}


@auth.on
async def authorize(ctx: Auth.types.AuthContext, value: Any) -> None:
    """Reads for every authenticated caller; other actions for operators."""
    if ctx.action in ("read", "search", "get", "list_namespaces"):
        return None
    _require(ctx, OPERATOR, f"{ctx.action} {ctx.resource}")
    return None


@auth.on.assistants
async def assistants(ctx: Auth.types.AuthContext, value: Any) -> None:
    """An assistant's config and context are the defaults of every run through it, the approver's
    included (``experiment_share``, ``database_url``, ``specs``): only approvers change them."""
    if ctx.action in ("read", "search"):
        return None
    _require(ctx, APPROVER, f"{ctx.action} assistants (their defaults apply to the approver's runs)")
    return None


@auth.on.threads.create_run
async def create_run(ctx: Auth.types.AuthContext, value: Auth.types.RunsCreate) -> None:
    thread_id = value.get("thread_id")
    kinds = await waiting_kinds(thread_id) if thread_id else []
    command = (value.get("kwargs") or {}).get("command") or {}
    steering = sorted(k for k, v in command.items() if k != "resume" and v not in (None, {}, []))
    if steering:
        _require(ctx, APPROVER, f"send command.{', command.'.join(steering)} (it writes the thread's state or skips its steps)")
    if "approval" in kinds:
        _require(ctx, APPROVER, f"resume or run thread {thread_id}, which waits for approval")
        if end_as_reject(command):  # "Mark as Resolved": LangGraph alone would re-run the approval and wait again
            log.info("thread %s ended by %s while waiting for approval: answered as a rejection", thread_id, ctx.user.identity)
    elif "experiment_pending" in kinds and _stops(command.get("resume")):
        _require(ctx, APPROVER, f"stop the live experiment of thread {thread_id}")
    else:
        _require(ctx, OPERATOR, "resume or run a thread")


@auth.on.threads.update
async def update_thread(ctx: Auth.types.AuthContext, value: Auth.types.ThreadsUpdate) -> None:
    """Metadata patches and run cancellation carry ``metadata`` or ``action``; a state update
    (``threads.update_state``, ``supersteps``) carries only the thread id."""
    if "metadata" in value or value.get("action"):
        _require(ctx, OPERATOR, "update a thread")
    else:
        _require(ctx, APPROVER, f"write the state of thread {value.get('thread_id')}")


def _stops(resume: Any) -> bool:
    return isinstance(resume, dict) and str(resume.get("action", "")).strip().lower() == "stop"


def _require(ctx: Auth.types.AuthContext, role: str, what: str) -> None:
    if POLICY.mode == "off":  # anyone may do anything; also runs the server starts itself (crons) carry no roles
        return
    if role not in ctx.permissions:
        roles = ", ".join(p for p in ctx.permissions if p in (APPROVER, OPERATOR)) or "none"
        raise Auth.exceptions.HTTPException(
            status_code=403, detail=f"{ctx.user.identity} may not {what}: that needs the {role} role (theirs: {roles})")


async def waiting_kinds(thread_id: Any) -> list[str]:
    """The kinds of interrupts the thread's latest checkpoint waits at ("approval", ...), read through
    the server's own in-process API (which skips auth). The checkpoint, not the thread row: a copy made
    with ``threads.copy`` has no interrupts in its row but waits at the same approval. A thread that
    cannot be read is refused, not waved through."""
    from langgraph_sdk import get_client

    try:
        state = await get_client().threads.get_state(str(thread_id))
    except Exception as error:  # noqa: BLE001
        if getattr(getattr(error, "response", None), "status_code", None) == 404:
            return []  # a new thread (runs.create with if_not_exists="create")
        log.error("cannot read thread %s to check its waits: %s", thread_id, error)
        raise Auth.exceptions.HTTPException(status_code=503, detail=f"cannot check what thread {thread_id} waits for") from None
    kinds = []
    for task in state.get("tasks") or []:
        for item in task.get("interrupts") or []:
            payload = item.get("value") if isinstance(item, dict) else None
            kinds.append(payload.get("kind", "other") if isinstance(payload, dict) else "other")
    return kinds
