"""tuning_suite: does tuning work on workflows graphtune was not built around? graphtune's default run vs Optuna TPE, CMA-ES and random search on every suite workflow.

Each workflow of ``benchmarks/workflows/`` (see its README) has an exact replay of its simulated
services, so any config's eval on the dev or test split is computed without running the graph, and
an exhaustive landscape over its spec's ``benchmark.grid`` gives the default's score and the best
feasible score on each split (``_replay.py``).

Per workflow and seed, every method searches the workflow's real search space (the spec's tunables,
not the grid) through a ``ReplayRunner``: ``EvalRunner.run``'s interface over the dev split, examples
in a per-seed order, the same early-stopping rules, counting example evaluations (a result served
before for the same config is free, like the real cache) and recording each served run's trajectory
(run and node events with the replay's node timings and errors, source ``eval``) into the trace
store the controller reads, as the real runner's recorder would.

- ``graphtune``: what a user runs. ``LocalController.start(REQUEST, spec=graphtune.yaml)``, the code
  path of ``graphtune tune``, offline (no model), default context and default budget, the
  workflow's plain request, no production traffic, a fresh database per seed. The config it presents
  at the approval interrupt is the result; a run that ends without one presents nothing.
- ``optuna_tpe``: a plain Optuna study with ``TPESampler`` and Optuna's constraint support
  (``Trial.set_constraint``): each guardrail's violation (how far past its limit, relative) is a
  constraint, so infeasible trials are ranked by how far they break. The shipped config is the first trial. Each trial is evaluated on the whole dev
  split; the run stops at ``--budget`` full evaluations' worth of examples.
- ``optuna_cmaes``: Optuna's ``CmaEsSampler`` (with margin, for integers; categorical tunables
  fall back to its independent sampler), infeasible trials told a penalised value. Optuna's
  ``GPSampler`` needs PyTorch, which this project does not install (several GB): not run.
- ``random``: configs drawn uniformly from the space (log-uniform on log ranges), shipped config first.

What each reports (medians over seeds): ``headroom_test`` = (test score of the presented config −
default's) / (best grid score on test − default's): a presented config that breaks a guardrail on
test, or nothing presented, counts as the default. The baselines present the best feasible config
they evaluated on dev when it beats the default there. ``nothing_rate``: share of seeds presenting
nothing although there was something to find: the default breaks a guardrail on test, or the best
grid config beats it by at least 20% of its score.
``guardrail_breaks``: presented configs that break a guardrail on test (summed over seeds).
``evals_spent``: example evaluations. ``evals_to_95pct``: examples consumed until the first complete
evaluation of a config that reaches 95% of the best grid score on dev and keeps every guardrail
(budget + 1 when never).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _grid  # noqa: E402
import _replay  # noqa: E402
from _common import emit, log, median, parse_args  # noqa: E402

METHODS = ("graphtune", "optuna_tpe", "optuna_cmaes", "random")
NOTHING_HEADROOM = 0.2  # a seed presenting nothing counts against graphtune when this much headroom exists


# -- the runner ----------------------------------------------------------------------------------------


class ReplayRunner(_grid.TableRunner):
    """``EvalRunner.run`` over a suite workflow's dev split, served by its replay; records trajectories."""

    def __init__(self, workflow: _replay.SuiteWorkflow, *, seed: int, settle_s: float = 0.0, traces_url: str | None = None):
        super().__init__(None, seed=seed, settle_s=settle_s, spec=workflow.spec, dataset=workflow.dev)
        self.workflow = workflow
        self.configs: dict[str, dict] = {}
        self._examples = {e.id: e for e in workflow.dev.examples}
        self._store = None
        if traces_url:
            from graphtune.backends.traces import open_trace_store

            self._store = open_trace_store(traces_url)
        self._events: list = []

    def results_of(self, config: dict, digest: str) -> dict:
        self.configs[digest] = config
        return {e.id: self.workflow.result(config, e, digest) for e in self.workflow.dev.examples}

    def on_served(self, run, example_id: str, result) -> None:
        if self._store is None:
            return
        replayed, _ = self.workflow.replayed(run.config, self._examples[example_id], run.digest)
        self._events += trajectory_events(self.spec.workflow, replayed, run.config_version, run.variant, self._next_start(replayed))

    def _next_start(self, replayed) -> float:
        """The run's start, so that it ends now: a replayed run happened just before it was served,
        as a real eval run's events are in the past when the controller reads them."""
        return time.time() - replayed.latency_ms / 1000.0

    def _finish(self, run):
        report = super()._finish(run)
        self.flush()
        return report

    def flush(self) -> None:
        if self._store is not None and self._events:
            events, self._events = self._events, []
            self._store.write(events)

    def close(self) -> None:
        self.flush()
        if self._store is not None:
            self._store.close()


def trajectory_events(workflow: str, replayed, config_version: int | None, variant: str | None, start: float) -> list:
    """The run and node events the recorder writes for one eval run, from the replay's node steps."""
    from graphtune.tracing.events import EventKind, TrajectoryEvent

    trace_id = uuid.uuid4().hex
    run_span = uuid.uuid4().hex[:16]
    tags = dict(workflow=workflow, config_version=config_version, variant=variant, source="eval",
                thread_id=f"eval-{trace_id[:8]}")
    events = [TrajectoryEvent(kind=EventKind.RUN_START, time=start, trace_id=trace_id, span_id=run_span, name=workflow, **tags)]
    t = start
    for step in replayed.steps:
        span = uuid.uuid4().hex[:16]
        events.append(TrajectoryEvent(kind=EventKind.NODE_START, time=t, trace_id=trace_id, span_id=span,
                                      parent_span_id=run_span, name=step.node, node=step.node, **tags))
        t += step.ms / 1000.0
        attributes = dict(step.attributes)
        if step.error:
            kind_name, _, message = step.error.partition(": ")
            attributes.update({"error.type": kind_name, "error.message": message})
        events.append(TrajectoryEvent(kind=EventKind.NODE_ERROR if step.error else EventKind.NODE_END, time=t,
                                      trace_id=trace_id, span_id=span, parent_span_id=run_span, name=step.node,
                                      node=step.node, duration_ms=step.ms, status="error" if step.error else "ok",
                                      attributes=attributes, **tags))
    end_attributes = {}
    if replayed.error:
        kind_name, _, message = replayed.error.partition(": ")
        end_attributes = {"error.type": kind_name, "error.message": message}
    events.append(TrajectoryEvent(kind=EventKind.RUN_END, time=start + replayed.latency_ms / 1000.0, trace_id=trace_id,
                                  span_id=run_span, name=workflow, duration_ms=replayed.latency_ms,
                                  status="error" if replayed.error else "ok", attributes=end_attributes,
                                  input_tokens=replayed.input_tokens or None, output_tokens=replayed.output_tokens or None, **tags))
    return events


# -- the methods --------------------------------------------------------------------------------------


async def run_graphtune(workflow: _replay.SuiteWorkflow, seed: int, workdir: str) -> tuple[ReplayRunner, dict]:
    """The user's run: ``graphtune tune "<request>" --spec graphtune.yaml``, offline, default budget."""
    from graphtune.graphs.context import ControllerContext
    from graphtune.graphs.local_controller import LocalController

    traces_url = f"sqlite:///{workdir}/traces-{workflow.name}-{seed}.db"
    runner = ReplayRunner(workflow, seed=seed, settle_s=0.2, traces_url=traces_url)
    ctx = ControllerContext(database_url=f"sqlite:///{workdir}/graphtune-{workflow.name}-{seed}.db", traces_url=traces_url,
                            model=None, base_url=None, seed=seed, runner_factory=lambda spec: runner)
    controller = LocalController(context=ctx)
    try:
        result = await controller.start(workflow.request, spec=str(workflow.spec.path), thread_id=f"suite-{workflow.name}-{seed}")
    finally:
        runner.close()
    values = result.values
    presented = None
    if result.pending:
        chosen = result.pending.get("candidate_id")
        presented = next((c["config"] for c in values.get("candidates") or [] if c.get("id") == chosen), None)
    decision = values.get("decision") or {}
    outcome = values.get("outcome") or {}
    end = (f"parked at approval with {result.pending.get('candidate_id')}" if result.pending
           else f"{outcome.get('status', 'ended')}: {outcome.get('message') or decision.get('reason', '')}")
    info = {"end": _clip(end), "rounds": int(values.get("round") or 0), "ended_by": decision.get("ended_by", ""),
            "candidates": sum(1 for c in values.get("candidates") or [] if c.get("id") != "baseline")}
    return runner, {"presented": presented, **info}


def _violations(report, base, guardrails) -> list[float]:
    """How far each guardrail is broken (graphtune's own measure); 0 where it holds."""
    from graphtune.tuning.decision import check_violation, guardrail_checks

    return [check_violation(c) for c in guardrail_checks(report, base, guardrails)] or [0.0]


def _searched(spec):
    from graphtune.tuning.search import SearchProposer

    return SearchProposer(spec.space, direction=spec.objective.direction or "maximize", model_available=False).params


def _config_from(spec, params, values: dict) -> dict:
    from graphtune.tuning.config_paths import set_path

    config = spec.config
    for param in params:
        config = set_path(config, param.path, param.from_optuna(values[param.path]))
    return config


async def run_optuna(workflow: _replay.SuiteWorkflow, seed: int, budget: int, sampler_name: str) -> tuple[ReplayRunner, dict]:
    import optuna

    spec = workflow.spec
    runner = ReplayRunner(workflow, seed=seed)
    params = _searched(spec)
    distributions = {p.path: p.distribution for p in params}
    direction = workflow.direction
    sign = 1.0 if direction == "maximize" else -1.0
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sampler_name == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed)  # constraints come with each trial (set_constraint)
    else:
        import warnings

        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message=".*CmaEsSampler.*")
        sampler = optuna.samplers.CmaEsSampler(seed=seed, with_margin=True, warn_independent_sampling=False)
    study = optuna.create_study(direction=direction, sampler=sampler)
    study.enqueue_trial({p.path: p.to_optuna(_get(spec.config, p.path)) for p in params})
    base = None
    idle = 0
    worst = None
    while runner.consumed < budget and idle < 200:
        trial = study.ask(distributions)
        config = _config_from(spec, params, trial.params)
        if spec.space.check_config(config):
            trial.set_constraint("valid", 1.0)
            study.tell(trial, worst if worst is not None else 0.0)
            idle += 1
            continue
        before = runner.consumed
        report = await runner.run(config, variant=f"optuna_{sampler_name}")
        base = base or report
        idle = idle + 1 if runner.consumed == before else 0
        value = workflow.score(report)
        violations = _violations(report, base, spec.guardrails)
        value = 0.0 if value is None else float(value)
        broken = sum(v for v in violations if v > 0)
        if sampler_name == "cmaes" and broken:  # no constraint support: a penalty past the worst value seen
            value -= sign * (abs(value) + 1.0) * (1.0 + broken)
        worst = value if worst is None else (min(worst, value) if sign > 0 else max(worst, value))
        trial.set_constraint("valid", 0.0)
        for index, violation in enumerate(violations):
            trial.set_constraint(f"guardrail{index}", violation)
        study.tell(trial, value)
    return runner, {}


async def run_random(workflow: _replay.SuiteWorkflow, seed: int, budget: int) -> tuple[ReplayRunner, dict]:
    spec = workflow.spec
    runner = ReplayRunner(workflow, seed=seed)
    params = _searched(spec)
    rng = random.Random(f"random:{seed}")
    config = spec.config
    idle = 0
    while runner.consumed < budget and idle < 200:
        before = runner.consumed
        await runner.run(config, variant="random")
        idle = idle + 1 if runner.consumed == before else 0
        while True:
            config = _config_from(spec, params, {p.path: _uniform(p.distribution, rng) for p in params})
            if not spec.space.check_config(config):
                break
    return runner, {}


def _uniform(distribution, rng: random.Random):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return rng.choice(distribution.choices)
    low, high = distribution.low, distribution.high
    if distribution.log:
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    step = distribution.step
    if step:
        value = low + round((value - low) / step) * step
    if isinstance(distribution, IntDistribution):
        return int(min(max(round(value), low), high))
    assert isinstance(distribution, FloatDistribution)
    return min(max(value, low), high)


def _get(config: dict, path: str):
    from graphtune.tuning.config_paths import get_path

    return get_path(config, path)


# -- accounting ---------------------------------------------------------------------------------------


def evals_to_reach(runner: ReplayRunner, workflow: _replay.SuiteWorkflow, budget: int) -> int:
    """Examples consumed up to the first complete evaluation of a config within 95% of the best on dev
    that keeps every guardrail there; budget + 1 when none did."""
    land = workflow.landscape_dev
    for entry in runner.log:
        if not entry.complete:
            continue
        config = runner.configs.get(entry.config_hash)
        if config is None:
            continue
        if land.reaches(*workflow.judge(config, workflow.dev)):
            return entry.consumed if entry.consumed <= budget else budget + 1
    return budget + 1


def best_evaluated(runner: ReplayRunner, workflow: _replay.SuiteWorkflow) -> dict | None:
    """What a plain optimiser would present: its best complete, feasible dev evaluation, if it beats the default."""
    sign = 1.0 if workflow.direction == "maximize" else -1.0
    base_score, _ = workflow.judge(workflow.spec.config, workflow.dev)
    best, best_score = None, None
    for entry in runner.log:
        config = runner.configs.get(entry.config_hash)
        if not entry.complete or config is None:
            continue
        score, ok = workflow.judge(config, workflow.dev)
        if ok and score is not None and (best_score is None or sign * (score - best_score) > 0):
            best, best_score = config, score
    if best is None or base_score is None or sign * (best_score - base_score) <= 0:
        return None
    return best


def judge_presented(workflow: _replay.SuiteWorkflow, presented: dict | None) -> dict:
    land = workflow.landscape_test
    if presented is None:
        return {"presented": False, "headroom_test": land.headroom(None, False), "breaks": False, "test_score": None}
    score, ok = workflow.judge(presented, workflow.test)
    return {"presented": True, "headroom_test": land.headroom(score, ok), "breaks": not ok,
            "test_score": None if score is None else round(score, 4)}


def headroom_exists(workflow: _replay.SuiteWorkflow) -> bool:
    """Whether presenting nothing is a miss: the default breaks a guardrail on test, or the best grid
    config beats it by at least ``NOTHING_HEADROOM`` of the default's own score."""
    land = workflow.landscape_test
    best, base = land.best.score, land.baseline.score
    if not land.baseline.feasible:
        return True
    if best is None or base is None:
        return False
    return abs(best - base) >= NOTHING_HEADROOM * max(abs(base), 1e-9)


def _clip(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _geomean(values: list[float]) -> float:
    values = [v for v in values if v > 0 and math.isfinite(v)]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else math.nan


# -- main -----------------------------------------------------------------------------------------------


def run_suite(names: list[str], seeds: int, budget_full_evals: int, methods: tuple[str, ...] = METHODS,
              directory: Path = _replay.WORKFLOWS_DIR) -> dict:
    os.environ.pop("GRAPHTUNE_MODEL", None)  # offline, as a new user without a model key
    started = time.perf_counter()
    per_workflow: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="graphtune-suite-") as workdir:
        for name in names:
            workflow = _replay.load_workflow(name, directory)
            t0 = time.perf_counter()
            land_dev, land_test = workflow.landscape_dev.summary(), workflow.landscape_test.summary()
            log(f"{name}: landscape dev {land_dev}, test {land_test} ({time.perf_counter() - t0:.1f} s)")
            budget = budget_full_evals * len(workflow.dev.examples)
            rows: dict[str, list[dict]] = {m: [] for m in methods}
            for seed in range(seeds):
                for method in methods:
                    t1 = time.perf_counter()
                    if method == "graphtune":
                        runner, info = asyncio.run(run_graphtune(workflow, seed, workdir))
                        presented = info.pop("presented")
                    else:
                        if method == "random":
                            runner, info = asyncio.run(run_random(workflow, seed, budget))
                        else:
                            runner, info = asyncio.run(run_optuna(workflow, seed, budget, method.removeprefix("optuna_")))
                        presented = best_evaluated(runner, workflow)
                    row = {**judge_presented(workflow, presented), "evals_spent": runner.consumed,
                           "evals_to_95pct": evals_to_reach(runner, workflow, budget), **info}
                    rows[method].append(row)
                    log(f"  seed {seed} {method:<13} headroom {row['headroom_test']:+.2f} spent {row['evals_spent']:>6} "
                        f"to95 {row['evals_to_95pct']:>6}  ({time.perf_counter() - t1:.1f} s) "
                        f"{info.get('candidates', '')} candidates, ended by {info.get('ended_by') or '-'}: {info.get('end', '')}")
            exists = headroom_exists(workflow)
            per_workflow[name] = {
                "headroom_test": {m: round(median([r["headroom_test"] for r in rows[m]]), 3) for m in methods},
                "nothing_rate": {m: round(sum((not r["presented"]) and exists for r in rows[m]) / seeds, 3) for m in methods},
                "guardrail_breaks": {m: sum(r["breaks"] for r in rows[m]) for m in methods},
                "evals_spent": {m: median([r["evals_spent"] for r in rows[m]]) for m in methods},
                "evals_to_95pct": {m: median([r["evals_to_95pct"] for r in rows[m]]) for m in methods},
                "budget_examples": budget,
                "landscape": {"dev": land_dev, "test": land_test},
                "request": workflow.request,
                "graphtune_runs": [{k: r[k] for k in ("headroom_test", "test_score", "evals_spent", "end") if k in r}
                                   for r in rows.get("graphtune", [])],
            }
    g = "graphtune"
    result = {"workflows": per_workflow, "seeds": seeds, "budget_full_evals": budget_full_evals}
    if g in methods:
        ratios = {other: [per_workflow[n]["evals_to_95pct"][g] / per_workflow[n]["evals_to_95pct"][other]
                          for n in per_workflow] for other in methods if other != g}
        result.update(
            min_headroom_test=min(w["headroom_test"][g] for w in per_workflow.values()),
            max_nothing_rate=max(w["nothing_rate"][g] for w in per_workflow.values()),
            total_guardrail_breaks=sum(w["guardrail_breaks"][g] for w in per_workflow.values()),
            geomean_evals_ratio_vs_tpe=round(_geomean(ratios.get("optuna_tpe", [])), 3),
            geomean_evals_ratio_vs_random=round(_geomean(ratios.get("random", [])), 3),
            geomean_evals_ratio_vs_cmaes=round(_geomean(ratios.get("optuna_cmaes", [])), 3),
        )
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def print_table(result: dict) -> None:
    methods = list(next(iter(result["workflows"].values()))["headroom_test"])
    print(f"tuning_suite: {result['seeds']} seeds, baselines' budget {result['budget_full_evals']} full dev evaluations")
    print(f"  {'workflow':<15} {'method':<13} {'headroom':>8} {'nothing':>8} {'breaks':>6} {'spent':>7} {'to 95%':>7}")
    for name, w in result["workflows"].items():
        for m in methods:
            print(f"  {name:<15} {m:<13} {w['headroom_test'][m]:>8.2f} {w['nothing_rate'][m]:>8.2f} "
                  f"{w['guardrail_breaks'][m]:>6} {w['evals_spent'][m]:>7.0f} {w['evals_to_95pct'][m]:>7.0f}")
    for key in ("min_headroom_test", "max_nothing_rate", "total_guardrail_breaks", "geomean_evals_ratio_vs_tpe",
                "geomean_evals_ratio_vs_random"):
        if key in result:
            print(f"  {key}: {result[key]}")


def main() -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        seeds=(int, 5, "seeds per workflow and method"),
        budget=(int, 30, "the baselines' budget, in full evaluations of the dev split"),
        workflows=(str, "", "comma-separated workflow names (default: every suite workflow)"),
        methods=(str, ",".join(METHODS), "comma-separated methods"),
    )
    names = [n for n in args.workflows.split(",") if n] or _replay.suite_names()
    methods = tuple(m for m in args.methods.split(",") if m)
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise SystemExit(f"unknown method(s) {sorted(unknown)}; expected some of {list(METHODS)}")
    result = run_suite(names, args.seeds, args.budget, methods)
    if args.json:
        emit(result, True, "tuning_suite")
    else:
        print_table(result)


if __name__ == "__main__":
    main()
