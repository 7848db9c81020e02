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
how the grid is measured matters. On this project's shared 2-core machines one runner at concurrency
16 is CPU-bound (the event loop's queue dominates latency), and even at low concurrency two runs of
the shipped config minutes apart differed by up to 50% in p95: compared across minutes, the
guardrail decides at random. So configs are measured in blocks, each beside a run of the shipped
config, one example at a time per config, and latencies are compared through that paired run (see
``build_table``).
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
from graphtune.tuning.config_paths import config_hash, get_path, set_path
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


def _blocks_path(cache_url: str) -> Path:
    from graphtune.backends.traces import path_from_url

    if not cache_url.startswith("sqlite"):
        raise ValueError(f"the grid cache must be a sqlite:/// URL (its block notes live beside the file), got {cache_url!r}")
    return Path(path_from_url(cache_url, "sqlite")).with_name("grid_blocks")


def _grid_key(spec: WorkflowSpec, dataset: Dataset, configs: list[dict]) -> str:
    digest = hashlib.sha256(dataset.hash.encode() + EVALUATOR_VERSION.encode())
    for config in configs:
        digest.update(config_hash(config).encode())
    return digest.hexdigest()[:16]


def _read_blocks(directory: Path, key: str) -> list[dict]:
    """The measured blocks of this grid, from every worker's notes (one JSON line per block)."""
    blocks = []
    lines = [line for path in sorted(directory.glob("worker*.jsonl")) for line in path.read_text(encoding="utf-8").splitlines()]
    for line in lines:
        try:
            block = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a crash
            continue
        if block.get("grid_key") == key:
            blocks.append(block)
    return sorted(blocks, key=lambda b: b["finished"])


def build_table(spec: WorkflowSpec, *, cache_url: str = GRID_CACHE_URL, workers: int = 2, block_size: int = 7,
                log: Callable[[str], None] = lambda _: None) -> GridTable:
    """Every grid config's report; only configs the cache (and its block notes) do not hold are measured.

    Measuring: each worker process runs blocks of ``block_size`` configs together with one run of the
    spec's config, all at once, one example at a time per config, uncached; the results go into the
    cache and the block's baseline run into ``grid_blocks/`` beside it. The table's baseline is
    the block baseline run with the median p95 latency (B); a config measured beside a baseline run of
    p95 b has its latencies scaled by B / b. The paired design of DESIGN.md: the machines are shared,
    and load drifts within a minute, so latencies measured minutes apart are compared through the run
    measured beside them. Without it, two runs of the same config differ by up to 50% in p95 latency
    on a loaded 2-core machine, and the 1.2x p95 guardrail decides at random.
    """
    from graphtune.backends.eval_cache import CacheKey, open_eval_cache
    from graphtune.evals.runner import EvalRunner

    os.environ.pop("GRAPHTUNE_MODEL", None)  # the grid is offline: the workflow uses its extractive answerer
    configs = grid_configs(spec)
    dataset = load_dataset(spec.dataset_path(), spec.evals.datasets[0].name)
    ids = [e.id for e in dataset.examples]
    base_hash = config_hash(spec.config)
    key = _grid_key(spec, dataset, configs)
    blocks_path = _blocks_path(cache_url)
    started = time.perf_counter()
    measured = {h for b in _read_blocks(blocks_path, key) for h in b["configs"]}
    with open_eval_cache(cache_url) as cache:
        missing = [c for c in configs if config_hash(c) != base_hash and (
            config_hash(c) not in measured
            or len(cache.get_many(CacheKey(config_hash(c), dataset.hash, EVALUATOR_VERSION), ids)) < len(ids))]
    if missing:
        log(f"grid: measuring {len(missing)} of {len(configs)} configs into {cache_url}: {workers} workers, blocks of "
            f"{block_size} configs beside one run of the shipped config, one example at a time per config ...")
        _fill(spec, missing, cache_url, key, workers=workers, block_size=block_size, log=log)
    blocks = _read_blocks(blocks_path, key)
    if not blocks:
        raise RuntimeError(f"{blocks_path}: no measured blocks for this grid; delete the grid cache and run again")
    ordered = sorted(blocks, key=lambda b: b["baseline_p95_ms"])
    reference = ordered[(len(ordered) - 1) // 2]
    with open_eval_cache(cache_url) as cache:  # the table's baseline: the median block baseline run
        for result in reference["baseline_results"]:
            cache.put(CacheKey(base_hash, dataset.hash, EVALUATOR_VERSION), result["example_id"], result)
    factors = {base_hash: 1.0}
    for block in blocks:  # later blocks win (a config measured again after a crash)
        factors.update({h: reference["baseline_p95_ms"] / block["baseline_p95_ms"] for h in block["configs"]})

    async def read_all() -> dict[str, EvalReport]:
        with open_eval_cache(cache_url) as cache:
            runner = EvalRunner(spec, cache=cache)
            return {config_hash(c): await runner.run(c, dataset=dataset) for c in configs}

    reports = {h: _scaled(spec, r, factors[h]) for h, r in asyncio.run(read_all()).items()}
    base = reports[base_hash]
    metric, statistic = spec.objective.metric, "mean"
    points = {h: GridPoint(config=c, config_hash=h, report=reports[h], score=reports[h].value(metric, statistic),
                           feasible=feasible(reports[h], base, spec.guardrails))
              for h, c in ((config_hash(c), c) for c in configs)}
    meta = {"blocks": len(blocks), "baseline_p95_runs_ms": [round(b["baseline_p95_ms"], 1) for b in ordered],
            "baseline_p95_ms": round(reference["baseline_p95_ms"], 1),
            "latency_scale_range": [round(min(factors.values()), 3), round(max(factors.values()), 3)]}
    return GridTable(spec=spec, dataset=dataset, points=points, baseline_hash=base_hash,
                     build_seconds=round(time.perf_counter() - started, 1) if missing else 0.0, meta=meta)


def _scaled(spec: WorkflowSpec, report: EvalReport, factor: float) -> EvalReport:
    """The report with every latency multiplied by ``factor`` (summaries recomputed)."""
    if factor == 1.0:
        return report
    results = [r.model_copy(update={"scores": {**r.scores, "latency_ms": r.scores["latency_ms"] * factor}})
               if r.scores.get("latency_ms") is not None else r for r in report.results]
    summary = {m: summarize([r.scores[m] for r in results if r.scores.get(m) is not None]) for m in spec.evals.metrics}
    return report.model_copy(update={"results": results, "summary": summary})


def delete_cache(cache_url: str) -> None:
    """Remove a SQLite grid cache and its block notes, so the next build measures every config again."""
    from graphtune.backends.traces import path_from_url

    path = Path(path_from_url(cache_url, "sqlite"))
    for victim in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), *_blocks_path(cache_url).glob("worker*.jsonl")):
        victim.unlink(missing_ok=True)


def _fill(spec: WorkflowSpec, configs: list[dict], cache_url: str, key: str, *, workers: int, block_size: int,
          log: Callable[[str], None]) -> None:
    """Measure configs in worker processes (each appends its blocks to ``grid_blocks/worker<i>.jsonl``)."""
    workers = max(1, min(workers, len(configs)))
    shards = [configs[i::workers] for i in range(workers)]
    with tempfile.TemporaryDirectory(prefix="graphtune-grid-") as tmp:
        procs = []
        for i, shard in enumerate(shards):
            job = Path(tmp) / f"shard{i}.json"
            job.write_text(json.dumps({"spec": str(spec.path), "cache_url": cache_url, "grid_key": key,
                                       "block_size": block_size, "configs": shard,
                                       "notes": str(_blocks_path(cache_url) / f"worker{i}.jsonl")}))
            procs.append(subprocess.Popen([sys.executable, os.path.abspath(__file__), "fill", str(job)]))
        for i, proc in enumerate(procs):
            if proc.wait() != 0:
                raise RuntimeError(f"grid worker {i} failed with exit code {proc.returncode}")
            log(f"grid: worker {i} measured {len(shards[i])} configs")


async def _fill_shard(job: dict) -> None:
    """One worker: blocks of configs, each block run at once beside one run of the spec's config."""
    from graphtune.backends.eval_cache import CacheKey, open_eval_cache
    from graphtune.evals.runner import EvalRunner

    spec = load_spec(job["spec"])
    dataset = await asyncio.to_thread(load_dataset, spec.dataset_path(), spec.evals.datasets[0].name)
    configs = job["configs"]
    size = job["block_size"]
    with open_eval_cache(job["cache_url"]) as cache:
        for start in range(0, len(configs), size):
            block = configs[start:start + size]
            began = time.perf_counter()
            base, *reports = await asyncio.gather(*(EvalRunner(spec, concurrency=1).run(c, dataset=dataset)
                                                   for c in [spec.config, *block]))
            for config, report in zip(block, reports):
                ckey = CacheKey(config_hash(config), dataset.hash, EVALUATOR_VERSION)
                for result in report.results:
                    cache.put(ckey, result.example_id, result.model_dump(mode="json", exclude={"cached"}))
            line = {"grid_key": job["grid_key"], "baseline_p95_ms": base.value("latency_ms", "p95"),
                    "configs": [config_hash(c) for c in block], "seconds": round(time.perf_counter() - began, 1),
                    "finished": time.time(),
                    "baseline_results": [r.model_dump(mode="json", exclude={"cached"}) for r in base.results]}
            os.makedirs(os.path.dirname(job["notes"]), exist_ok=True)
            with open(job["notes"], "a", encoding="utf-8") as fh:  # this worker's own file: no interleaving
                fh.write(json.dumps(line) + "\n")
            print(f"grid worker: block of {len(block)} in {line['seconds']:.0f} s, baseline p95 "
                  f"{line['baseline_p95_ms']:.0f} ms ({start + len(block)}/{len(configs)})", file=sys.stderr, flush=True)


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


@dataclass(eq=False)
class _Run:
    """One ``TableRunner.run`` call in progress."""

    digest: str
    config: dict
    variant: str | None
    config_version: int | None
    examples: list
    by_id: dict[str, ExampleResult]
    pending: list[str]
    results: dict[str, ExampleResult]
    cached: int
    baseline: Reference | None
    check_every: int
    stop_on: tuple[str, str]
    reference_name: str
    on_result: Callable[[ExampleResult], None] | None
    should_stop: Callable[[dict[str, ExampleResult], int], str] | None
    started: float
    future: asyncio.Future | None = None
    fresh: int = 0
    stopped: str = ""

    @property
    def order_key(self) -> tuple[str, str]:
        return (self.variant or "", self.digest)


class TableRunner:
    """``EvalRunner``'s ``run`` interface over a ``GridTable``.

    Examples are served in one shuffled order per seed (the same for every config, so early-stopping
    comparisons stay paired). A result served before for the same config is a cache hit (free); every
    other result counts as one example evaluation.

    Runs in parallel tasks (the controller's ``Send`` evaluations) advance in lockstep, as on a fair
    shared runner: one scheduler serves each active run one example per step, then makes every due
    check (the early stop against the reference, then the caller's ``should_stop``, e.g. the race
    between a batch's candidates), so a check sees the same number of reference and peer results
    whatever the task timing. Runs started within ``settle_s`` of each other start together; a run that arrives later
    joins at the next step (counted in ``late_joins``). The results, and so the benchmark, are
    deterministic for a seed.
    """

    def __init__(self, table: GridTable | None, *, seed: int, settle_s: float = 0.0, spec: WorkflowSpec | None = None,
                 dataset: Dataset | None = None):
        self.table = table
        self.spec = spec or table.spec
        self.dataset = dataset or table.dataset
        self.settle_s = settle_s
        order = [e.id for e in self.dataset.examples]
        random.Random(f"order:{seed}").shuffle(order)
        self.order = order
        self.served: dict[str, set[str]] = {}
        self.consumed = 0
        self.fresh_by_config: dict[str, int] = {}
        self.log: list[EvalLogEntry] = []
        self.out_of_grid: list[dict] = []
        self.late_joins = 0
        self._joining: list[_Run] = []
        self._joins = 0
        self._active: list[_Run] = []
        self._scheduler: asyncio.Task | None = None

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
        should_stop: Callable[[dict[str, ExampleResult], int], str] | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> EvalReport:
        spec = self.spec
        config = spec.config if config is None else config
        digest = config_hash(config)
        table_dataset = self.dataset
        if dataset is not None and dataset.hash != table_dataset.hash:
            raise ValueError(f"dataset {dataset.name} ({dataset.hash[:12]}) is not the table's ({table_dataset.hash[:12]})")
        examples = (dataset or table_dataset).select(limit=limit)
        if on_start:
            on_start(len(examples))
        wanted = {e.id for e in examples}
        by_id = self.results_of(config, digest)
        served = self.served.setdefault(digest, set())
        results: dict[str, ExampleResult] = {}
        for example in examples:
            if example.id in served:
                results[example.id] = by_id[example.id].model_copy(update={"cached": True})
                if on_result:
                    on_result(results[example.id])
        run = _Run(digest=digest, config=config, variant=variant, config_version=config_version, examples=examples, by_id=by_id,
                   pending=[i for i in self.order if i in wanted and i not in served], results=results,
                   cached=len(results), baseline=baseline, check_every=check_every,
                   stop_on=stop_on or (spec.objective.metric, spec.objective.direction),
                   reference_name=reference_name, on_result=on_result, should_stop=should_stop,
                   started=time.perf_counter())
        if not run.pending:
            return self._finish(run)
        run.future = asyncio.get_running_loop().create_future()
        self._joining.append(run)
        self._joins += 1
        if self._scheduler is None or self._scheduler.done():
            self._scheduler = asyncio.ensure_future(self._schedule())
        return await run.future

    def results_of(self, config: dict, digest: str) -> dict[str, ExampleResult]:
        """Every example's result for ``config``, by example id; a config off the grid fails loudly."""
        point = self.table.points.get(digest)
        if point is None:
            self.out_of_grid.append(config)
            raise OutOfGrid(f"config {digest[:12]} is not a point of the benchmark grid")
        return {r.example_id: r for r in point.report.results}

    def on_served(self, run: _Run, example_id: str, result: ExampleResult) -> None:
        """Called for every example evaluation served fresh (a hook: the suite records its trajectory)."""

    async def _schedule(self) -> None:
        try:
            seen = -1
            while seen != self._joins:  # wait until no run has joined for settle_s
                seen = self._joins
                await asyncio.sleep(self.settle_s)
            while self._joining or self._active:
                if self._joining:
                    self.late_joins += len(self._joining) if self._active else 0
                    self._active += sorted(self._joining, key=lambda r: r.order_key)
                    self._joining.clear()
                    self._active.sort(key=lambda r: r.order_key)
                self._active = [r for r in self._active if not r.future.done()]  # a cancelled caller
                for run in self._active:  # serve one example each
                    example_id = run.pending[run.fresh]
                    result = run.by_id[example_id].model_copy(update={"cached": False})
                    self.served[run.digest].add(example_id)
                    self.consumed += 1
                    self.fresh_by_config[run.digest] = self.fresh_by_config.get(run.digest, 0) + 1
                    run.fresh += 1
                    run.results[example_id] = result
                    self.on_served(run, example_id, result)
                    if run.on_result:
                        run.on_result(result)
                done = []
                for run in self._active:  # then every due check, as EvalRunner makes it
                    if run.fresh % run.check_every == 0 and len(run.results) < len(run.examples):
                        if run.baseline is not None:
                            metric, direction = run.stop_on
                            mine = {i: r.scores[metric] for i, r in run.results.items() if r.scores.get(metric) is not None}
                            run.stopped = stop_reason(mine, reference_scores(run.baseline, metric), metric, direction,
                                                      run.reference_name)
                        if not run.stopped and run.should_stop is not None:
                            run.stopped = run.should_stop(run.results, len(run.examples))
                    if run.stopped or run.fresh == len(run.pending):
                        done.append(run)
                for run in done:
                    self._active.remove(run)
                    run.future.set_result(self._finish(run))
                await asyncio.sleep(0)  # let callers resume, and new runs join
        except BaseException as error:
            for run in [*self._active, *self._joining]:
                if run.future is not None and not run.future.done():
                    run.future.set_exception(error if isinstance(error, Exception) else RuntimeError(repr(error)))
            self._active, self._joining = [], []
            raise

    def _finish(self, run: _Run) -> EvalReport:
        spec = self.spec
        dataset = self.dataset
        ordered = [run.results[e.id] for e in run.examples if e.id in run.results]
        summary = {m: summarize([r.scores[m] for r in ordered if r.scores.get(m) is not None]) for m in spec.evals.metrics}
        self.log.append(EvalLogEntry(consumed=self.consumed, config_hash=run.digest, variant=run.variant,
                                     complete=not run.stopped and len(ordered) == len(run.examples),
                                     stopped_early=bool(run.stopped), fresh=run.fresh, cached=run.cached,
                                     examples=len(ordered), fresh_by_config=dict(self.fresh_by_config)))
        return EvalReport(
            workflow=spec.workflow, dataset=dataset.name, dataset_hash=dataset.hash, config_hash=run.digest,
            config_version=run.config_version, results=ordered, summary=summary, examples_total=len(run.examples),
            cached=run.cached, stopped_early=bool(run.stopped), stop_reason=run.stopped,
            wall_s=time.perf_counter() - run.started,
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
    asyncio.run(_fill_shard(json.loads(Path(args.job).read_text())))


if __name__ == "__main__":
    _main()
