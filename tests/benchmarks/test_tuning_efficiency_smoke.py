"""Fast checks of the tuning-efficiency benchmark's parts, on a synthetic table (no workflow runs).

The real table comes from evaluating every grid config (``make bench``); here every grid config gets
made-up per-example scores, so the grid, the benchmark spec, the tabular runner, its accounting and
the search methods can be checked in seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks")
sys.path.insert(0, os.path.abspath(BENCHMARKS))

import _grid  # noqa: E402
import tuning_efficiency  # noqa: E402

from graphtune.evals.datasets import load_dataset  # noqa: E402
from graphtune.evals.runner import EvalReport, ExampleResult, stop_reason  # noqa: E402
from graphtune.evals.stats import summarize  # noqa: E402
from graphtune.spec import load_spec  # noqa: E402
from graphtune.tuning.config_paths import config_hash, get_path, set_path  # noqa: E402
from graphtune.tuning.decision import feasible  # noqa: E402
from graphtune.tuning.search import SearchProposer  # noqa: E402


@pytest.fixture(scope="module")
def spec():
    return load_spec("support_qa")


def _quality(config: dict) -> float:
    """A made-up per-config share of correct answers: rewrite helps, top_k 1 and max_tokens 64 hurt."""
    q = 0.6 + 0.1 * get_path(config, "rag.rewrite") - 0.1 * (get_path(config, "rag.top_k") == 1)
    return q - 0.2 * (get_path(config, "llm.max_tokens") == 64)


def _report(spec, dataset, config: dict) -> EvalReport:
    quality = _quality(config)
    results = []
    for example in dataset.examples:
        roll = int(hashlib.sha256(example.id.encode()).hexdigest()[:8], 16) / 2**32
        scores = {m: 0.0 for m in spec.evals.metrics}
        scores.update(contains=float(roll < quality), latency_ms=100.0, cost_usd=0.001)
        results.append(ExampleResult(example_id=example.id, scores=scores))
    summary = {m: summarize([r.scores[m] for r in results]) for m in spec.evals.metrics}
    return EvalReport(workflow=spec.workflow, dataset=dataset.name, dataset_hash=dataset.hash, config_hash=config_hash(config),
                      results=results, summary=summary, examples_total=len(results))


def synthetic_table(spec) -> _grid.GridTable:
    dataset = load_dataset(spec.dataset_path(), "support_qa")
    configs = _grid.grid_configs(spec)
    reports = {config_hash(c): _report(spec, dataset, c) for c in configs}
    base = reports[config_hash(spec.config)]
    points = {h: _grid.GridPoint(config=c, config_hash=h, report=reports[h], score=reports[h].value("contains"),
                                 feasible=feasible(reports[h], base, spec.guardrails))
              for h, c in ((config_hash(c), c) for c in configs)}
    return _grid.GridTable(spec=spec, dataset=dataset, points=points, baseline_hash=config_hash(spec.config))


@pytest.fixture(scope="module")
def table(spec):
    return synthetic_table(spec)


def test_grid_is_the_bundled_benchmark_grid(spec):
    configs = _grid.grid_configs(spec)
    assert configs[0] == spec.config
    assert len(configs) == spec.benchmark.size() // 2 == 192  # one answer node of the two
    assert len({config_hash(c) for c in configs}) == len(configs)
    assert all(spec.space.check_config(c) == [] for c in configs)


def test_benchmark_spec_search_stays_inside_the_grid(spec, tmp_path):
    bench = load_spec(_grid.write_spec(_grid.benchmark_spec(spec), tmp_path))
    assert set(bench.tunables) == set(spec.benchmark.grid)
    assert bench.config == spec.config and bench.dataset_path() == spec.dataset_path()
    grid = {config_hash(c) for c in _grid.grid_configs(spec)}
    proposer = SearchProposer(bench.space, direction="maximize", seed=3)
    from graphtune.tuning.mutations import apply_mutations

    proposals = [apply_mutations(bench.config, c.mutations) for c in proposer.propose(bench.config, [], 12)]
    assert proposals and all(config_hash(p) in grid for p in proposals)


def test_table_runner_counts_caches_and_stops_like_the_eval_runner(spec, table):
    runner = _grid.TableRunner(table, seed=0)
    base = asyncio.run(runner.run(spec.config))
    assert runner.consumed == 288 and not base.stopped_early and base.cached == 0
    again = asyncio.run(runner.run(spec.config))
    assert runner.consumed == 288 and again.cached == 288  # served before: free
    assert again.summary == base.summary == table.points[table.baseline_hash].report.summary

    loser = set_path(set_path(spec.config, "llm.max_tokens", 64), "rag.top_k", 1)
    seen = []
    report = asyncio.run(runner.run(loser, baseline=base, check_every=10, on_result=seen.append,
                                    reference_name="the baseline"))
    assert report.stopped_early and 30 <= len(report.results) < 288 and len(seen) == len(report.results)
    assert runner.consumed == 288 + len(report.results)
    mine = report.scores_by_example("contains")
    assert report.stop_reason == stop_reason(mine, base.scores_by_example("contains"), "contains", "maximize")
    entry = runner.log[-1]
    assert entry.stopped_early and not entry.complete and entry.consumed == runner.consumed

    rest = asyncio.run(runner.run(loser))  # resumed: the stopped part is cached
    assert rest.cached == len(report.results) and len(rest.results) == 288 and runner.consumed == 576


def test_table_runner_has_the_eval_runner_interface():
    import inspect

    from graphtune.evals.runner import EvalRunner

    real = inspect.signature(EvalRunner.run).parameters
    mine = inspect.signature(_grid.TableRunner.run).parameters
    assert list(mine) == list(real)
    assert all(mine[name].default == real[name].default for name in real)


def test_table_runner_refuses_configs_outside_the_grid(spec, table):
    runner = _grid.TableRunner(table, seed=0)
    with pytest.raises(_grid.OutOfGrid):
        asyncio.run(runner.run(set_path(spec.config, "rag.top_k", 3)))
    assert runner.consumed == 0 and len(runner.out_of_grid) == 1


def test_example_order_is_shuffled_per_seed(table):
    a, b, c = (_grid.TableRunner(table, seed=s).order for s in (0, 0, 1))
    assert a == b and a != c and sorted(a) == sorted(c)


def test_reach_counts_examples_and_budget_plus_one(spec, table):
    assert table.best.score == pytest.approx(max(p.score for p in table.points.values()))
    runner = _grid.TableRunner(table, seed=0)
    asyncio.run(runner.run(spec.config))  # 0.6: below 95% of the best (0.7)
    assert _grid.examples_to_reach(runner.log, table, 10_000) == 10_001
    good = set_path(spec.config, "rag.rewrite", True)
    assert table.reaches(config_hash(good))
    asyncio.run(runner.run(good))
    assert _grid.examples_to_reach(runner.log, table, 10_000) == 576
    assert _grid.examples_to_reach(runner.log, table, 500) == 501
    assert _grid.breakdown(runner.log, table, 10_000) == {"baseline": 288, "stopped_early": 0, "full": 288, "in_flight": 0}


def test_random_and_tpe_methods_spend_the_budget_inside_the_grid(spec, table):
    budget = 6 * 288
    bench = _grid.benchmark_spec(spec)
    for runner in (asyncio.run(tuning_efficiency.run_random(table, 0, budget)),
                   asyncio.run(tuning_efficiency.run_optuna_tpe(table, bench, 0, budget)),
                   asyncio.run(tuning_efficiency.run_search_proposer(table, bench, 0, budget))):
        assert runner.consumed == budget and not runner.out_of_grid
        assert all(e.complete for e in runner.log)
        count = _grid.examples_to_reach(runner.log, table, budget)
        assert count % 288 == 0 or count == budget + 1


def test_controller_runs_offline_on_the_table(spec, table, tmp_path, monkeypatch):
    monkeypatch.delenv("GRAPHTUNE_MODEL", raising=False)
    budget = 10 * 288
    bench_path = _grid.write_spec(_grid.benchmark_spec(spec), tmp_path)
    runner, info = asyncio.run(tuning_efficiency.run_graphtune(table, bench_path, 0, budget, f"sqlite:///{tmp_path}/traces.db",
                                                               str(tmp_path)))
    assert not runner.out_of_grid
    assert runner.log and any(e.config_hash == table.baseline_hash and e.complete for e in runner.log)
    assert info["proposers"].get("optuna", 0) >= 4 and info["rounds"] >= 1
    assert info["spent_examples"] == runner.consumed
    assert info["end"].startswith(("parked at approve", "finish", "ended"))
    count = _grid.examples_to_reach(runner.log, table, budget)
    assert 288 <= count <= budget + 1
    kinds = _grid.breakdown(runner.log, table, budget)
    assert kinds["baseline"] == 288 and sum(kinds.values()) == (count if count <= budget else runner.consumed)


def test_parallel_runs_advance_in_lockstep(spec, table):
    """A loser checked against a reference evaluated beside it stops where it would against the finished reference."""
    loser = set_path(set_path(spec.config, "llm.max_tokens", 64), "rag.top_k", 1)
    alone = _grid.TableRunner(table, seed=4)
    base = asyncio.run(alone.run(spec.config))
    expected = asyncio.run(alone.run(loser, baseline=base, check_every=10))

    async def side_by_side():
        runner = _grid.TableRunner(table, seed=4, settle_s=0.01)
        live: dict[str, float] = {}
        fill = lambda r: live.__setitem__(r.example_id, r.scores["contains"])  # noqa: E731
        results = await asyncio.gather(runner.run(spec.config, on_result=fill, variant="baseline"),
                                       runner.run(loser, baseline=live, check_every=10, variant="c1"))
        return runner, results

    runner, (_, stopped) = asyncio.run(side_by_side())
    assert stopped.stopped_early and len(stopped.results) == len(expected.results)
    assert runner.late_joins == 0 and runner.consumed == 288 + len(stopped.results)
    assert runner.log[0].variant == "c1" and runner.log[0].consumed == 2 * len(stopped.results)
