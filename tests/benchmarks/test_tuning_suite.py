"""The tuning suite's parts: every suite workflow's replay equals its real graph, and the suite runner
(graphtune's controller and the baselines over a replay) works end to end on a toy workflow."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _replay  # noqa: E402
import tuning_suite  # noqa: E402

TOY_DIR = Path(__file__).resolve().parent / "suite_toy"
ROWS = 10


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch, tmp_path):
    monkeypatch.setattr(_replay, "LANDSCAPE_CACHE", tmp_path / "landscapes")
    monkeypatch.setenv("SIM_TIME_SCALE", "0")
    monkeypatch.delenv("GRAPHTUNE_MODEL", raising=False)


@pytest.fixture
def toy():
    return _replay.load_workflow("toy", TOY_DIR)


@pytest.mark.parametrize("name", _replay.suite_names())
def test_suite_workflow_replay_equals_its_graph(name):
    workflow = _replay.load_workflow(name)
    assert len(workflow.dev.examples) >= 150 and len(workflow.test.examples) >= 100
    configs = _replay.sample_configs(workflow, count=4, best=False)
    examples = workflow.dev.examples[:ROWS]
    assert asyncio.run(_replay.mismatches(workflow, configs, examples)) == []
    assert asyncio.run(_replay.runner_mismatches(workflow, configs[:2], examples)) == []


def test_suite_workflows_are_not_named_in_graphtune():
    names = _replay.suite_names()
    package = BENCHMARKS.parent / "graphtune"
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not [n for n in names if n in text], f"{path} names a suite workflow"


def test_toy_replay_equals_graph_and_a_drifted_replay_is_caught(toy, monkeypatch):
    configs = _replay.sample_configs(toy, count=4)
    examples = toy.dev.examples[:ROWS]
    assert asyncio.run(_replay.mismatches(toy, configs, examples)) == []
    assert asyncio.run(_replay.runner_mismatches(toy, configs[:2], examples)) == []

    honest = toy.module.replay

    def drifted(config, example):
        replayed = honest(config, example)
        if not replayed.error:
            replayed.latency_ms += 1.0
            replayed.output = {"answer": "right"}
        return replayed

    monkeypatch.setattr(toy.module, "replay", drifted)
    toy._memo.clear()
    found = asyncio.run(_replay.mismatches(toy, configs, examples))
    assert any("sim_ms" in f for f in found)
    assert asyncio.run(_replay.runner_mismatches(toy, configs, examples))
    toy._memo.clear()


def test_landscape_of_the_toy(toy):
    dev = toy.landscape_dev.summary()
    again = _replay.load_workflow("toy", TOY_DIR).landscape_dev  # read back from the cache
    assert again.summary() == dev and len(list(_replay.LANDSCAPE_CACHE.glob("toy-dev-*.json"))) == 1
    assert dev["grid_size"] == 36 and dev["default_feasible"] is False and dev["default_score"] == 0.0
    assert dev["best_score"] == 1.0 and 0 < dev["reach_95pct_share"] < 0.1


def test_replay_runner_counts_stops_and_records_trajectories(toy, tmp_path):
    from graphtune.backends.traces import EventQuery, open_trace_store
    from graphtune.tracing.events import EventKind

    url = f"sqlite:///{tmp_path}/traces.db"
    runner = tuning_suite.ReplayRunner(toy, seed=0, traces_url=url)

    async def go():
        base = await runner.run(toy.spec.config, variant="baseline", config_version=1)
        again = await runner.run(toy.spec.config, variant="baseline", config_version=1)
        return base, again

    base, again = asyncio.run(go())
    runner.close()
    assert runner.consumed == len(toy.dev.examples)  # the second run was served from what it saw: free
    assert again.cached == len(toy.dev.examples) and base.value("error") == 1.0
    with open_trace_store(url) as store:
        events = store.read(EventQuery(workflow="toy"))
    errors = [e for e in events if e.kind == EventKind.NODE_ERROR]
    assert len(errors) == len(toy.dev.examples) and {e.node for e in errors} == {"lookup"}
    assert all(e.source == "eval" and e.config_version == 1 for e in events)
    assert errors[0].attributes["error.type"] == "TimeoutError"
    assert {e.kind for e in events} >= {EventKind.RUN_START, EventKind.RUN_END, EventKind.NODE_START}


def test_suite_runner_on_the_toy_reports_every_key(toy):
    result = tuning_suite.run_suite(["toy"], seeds=1, budget_full_evals=6, directory=TOY_DIR)
    row = result["workflows"]["toy"]
    for key in ("headroom_test", "nothing_rate", "guardrail_breaks", "evals_spent", "evals_to_95pct"):
        assert set(row[key]) == set(tuning_suite.METHODS), key
    for key in ("min_headroom_test", "max_nothing_rate", "total_guardrail_breaks", "geomean_evals_ratio_vs_tpe",
                "geomean_evals_ratio_vs_random"):
        assert key in result
    budget = 6 * len(toy.dev.examples)
    for method in ("optuna_tpe", "optuna_cmaes", "random"):
        assert 0 < row["evals_spent"][method] <= budget + len(toy.dev.examples)
        assert row["evals_to_95pct"][method] <= budget + 1
    assert row["graphtune_runs"][0]["evals_spent"] == row["evals_spent"]["graphtune"] > 0
    assert row["landscape"]["dev"]["default_feasible"] is False


def test_headroom_counts_nothing_and_broken_configs_as_the_default(toy):
    land = toy.landscape_test
    assert land.headroom(None, False) == 0.0
    assert land.headroom(land.best.score, False) == 0.0
    assert land.headroom(land.best.score, True) == 1.0
    assert tuning_suite.headroom_exists(toy)
