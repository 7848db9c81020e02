"""``graphtune experiment``: live experiments from the command line (start, check, watch, stop).

``check`` is one pass, safe from cron: every live experiment gets one look (a resume of its parked
thread), and every recent promotion is checked against its guardrails (a breach rolls it back).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Optional

import typer

from graphtune.cli.common import AsOpt, DbOpt, JsonOpt, ReasonOpt, actor, console, fail, group, print_json, use_db
from graphtune.cli.tune import _controller, _show_outcome, _summary

experiment_app = group("Live experiments: a candidate on a share of real traffic before promotion.")
WithinOpt = Annotated[float, typer.Option("--within-hours", help="Check promotions made within this many hours.")]


@experiment_app.command()
def start(thread: str, share: Annotated[float, typer.Option(help="Share of live traffic for the candidate.")] = 0.1,
          reason: ReasonOpt = "", who: AsOpt = None, db: DbOpt = None, as_json: JsonOpt = False):
    """Answer a tuning thread's approval with "experiment": the candidate gets SHARE of live traffic."""
    use_db(db)
    if not 0.0 < share < 1.0:
        raise fail(f"--share is a share of traffic between 0 and 1 (exclusive), got {share}")
    controller = _controller(as_json, experiment_share=share)
    try:
        result = asyncio.run(controller.resume(thread, {"action": "experiment", "actor": actor(who), "comment": reason}))
    except LookupError as error:
        raise fail(str(error)) from None
    if as_json:
        print_json(_summary(result))
    elif result.pending:
        raise fail(result.pending.get("error") or "still waiting for approval")


def _check_once(within_hours: float, as_json: bool) -> list[dict]:
    from graphtune.backends.config_store import open_config_store
    from graphtune.backends.traces import open_trace_store, traces_url_from_env
    from graphtune.guard import check_recent_promotions

    controller = _controller(True)
    lines: list[dict] = []
    for result in asyncio.run(controller.check_experiments()):
        summary = _summary(result)
        lines.append(summary)
        if not as_json:
            live = summary.get("experiment")
            state = (f"still collecting: {live['stage']} at {live['share']:.0%}, {live['looks']} looks — {live['summary']}"
                     if live else "decided: back at approval (graphtune pending)" if result.pending else "done")
            console.print(f"[cyan]{result.thread_id}[/cyan]  {state}")
            if result.outcome:
                _show_outcome(result)
    with open_config_store() as configs, open_trace_store(traces_url_from_env()) as traces:
        for check in check_recent_promotions(configs, traces, within_s=within_hours * 3600):
            lines.append(check.model_dump(mode="json"))
            if not as_json:
                style = {"rolled_back": "red", "conflict": "yellow"}.get(check.status, "green")
                console.print(f"[{style}]{check.status}[/{style}]  {check.message}")
    return lines


@experiment_app.command()
def check(within_hours: WithinOpt = 24.0, db: DbOpt = None, as_json: JsonOpt = False):
    """One look at every live experiment and every recent promotion (safe to run from cron)."""
    use_db(db)
    lines = _check_once(within_hours, as_json)
    if as_json:
        print_json(lines)
    elif not lines:
        console.print("No live experiment and no recent promotion to check.")


@experiment_app.command()
def watch(every: Annotated[float, typer.Option(help="Seconds between passes.")] = 60.0,
          times: Annotated[Optional[int], typer.Option(help="Stop after this many passes (default: until Ctrl-C).")] = None,
          within_hours: WithinOpt = 24.0, db: DbOpt = None, as_json: JsonOpt = False):
    """``check`` in a loop (``--json``: one JSON line per pass)."""
    use_db(db)
    done = 0
    try:
        while times is None or done < times:
            lines = _check_once(within_hours, as_json)
            if as_json:
                print(json.dumps(lines, default=str), flush=True)
            done += 1
            if times is None or done < times:
                time.sleep(every)
    except KeyboardInterrupt:
        pass


@experiment_app.command()
def stop(workflow: str, reason: ReasonOpt = "", who: AsOpt = None, db: DbOpt = None, as_json: JsonOpt = False):
    """The kill switch: all of WORKFLOW's traffic goes back to its active version now."""
    from graphtune.backends.config_store import ConflictError, open_config_store

    use_db(db)
    with open_config_store() as store:
        split = store.split(workflow)
        if split is not None:
            try:
                store.clear_split(workflow, expected_revision=split.revision, actor=actor(who),
                                  reason=reason or "experiment stopped (kill switch)")
            except ConflictError as error:
                raise fail(f"{error}; run the command again") from None
        active = store.active(workflow)
    version = active.version if active else None
    if as_json:
        print_json({"workflow": workflow, "stopped": split is not None, "active_version": version,
                    "cleared_split": split and split.model_dump(mode="json")})
    elif split is None:
        console.print(f"{workflow} has no traffic split: all traffic already goes to its active version.")
    else:
        console.print(f"{workflow}: every request goes to version {version or '?'} again; "
                      f"the experiment's thread returns to approval at its next check.")
