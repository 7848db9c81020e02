"""The web view: a Starlette app of server-rendered pages under ``/graphtune``.

Two ways to serve it, one app:

- ``langgraph.json``'s ``http.app`` names ``graphtune.web.served:app``: the LangGraph server (``langgraph
  dev`` or a deployment) serves the pages beside its API, behind its own auth
  (``enable_custom_route_auth``). Threads are read and answered through the server's API with the
  caller's own credentials (``graphtune.web.threads.ServerThreads``).
- ``graphtune ui --db URL`` serves it with uvicorn on a local database, with the same token policy
  (``graphtune.graphs.access``) checked by a middleware here.

Pages work without JavaScript and fetch nothing from the internet: styles and charts are inline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from graphtune.backends.traces import RunQuery
from graphtune.graphs.access import APPROVER
from graphtune.graphs.context import Caller
from graphtune.web import approval as approval_view
from graphtune.web import store_pages
from graphtune.web.render import render
from graphtune.web.threads import Threads

PREFIX = "/graphtune"
DEFAULT_WINDOW = "1h"


Viewer = Caller  # who looks at a page, as the auth layer established it (never from a form)


@dataclass
class Backend:
    """What a request reads and answers through: the threads, and the stores' URLs."""

    threads_for: Callable[[Request, Viewer], Threads]
    database_url: Callable[[], str]
    traces_url: Callable[[], str]
    viewer_of: Callable[[Request], Viewer]


def create_app(backend: Backend, *, middleware: list | None = None) -> Starlette:
    async def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        viewer = backend.viewer_of(request)
        return HTMLResponse(render(template, viewer=viewer, prefix=PREFIX, path=request.url.path, **context),
                            status_code=status)

    async def index(request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/approvals", status_code=303)

    async def approvals(request: Request) -> Response:
        threads = backend.threads_for(request, backend.viewer_of(request))
        waiting = await threads.waiting()
        return await page(request, "approvals.html", waiting=[w for w in waiting if w.kind == "approval"],
                          experiments=[w for w in waiting if w.kind == "experiment_pending"])

    async def thread(request: Request) -> Response:
        thread_id = request.path_params["thread_id"]
        threads = backend.threads_for(request, backend.viewer_of(request))
        try:
            view = await threads.get(thread_id)
        except LookupError as error:
            return await page(request, "missing.html", what=str(error))
        past = await threads.past_values(thread_id) if (view.values.get("experiment") or {}) else []
        context = approval_view.approval_page(view.values, view.waiting, past)
        return await page(request, "thread.html", thread_id=thread_id, notice=request.query_params.get("notice", ""),
                          **context)

    async def answer(request: Request) -> Response:
        thread_id = request.path_params["thread_id"]
        viewer = backend.viewer_of(request)
        if not _same_origin(request):
            return HTMLResponse("refused: the form was posted from another site", status_code=403)
        if not viewer.may(APPROVER):
            return await page(request, "missing.html", status=403,
                              what=f"{viewer.identity} may not answer approvals: that needs the approver role")
        form = {k: str(v) for k, v in (await request.form()).items()}
        try:
            resume = approval_view.answer_from_form(form)
        except approval_view.FormError as error:
            return _back(thread_id, f"Not sent: {error}")
        threads = backend.threads_for(request, viewer)
        try:
            view = await threads.answer(thread_id, resume)
        except LookupError as error:
            return _back(thread_id, f"Not sent: {error}")
        except Exception as error:  # noqa: BLE001  (a refusal from the server's auth: show it, do not crash the page)
            return _back(thread_id, f"Refused: {_detail(error)}")
        if view.pending and view.pending.get("error"):
            return _back(thread_id, f"Not accepted: {view.pending['error']}")
        outcome = view.values.get("outcome") or {}
        said = outcome.get("message") or f"{resume['action']} sent"
        return _back(thread_id, f"{outcome.get('status', resume['action'])}: {said}")

    async def history(request: Request) -> Response:
        workflow = request.query_params.get("workflow") or None
        context = await asyncio.to_thread(_with_config_store, backend.database_url(), store_pages.history_page, workflow)
        return await page(request, "history.html", **context)

    async def hotspots(request: Request) -> Response:
        from graphtune.cli.common import parse_duration

        workflow = request.query_params.get("workflow") or None
        window = request.query_params.get("window") or DEFAULT_WINDOW
        try:
            window_s = parse_duration(window)
        except Exception:  # noqa: BLE001  (typer's BadParameter: shown, not raised)
            return await page(request, "missing.html", status=400,
                              what=f"window: expected a duration such as 15m, 1h or 7d; got {window!r}")
        workflows = await asyncio.to_thread(_with_config_store, backend.database_url(), lambda s: s.workflows())
        context = await asyncio.to_thread(_with_trace_store, backend.traces_url(), store_pages.hotspots_page,
                                          workflows, workflow, window_s)
        return await page(request, "hotspots.html", window=window, **context)

    async def traces(request: Request) -> Response:
        try:
            query = run_query(request.query_params)
        except ValueError as error:
            return await page(request, "missing.html", status=400, what=str(error))
        context = await asyncio.to_thread(_with_trace_store, backend.traces_url(), store_pages.traces_page, query)
        return await page(request, "traces.html", filters=dict(request.query_params), **context)

    async def trace(request: Request) -> Response:
        context = await asyncio.to_thread(_with_trace_store, backend.traces_url(), store_pages.trace_page,
                                          request.path_params["trace_id"])
        return await page(request, "trace.html", **context)

    routes = [
        Route(PREFIX, index), Route(f"{PREFIX}/", index),
        Route(f"{PREFIX}/approvals", approvals),
        Route(f"{PREFIX}/threads/{{thread_id}}", thread, methods=["GET"]),
        Route(f"{PREFIX}/threads/{{thread_id}}", answer, methods=["POST"]),
        Route(f"{PREFIX}/history", history),
        Route(f"{PREFIX}/hotspots", hotspots),
        Route(f"{PREFIX}/traces", traces),
        Route(f"{PREFIX}/traces/{{trace_id}}", trace),
    ]
    return Starlette(routes=routes, middleware=middleware or [])


def run_query(params) -> RunQuery:
    """The trace browser's filters from the query string; ``ValueError`` naming the bad one."""
    def number(name: str, kind=float):
        text = (params.get(name) or "").strip()
        if not text:
            return None
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"{name}: expected a number, got {text!r}") from None

    since_h, until_h = number("since_hours"), number("until_hours")
    now = time.time()
    return RunQuery(workflow=params.get("workflow") or None, config_version=number("version", int),
                    source=params.get("source") or None,
                    since=now - since_h * 3600 if since_h is not None else None,
                    until=now - until_h * 3600 if until_h is not None else None,
                    errors_only=params.get("errors") in ("1", "on", "true"), limit=min(number("limit", int) or 50, 500))


def _with_config_store(url: str, read: Callable, *args):
    from graphtune.backends.config_store import open_config_store

    with open_config_store(url) as store:
        return read(store, *args)


def _with_trace_store(url: str, read: Callable, *args):
    from graphtune.backends.traces import open_trace_store

    with open_trace_store(url) as store:
        return read(store, *args)


def _back(thread_id: str, notice: str) -> RedirectResponse:
    """Post, redirect, get: the result shows on the thread's page and a reload sends nothing twice."""
    return RedirectResponse(f"{PREFIX}/threads/{quote(thread_id)}?{urlencode({'notice': notice[:800]})}", status_code=303)


def _same_origin(request: Request) -> bool:
    """A form posted from another site (cross-site request forgery) carries a foreign Origin."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return True
    return urlsplit(origin).netloc == request.headers.get("host", urlsplit(str(request.base_url)).netloc)


def _detail(error: Exception) -> str:
    response = getattr(error, "response", None)
    if response is not None:
        try:
            return str(response.json().get("detail") or response.text)
        except Exception:  # noqa: BLE001
            return response.text
    return str(error)
