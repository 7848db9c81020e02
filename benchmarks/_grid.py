"""The tuning-efficiency benchmark's grid: its configs, a spec whose search space is the grid, the table
of every grid config's eval, and a runner that serves evals from that table.

- ``grid_configs``: the spec's ``benchmark.grid`` enumerated (tunables outside it keep the config's
  value), constraint violations dropped.
- ``benchmark_spec``: the same workflow with the grid as its whole search space: each grid path a
  ``choice`` over its grid values (a bool path over [false, true] stays a bool, so constraints still
  apply). Every proposal of any proposer is then a grid point; nothing is ever snapped to the grid.
- ``build_table``: every grid config evaluated once on the full dataset by the real ``EvalRunner``
  (no recorder) into a persistent eval cache, so later runs read it back in seconds. The cache key
  holds the dataset hash and evaluator version, so stale results never apply.
- ``TableRunner``: ``EvalRunner.run``'s signature, served from the table in a per-seed shuffled
  example order, with the same early-stopping rule, counting example evaluations (a result it served
  before in this run is a cache hit, free, as with the real cache) and logging every evaluation.

Latency is measured, not simulated, and the spec guards p95 latency at 1.2x the shipped config's, so
how the grid is measured matters. On this project's 2-core machines, one runner at concurrency 16
is CPU-bound: the event loop's queue dominates latency, and the shipped config's p95 varies by
+-20-40% between two runs of the same config, which turns the guardrail into a coin flip. The grid
is therefore measured with several worker processes, each running ``in_flight`` configs at once,
one example at a time per config: queueing stays small (p95 within a few percent between runs) at
the price of a longer one-time build. Each worker also re-measures the shipped config once, uncached,
in the middle of its share; those p95s are kept beside the cache (``grid_meta.json``) as the noise
figure of the table's latency.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from graphtune.evals.datasets import Dataset, load_dataset
from graphtune.evals.evaluators import EVALUATOR_VERSION
from graphtune.evals.runner import EvalReport, ExampleResult, Reference, reference_scores, stop_reason
from graphtune.evals.stats import summarize
from graphtune.spec import WorkflowSpec, load_spec
from graphtune.tuning.configs import config_hash, get_path, set_path
from graphtune.tuning.decision import feasible
from graphtune.tuning.space import BoolDomain, ChoiceDomain

GRID_CACHE_URL = "sqlite:///.graphtune/bench/grid.db"
REACH_SHARE = 0.95


# -- the grid ------------------------------------------------------------------------------------


def grid_paths(spec: WorkflowSpec, *, offline: bool = True) -> dict[str, list[Any]]:
    if spec.benchmark is None:
        raise ValueError(f"{spec.path}: the spec has no benchmark.grid section")
    grid = spec.benchmark.grid
    if offline:
        needs_model = [p for p in grid if spec.tunables[p].requires_model]
        if needs_model:
            raise ValueError(f"{spec.path}: benchmark.grid paths {needs_model} need an LLM; the benchmark runs offline")
    return grid


def grid_configs(spec: WorkflowSpec) -> list[dict]:
    """Every grid point that respects the spec's constraints, in grid order, the spec's config first."""
    grid = grid_paths(spec)
    configs = [spec.config]
    seen = {config_hash(spec.config)}
    for values in itertools.product(*grid.values()):
        config = spec.config
        for path, value in zip(grid, values):
            config = set_path(config, path, value)
        digest = config_hash(config)
        if digest in seen or spec.space.check_config(config):
            continue
        seen.add(digest)
        configs.append(config)
    return configs


def benchmark_spec(spec: WorkflowSpec) -> WorkflowSpec:
    """The workflow with the grid as its whole search space; dataset paths made absolute."""
    grid = grid_paths(spec)
    tunables: dict[str, Any] = {}
    for path, values in grid.items():
        domain = spec.tunables[path]
        if isinstance(domain, BoolDomain) and sorted(values) == [False, True]:
            tunables[path] = domain.model_copy()
        else:
            tunables[path] = ChoiceDomain(type="choice", values=list(values), description=domain.description)
    for constraint in spec.constraints:
        loose = [p for p in constraint.paths if not isinstance(tunables.get(p), BoolDomain)]
        if loose:
            raise ValueError(f"{spec.path}: constraint '{constraint.describe()}' needs {loose} in benchmark.grid as [false, true]")
    datasets = [d.model_copy(update={"path": str(spec.dataset_path(d.name))}) for d in spec.evals.datasets]
    return spec.model_copy(update={
        "tunables": tunables, "evals": spec.evals.model_copy(update={"datasets": datasets}), "benchmark": None,
    }, deep=True)


def write_spec(spec: WorkflowSpec, directory: str | Path) -> Path:
    """The spec as a YAML file the controller can load by path; loaded back once to check it."""
    path = Path(directory) / f"{spec.workflow}.benchmark.yaml"
    data = spec.model_dump(mode="json", exclude={"benchmark"})
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    load_spec(path)
    return path


# -- the table ---------------------------------------------------------------------------------------


@dataclass
class GridPoint:
    config: dict
    config_hash: str
    report: EvalReport
    score: float | None  # the objective's statistic
    feasible: bool  # every guardrail holds against the spec's config


@dataclass
class GridTable:
    spec: WorkflowSpec
    dataset: Dataset
    points: dict[str, GridPoint]
    baseline_hash: str
    build_seconds: float = 0.0
    meta: dict = field(default_factory=dict)

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        return self.spec.objective.direction or "maximize"

    @property
    def best(self) -> GridPoint:
        sign = 1.0 if self.direction == "maximize" else -1.0
        pool = [p for p in self.points.values() if p.feasible and p.score is not None]
        return max(pool, key=lambda p: sign * p.score)

    @property
    def threshold(self) -> float:
        """95% of the best score (maximizing), or the best / 0.95 (minimizing)."""
        best = self.best.score
        return REACH_SHARE * best if self.direction == "maximize" else best / REACH_SHARE

    def reaches(self, digest: str) -> bool:
        point = self.points.get(digest)
        if point is None or not point.feasible or point.score is None:
            return False
        return point.score >= self.threshold if self.direction == "maximize" else point.score <= self.threshold

    @property
    def qualifying(self) -> set[str]:
        return {h for h in self.points if self.reaches(h)}


def _meta_path(cache_url: str) -> Path:
    from graphtune.backends.traces import path_from_url

    return Path(path_from_url(cache_url, "sqlite")).with_name("grid_meta.json")


def _grid_key(spec: WorkflowSpec, dataset: Dataset, configs: list[dict]) -> str:
    digest = hashlib.sha256(dataset.hash.encode() + EVALUATOR_VERSION.encode())
    for config in configs:
        digest.update(config_hash(config).encode())
    return digest.hexdigest()[:16]


def build_table(spec: WorkflowSpec, *, cache_url: str = GRID_CACHE_URL, workers: int = 2, in_flight: int = 8,
                log: Callable[[str], None] = lambda _: None) -> GridTable:
    """Every grid config's report, evaluating into the cache only what it does not hold yet."""
    from graphtune.backends.eval_cache import CacheKey, open_eval_cache
    from graphtune.evals.runner import EvalRunner

    os.environ.pop("GRAPHTUNE_MODEL", None)  # the grid is offline: the workflow uses its extractive answerer
    configs = grid_configs(spec)
    dataset = load_dataset(spec.dataset_path(), spec.evals.datasets[0].name)
    ids = [e.id for e in dataset.examples]
    key = _grid_key(spec, dataset, configs)
    meta_path = _meta_path(cache_url) if cache_url.startswith("sqlite") else None
    with open_eval_cache(cache_url) as cache:
        missing = [c for c in configs
                   if len(cache.get_many(CacheKey(config_hash(c), dataset.hash, EVALUATOR_VERSION), ids)) < len(ids)]
    started = time.perf_counter()
    meta: dict = {}
    if meta_path and meta_path.exists():
        stored = json.loads(meta_path.read_text())
        meta = stored if stored.get("grid_key") == key else {}
    if missing:
        log(f"grid: evaluating {len(missing)} of {len(configs)} configs into {cache_url} "
            f"({workers} workers x {in_flight} configs in flight, one example at a time per config) ...")
        probes = _fill(spec, missing, cache_url, workers=workers, in_flight=in_flight, log=log)
        meta = {"grid_key": key, "build_seconds": round(time.perf_counter() - started, 1), "workers": workers,
                "in_flight": in_flight, "baseline_p95_rechecks_ms": sorted(probes)}
        if meta_path:
            meta_path.write_text(json.dumps(meta, indent=2))

    async def read_all() -> dict[str, EvalReport]:
        with open_eval_cache(cache_url) as cache:
            runner = EvalRunner(spec, cache=cache, concurrency=in_flight)  # evaluates only what is still missing
            return {config_hash(c): await runner.run(c, dataset=dataset) for c in configs}

    reports = asyncio.run(read_all())
    base_hash = config_hash(spec.config)
    base = reports[base_hash]
    metric, statistic = spec.objective.metric, "mean"
    points = {h: GridPoint(config=c, config_hash=h, report=reports[h], score=reports[h].value(metric, statistic),
                           feasible=feasible(reports[h], base, spec.guardrails))
              for h, c in ((config_hash(c), c) for c in configs)}
    return GridTable(spec=spec, dataset=dataset, points=points, baseline_hash=base_hash,
                     build_seconds=round(time.perf_counter() - started, 1) if missing else 0.0, meta=meta)


def _fill(spec: WorkflowSpec, configs: list[dict], cache_url: str, *, workers: int, in_flight: int,
          log: Callable[[str], None]) -> list[float]:
    """Evaluate configs into the cache in worker processes; the p95 latencies of their baseline re-checks."""
    workers = max(1, min(workers, len(configs)))
    shards = [configs[i::workers] for i in range(workers)]
    probes: list[float] = []
    with tempfile.TemporaryDirectory(prefix="graphtune-grid-") as tmp:
        procs = []
        for i, shard in enumerate(shards):
            job = Path(tmp) / f"shard{i}.json"
            job.write_text(json.dumps({"spec": str(spec.path), "cache_url": cache_url, "in_flight": in_flight,
                                       "configs": shard, "probe": spec.config}))
            procs.append(subprocess.Popen([sys.executable, os.path.abspath(__file__), "fill", str(job)],
                                          stdout=subprocess.PIPE, text=True))
        for i, proc in enumerate(procs):
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"grid worker {i} failed with exit code {proc.returncode}")
            result = json.loads(out.strip().splitlines()[-1])
            probes += result["probe_p95_ms"]
            log(f"grid: worker {i} evaluated {len(shards[i])} configs in {result['seconds']:.0f} s")
    return probes


async def _fill_shard(job: dict) -> dict:
    """One worker: ``in_flight`` configs at a time, each on its own runner at concurrency 1, plus one
    uncached re-measurement of the spec's config half-way through."""
    from graphtune.backends.eval_cache import open_eval_cache
    from graphtune.evals.runner import EvalRunner

    spec = load_spec(job["spec"])
    dataset = await asyncio.to_thread(load_dataset, spec.dataset_path(), spec.evals.datasets[0].name)
    jobs: list[tuple[dict, bool]] = [(c, True) for c in job["configs"]]
    jobs.insert(len(jobs) // 2, (job["probe"], False))
    gate = asyncio.Semaphore(job["in_flight"])
    probes: list[float] = []
    started = time.perf_counter()
    with open_eval_cache(job["cache_url"]) as cache:
        async def one(config: dict, cached: bool) -> None:
            async with gate:
                report = await EvalRunner(spec, cache=cache if cached else None, concurrency=1).run(config, dataset=dataset)
                if not cached:
                    probes.append(report.value("latency_ms", "p95"))

        await asyncio.gather(*(one(c, cached) for c, cached in jobs))
    return {"seconds": time.perf_counter() - started, "probe_p95_ms": probes}


# -- the tabular runner -----------------------------------------------------------------------------


class OutOfGrid(KeyError):
    """A config the table does not hold. Never snapped to a neighbour: the evaluation fails instead."""


@dataclass
class EvalLogEntry:
    consumed: int  # example evaluations of this run so far, including this one's
    config_hash: str
    variant: str | None
    complete: bool  # every selected example scored, not stopped early
    stopped_early: bool
    fresh: int
    cached: int
    examples: int
    fresh_by_config: dict[str, int] = field(default_factory=dict)  # every config's example evaluations so far


class TableRunner:
    """``EvalRunner``'s ``run`` interface over a ``GridTable``.

    Examples are served in one shuffled order per seed (the same for every config, so early-stopping
    comparisons stay paired), ``tick_s`` apart, so configs evaluated in parallel tasks advance
    side by side as they would on a shared runner. A result served before for the same config is a
    cache hit (free); every other result counts as one example evaluation.
    """

    def __init__(self, table: GridTable, *, seed: int, tick_s: float = 0.0, spec: WorkflowSpec | None = None):
        self.table = table
        self.spec = spec or table.spec
        self.tick_s = tick_s
        order = [e.id for e in table.dataset.examples]
        random.Random(f"order:{seed}").shuffle(order)
        self.order = order
        self.served: dict[str, set[str]] = {}
        self.consumed = 0
        self.fresh_by_config: dict[str, int] = {}
        self.log: list[EvalLogEntry] = []
        self.out_of_grid: list[dict] = []

    async def run(
        self,
        config: dict | None = None,
        *,
        dataset: Dataset | None = None,
        config_version: int | None = None,
        variant: str | None = None,
        limit: int | None = None,
        baseline: Reference | None = None,
        check_every: int = 20,
        on_result: Callable[[ExampleResult], None] | None = None,
        stop_on: tuple[str, Literal["maximize", "minimize"]] | None = None,
        reference_name: str = "the baseline",
    ) -> EvalReport:
        spec = self.spec
        config = spec.config if config is None else config
        digest = config_hash(config)
        point = self.table.points.get(digest)
        if point is None:
            self.out_of_grid.append(config)
            raise OutOfGrid(f"config {digest[:12]} is not a point of the benchmark grid")
        table_dataset = self.table.dataset
        if dataset is not None and dataset.hash != table_dataset.hash:
            raise ValueError(f"dataset {dataset.name} ({dataset.hash[:12]}) is not the table's ({table_dataset.hash[:12]})")
        started = time.perf_counter()
        examples = (dataset or table_dataset).select(limit=limit)
        wanted = {e.id for e in examples}
        by_id = {r.example_id: r for r in point.report.results}
        served = self.served.setdefault(digest, set())

        results: dict[str, ExampleResult] = {}
        for example in examples:
            if example.id in served:
                results[example.id] = by_id[example.id].model_copy(update={"cached": True})
                if on_result:
                    on_result(results[example.id])
        cached = len(results)
        metric, direction = stop_on or (spec.objective.metric, spec.objective.direction)
        stopped = ""
        fresh = 0
        for example_id in [i for i in self.order if i in wanted and i not in served]:
            await asyncio.sleep(self.tick_s)
            result = by_id[example_id].model_copy(update={"cached": False})
            served.add(example_id)
            self.consumed += 1
            self.fresh_by_config[digest] = self.fresh_by_config.get(digest, 0) + 1
            fresh += 1
            results[example_id] = result
            if on_result:
                on_result(result)
            if baseline is not None and fresh % check_every == 0:
                mine = {i: r.scores[metric] for i, r in results.items() if r.scores.get(metric) is not None}
                stopped = stop_reason(mine, reference_scores(baseline, metric), metric, direction, reference_name)
                if stopped:
                    break

        ordered = [results[e.id] for e in examples if e.id in results]
        summary = {m: summarize([r.scores[m] for r in ordered if r.scores.get(m) is not None]) for m in spec.evals.metrics}
        self.log.append(EvalLogEntry(consumed=self.consumed, config_hash=digest, variant=variant,
                                     complete=not stopped and len(ordered) == len(examples), stopped_early=bool(stopped),
                                     fresh=fresh, cached=cached, examples=len(ordered),
                                     fresh_by_config=dict(self.fresh_by_config)))
        return EvalReport(
            workflow=spec.workflow, dataset=table_dataset.name, dataset_hash=table_dataset.hash, config_hash=digest,
            config_version=config_version, results=ordered, summary=summary, examples_total=len(examples),
            cached=cached, stopped_early=bool(stopped), stop_reason=stopped, wall_s=time.perf_counter() - started,
        )


def reach_index(log: list[EvalLogEntry], table: GridTable, budget: int) -> int | None:
    """The log index of the first complete evaluation of a config within 95% of the best grid score,
    when it happened within the budget."""
    for index, entry in enumerate(log):
        if entry.complete and table.reaches(entry.config_hash):
            return index if entry.consumed <= budget else None
    return None


def examples_to_reach(log: list[EvalLogEntry], table: GridTable, budget: int) -> int:
    """Examples consumed up to and including the reaching evaluation; budget + 1 when none reached."""
    index = reach_index(log, table, budget)
    return budget + 1 if index is None else log[index].consumed


def breakdown(log: list[EvalLogEntry], table: GridTable, budget: int) -> dict[str, int]:
    """Where the examples counted went: the baseline, evaluations stopped early, full evaluations (the
    reaching one included), and evaluations still running when the reaching one completed. Without a
    reach, everything the run consumed."""
    if not log:
        return {"baseline": 0, "stopped_early": 0, "full": 0, "in_flight": 0}
    index = reach_index(log, table, budget)
    upto = len(log) - 1 if index is None else index
    kinds = {"baseline": 0, "stopped_early": 0, "full": 0, "in_flight": 0}
    for digest, examples in log[upto].fresh_by_config.items():
        done = next((e for e in log[: upto + 1] if e.config_hash == digest and e.fresh), None)
        kind = ("baseline" if digest == table.baseline_hash else "in_flight" if done is None
                else "stopped_early" if done.stopped_early else "full")
        kinds[kind] += examples
    return kinds


def describe_point(table: GridTable, digest: str) -> dict[str, Any]:
    """The grid values of a point, for reports."""
    point = table.points[digest]
    return {path: get_path(point.config, path) for path in table.spec.benchmark.grid}


def _main() -> None:
    parser = argparse.ArgumentParser(description="grid worker (internal)")
    parser.add_argument("command", choices=["fill"])
    parser.add_argument("job")
    args = parser.parse_args()
    job = json.loads(Path(args.job).read_text())
    print(json.dumps(asyncio.run(_fill_shard(job))), flush=True)


if __name__ == "__main__":
    _main()
