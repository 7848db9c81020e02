"""``graphtune traces``: read recorded trajectories; retention and deletion."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer
from rich.table import Table

from graphtune.backends.traces import EventQuery, TraceStore, UnknownBackendError, open_trace_store
from graphtune.cli.common import DbOpt, JsonOpt, TracesDbOpt, console, fail, group, parse_duration, print_json

traces_app = group("Read recorded trajectories: list, show, stats; retention and deletion.")


def _open(url: str | None) -> TraceStore:
    try:
        return open_trace_store(url)
    except UnknownBackendError as exc:
        raise fail(str(exc)) from None


def _sources(source: str) -> tuple[str, ...] | None:
    return None if source == "all" else tuple(s.strip() for s in source.split(","))


@traces_app.command("list")
def traces_list(
    workflow: Annotated[Optional[str], typer.Option(help="Only this workflow.")] = None,
    source: Annotated[str, typer.Option(help="production, eval, controller, demo (comma separated) or all.")] = "all",
    since: Annotated[str, typer.Option(help="How far back to look.")] = "7d",
    limit: Annotated[int, typer.Option(help="How many traces.")] = 20,
    db: TracesDbOpt = None,
    as_json: JsonOpt = False,
):
    """Recent traces, newest first."""
    from graphtune.tracing.viewer import fmt_ms, fmt_time

    with _open(db) as store:
        summaries = store.traces(workflow=workflow, sources=_sources(source), since=time.time() - parse_duration(since), limit=limit)
    if as_json:
        print_json([s.model_dump() for s in summaries])
        return
    table = Table(title=f"recent traces ({store.url})", caption="trace ids are shortened; traces show accepts a prefix")
    for column in ("trace", "start", "workflow", "thread", "duration", "status", "events", "errors", "tokens"):
        table.add_column(column, no_wrap=column in ("trace", "start"))
    for s in summaries:
        style = {"error": "red", "interrupted": "yellow"}.get(s.status or "", "")
        table.add_row(s.trace_id[:12], fmt_time(s.start)[5:], s.workflow or "-", s.thread_id or "-",
                      fmt_ms(s.duration_ms), s.status or "-", str(s.events), str(s.errors),
                      f"{s.input_tokens}/{s.output_tokens}", style=style)
    console.print(table)
    if not summaries:
        console.print("no traces yet: record some with graphtune.trace(graph) or TrajectoryNode", style="dim")


@traces_app.command("show")
def traces_show(
    trace_id: Annotated[str, typer.Argument(help="Trace id (or a unique prefix of a recent one).")],
    db: TracesDbOpt = None,
    as_json: JsonOpt = False,
):
    """One trace as a tree: runs, nodes, messages, tool calls, LLM usage, durations and errors."""
    from graphtune.tracing.viewer import build_tree

    with _open(db) as store:
        events = store.read(EventQuery(trace_id=trace_id))
        if not events and len(trace_id) < 32:
            matches = [s.trace_id for s in store.traces(since=0, limit=5000) if s.trace_id.startswith(trace_id)]
            if len(matches) > 1:
                raise fail(f"prefix {trace_id!r} matches {len(matches)} traces; give more characters")
            if matches:
                events = store.read(EventQuery(trace_id=matches[0]))
    if not events:
        raise fail(f"no trace {trace_id!r} in {store.url}", code=1)
    if as_json:
        print_json([e.model_dump(mode="json") for e in events])
        return
    console.print(build_tree(events))


@traces_app.command("stats")
def traces_stats(
    workflow: Annotated[Optional[str], typer.Option(help="Only this workflow.")] = None,
    since: Annotated[str, typer.Option(help="Window start, as a duration back from now.")] = "24h",
    source: Annotated[str, typer.Option(help="Sources counted: production (default), eval, controller, demo, or all.")] = "production",
    db: TracesDbOpt = None,
    as_json: JsonOpt = False,
):
    """Per workflow and node: count, error rate, p50/p95 latency, tokens, negative feedback."""
    from graphtune.tracing.viewer import fmt_ms

    with _open(db) as store:
        stats = store.aggregate(workflow=workflow, since=time.time() - parse_duration(since), sources=_sources(source))
    if as_json:
        print_json([s.model_dump() for s in stats])
        return
    table = Table(title=f"node statistics, last {since}, source={source}")
    for column in ("workflow", "node", "count", "errors", "error rate", "p50", "p95", "mean", "tokens in", "tokens out", "👎"):
        table.add_column(column, justify="right" if column not in ("workflow", "node") else "left")
    for s in stats:
        style = "bold" if s.node == "__run__" else ""
        table.add_row(s.workflow, s.node, str(s.count), str(s.errors), f"{s.error_rate:.1%}", fmt_ms(s.p50_ms),
                      fmt_ms(s.p95_ms), fmt_ms(s.mean_ms), str(s.input_tokens), str(s.output_tokens),
                      str(s.negative_feedback), style=style)
    console.print(table)
    if not stats:
        console.print(f"no {source} events in this window", style="dim")


@traces_app.command("prune")
def traces_prune(
    older_than: Annotated[str, typer.Option("--older-than", help="Delete events older than this, e.g. 30d.")],
    db: TracesDbOpt = None,
    as_json: JsonOpt = False,
):
    """Retention: delete events older than a duration."""
    cutoff = time.time() - parse_duration(older_than)
    with _open(db) as store:
        deleted = store.prune(cutoff)
    if as_json:
        print_json({"deleted_events": deleted, "older_than": older_than, "cutoff": cutoff, "store": store.url})
    else:
        console.print(f"deleted {deleted} events older than {older_than} from {store.url}")


@traces_app.command("delete-user")
def traces_delete_user(
    user_id: Annotated[str, typer.Argument(help="The plain user id; it is hashed the way the recorder hashed it.")],
    db: TracesDbOpt = None,
    as_json: JsonOpt = False,
):
    """Delete every event of one user (right to erasure)."""
    from graphtune.tracing.privacy import hash_user_id, resolve_salt

    with _open(db) as store:
        deleted = store.delete_user(hash_user_id(user_id, resolve_salt(store)))
    if as_json:
        print_json({"deleted_events": deleted, "store": store.url})
    else:
        console.print(f"deleted {deleted} events of that user from {store.url}")



def forget_user(
    user_id: Annotated[str, typer.Argument(help="The plain user id; it is hashed the way the recorder hashed it.")],
    db: DbOpt = None,
    as_json: JsonOpt = False,
):
    """Right to erasure: delete one user's recorded events and every checkpointed thread they ran."""
    import asyncio
    import os

    from graphtune.backends.checkpoints import forget_threads_of
    from graphtune.backends.config_store import database_url_from_env
    from graphtune.tracing.privacy import hash_user_id, resolve_salt

    database = db or database_url_from_env()
    with _open(os.environ.get("GRAPHTUNE_TRACES_URL") or database) as store:
        user_hash = hash_user_id(user_id, resolve_salt(store))
        events = store.delete_user(user_hash)
    try:
        threads = asyncio.run(forget_threads_of(user_hash, database))
    except (UnknownBackendError, ValueError) as exc:
        raise fail(str(exc)) from None
    if as_json:
        print_json({"deleted_events": events, "store": store.url, "deleted_threads": len(threads), "database": database})
    else:
        console.print(f"deleted {events} events of that user from {store.url} and {len(threads)} checkpointed threads from {database}")
