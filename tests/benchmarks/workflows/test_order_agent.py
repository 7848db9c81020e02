"""order_agent: the spec and its grid load, the data regenerates byte for byte, and the replay equals the
real graph (outputs, errors, simulated latency, tokens, node steps) and graphtune's own EvalRunner."""

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
from workflows import order_agent  # noqa: E402
from workflows.order_agent import data, logic  # noqa: E402
from workflows.order_agent.graph import build_graph  # noqa: E402

from graphtune.evals.datasets import Dataset  # noqa: E402
from graphtune.evals.runner import EvalRunner  # noqa: E402
from graphtune.tuning.config_paths import config_hash, set_path  # noqa: E402

HERE = BENCHMARKS / "workflows" / "order_agent"


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setenv("SIM_TIME_SCALE", "0")


@pytest.fixture(scope="module")
def workflow():
    return _replay.load_workflow("order_agent")


def _config(spec, **values) -> dict:
    config = spec.config
    for path, value in values.items():
        config = set_path(config, path.replace("__", "."), value)
    return config


def configs(spec) -> dict[str, dict]:
    """The shipped config (fails most tasks), the best grid config, and two that take other paths."""
    return {
        "shipped": spec.config,
        "good": _config(spec, agent__parallel_tool_calls=True, agent__fallback="escalate", cache__enabled=True,
                        tools__order_lookup__timeout_ms=2000, tools__shipping_eta__timeout_ms=1600, tools__backoff_ms=500),
        # every order_lookup times out: 12 rounds (past LangGraph's default recursion limit), then escalation
        "escalating": _config(spec, agent__max_iterations=12, agent__fallback="escalate", tools__order_lookup__timeout_ms=20),
        "sequential": _config(spec, agent__max_iterations=8, agent__fallback="apologize", tools__retries=3,
                              tools__backoff_ms=0, tools__order_lookup__timeout_ms=500, tools__shipping_eta__timeout_ms=800),
    }


def test_spec_loads_and_grid_enumerates(workflow):
    spec = workflow.spec
    grid = _grid.grid_configs(spec)
    assert len(grid) == spec.benchmark.size() == 2592
    assert config_hash(grid[0]) == config_hash(spec.config)
    assert config_hash(configs(spec)["good"]) in {config_hash(c) for c in grid}
    assert order_agent.REQUEST and order_agent.replay is not None


def test_data_regenerates_byte_for_byte():
    dev, test = data.generate()
    assert len(dev) >= 150 and len(test) >= 100
    assert data.dump(dev) == (HERE / "dev.jsonl").read_bytes()
    assert data.dump(test) == (HERE / "test.jsonl").read_bytes()


class NodeSteps(BaseCallbackHandler):
    """The graph's node executions in order, with the error of a node that raised, and the simulated
    milliseconds the finished nodes reported (a run that raises has no final state to read them from)."""

    def __init__(self):
        self.runs: dict = {}
        self.steps: list[list] = []
        self.sim_ms = 0.0

    def on_chain_start(self, serialized, inputs, *, run_id, metadata=None, name=None, **kwargs):
        if metadata and name and metadata.get("langgraph_node") == name:
            self.runs[run_id] = [name, None]
            self.steps.append(self.runs[run_id])

    def on_chain_end(self, outputs, *, run_id, **kwargs):
        if run_id in self.runs:
            self.sim_ms += outputs["sim_ms"]

    def on_chain_error(self, error, *, run_id, **kwargs):
        if run_id in self.runs:
            self.runs[run_id][1] = f"{type(error).__name__}: {error}"


async def _run_graph(config: dict, inputs: dict) -> dict:
    usage, nodes = UsageMetadataCallbackHandler(), NodeSteps()
    graph = build_graph(config)
    state, error = {}, None
    try:
        state = await graph.ainvoke(dict(inputs), {"callbacks": [usage, nodes]})
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    return {"state": state, "error": error, "usage": usage.usage_metadata, "steps": nodes.steps, "sim_ms": nodes.sim_ms}


def _sample(workflow) -> list:
    """The first 12 dev rows and the first two whose order shard is down (the fallback's path)."""
    examples = workflow.dev.examples
    outages = [e for e in examples if logic.facts_of(e.inputs).outage][:2]
    return examples[:12] + [e for e in outages if e not in examples[:12]]


def test_replay_equals_the_graph(workflow):
    examples = _sample(workflow)
    seen_errors = seen_escalations = 0
    for name, config in configs(workflow.spec).items():
        runs = asyncio.run(_gather(config, examples))
        for example, run in zip(examples, runs):
            replayed = order_agent.replay(config, example)
            where = f"{name} config, {example.id}"
            assert run["error"] == replayed.error, where
            assert run["state"].get("answer") == replayed.output["answer"], where
            assert run["sim_ms"] == pytest.approx(replayed.latency_ms), where
            if replayed.error is None:
                assert run["state"]["sim_ms"] == pytest.approx(replayed.latency_ms), where
            assert [[s.node, s.error] for s in replayed.steps] == run["steps"], where
            tokens = {m: (u["input_tokens"], u["output_tokens"]) for m, u in run["usage"].items()}
            assert tokens == ({replayed.model: (replayed.input_tokens, replayed.output_tokens)} if replayed.model else {}), where
            seen_errors += replayed.error is not None
            seen_escalations += any(s.node == "escalate" for s in replayed.steps)
    assert seen_errors and seen_escalations  # the sample covers the failing and the escalating paths


async def _gather(config: dict, examples: list) -> list[dict]:
    return await asyncio.gather(*(_run_graph(config, e.inputs) for e in examples))


def test_eval_runner_scores_equal_the_replay(workflow):
    spec = workflow.spec
    dataset = Dataset(name="dev", path=workflow.dev.path, hash=workflow.dev.hash, examples=workflow.dev.examples[:20])
    for name in ("shipped", "good"):
        config = configs(spec)[name]
        report = asyncio.run(EvalRunner(spec).run(config, dataset=dataset))
        assert len(report.results) == 20
        for result in report.results:
            example = next(e for e in dataset.examples if e.id == result.example_id)
            expected = workflow.result(config, example)
            assert result.error == expected.error and result.answer == expected.answer, (name, example.id)
            for metric, value in expected.scores.items():
                if metric != "latency_ms":
                    assert result.scores[metric] == pytest.approx(value), (name, example.id, metric)
