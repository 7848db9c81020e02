"""``graphtune demo``: the whole loop on the bundled support_qa workflow, offline, in about a minute.

1. production traffic under the shipped (weak) config, recorded, with user feedback;
2. the controller (``LocalController``, the engine behind ``graphtune tune``) observes that traffic,
   proposes candidate configs, evaluates them in parallel and decides, its progress streamed;
3. the approval report it parks on;
4. the person (the OS user) answers "experiment": try the candidate on live traffic first;
5. the live experiment: simulated users keep sending questions through the serving wrapper and
   rating the answers; the candidate gets a share of them (sticky per user) and the controller looks
   after every batch, as ``graphtune experiment check`` does, until the always-valid test decides.
   Back at approval with the live evidence, the person approves: the candidate ramps to 50%, its
   guardrails are checked on more traffic, and it is promoted;
6. the promotion and the config history;
7. the same questions again under the new active version: negative feedback before and after.

The demo starts from a clean database (``.graphtune/demo.db``, reset each run) unless ``--db`` names
one, so every run tells the same story and leaves a database to explore with the CLI afterwards.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from graphtune.web.links import thread_url

WORKFLOW = "support_qa"
DEMO_DB = Path(".graphtune") / "demo.db"
REQUEST = "support_qa gives wrong answers too often; improve accuracy without increasing latency more than 50%"
SEED = 102  # the controller's search seed; see run_demo
BATCH_SIZE = 8  # the whole default budget (8 candidates) in one round, evaluated in parallel
LIMIT = 144  # eval examples per candidate (half of the 288-question set)
CONCURRENCY = 4  # example runs in flight, shared by all candidates: few enough that latencies are not queueing noise
TRAFFIC_SEED = 0  # the same questions and users before and after the promotion
LIVE_SHARE = 0.25  # the candidate's share of live traffic during the experiment (production would use less)
LIVE_BATCH = 400  # simulated requests between two looks
LIVE_CONCURRENCY = 32
LIVE_MAX_LOOKS = 20  # per stage; the test usually decides long before (see run_demo's docstring)
QUIET_NODES = {"record", "record_progress", "report"}  # the report is shown whole in section 3
MARKDOWN_NODES = {"decide"}
KEY_SETTINGS = ("rag.top_k", "rag.rewrite", "rag.rerank", "nodes.qa_with_tool_agent.enabled", "tool.timeout_s",
                "tool.retries", "llm.max_tokens")


def demo_actor() -> str:
    """Who approves in the demo: the OS user, or "demo" where there is no login name (containers)."""
    try:
        return getpass.getuser() or "demo"
    except Exception:
        return "demo"


def fresh_demo_database(path: Path = DEMO_DB) -> str:
    """Delete the demo database (and its WAL files) and return its URL: each demo starts clean."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


@contextmanager
def _database(url: str) -> Iterator[None]:
    """Everything this process stores (traces, configs, checkpoints, eval cache) goes to ``url`` meanwhile."""
    saved = {k: os.environ.get(k) for k in ("GRAPHTUNE_DATABASE_URL", "GRAPHTUNE_TRACES_URL")}
    os.environ["GRAPHTUNE_DATABASE_URL"] = os.environ["GRAPHTUNE_TRACES_URL"] = url
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_demo(
    requests: int = 150,
    db: str | None = None,
    limit: int | None = LIMIT,
    approve: bool = True,
    console: Console | None = None,
    *,
    seed: int = SEED,
    request: str = REQUEST,
    batch_size: int = BATCH_SIZE,
    concurrency: int = CONCURRENCY,
    after: bool = True,
    live: bool = True,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the demo; returns what happened (thread id, outcome, traffic summaries, looks, seconds).

    The controller runs with the default budget (8 candidates), all in one round (``batch_size``),
    ``limit`` examples each, ``concurrency`` example runs in flight, and search seed ``seed``.
    ``live`` runs the live experiment before promoting (``False``: approve straight away).
    ``context`` adds ``ControllerContext`` fields (tests point ``specs`` at their own spec file).

    The live phase gives the candidate ``LIVE_SHARE`` of the traffic and looks every ``LIVE_BATCH``
    requests. The always-valid test needs a few hundred rated runs per arm to tell the demo's
    candidate (about 8 points fewer wrong answers) from the shipped config: about 2,000 requests,
    some 15 seconds of simulated traffic. A real deployment gives a smaller share and waits longer;
    the statistics stay valid however often it looks.
    """
    from graphtune.graphs.support_qa.knowledge import knowledge_base
    from graphtune.graphs.support_qa.traffic import simulate_production
    from graphtune.llm import model_available
    from graphtune.tracing.recorder import TrajectoryRecorder

    knowledge_base()  # without graphtune[examples] the demo stops here, naming the extra, before any traffic
    console = console or Console()
    started = time.perf_counter()
    url = db or fresh_demo_database()
    flag = f" --db {url}"  # the demo's database is not the default one: every command names it
    actor = demo_actor()
    result: dict[str, Any] = {"database_url": url}

    console.print(Panel.fit(
        f"graphtune tunes [bold]{WORKFLOW}[/bold], the bundled help-center assistant: record production traffic, "
        "observe, propose,\nevaluate, ask a person, promote. Database: "
        f"[cyan]{escape(url)}[/cyan]" + ("" if db else " (reset at every demo run; pass --db to use another)") + "\n"
        + ("A model is configured: the workflow and the controller use it." if model_available()
           else "Offline: no LLM configured, so support_qa answers with its deterministic extractive model and the\n"
                "controller's Optuna search proposes the candidates (GRAPHTUNE_MODEL and OPENAI_* switch to a real model)."),
        title="graphtune demo", border_style="cyan"))

    with _database(url):
        recorder = TrajectoryRecorder(url)
        try:
            # -- 1 -------------------------------------------------------------------------------
            console.rule(f"[bold]1. Production traffic on {WORKFLOW}, shipped config")
            before = simulate_production(requests, recorder=recorder, seed=TRAFFIC_SEED, database_url=url)
            result["before"] = before.to_dict()
            console.print(_settings_line(url, before.config_version))
            console.print(f"{before.requests} simulated users' questions, every run recorded (source production). "
                          "Users whose answer missed the facts they needed, or whose request failed, left a thumbs down; "
                          "some happy ones a thumbs up.")
            console.print(f"[bold]v{before.config_version}: {before.negative_feedback_rate:.0%} negative feedback[/bold] "
                          f"({before.thumbs_down} 👎, {before.thumbs_up} 👍), {before.failed} failed, "
                          f"p95 {before.p95_ms:.0f} ms")

            # -- 2 -------------------------------------------------------------------------------
            console.rule("[bold]2. The controller: observe → propose → evaluate → decide")
            tune = _tune_command(request, flag, seed=seed, batch_size=batch_size, limit=limit, concurrency=concurrency)
            result["tune_command"] = tune
            console.print(f"request: [bold]\"{escape(request)}\"[/bold]\n[dim]the same from the CLI:[/dim] [cyan]{escape(tune)}[/cyan]")
            controller = _controller(url, limit=limit, seed=seed, batch_size=batch_size, concurrency=concurrency,
                                     console=console, extra=context or {})
            run = asyncio.run(controller.start(request, spec=WORKFLOW))
            result["thread_id"] = run.thread_id
            console.print(f"thread [cyan]{run.thread_id}[/cyan] (checkpointed in the database)")

            if run.pending:
                # -- 3 ---------------------------------------------------------------------------
                console.rule("[bold]3. The approval report (the run is parked at an interrupt)")
                console.print(Markdown(run.pending["markdown"]))
                result["candidate_id"] = run.pending["candidate_id"]

                # -- 4 ---------------------------------------------------------------------------
                console.rule("[bold]4. A person decides")
                if not approve:
                    console.print(f"Stopped at approval (--no-approve). The thread waits in the database; answer it with:\n"
                                  f"  [cyan]graphtune approve {run.thread_id} --reason \"...\"{flag}[/cyan]\n"
                                  f"  [cyan]graphtune experiment start {run.thread_id} --share 0.1{flag}[/cyan]\n"
                                  f"  [cyan]graphtune reject {run.thread_id}{flag}[/cyan]\n"
                                  f"or in the browser ([cyan]graphtune ui{flag}[/cyan]): {thread_url(run.thread_id)}")
                    result["outcome"] = None
                    return _finish(result, console, flag, started, run.thread_id, tune)
                candidate = run.pending["candidate_id"]
                if live:
                    run = _live_phase(console, controller, run, actor=actor, flag=flag, result=result, recorder=recorder,
                                      url=url)
                else:
                    if run.pending["report"].get("confident"):
                        comment = f"approved in the graphtune demo: {candidate} answers more questions correctly within the guardrails"
                    else:  # the report says so too; the demo approves anyway, and section 7 shows what it bought
                        comment = f"approved in the graphtune demo although {candidate}'s gain is not significant at 95%"
                    console.print(f"[bold]{escape(actor)}[/bold] approves {candidate}: \"{escape(comment)}\"\n"
                                  f"(the same as [cyan]graphtune approve {run.thread_id} --reason \"...\"{flag}[/cyan])")
                    run = asyncio.run(controller.resume(run.thread_id, {"action": "approve", "actor": actor, "comment": comment}))

            # -- 6 -------------------------------------------------------------------------------
            outcome = run.outcome or _undecided(run)
            result["outcome"] = outcome
            console.rule("[bold]6. Outcome and config history")
            _show_outcome(console, url, outcome, run.values)
            _show_history(console, url)

            # -- 7 -------------------------------------------------------------------------------
            if after and outcome.get("status") == "promoted":
                console.rule(f"[bold]7. The same {requests} questions under v{outcome['version']}")
                later = simulate_production(requests, recorder=recorder, seed=TRAFFIC_SEED, database_url=url)
                result["after"] = later.to_dict()
                _before_after(console, before, later)
        finally:
            recorder.close()
    return _finish(result, console, flag, started, result.get("thread_id"), tune)


def _controller(url: str, *, limit: int | None, seed: int, batch_size: int, concurrency: int, console: Console,
                extra: dict[str, Any]):
    from graphtune.graphs.context import ControllerContext
    from graphtune.graphs.local_controller import LocalController

    def show(node: str, message: Any) -> None:
        if node in QUIET_NODES or getattr(message, "type", "") != "ai":
            return
        label = f"[bold cyan]{node:>8}[/bold cyan]"
        if node in MARKDOWN_NODES:
            console.print(label)
            console.print(Markdown(str(message.content)))
        else:
            console.print(f"{label}  {escape(str(message.content))}")

    context = ControllerContext(**{"database_url": url, "traces_url": url, "eval_limit": limit, "seed": seed,
                                   "batch_size": batch_size, "concurrency": concurrency, "experiment_share": LIVE_SHARE,
                                   **extra})
    return LocalController(context=context, on_message=show)


def _live_phase(console: Console, controller, run, *, actor: str, flag: str, result: dict, recorder, url: str):
    """Section 5: experiment, looks until the test decides, approval with live evidence, ramp, promotion."""
    from graphtune.graphs.support_qa.traffic import simulate_production

    thread = run.thread_id
    candidate = run.pending["candidate_id"]
    comment = f"{candidate} looks better offline; show me on real users first"
    console.print(f"[bold]{escape(actor)}[/bold] answers [bold]experiment[/bold] for {candidate}: \"{escape(comment)}\"\n"
                  f"(the same as [cyan]graphtune experiment start {thread} --share {LIVE_SHARE}{flag}[/cyan])")
    run = asyncio.run(controller.resume(thread, {"action": "experiment", "actor": actor, "comment": comment}))

    console.rule(f"[bold]5. Live experiment: {candidate} on {LIVE_SHARE:.0%} of production traffic")
    console.print(f"Simulated users keep asking through [cyan]graphtune.serving.ServedWorkflow[/cyan]: each user sticks to "
                  f"one version, every answer is recorded with its variant, and users rate answers as before. After "
                  f"every {LIVE_BATCH} requests the controller looks (the same as [cyan]graphtune experiment check{flag}[/cyan]); "
                  "the statistics are always valid, so looking this often is safe.")
    looks: list[dict] = []
    batch = 0
    for stage in ("experiment", "ramp"):
        for _ in range(LIVE_MAX_LOOKS):
            if not (run.waiting or {}).get("kind") == "experiment_pending":
                break
            batch += 1
            traffic = simulate_production(LIVE_BATCH, recorder=recorder, seed=1000 + batch, database_url=url,
                                          concurrency=LIVE_CONCURRENCY, users=LIVE_BATCH)
            arms = ", ".join(f"v{v} {t.requests} ({t.negative_feedback_rate:.0%} 👎)" for v, t in traffic.by_version.items())
            console.print(f"[bold cyan]{stage:>10}[/bold cyan]  batch {batch}: {arms}")
            run = asyncio.run(controller.resume(thread, {"action": "check", "actor": actor}))
            looks.append(_show_look(console, batch, stage, traffic, run))
        if stage == "experiment":
            if not run.pending:
                break
            live = run.pending["report"].get("live") or []
            console.print(Panel("\n".join(escape(line) for line in live), title="live evidence in the approval report",
                                border_style="cyan"))
            if not any(line == "verdict: promote" for line in live):
                console.print(f"The live data did not favour {candidate}; the demo rejects it.")
                run = asyncio.run(controller.resume(thread, {"action": "reject", "actor": actor, "comment": "lost live"}))
                break
            comment = f"{candidate} did better on live users; ramp it up"
            console.print(f"[bold]{escape(actor)}[/bold] approves: \"{escape(comment)}\" — the candidate ramps to 50%, "
                          "its guardrails are checked again, then it is promoted.\n"
                          f"(the same as [cyan]graphtune approve {thread} --reason \"...\"{flag}[/cyan])")
            run = asyncio.run(controller.resume(thread, {"action": "approve", "actor": actor, "comment": comment}))
    result["looks"] = looks
    return run


def _undecided(run) -> dict:
    """The outcome while the thread still waits: the live test has not decided within the demo's looks."""
    if (run.waiting or {}).get("kind") == "experiment_pending":
        return {"status": "experimenting", "message": f"the live test did not decide within {LIVE_MAX_LOOKS} looks; "
                "the experiment keeps running until `graphtune experiment check` decides or `graphtune experiment stop` ends it"}
    return {"status": "waiting", "message": "the thread waits for an answer"}


def _show_look(console: Console, batch: int, stage: str, traffic, run) -> dict:
    """What a look said while the test has not decided yet (a decision speaks for itself, streamed)."""
    waiting = run.waiting if (run.waiting or {}).get("kind") == "experiment_pending" else None
    reasons = (waiting or {}).get("reasons") or []
    if waiting is not None:
        pending = sum(1 for r in reasons if "not yet shown" in r)
        first = reasons[0].replace("always-valid 95% interval", "interval") if reasons else ""
        shown = first if "not yet shown" not in first else ""
        console.print(f"[dim]{'':>10}  look: continue — {escape(shown)}"
                      + (f"{'; ' if shown else ''}{pending} guardrail(s) not yet shown" if pending else "") + "[/dim]")
    verdict = "continue" if waiting is not None else ("approval" if run.pending else (run.outcome or {}).get("status", "done"))
    return {"batch": batch, "stage": stage, "by_version": {v: t.requests for v, t in traffic.by_version.items()},
            "verdict": verdict, "reasons": reasons}


def _settings_line(url: str, version: int | None) -> str:
    from graphtune.backends.config_store import open_config_store
    from graphtune.tuning.config_paths import get_path

    with open_config_store(url) as store:
        active = store.get(WORKFLOW, version) if version is not None else store.active(WORKFLOW)
    settings = ", ".join(f"{path}={get_path(active.config, path, None)}" for path in KEY_SETTINGS)
    return f"[dim]active config v{active.version}: {escape(settings)}[/dim]"


def _show_outcome(console: Console, url: str, outcome: dict, values: dict) -> None:
    from graphtune.backends.config_store import open_config_store
    from graphtune.tuning.config_paths import config_diff, format_diff

    status = outcome.get("status", "unknown")
    style = {"promoted": "bold green", "rejected": "yellow", "no_change": "yellow"}.get(status, "red")
    console.print(f"[{style}]{status}[/{style}]: {escape(str(outcome.get('message', '')))}")
    if status == "no_change":
        decision = values.get("decision") or {}
        console.print("No candidate was worth approving, so nothing changed; the decision said why: "
                      f"{escape(str(decision.get('reason', 'n/a')))}")
    if status == "promoted" and outcome.get("from_version"):
        with open_config_store(url) as store:
            old = store.get(WORKFLOW, outcome["from_version"]).config
            new = store.get(WORKFLOW, outcome["version"]).config
        console.print(f"v{outcome['from_version']} → v{outcome['version']}:")
        console.print(format_diff(config_diff(old, new)), markup=False, highlight=False)
        console.print("Applications pick it up with one call, no redeploy: "
                      f"[cyan]graphtune.active_config(\"{WORKFLOW}\")[/cyan]")


def _show_history(console: Console, url: str) -> None:
    """The change log, as ``graphtune config history`` shows it; the evaluated configs' registrations
    (one per candidate) are folded into one row, the evidence JSON is left to ``config history --json``."""
    from graphtune.backends.config_store import open_config_store
    from graphtune.tracing.viewer import fmt_time

    with open_config_store(url) as store:
        entries = store.history(WORKFLOW, limit=50)
    rows: list[list] = []
    for e in entries:
        if e.action == "register" and rows and rows[-1][1] == "register" and rows[-1][0] == e.actor:
            rows[-1][3].append(e.version)
            continue
        rows.append([e.actor, e.action, e, [e.version] if e.version else []])
    table = Table(title=f"config history of {WORKFLOW}, newest first  (graphtune config history -w {WORKFLOW})")
    for column in ("when", "action", "version", "from", "actor", "reason"):
        table.add_column(column, no_wrap=column in ("when", "action", "version", "from"))
    for actor, action, e, versions in rows[:12]:
        style = {"promote": "bold", "rollback": "yellow"}.get(action, "")
        shown = (f"v{min(versions)}–v{max(versions)}" if len(versions) > 1 else f"v{versions[0]}") if versions else "-"
        reason = e.reason or (f"{len(versions)} evaluated configs stored" if len(versions) > 1 else "")
        table.add_row(fmt_time(e.at), action, shown, f"v{e.from_version}" if e.from_version else "-", actor, reason,
                      style=style)
    console.print(table)


def _before_after(console: Console, before, after) -> None:
    table = Table(title="production, the same questions and users")
    for column in ("config", "answers with every fact", "negative feedback", "failed", "p95 latency"):
        table.add_column(column, justify="left" if column == "config" else "right")
    for label, s in ((f"v{before.config_version} (shipped)", before), (f"v{after.config_version} (promoted)", after)):
        table.add_row(label, f"{s.correct}/{s.requests}", f"{s.negative_feedback_rate:.0%} ({s.thumbs_down} 👎)",
                      str(s.failed), f"{s.p95_ms:.0f} ms")
    console.print(table)
    change = after.negative_feedback_rate - before.negative_feedback_rate
    console.print(f"negative feedback {before.negative_feedback_rate:.0%} → {after.negative_feedback_rate:.0%} "
                  f"({change * 100:+.0f} points)")


def _tune_command(request: str, flag: str, *, seed: int, batch_size: int, limit: int | None, concurrency: int) -> str:
    options = f" --seed {seed} --batch-size {batch_size} --concurrency {concurrency}" + (f" --limit {limit}" if limit else "")
    return f"graphtune tune --spec {WORKFLOW} \"{request}\"{options}{flag}"


def _finish(result: dict, console: Console, flag: str, started: float, thread_id: str | None, tune: str) -> dict:
    result["seconds"] = time.perf_counter() - started
    thread = thread_id or "THREAD"
    console.rule("[bold]Do it by hand")
    console.print(Panel.fit(
        f"{tune}\n    # the same run; asks approve / reject / edit / later at the end\n"
        f"{tune} --no-input\n    # parks it at approval and prints the thread id as JSON\n"
        f"graphtune pending{flag}\n"
        f"graphtune experiment start {thread} --share 0.1{flag}   # or: graphtune approve / reject {thread}\n"
        f"graphtune experiment check{flag}        # a look at every live experiment; cron-safe\n"
        f"graphtune experiment stop {WORKFLOW}{flag}   # kill switch\n"
        f"graphtune approve {thread} --reason \"looks right\"{flag}   # after the live evidence: ramp, promote\n"
        f"graphtune config history -w {WORKFLOW}{flag}\n"
        f"graphtune traces stats --workflow {WORKFLOW}{flag}",
        title="the same loop from the CLI", border_style="dim"), highlight=False)
    console.print(f"[dim]demo finished in {result['seconds']:.0f} s[/dim]")
    return result
