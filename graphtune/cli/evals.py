"""``graphtune eval`` (score one config on a spec's dataset) and ``graphtune evals from-traces``."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from graphtune.cli.common import DbOpt, JsonOpt, ModelOpt, RateLimitOpt, TracesDbOpt, actor, check_rate_limit, console, errors, fail, group, parse_duration, print_json

evals_app = group("Eval datasets: build rows from recorded traces.")

SpecOpt = Annotated[str, typer.Option("--spec", help="Workflow spec file, or a bundled workflow name (support_qa).")]


def parse_set(items: list[str]) -> list[tuple[str, object]]:
    """``path=value`` pairs; values are YAML scalars or lists (``rag.top_k=6``, ``rag.rerank=true``)."""
    changes = []
    for item in items:
        path, sep, text = item.partition("=")
        if not sep or not path.strip():
            raise fail(f"--set {item!r}: expected PATH=VALUE, e.g. --set rag.top_k=6")
        try:
            changes.append((path.strip(), yaml.safe_load(text)))
        except yaml.YAMLError as exc:
            raise fail(f"--set {item!r}: the value is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return changes


def run_eval_command(
    spec_source: str, *, config_version: int | None, sets: list[str], dataset: str | None, limit: int | None,
    concurrency: int | None, use_cache: bool, record: bool, db: str | None, as_json: bool,
    model: str | None = None, rate_limit: float | None = None,
) -> None:
    from graphtune.backends.config_store import ConfigStoreError, open_config_store
    from graphtune.backends.eval_cache import open_eval_cache
    from graphtune.backends.traces import UnknownBackendError
    from graphtune.evals.datasets import DatasetError, load_dataset
    from graphtune.evals.runner import EvalRunner
    from graphtune.llm import OFFLINE_NOTICE, ModelSettings, ModelUnavailable, chat_model, using
    from graphtune.spec import SpecError, load_spec
    from graphtune.tuning.mutations import Candidate, Mutation, check_candidate

    try:
        spec = load_spec(spec_source)
        data = load_dataset(spec.dataset_path(dataset), dataset or spec.evals.datasets[0].name)
        configs = open_config_store(db)
    except (SpecError, DatasetError, UnknownBackendError, ConfigStoreError) as exc:
        raise fail(str(exc)) from None
    settings = ModelSettings.for_run(model=model, requests_per_s=check_rate_limit(rate_limit), spec=spec)
    with configs:
        try:
            if config_version is not None:
                base = configs.get(spec.workflow, config_version).config
            else:  # the spec's config becomes version 1, active, the first time the workflow is seen
                base = configs.ensure_active(spec.workflow, spec.config, actor=actor(None)).config
        except ConfigStoreError as exc:
            raise fail(str(exc)) from None
        config = base
        if sets:
            candidate = Candidate(mutations=[Mutation(path=p, value=v) for p, v in parse_set(sets)], proposer="human")
            rejections = check_candidate(spec.space, base, candidate, model_available=settings.model is not None)
            if rejections:
                raise fail("; ".join(r.message for r in rejections))
            from graphtune.tuning.mutations import apply_mutations

            config = apply_mutations(base, candidate.mutations)
        version = configs.put(spec.workflow, config, actor=actor(None), source="eval").version

    if settings.model is None and not as_json:
        console.print(f"[yellow]{OFFLINE_NOTICE}[/yellow]")
    recorder = None
    if record:  # the traces follow --db (unless GRAPHTUNE_TRACES_URL moves them), like configs and cache
        from graphtune.backends.traces import traces_url_from_env
        from graphtune.tracing.recorder import recorder_for

        recorder = recorder_for(os.environ.get("GRAPHTUNE_TRACES_URL") or db if db else traces_url_from_env())
    cache = open_eval_cache(db) if use_cache else None
    total = len(data.select(limit=limit))
    try:
        with using(settings):  # the workflow's model calls and the judge's: one pace, the same retries
            model = chat_model(temperature=0) if settings.model else None  # built now: a missing integration fails here
            judge = model if "judge" in spec.evals.metric_names else None
            runner = EvalRunner(spec, recorder=recorder, cache=cache, concurrency=concurrency, judge_model=judge)
            report = _run_with_progress(runner, spec, config, data, version, limit, total, as_json)
    except ModelUnavailable as exc:
        raise fail(str(exc)) from None
    except SpecError as exc:  # e.g. the graph factory raised for this config
        raise fail(f"{exc} (config v{version})") from None
    finally:
        if cache:
            cache.close()
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    print_report(report)


def _run_with_progress(runner, spec, config, data, version, limit, total, as_json):
    if as_json:
        return asyncio.run(runner.run(config, dataset=data, config_version=version, limit=limit))
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[errors]} errors"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"{spec.workflow} v{version}", total=total, errors=0)
        failed = 0

        def advance(result) -> None:
            nonlocal failed
            failed += result.error is not None
            progress.update(task, advance=1, errors=failed)

        return asyncio.run(runner.run(config, dataset=data, config_version=version, limit=limit, on_result=advance))


def print_report(report) -> None:
    from graphtune.tuning.units import format_metric

    version = f"config v{report.config_version}" if report.config_version is not None else "config"
    table = Table(title=f"{report.workflow} {version} ({report.config_hash[:12]}) on {report.dataset}")
    for column in ("metric", "mean", "95% CI", "p50", "p95", "n"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for metric, s in report.summary.items():
        def fmt(value):
            return "-" if value is None else format_metric(metric, value)
        ci = f"{fmt(s.ci_low)} – {fmt(s.ci_high)}" if s.ci_low is not None else "-"
        table.add_row(metric, fmt(s.mean), ci, fmt(s.p50), fmt(s.p95), str(s.n))
    console.print(table)
    errors_seen = [r for r in report.results if r.error]
    line = f"{len(report.results)}/{report.examples_total} examples, {report.cached} from the cache, {len(errors_seen)} errors, {report.wall_s:.1f} s"
    console.print(line + (f"; stopped early: {report.stop_reason}" if report.stopped_early else ""))
    for result in errors_seen[:3]:
        console.print(f"  [red]{result.example_id}[/red]: {result.error}", highlight=False)
    for metric, why in report.unscored.items():
        console.print(f"[yellow]{metric} was scored on no example[/yellow]: {why}", highlight=False)
    for metric, what in report.metric_errors.items():
        if metric not in report.unscored:
            console.print(f"[yellow]{metric} has no usable score on {what}[/yellow]", highlight=False)


def from_traces_command(workflow: str | None, feedback: str, since: str, output: Path | None, traces_url: str | None, limit: int) -> None:
    from graphtune.backends.traces import UnknownBackendError, open_trace_store
    from graphtune.evals.from_traces import rows_from_traces

    try:
        store = open_trace_store(traces_url)
    except UnknownBackendError as exc:
        raise fail(str(exc)) from None
    with store:
        rows = rows_from_traces(store, workflow=workflow, feedback=feedback, since=time.time() - parse_duration(since), limit=limit)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("a", encoding="utf-8") as handle:
            handle.write(text)
        errors.print(f"appended {len(rows)} unlabelled rows to {output}; add 'expected' to each row to score it")


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_command(
        spec: SpecOpt = "graphtune.yaml",
        config_version: Annotated[Optional[int], typer.Option("--config-version", help="Stored config version to evaluate (default: the active one, else the spec's config).")] = None,
        set_: Annotated[Optional[list[str]], typer.Option("--set", help="Change a tunable: PATH=VALUE (repeatable).")] = None,
        dataset: Annotated[Optional[str], typer.Option(help="Dataset name from the spec (default: the first).")] = None,
        limit: Annotated[Optional[int], typer.Option(help="Only the first N examples.")] = None,
        concurrency: Annotated[Optional[int], typer.Option(help="Examples in flight at once (default: the spec's).")] = None,
        cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse results of this exact config and dataset.")] = True,
        record: Annotated[bool, typer.Option("--record/--no-record", help="Record each example's trajectory (source eval).")] = True,
        model: ModelOpt = None,
        rate_limit: RateLimitOpt = None,
        db: DbOpt = None,
        as_json: JsonOpt = False,
    ):
        """Score one config of a workflow on its eval dataset: quality, latency, tokens, cost, errors."""
        run_eval_command(spec, config_version=config_version, sets=set_ or [], dataset=dataset, limit=limit,
                         concurrency=concurrency, use_cache=cache, record=record, db=db, as_json=as_json,
                         model=model, rate_limit=rate_limit)

    @evals_app.command("from-traces")
    def from_traces(
        workflow: Annotated[Optional[str], typer.Option("--workflow", "-w", help="Only this workflow.")] = None,
        feedback: Annotated[str, typer.Option(help="negative, positive or any.")] = "negative",
        since: Annotated[str, typer.Option(help="How far back to look.")] = "7d",
        output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Append rows to this JSONL file (default: stdout).")] = None,
        limit: Annotated[int, typer.Option(help="At most this many rows.")] = 200,
        db: TracesDbOpt = None,
    ):
        """Turn production runs with user feedback into dataset rows for labelling (no 'expected' yet)."""
        if feedback not in ("negative", "positive", "any"):
            raise fail(f"--feedback: expected negative, positive or any; got {feedback!r}")
        from_traces_command(workflow, feedback, since, output, db, limit)

    app.add_typer(evals_app, name="evals")
