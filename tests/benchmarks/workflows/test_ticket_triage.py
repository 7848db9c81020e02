"""ticket_triage: its spec and grid load, its data regenerates byte for byte, and its replay equals the
real graph (outputs, simulated latency, errors, tokens, node steps) and graphtune's real EvalRunner."""

from __future__ import annotations

import asyncio
import copy
import sys
from pathlib import Path

import pytest
from langchain_core.callbacks import UsageMetadataCallbackHandler

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import _grid  # noqa: E402
import _replay  # noqa: E402
from workflows.ticket_triage import data, replay  # noqa: E402

from graphtune.evals.runner import EvalRunner  # noqa: E402
from graphtune.spec import load_spec  # noqa: E402
from graphtune.tuning.config_paths import set_path  # noqa: E402
from graphtune.tuning.space import TextDomain  # noqa: E402

HERE = BENCHMARKS / "workflows" / "ticket_triage"


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setenv("SIM_TIME_SCALE", "0")


@pytest.fixture(scope="module")
def workflow():
    return _replay.load_workflow("ticket_triage")


def _config(spec, **changes) -> dict:
    """The shipped config with changes given as keywords, ``crm__retries=2`` for ``crm.retries``."""
    config = copy.deepcopy(spec.config)
    for path, value in changes.items():
        config = set_path(config, path.replace("__", "."), value)
    return config


def _configs(spec) -> dict[str, dict]:
    """The shipped config (mostly CRM errors), the best one, and two that route very differently."""
    best = _config(spec, crm__timeout_s=2.0, crm__retries=2, crm__backoff_s=0.5, classifier__model="large",
                   classifier__use_history=True, classifier__history_items=15, router__threshold=0.65,
                   router__low_confidence="escalate")
    return {
        "shipped": spec.config,
        "best": best,
        "small_escalating": _config(spec, crm__timeout_s=1.0, crm__retries=1, crm__backoff_s=0.1, classifier__use_history=True,
                                    classifier__history_items=40, router__threshold=0.8, router__low_confidence="escalate"),
        "general_queue": _config(spec, crm__timeout_s=0.5, crm__retries=3, classifier__model="large", router__threshold=0.8),
    }


def test_spec_loads_and_grid_enumerates(workflow):
    spec = load_spec(HERE / "graphtune.yaml")
    configs = _grid.grid_configs(spec)
    assert configs[0] == spec.config
    assert len(configs) == spec.benchmark.size() == 2880
    assert set(spec.benchmark.grid) == set(spec.tunables)  # every tunable is on the grid
    assert not any(isinstance(d, TextDomain) or d.requires_model for d in spec.tunables.values())
    assert [d.name for d in spec.evals.datasets] == ["dev", "test"]
    assert len(workflow.dev.examples) >= 150 and len(workflow.test.examples) >= 100
    assert workflow.request and "threshold" not in workflow.request


def test_data_regenerates_byte_for_byte():
    dev, test = data.generate()
    assert data.dumps(dev).encode() == (HERE / "dev.jsonl").read_bytes()
    assert data.dumps(test).encode() == (HERE / "test.jsonl").read_bytes()


async def _run_graph(graph, inputs: dict):
    usage, nodes = UsageMetadataCallbackHandler(), _replay.node_steps()
    try:
        state, error = await graph.ainvoke(inputs, {"callbacks": [usage, nodes]}), None
    except Exception as exc:  # formatted as graphtune's runner does
        state, error = None, f"{type(exc).__name__}: {exc}"
    return state, error, usage.usage_metadata, nodes.steps


def test_replay_equals_the_graph(workflow):
    spec = workflow.spec
    examples = workflow.dev.examples[:16]
    seen_nodes, seen_errors = set(), set()

    async def check_all():
        for name, config in _configs(spec).items():
            graph = spec.build_graph(config)
            for example in examples:
                state, error, usage, steps = await _run_graph(graph, dict(example.inputs))
                expected = replay(config, example)
                where = f"{name} on {example.id}"
                assert error == expected.error, where
                assert [(node, err) for node, _, err in steps] == [(s.node, s.error) for s in expected.steps], where
                for (_, ms, err), step in zip(steps, expected.steps):
                    if err is None:
                        assert ms == pytest.approx(step.ms), where
                tokens = {model: (u["input_tokens"], u["output_tokens"]) for model, u in usage.items()}
                assert tokens == ({expected.model: (expected.input_tokens, expected.output_tokens)} if expected.model else {}), where
                if error is None:
                    assert {k: state[k] for k in expected.output} == expected.output, where
                    assert state["sim_ms"] == pytest.approx(expected.latency_ms), where
                seen_nodes.update(s.node for s in expected.steps)
                seen_errors.update(e.split(":")[0] for e in [error] if e)

    asyncio.run(check_all())
    # the sample exercises every node and both ways the CRM fails
    assert seen_nodes == {"fetch_customer", "classify", "escalate", "general_queue"}
    assert seen_errors == {"TimeoutError", "ConnectionError"}


def test_replay_scores_equal_the_eval_runner(workflow):
    spec = workflow.spec
    runner = EvalRunner(spec)
    examples = {e.id: e for e in workflow.dev.examples}
    for name in ("shipped", "best"):
        config = _configs(spec)[name]
        report = asyncio.run(runner.run(config, dataset=workflow.dev, limit=20))
        assert len(report.results) == 20
        for result in report.results:
            replayed = workflow.result(config, examples[result.example_id])
            assert (result.answer, result.error) == (replayed.answer, replayed.error), f"{name} on {result.example_id}"
            for metric, value in result.scores.items():
                if metric != "latency_ms":
                    assert value == pytest.approx(replayed.scores[metric]), f"{name} on {result.example_id}: {metric}"


def test_the_story_holds(workflow):
    """The shipped config breaks the error guardrail; the best config is feasible and far better."""
    configs = _configs(workflow.spec)
    shipped = workflow.report(configs["shipped"], workflow.dev)
    best = workflow.report(configs["best"], workflow.dev)
    assert shipped.value("error") > 0.5 and shipped.value("exact") < 0.2
    assert best.value("error") <= 0.05 and best.value("exact") > 0.9
    assert best.value("latency_ms", "p95") <= 4500 and best.value("cost_usd") <= 0.0033
