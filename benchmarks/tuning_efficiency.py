"""tuning_efficiency: example evaluations needed to reach 95% of the best grid score: graphtune's controller vs Optuna TPE alone vs random search.

The support_qa spec declares a finite benchmark grid (``benchmark.grid``: numeric tunables discretised,
offline tunables only; the rest keep the shipped config's value). Every grid config is evaluated once
on the full dataset by the real ``EvalRunner`` into a persistent cache (``_grid.build_table``); its
score is the spec's objective (mean ``contains``) when it passes the spec's guardrails against the
shipped config (``graphtune.tuning.decision.feasible``), else it has none. The target is 95% of the
best feasible score.

Each method then searches the grid through a ``TableRunner`` (``EvalRunner.run``'s interface, served
from the table, same early-stopping rule, examples in a per-seed shuffled order) with the same budget of
example evaluations; a result it served before for the same config is free, like the real cache:

- ``random``: grid configs drawn uniformly without replacement, each fully evaluated.
- ``optuna_tpe``: a plain Optuna study (``TPESampler`` defaults, seeded; a broken guardrail or an invalid
  combination marked infeasible with ``Trial.set_constraint``), one trial at a time, each fully
  evaluated, no early stopping, no traces. The shipped config is its first trial (charged): the
  guardrails that decide feasibility are relative to it.
- ``search_proposer`` (extra, not a target): graphtune's own ``SearchProposer`` (local start near the
  baseline, then TPE) one candidate at a time, each fully evaluated: the controller's proposer without
  the controller's batches, early stopping, traces and stopping rule.
- ``graphtune``: the real controller graph (``create_controller``), offline (no model), batches of
  ``--batch-size`` (default: the controller's own), the runner factory returning the seed's ``TableRunner``, a fresh config store
  per seed, and a trace store holding production traffic of the shipped config (recorded once per
  benchmark run, thumbs-down feedback when an answer misses expected facts). The request's budget is
  the example budget. The run ends at the approval interrupt or at finish; its decision says why.

The controller gets a spec whose search space is exactly the grid (each grid path a ``choice`` over its
grid values, bools stay bools), so every proposal is a grid point; a config outside the grid would fail
its evaluation loudly (``OutOfGrid``) and is counted, never snapped.

Reach: the first evaluation that completed fully (not stopped early) on a config within 95% of the best;
its count is the examples consumed up to and including it (with parallel evaluations, what the others
consumed meanwhile counts too). A run that never gets there within the budget counts budget + 1.
Parallel evaluations advance in lockstep (``TableRunner``), so a seed's result does not depend on task
timing. Methods run interleaved per seed (random, TPE, search proposer, graphtune, then the next seed);
figures are medians over seeds, ratios are of medians (paired per-seed ratios beside them).

Feasibility is computed when the table is loaded, with the current ``feasible``: a change to the
guardrail rules changes the grid's best score and the figures, without re-measuring anything.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _grid  # noqa: E402
from graphtune.graphs.context import ControllerContext  # noqa: E402
from _common import emit, log, median, parse_args  # noqa: E402

METHODS = ("graphtune", "optuna_tpe", "random")
TARGET_VS_TPE = 0.5
TARGET_VS_RANDOM = 0.25
SETTLE_S = 0.2  # evaluations the controller starts within this time of each other advance in lockstep
MAX_REASON_CHARS = 160


# -- production traffic ----------------------------------------------------------------------------


def record_production(spec, traces_url: str, runs: int, workdir: str, seed: int = 0) -> dict:
    """``runs`` production runs of the shipped config, recorded, with simulated user feedback
    (``support_qa.traffic.simulate_production``, the demo's traffic)."""
    from graphtune.graphs.support_qa.traffic import simulate_production
    from graphtune.tracing.recorder import TrajectoryRecorder

    recorder = TrajectoryRecorder(traces_url)
    try:
        summary = simulate_production(runs, recorder=recorder, seed=seed, config=spec.config, workflow=str(spec.path),
                                      database_url=f"sqlite:///{workdir}/production-configs.db", concurrency=4)
    finally:
        recorder.close()
    return {"runs": summary.requests, "thumbs_up": summary.thumbs_up, "thumbs_down": summary.thumbs_down}


# -- the methods -------------------------------------------------------------------------------------


async def run_random(table: _grid.GridTable, seed: int, budget: int) -> _grid.TableRunner:
    runner = _grid.TableRunner(table, seed=seed)
    order = sorted(table.points)
    random.Random(f"random:{seed}").shuffle(order)
    for digest in order:
        if runner.consumed >= budget:
            break
        await runner.run(table.points[digest].config, variant="random")
    return runner


async def run_optuna_tpe(table: _grid.GridTable, bench_spec, seed: int, budget: int) -> _grid.TableRunner:
    """A plain Optuna study: ``TPESampler`` with its defaults and Optuna's own constraint handling
    (``Trial.set_constraint``: a broken guardrail or an invalid combination is infeasible), one trial at a
    time over the grid. The shipped config is enqueued as the first trial (guardrails are relative to it)."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    from graphtune.tuning.config_paths import get_path, set_path
    from graphtune.tuning.decision import feasible
    from graphtune.tuning.space import BoolDomain

    runner = _grid.TableRunner(table, seed=seed)
    metric = bench_spec.objective.metric
    base_config = bench_spec.config
    values = {path: [False, True] if isinstance(domain, BoolDomain) else list(domain.values)
              for path, domain in bench_spec.tunables.items()}
    distributions = {path: CategoricalDistribution(list(range(len(v)))) for path, v in values.items()}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction=bench_spec.objective.direction, sampler=sampler)
    study.enqueue_trial({p: v.index(get_path(base_config, p)) for p, v in values.items()})
    base = None
    idle = 0
    while runner.consumed < budget and idle < 1000:
        trial = study.ask(distributions)
        config = base_config
        for path, index in trial.params.items():
            config = set_path(config, path, values[path][index])
        if bench_spec.space.check_config(config):  # e.g. both answer nodes on: never evaluated
            trial.set_constraint("valid", 1.0)
            study.tell(trial, 0.0)
            idle += 1
            continue
        before = runner.consumed
        report = await runner.run(config, variant="optuna")
        if base is None:
            base = report
        idle = idle + 1 if runner.consumed == before else 0  # a config seen before is a free cache hit
        trial.set_constraint("valid", 0.0)
        trial.set_constraint("guardrails", 0.0 if feasible(report, base, bench_spec.guardrails) else 1.0)
        study.tell(trial, _finite(report.value(metric)) if report.value(metric) is not None else 0.0)
    return runner


async def run_search_proposer(table: _grid.GridTable, bench_spec, seed: int, budget: int) -> _grid.TableRunner:
    """graphtune's ``SearchProposer`` alone, one candidate at a time, each fully evaluated: no batches,
    no early stopping, no traces. It evaluates the shipped config first (charged)."""
    from graphtune.tuning.decision import feasible
    from graphtune.tuning.mutations import apply_mutations
    from graphtune.tuning.search import Observation, SearchProposer

    runner = _grid.TableRunner(table, seed=seed)
    metric = bench_spec.objective.metric
    base_config = bench_spec.config
    base = await runner.run(base_config, variant="baseline")
    history = [Observation(config=base_config, score=_finite(base.value(metric)), feasible=True)]
    proposer = SearchProposer(bench_spec.space, direction=bench_spec.objective.direction, seed=seed, model_available=False)
    while runner.consumed < budget:
        candidates = await asyncio.to_thread(proposer.propose, base_config, history, 1)
        if not candidates:
            break
        config = apply_mutations(base_config, candidates[0].mutations)
        report = await runner.run(config, variant="optuna")
        history.append(Observation(config=config, score=_finite(report.value(metric)),
                                   feasible=feasible(report, base, bench_spec.guardrails)))
    return runner


def _finite(value: float | None) -> float:
    return math.nan if value is None else float(value)


async def run_graphtune(table: _grid.GridTable, bench_path: Path, seed: int, budget: int, traces_url: str,
                        workdir: str, batch_size: int | None = None) -> tuple[_grid.TableRunner, dict]:
    from langchain_core.messages import HumanMessage
    from langgraph.checkpoint.memory import InMemorySaver

    from graphtune.graphs.context import ControllerContext
    from graphtune.graphs.controller import create_controller

    workflow = table.spec.workflow
    runner = _grid.TableRunner(table, seed=seed, settle_s=SETTLE_S)
    ctx = ControllerContext(
        database_url=f"sqlite:///{workdir}/controller-seed{seed}.db", traces_url=traces_url,
        specs={workflow: str(bench_path)}, model=None, base_url=None, chat_model_factory=None,
        runner_factory=lambda spec: runner, seed=seed, batch_size=batch_size or ControllerContext().batch_size,
    )
    graph = create_controller(InMemorySaver(), record=False)
    request = {"workflow": workflow, "budget": {"examples": budget, "candidates": 200, "rounds": 50, "wall_time_s": None}}
    config = {"configurable": {"thread_id": f"tuning-efficiency-{seed}"}, "recursion_limit": 1000}
    await graph.ainvoke({"messages": [HumanMessage(f"improve {workflow}")], "spec": workflow, "request": request},
                        config, context=ctx)
    snapshot = await graph.aget_state(config)
    values = snapshot.values
    decision = values.get("decision") or {}
    outcome = values.get("outcome") or {}
    parked = bool(snapshot.next)
    if parked:
        end = f"parked at {', '.join(snapshot.next)}: {decision.get('reason', '')}"
    elif outcome:
        end = f"{outcome.get('status')}: {outcome.get('message') or decision.get('reason', '')}"
    else:
        end = f"ended: {decision.get('reason', '')}"
    info = {
        "end": end, "parked": parked, "rounds": int(values.get("round") or 0),
        "candidates": sum(1 for c in values.get("candidates") or [] if c.get("id") != "baseline"),
        "proposers": dict(Counter(c.get("proposer") for c in values.get("candidates") or [])),
        "spent_examples": (decision.get("spent") or {}).get("examples"),
        "late_joins": runner.late_joins,
    }
    return runner, info


# -- accounting --------------------------------------------------------------------------------------


def summarize_log(runner: _grid.TableRunner, table: _grid.GridTable) -> dict:
    entries = [e for e in runner.log if e.fresh]
    return {
        "evaluations": len(entries),
        "stopped_early": sum(e.stopped_early for e in entries),
        "full": sum(e.complete for e in entries),
        "qualifying_full": sum(e.complete and table.reaches(e.config_hash) for e in entries),
        "examples": runner.consumed,
        "out_of_grid": len(runner.out_of_grid),
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


# -- main ----------------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        seeds=(int, 5, "seeds per method"),
        budget=(int, 30, "example-evaluation budget, in full evaluations of the dataset"),
        batch_size=(int, ControllerContext().batch_size, "candidates the controller proposes and evaluates in parallel per round (default: the controller's)"),
        production_runs=(int, 150, "recorded production runs in the trace store the controller observes"),
        grid_cache=(str, _grid.GRID_CACHE_URL, "eval cache holding the grid's results"),
        grid_workers=(int, 2, "worker processes for the one-time grid evaluation"),
        grid_block=(int, 7, "configs measured at once beside one run of the shipped config, per grid worker"),
        grid_rebuild=(int, 0, "1: delete the grid's cache first and measure every config again"),
    )
    os.environ.pop("GRAPHTUNE_MODEL", None)  # offline: extractive answerer, search proposer, deterministic intake
    from graphtune.spec import load_spec

    started = time.perf_counter()
    spec = load_spec("support_qa")
    if args.grid_rebuild:
        _grid.delete_cache(args.grid_cache)
    table = _grid.build_table(spec, cache_url=args.grid_cache, workers=args.grid_workers, block_size=args.grid_block, log=log)
    per_eval = len(table.dataset.examples)
    budget = args.budget * per_eval
    bench = _grid.benchmark_spec(spec)
    best = table.best
    log(f"grid: {len(table.points)} configs, {sum(p.feasible for p in table.points.values())} feasible, best "
        f"{spec.objective.metric} {best.score:.4f}, {len(table.qualifying)} within 95% (>= {table.threshold:.4f})")

    counts: dict[str, list[int]] = {m: [] for m in (*METHODS, "search_proposer")}
    runs: dict[str, list[dict]] = {m: [] for m in (*METHODS, "search_proposer")}
    graphtune_info: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="graphtune-bench-tuning-") as workdir:
        bench_path = _grid.write_spec(bench, workdir)
        traces_url = f"sqlite:///{workdir}/traces.db"
        production = record_production(spec, traces_url, args.production_runs, workdir)
        log(f"production traffic: {production}")

        async def one_seed(seed: int) -> None:
            for method in ("random", "optuna_tpe", "search_proposer", "graphtune"):
                t0 = time.perf_counter()
                if method == "random":
                    runner = await run_random(table, seed, budget)
                elif method == "optuna_tpe":
                    runner = await run_optuna_tpe(table, bench, seed, budget)
                elif method == "search_proposer":
                    runner = await run_search_proposer(table, bench, seed, budget)
                else:
                    runner, info = await run_graphtune(table, bench_path, seed, budget, traces_url, workdir, args.batch_size)
                count = _grid.examples_to_reach(runner.log, table, budget)
                counts[method].append(count)
                summary = summarize_log(runner, table)
                if method == "graphtune":
                    summary.update(at_reach=_grid.breakdown(runner.log, table, budget), **info)
                    graphtune_info.append(summary)
                runs[method].append(summary)
                log(f"seed {seed} {method:<15} {count:>6} examples to 95% ({summary['evaluations']} evaluations, "
                    f"{summary['stopped_early']} stopped early; {time.perf_counter() - t0:.1f} s)")
                if method == "graphtune":
                    log(f"  {info['end']}")

        for seed in range(args.seeds):
            asyncio.run(one_seed(seed))

    medians = {m: median(counts[m]) for m in METHODS}
    ratio_tpe = _ratio(medians["graphtune"], medians["optuna_tpe"])
    ratio_random = _ratio(medians["graphtune"], medians["random"])
    base = table.points[table.baseline_hash]
    at_reach = [g["at_reach"] for g in graphtune_info]
    result = {
        "evals_to_95pct": medians,
        "evals_to_95pct_per_seed": {m: counts[m] for m in METHODS},
        "evals_to_95pct_search_proposer": median(counts["search_proposer"]),
        "evals_to_95pct_search_proposer_per_seed": counts["search_proposer"],
        "full_evals_to_95pct": {m: round(v / per_eval, 2) for m, v in medians.items()},
        "ratio_vs_optuna_tpe": round(ratio_tpe, 3),
        "ratio_vs_random": round(ratio_random, 3),
        "paired_ratio_vs_optuna_tpe": round(median([_ratio(g, t) for g, t in zip(counts["graphtune"], counts["optuna_tpe"])]), 3),
        "paired_ratio_vs_random": round(median([_ratio(g, r) for g, r in zip(counts["graphtune"], counts["random"])]), 3),
        "target_ratio_vs_optuna_tpe": TARGET_VS_TPE,
        "target_ratio_vs_random": TARGET_VS_RANDOM,
        "target_met": bool(ratio_tpe <= TARGET_VS_TPE and ratio_random <= TARGET_VS_RANDOM),
        "reached": {m: sum(c <= budget for c in counts[m]) for m in METHODS},
        "best_grid_score": round(best.score, 4),
        "best_grid_config": _grid.describe_point(table, best.config_hash),
        "reach_threshold": round(table.threshold, 4),
        "baseline_score": round(base.score, 4),
        "grid_size": len(table.points),
        "grid_feasible": sum(p.feasible for p in table.points.values()),
        "grid_within_95pct": len(table.qualifying),
        "budget_examples": budget,
        "budget_full_evals": args.budget,
        "graphtune_batch_size": args.batch_size,
        "examples_per_eval": per_eval,
        "seeds": args.seeds,
        "graphtune_examples_at_reach": {k: [b[k] for b in at_reach] for k in ("baseline", "stopped_early", "full", "in_flight")},
        "graphtune_evaluations": [g["evaluations"] for g in graphtune_info],
        "graphtune_stopped_early": [g["stopped_early"] for g in graphtune_info],
        "graphtune_rounds": [g["rounds"] for g in graphtune_info],
        "graphtune_examples_spent": [g["examples"] for g in graphtune_info],
        "graphtune_out_of_grid": sum(g["out_of_grid"] for g in graphtune_info),
        "graphtune_late_joins": sum(g["late_joins"] for g in graphtune_info),
        "graphtune_end": [_clip(g["end"]) for g in graphtune_info],
        "optuna_tpe_evaluations": [r["evaluations"] for r in runs["optuna_tpe"]],
        "random_evaluations": [r["evaluations"] for r in runs["random"]],
        "production_runs": production["runs"],
        "production_thumbs_down": production["thumbs_down"],
        "grid_baseline_p95_ms": round(base.report.value("latency_ms", "p95"), 1),
        "grid_baseline_p95_runs_ms": table.meta.get("baseline_p95_runs_ms", []),
        "grid_latency_scale_range": table.meta.get("latency_scale_range"),
        "grid_build_seconds": table.build_seconds,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        emit(result, True, "tuning_efficiency")
        return
    print(f"tuning_efficiency: example evaluations to reach 95% of the best grid score "
          f"({spec.objective.metric} {best.score:.3f}; {len(table.qualifying)} of {len(table.points)} grid configs qualify)")
    print(f"budget {budget} examples ({args.budget} full evals of {per_eval}), {args.seeds} seeds; not reached = budget + 1")
    print(f"  {'method':<15} {'median':>8} {'full evals':>10}  per seed")
    for m in (*METHODS, "search_proposer"):
        value = median(counts[m])
        print(f"  {m:<15} {value:>8,.0f} {value / per_eval:>10.1f}  {counts[m]}")
    print(f"  graphtune / optuna_tpe = {ratio_tpe:.2f} (target <= {TARGET_VS_TPE}); "
          f"graphtune / random = {ratio_random:.2f} (target <= {TARGET_VS_RANDOM})")
    for seed, g in enumerate(graphtune_info):
        print(f"  graphtune seed {seed}: at reach {g['at_reach']}; {g['rounds']} rounds; {_clip(g['end'])}")


if __name__ == "__main__":
    main()
