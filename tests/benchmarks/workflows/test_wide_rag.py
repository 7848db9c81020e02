"""wide_rag: the spec and its grid load, the data files are reproducible, and the replay equals the real
graph (node by node) and graphtune's real EvalRunner (metric by metric)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from langchain_core.callbacks import BaseCallbackHandler, UsageMetadataCallbackHandler

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _grid  # noqa: E402
import _replay  # noqa: E402
from workflows.wide_rag import data, graph, logic  # noqa: E402
from workflows.wide_rag.replay import replay  # noqa: E402

from graphtune.evals.runner import EvalRunner  # noqa: E402
from graphtune.tuning.config_paths import set_path  # noqa: E402

HERE = BENCHMARKS / "workflows" / "wide_rag"


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setenv("SIM_TIME_SCALE", "0")
    monkeypatch.delenv("GRAPHTUNE_MODEL", raising=False)


@pytest.fixture(scope="module")
def workflow():
    return _replay.load_workflow("wide_rag")


def _with(config: dict, **changes) -> dict:
    for path, value in changes.items():
        config = set_path(config, path.replace("__", "."), value)
    return config


def configs(spec) -> dict[str, dict]:
    """The shipped config, a good one, one that overflows the window, one with wide non-grid values."""
    good = _with(spec.config, chunking__chunk_size=1600, chunking__overlap=200, retrieval__top_k=8,
                 retrieval__mode="hybrid", rerank__enabled=True, rerank__keep=3, llm__max_tokens=768)
    return {
        "shipped": spec.config,
        "good": good,
        "overflow": _with(spec.config, chunking__chunk_size=800, retrieval__top_k=8, llm__max_tokens=2048),
        "odd": _with(good, chunking__chunk_size=1234, chunking__overlap=333, retrieval__top_k=37, retrieval__mode="bm25",
                     rerank__keep=5, llm__max_tokens=300, llm__temperature=0.9),
    }


def test_spec_loads_and_grid_enumerates(workflow):
    spec = workflow.spec
    grid = _grid.grid_configs(spec)
    assert grid[0] == spec.config
    assert len(grid) == spec.benchmark.size() == 2880
    assert [d.name for d in spec.evals.datasets] == ["dev", "test"]
    assert workflow.module.REQUEST and workflow.module.replay is replay


def test_data_files_are_reproducible():
    dev, test = data.generate()
    assert len(dev) >= 150 and len(test) >= 100
    assert (HERE / "dev.jsonl").read_bytes() == data.dumps(dev).encode("utf-8")
    assert (HERE / "test.jsonl").read_bytes() == data.dumps(test).encode("utf-8")


class Nodes(BaseCallbackHandler):
    """The graph's node executions in order: [node, sim_ms, error]."""

    def __init__(self):
        self.runs: dict = {}
        self.steps: list[list] = []

    def on_chain_start(self, serialized, inputs, *, run_id, metadata=None, **kwargs):
        node = (metadata or {}).get("langgraph_node")
        if node and kwargs.get("name") == node:
            self.runs[run_id] = [node, 0.0, None]
            self.steps.append(self.runs[run_id])

    def on_chain_end(self, outputs, *, run_id, **kwargs):
        if run_id in self.runs and isinstance(outputs, dict):
            self.runs[run_id][1] = outputs.get("sim_ms", 0.0)

    def on_chain_error(self, error, *, run_id, **kwargs):
        if run_id in self.runs:
            self.runs[run_id][2] = f"{type(error).__name__}: {error}"


async def _run_graph(config: dict, example):
    usage, nodes = UsageMetadataCallbackHandler(), Nodes()
    try:
        state = await graph.build_graph(config).ainvoke(dict(example.inputs), {"callbacks": [usage, nodes]})
        error = None
    except Exception as exc:  # noqa: BLE001 - the run's error is what is compared
        state, error = None, f"{type(exc).__name__}: {exc}"
    return state, error, usage.usage_metadata, nodes.steps


def test_replay_equals_the_graph(workflow):
    rows = workflow.dev.examples[:14]
    outcomes = set()
    for name, config in configs(workflow.spec).items():
        for example in rows:
            state, error, usage, steps = asyncio.run(_run_graph(config, example))
            want = replay(config, example)
            where = f"{name} / {example.id}"
            assert error == want.error, where
            assert [[s.node, pytest.approx(s.ms), s.error] for s in want.steps] == steps, where
            tokens = {want.model: (want.input_tokens, want.output_tokens)} if want.input_tokens else {}
            assert {m: (u["input_tokens"], u["output_tokens"]) for m, u in usage.items()} == tokens, where
            if error is None:
                assert state["answer"] == want.output["answer"], where
                assert state["sim_ms"] == pytest.approx(want.latency_ms), where
            else:
                assert sum(s[1] for s in steps) == pytest.approx(want.latency_ms), where
            outcomes.add((name, error is None, "rerank" in [s.node for s in want.steps]))
    # the comparison covered every branch: plain and reranked runs that answer, and a refused request
    assert {("shipped", True, False), ("good", True, True), ("overflow", False, False), ("odd", True, True)} <= outcomes


def test_replay_scores_equal_the_eval_runner(workflow):
    spec = workflow.spec
    runner = EvalRunner(spec)
    examples = workflow.dev.examples[:20]
    for name in ("shipped", "good", "overflow"):
        config = configs(spec)[name]
        report = asyncio.run(runner.run(config, dataset=workflow.dev, limit=20))
        assert [r.example_id for r in report.results] == [e.id for e in examples]
        for real, example in zip(report.results, examples):
            mine = workflow.result(config, example)
            assert real.error == mine.error and real.answer == mine.answer, (name, example.id)
            for metric in spec.evals.metrics:
                if metric != "latency_ms":
                    assert real.scores[metric] == pytest.approx(mine.scores[metric]), (name, example.id, metric)
        if name == "good":
            assert report.value("contains") > 0.5


def test_replay_has_headroom_over_the_shipped_config(workflow):
    """A quick look at the landscape on a dev sample: the good config beats the shipped one by far."""
    sample = workflow.dev.examples[:60]
    shipped, good = (workflow.report(configs(workflow.spec)[n], workflow.dev, sample) for n in ("shipped", "good"))
    assert good.value("contains") - shipped.value("contains") > 0.4
    assert logic.WINDOW == 8192
