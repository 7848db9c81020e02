"""``graphtune ui`` and ``graphtune report``: the web view on a local database, and its approval page as a file."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer

from graphtune.cli.common import DbOpt, JsonOpt, console, fail, print_json
from graphtune.extras import needs_extra
from graphtune.web.links import DEFAULT_HOST, DEFAULT_PORT, WEB_URL_ENV



def register(app: typer.Typer) -> None:
    @app.command()
    def ui(db: DbOpt = None,
           host: Annotated[str, typer.Option(help="Address to listen on (localhost only by default).")] = DEFAULT_HOST,
           port: Annotated[int, typer.Option(help="Port; 0 picks a free one.")] = DEFAULT_PORT):
        """Serve the web view (approvals, experiments, history, hot spots, traces) on a local database."""
        from graphtune.backends.config_store import database_url_from_env
        from graphtune.graphs.access import AccessConfigError, load_policy

        with needs_extra("web", "graphtune ui"):
            import uvicorn

            from graphtune.web.local import create_local_app

        url = db or database_url_from_env()
        try:
            policy = load_policy()
        except AccessConfigError as error:
            raise fail(str(error)) from None
        console.print(f"graphtune web view of {url} on http://{host}:{port}/graphtune  ({policy.describe()})")
        if port != DEFAULT_PORT or host != DEFAULT_HOST:
            console.print(f"[dim]set {WEB_URL_ENV}=http://{host}:{port} so the approval links the CLI prints point here[/dim]")
        uvicorn.run(create_local_app(url, policy), host=host, port=port, log_level="warning")

    @app.command()
    def report(thread: Annotated[str, typer.Argument(help="The tuning thread id.")],
               html: Annotated[Path, typer.Option("--html", help="Write the approval page, charts inline, to this file.")],
               db: DbOpt = None, as_json: JsonOpt = False):
        """Write a tuning thread's approval report as one self-contained HTML file (for a review or a ticket)."""
        with needs_extra("web", "graphtune report --html"):
            from graphtune.web.export import export_report

        if db:
            os.environ["GRAPHTUNE_DATABASE_URL"] = db
        try:
            text = asyncio.run(export_report(thread, db))
        except LookupError as error:
            raise fail(str(error)) from None
        html.write_text(text, encoding="utf-8")
        if as_json:
            print_json({"thread_id": thread, "html": str(html), "bytes": len(text.encode("utf-8"))})
        else:
            console.print(f"wrote {html} ({len(text) // 1024} KiB, no external assets)")
