"""``auth.path`` in langgraph.json: bearer tokens, and only approvers answer an approval.

The LangGraph server calls ``authenticate`` on every request (401 without a valid token) and the
``auth.on`` handlers before every action. A run on a thread that waits at an approval interrupt
(a resume, new input, or a state update that would bypass it) needs the ``approver`` role; anything
else that changes state needs ``operator``; reads need a valid token. A refusal is a 403 before
anything runs, so the thread stays exactly where it was. The approve node then records the
authenticated identity as the approver, never a name from the resume payload.

The policy is read when the server imports this module: a token file that is named but missing or
invalid stops the server from starting (see ``graphtune.graphs.access``).
"""

from __future__ import annotations

import logging
from typing import Any

from langgraph_sdk import Auth

from graphtune.graphs.access import APPROVER, OPERATOR, AuthenticationError, load_policy

log = logging.getLogger("graphtune.auth")

POLICY = load_policy()
if POLICY.mode == "off":
    log.warning(POLICY.describe())
else:
    log.info(POLICY.describe())

auth = Auth()


@auth.authenticate
async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
    try:
        principal = POLICY.authenticate(authorization)
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


@auth.on.threads.create_run
async def create_run(ctx: Auth.types.AuthContext, value: Auth.types.RunsCreate) -> None:
    await _guard_thread(ctx, value.get("thread_id"), "resume or run")


@auth.on.threads.update
async def update_thread(ctx: Auth.types.AuthContext, value: Auth.types.ThreadsUpdate) -> None:
    await _guard_thread(ctx, value.get("thread_id"), "update")


async def _guard_thread(ctx: Auth.types.AuthContext, thread_id: Any, what: str) -> None:
    kinds = await waiting_kinds(thread_id) if thread_id else []
    if "approval" in kinds:
        _require(ctx, APPROVER, f"{what} thread {thread_id}, which waits for approval")
    else:
        _require(ctx, OPERATOR, f"{what} a thread")


def _require(ctx: Auth.types.AuthContext, role: str, what: str) -> None:
    if POLICY.mode == "off":  # anyone may do anything; also runs the server starts itself (crons) carry no roles
        return
    if role not in ctx.permissions:
        roles = ", ".join(p for p in ctx.permissions if p in (APPROVER, OPERATOR)) or "none"
        raise Auth.exceptions.HTTPException(
            status_code=403, detail=f"{ctx.user.identity} may not {what}: that needs the {role} role (theirs: {roles})")


async def waiting_kinds(thread_id: Any) -> list[str]:
    """The kinds of interrupts the thread waits at ("approval", ...), read through the server's own
    in-process API (which skips auth). A thread that cannot be read is refused, not waved through."""
    from langgraph_sdk import get_client

    try:
        thread = await get_client().threads.get(str(thread_id))
    except Exception as error:  # noqa: BLE001
        if getattr(getattr(error, "response", None), "status_code", None) == 404:
            return []  # a new thread (runs.create with if_not_exists="create")
        log.error("cannot read thread %s to check its waits: %s", thread_id, error)
        raise Auth.exceptions.HTTPException(status_code=503, detail=f"cannot check what thread {thread_id} waits for") from None
    kinds = []
    for interrupts in (thread.get("interrupts") or {}).values():
        for item in interrupts:
            payload = item.get("value") if isinstance(item, dict) else None
            kinds.append(payload.get("kind", "other") if isinstance(payload, dict) else "other")
    return kinds
