"""``graphtune tune --dry-run``: what a run would search, and the baseline's score on a few examples.

The request is read by the deterministic parser (no model call), nothing is stored, and the only
work done is the baseline's evaluation on ``--limit`` examples (not recorded, not cached).
"""

from __future__ import annotations

import asyncio
from typing import Any

from rich.table import Table

from graphtune.cli.common import console, fail, print_json

DRY_RUN_LIMIT = 5


def _domain(domain) -> str:
    if domain.type in ("int", "float"):
        text = f"{domain.type} {domain.low:g} – {domain.high:g}"
        step = getattr(domain, "step", None)
        if step not in (None, 1) or (domain.type == "float" and step):
            text += f", step {step:g}"
        return text + (", log scale" if domain.log else "")
    if domain.type == "choice":
        return "one of " + ", ".join(repr(v) for v in domain.values)
    if domain.type == "text":
        return "text" + (f", keeps {', '.join(domain.placeholders)}" if domain.placeholders else "")
    return "true / false"


def _baseline(spec, db: str | None) -> tuple[dict, str]:
    """The config a run would start from: the active version if the store has one, else the spec's."""
    from graphtune.backends.config_store import open_config_store

    with open_config_store(db) as store:
        active = store.active(spec.workflow)
    if active is not None:
        return active.config, f"active config v{active.version}"
    return spec.config, "the spec's config (not stored yet)"


def _budget(request, context: dict) -> dict[str, Any]:
    from graphtune.graphs.context import ControllerContext

    budget = request.budget.model_dump(exclude={"given"})
    shown = {k: v for k, v in budget.items() if v is not None}
    shown["candidates_per_round"] = context.get("batch_size") or ControllerContext.batch_size
    shown["examples_per_candidate"] = context.get("eval_limit") or "all"
    return shown


_BUDGET_WORDS = {"candidates": "{} candidates", "rounds": "{} rounds", "examples": "{} example runs", "tokens": "{} tokens",
                 "cost_usd": "${:g}", "wall_time_s": "{:g} s wall time", "candidates_per_round": "{} candidates per round",
                 "examples_per_candidate": "{} examples per candidate"}


def dry_run(request_text: str, spec_source: str | None, *, limit: int | None, db: str | None, as_json: bool,
            context: dict) -> None:
    from graphtune.cli.evals import print_report
    from graphtune.evals.runner import EvalRunner
    from graphtune.spec import BUNDLED_SPECS, SpecError, load_spec
    from graphtune.tuning.request_parser import UnknownWorkflow, parse_request

    try:
        specs = {(s := load_spec(spec_source)).workflow: s} if spec_source else {n: load_spec(n) for n in BUNDLED_SPECS}
    except SpecError as exc:
        raise fail(str(exc)) from None
    parsed = parse_request(request_text, specs, workflow=next(iter(specs)) if spec_source else None)
    if isinstance(parsed, UnknownWorkflow):
        raise fail(parsed.describe().replace("\n", " "))
    spec, request = specs[parsed.name], parsed.request
    space = spec.space.restricted(request.scope)
    config, where = _baseline(spec, db)
    runner = EvalRunner(spec, concurrency=context.get("concurrency"))
    try:
        report = asyncio.run(runner.run(config, limit=limit or DRY_RUN_LIMIT))
    except SpecError as exc:
        raise fail(f"{exc} ({where})") from None
    budget = _budget(request, context)
    if as_json:
        print_json({
            "dry_run": True, "workflow": spec.workflow, "request": request.model_dump(mode="json"),
            "tunables": {p: d.model_dump(mode="json") for p, d in space.tunables.items()},
            "constraints": [c.model_dump(mode="json") for c in space.constraints],
            "budget": budget, "baseline": {"config": where, "report": report.model_dump(mode="json")},
        })
        return
    from graphtune.tuning.config_paths import get_path

    console.print(f"[bold]dry run[/bold]: what [cyan]graphtune tune[/cyan] would do for [bold]{spec.workflow}[/bold]; "
                  "nothing is stored and nothing else is spent")
    table = Table(title=f"search space: {len(space.tunables)} tunables" + (f" (scope {', '.join(request.scope)})" if request.scope else ""))
    for column in ("tunable", "domain", "now"):
        table.add_column(column)
    for path, domain in space.tunables.items():
        table.add_row(path, _domain(domain), repr(get_path(config, path, None)))
    console.print(table)
    for constraint in space.constraints:
        console.print(f"constraint: {constraint.type} of {', '.join(constraint.paths)}", markup=False)
    console.print(f"objective: {request.goal.describe()}", markup=False)
    for guardrail in request.guardrails:
        console.print(f"guardrail: {guardrail.describe()}", markup=False)
    console.print("budget: " + ", ".join(_BUDGET_WORDS[k].format(v) for k, v in budget.items())
                  + (f" (set by the request: {', '.join(request.budget.given)})" if request.budget.given else " (defaults)"),
                  markup=False)
    for note in request.notes:
        console.print(f"[dim]{note}[/dim]", highlight=False)
    console.print(f"baseline: {where}", markup=False)
    print_report(report)
