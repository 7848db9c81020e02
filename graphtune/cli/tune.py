"""``graphtune tune | pending | approve | reject``: run the controller locally and answer its approvals.

Threads are checkpointed in the database (``--db`` / ``GRAPHTUNE_DATABASE_URL``; SQLite by default,
Postgres by URL), so ``tune --no-input`` can park a proposal that ``approve`` resumes later from
any process.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from graphtune.cli.common import AsOpt, DbOpt, JsonOpt, ModelOpt, RateLimitOpt, ReasonOpt, actor, check_rate_limit, console, fail, print_json, use_db
from graphtune.cli.progress import TuneProgress
from graphtune.graphs.context import ControllerContext
from graphtune.graphs.local_controller import LocalController, RunResult
from graphtune.tuning.decision import Spent
from graphtune.web.links import thread_url


def _spec_ref(spec: str | None) -> str | None:
    """A spec file becomes an absolute path, so a later approve from another directory finds it."""
    if spec and Path(spec).exists():
        return str(Path(spec).resolve())
    return spec


def _controller(as_json: bool, display: TuneProgress | None = None, **context: Any) -> LocalController:
    """The local controller; unless ``as_json``, its messages (and, given a live ``display``, its
    evaluations) are shown as they happen."""
    ctx = ControllerContext(**{k: v for k, v in context.items() if v is not None})
    if as_json:
        return LocalController(context=ctx)
    display = display or TuneProgress(console, live=False)
    return LocalController(context=ctx, on_message=display.on_message, on_event=display.on_event if display.live else None)


def _summary(result: RunResult) -> dict:
    pending = result.pending
    live = result.waiting if (result.waiting or {}).get("kind") == "experiment_pending" else None
    status = "pending_approval" if pending else "experiment_pending" if live else "done"
    out: dict[str, Any] = {"thread_id": result.thread_id, "status": status}
    if live:
        out["experiment"] = live
    if pending:
        out.update(workflow=pending["workflow"], candidate_id=pending["candidate_id"], report=pending["report"],
                   resume_with=f"graphtune approve {result.thread_id}  |  graphtune reject {result.thread_id}",
                   approval_page=thread_url(result.thread_id))
    if result.outcome:
        out["outcome"] = result.outcome
    decision = result.values.get("decision") or {}
    out["spent"] = decision.get("spent") or Spent().model_dump()  # what the run used, on every outcome (zeros before any eval)
    if decision.get("ended_by"):
        out["ended_by"] = decision["ended_by"]
    return out


def _show_outcome(result: RunResult) -> None:
    outcome = result.outcome or {}
    style = {"promoted": "green", "rejected": "yellow", "no_change": "yellow"}.get(outcome.get("status"), "red")
    if outcome:
        console.print(f"[{style}]{outcome.get('status')}[/{style}]: {outcome.get('message')}")


def _ask(controller: LocalController, result: RunResult, person: str) -> RunResult:
    """The interactive approval prompt; 'later' leaves the thread parked."""
    while result.pending:
        if result.pending.get("error"):
            console.print(f"[red]{result.pending['error']}[/red]")
        choice = typer.prompt("approve / reject / edit / later", default="later").strip().lower()
        if choice == "later":
            console.print(f"Parked. Resume with: graphtune approve {result.thread_id}  (or reject), "
                          f"or open {thread_url(result.thread_id)}  (graphtune ui)")
            return result
        answer: dict[str, Any] = {"action": choice, "actor": person}
        if choice == "edit":
            changes = typer.prompt("changes as path=value, comma separated (values are YAML)")
            answer["mutations"] = _parse_changes(changes)
        answer["comment"] = typer.prompt("reason", default="")
        result = asyncio.run(controller.resume(result.thread_id, answer))
    return result


def _parse_changes(text: str) -> list[dict]:
    import yaml

    mutations = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        path, sep, value = part.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected path=value, got {part!r}")
        mutations.append({"path": path.strip(), "value": yaml.safe_load(value)})
    return mutations


def _existing_thread(controller, thread_id: str):
    try:
        return asyncio.run(controller.state(thread_id))
    except LookupError:
        return None


def _carry_on(controller, existing, quiet: bool):
    """``tune --thread T`` on a thread that exists: finish it if it stopped mid-way, never start over."""
    if existing.pending:
        return existing
    if (existing.outcome or {}).get("status"):
        raise fail(f"thread {existing.thread_id} has finished ({existing.outcome['status']}): "
                   f"start a new run without --thread")
    if not quiet:
        console.print(f"thread [cyan]{existing.thread_id}[/cyan] stopped mid-way: carrying on from its last checkpoint")
    return asyncio.run(controller.continue_run(existing.thread_id))


# Outcomes that mean the run could not do its job: the command exits non-zero.
_FAILED = ("failed", "conflict", "unknown_workflow")


def register(app: typer.Typer) -> None:
    @app.command()
    def tune(
        request: Annotated[str, typer.Argument(help='What you want, e.g. "support_qa is too slow; cut latency 20% without losing accuracy".')] = "",
        spec: Annotated[Optional[str], typer.Option("--spec", help="Workflow spec file or bundled name (support_qa).")] = None,
        no_input: Annotated[bool, typer.Option("--no-input", "--json", help="Do not prompt: print the pending proposal and thread id as JSON and exit.")] = False,
        who: AsOpt = None,
        thread: Annotated[Optional[str], typer.Option("--thread", help="Thread id (default: a new one). An unfinished thread (its process died) carries on from its last checkpoint.")] = None,
        batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Candidates per round.")] = None,
        eval_limit: Annotated[Optional[int], typer.Option("--limit", help="Examples per candidate (default: all).")] = None,
        concurrency: Annotated[Optional[int], typer.Option("--concurrency", help="Parallel example runs, shared by all candidates.")] = None,
        seed: Annotated[Optional[int], typer.Option("--seed", help="Search seed.")] = None,
        window: Annotated[Optional[str], typer.Option("--window", help="Production window to observe, e.g. 24h.")] = None,
        model: ModelOpt = None,
        rate_limit: RateLimitOpt = None,
        db: DbOpt = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be searched (tunables, ranges, objective, guardrails, budget) and the baseline's score on --limit examples (default 5); spend nothing else.")] = False,
    ):
        """Tune a workflow: observe, propose, evaluate, then stop at approval."""
        use_db(db)
        if dry_run:
            from graphtune.cli.dry_run import dry_run as show_dry_run

            return show_dry_run(request, _spec_ref(spec), limit=eval_limit, db=db, as_json=no_input,
                                context={"batch_size": batch_size, "eval_limit": eval_limit, "concurrency": concurrency})
        display = TuneProgress(console, live=console.is_terminal and not no_input)
        controller = _controller(no_input, display, batch_size=batch_size, eval_limit=eval_limit,
                                 concurrency=concurrency, seed=seed, observe_window=window, model=model,
                                 rate_limit=check_rate_limit(rate_limit))
        try:
            existing = _existing_thread(controller, thread) if thread else None
            if existing is not None:
                result = _carry_on(controller, existing, no_input)
            elif not request and not spec:
                raise fail('say what to tune: graphtune tune "support_qa is too slow" or --spec FILE')
            else:
                result = asyncio.run(controller.start(request, spec=_spec_ref(spec), thread_id=thread))
            display.close()
            if no_input:
                print_json(_summary(result))
            else:
                console.print(f"thread [cyan]{result.thread_id}[/cyan]")
                if result.pending:
                    result = _ask(controller, result, actor(who))
                _show_outcome(result)
        finally:
            display.close()
        if (result.outcome or {}).get("status") in _FAILED:
            raise typer.Exit(1)

    @app.command()
    def pending(db: DbOpt = None, as_json: JsonOpt = False):
        """List tuning threads waiting for approval, and live experiments collecting data."""
        use_db(db)
        threads = asyncio.run(_controller(True).pending())
        if as_json:
            print_json([t.__dict__ for t in threads])
            return
        if not threads:
            console.print("No tuning run is waiting for approval or running a live experiment.")
        for t in threads:
            what = "approval" if t.kind == "approval" else f"live {t.detail}"
            console.print(f"[cyan]{t.thread_id}[/cyan]  {t.workflow}  candidate {t.candidate_id}  {what}  {t.created_at or ''}  {t.request}")

    def _answer(thread: str, action: str, reason: str, who: str | None, db: str | None, as_json: bool) -> None:
        use_db(db)
        controller = _controller(as_json)
        try:
            result = asyncio.run(controller.resume(thread, {"action": action, "actor": actor(who), "comment": reason}))
        except LookupError as error:
            raise fail(str(error)) from None
        if as_json:
            print_json(_summary(result))
        elif result.pending:  # the answer was refused: still at approval
            raise fail(result.pending.get("error") or "still waiting for approval")
        else:
            _show_outcome(result)
        if result.pending or (result.outcome or {}).get("status") in _FAILED:
            raise typer.Exit(1)

    @app.command()
    def approve(thread: str, reason: ReasonOpt = "", who: AsOpt = None, db: DbOpt = None, as_json: JsonOpt = False):
        """Approve the proposal of a tuning thread: promote it (compare-and-set)."""
        _answer(thread, "approve", reason, who, db, as_json)

    @app.command()
    def reject(thread: str, reason: ReasonOpt = "", who: AsOpt = None, db: DbOpt = None, as_json: JsonOpt = False):
        """Reject the proposal of a tuning thread; the active config stays."""
        _answer(thread, "reject", reason, who, db, as_json)

    @app.command()
    def unlock(workflow: str, reason: ReasonOpt = "", who: AsOpt = None, db: DbOpt = None, as_json: JsonOpt = False):
        """Release a workflow held by a tuning run that will not finish (one run per workflow at a time)."""
        from graphtune.backends.config_store import open_config_store

        use_db(db)
        with open_config_store() as store:
            released = store.release_tuning(workflow, None, actor=actor(who), reason=reason)
        if as_json:
            print_json({"workflow": workflow, "released": released and released.model_dump(mode="json")})
        elif released is None:
            console.print(f"{workflow} is not held by any tuning run.")
        else:
            console.print(f"released {workflow} from thread [cyan]{released.thread_id}[/cyan] "
                          f"(started by {released.actor}); the release is in the change log.")
