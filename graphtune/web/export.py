"""``graphtune report THREAD --html``: the approval page as one file, charts inline, no forms, no links out."""

from __future__ import annotations

from graphtune.web.app import PREFIX, Viewer
from graphtune.web.approval import approval_page
from graphtune.web.render import render
from graphtune.web.threads import LocalThreads


async def export_report(thread_id: str, database_url: str | None = None) -> str:
    from graphtune.backends.config_store import database_url_from_env

    threads = LocalThreads(database_url or database_url_from_env(), actor="")
    view = await threads.get(thread_id)
    past = await threads.past_values(thread_id) if view.values.get("experiment") else []
    context = approval_page(view.values, view.waiting, past)
    if not context["report"]:
        raise LookupError(f"thread {thread_id!r} has no approval report yet")
    return render("thread.html", static=True, viewer=Viewer("", ()), prefix=PREFIX, path="", thread_id=thread_id,
                  notice="", **context)
