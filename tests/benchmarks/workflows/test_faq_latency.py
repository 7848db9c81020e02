"""faq_latency: the spec and grid load, the data regenerates byte for byte, and the replay equals the real
graph (outputs, simulated latency, errors, tokens, node steps) and graphtune's own EvalRunner scores."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from langchain_core.callbacks import UsageMetadataCallbackHandler

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import _grid  # noqa: E402
import _replay  # noqa: E402

from graphtune.evals.runner import EvalRunner  # noqa: E402
from graphtune.tuning.config_paths import set_path  # noqa: E402
from graphtune.tuning.decision import feasible  # noqa: E402

HERE = BENCHMARKS / "workflows" / "faq_latency"


def _with(config: dict, changes: dict) -> dict:
    for path, value in changes.items():
        config = set_path(config, path, value)
    return config


@pytest.fixture(scope="module")
def workflow():
    return _replay.load_workflow("faq_latency")


@pytest.fixture(scope="module")
def configs(workflow):
    """The shipped config, the fast and accurate one, and one that times out, truncates and serves stale answers."""
    shipped = workflow.spec.config
    good = _with(shipped, {"retrieval.index": "approximate", "retrieval.top_k": 12, "rerank.enabled": True,
                           "llm.model": "swift-mini", "llm.max_tokens": 128, "llm.stream": False, "cache.enabled": True})
    broken = _with(shipped, {"retrieval.top_k": 20, "llm.model": "swift-nano", "llm.max_tokens": 32,
                             "cache.enabled": True, "cache.ttl_s": 86400})
    return {"shipped": shipped, "good": good, "broken": broken}


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setenv("SIM_TIME_SCALE", "0")


def test_spec_loads_and_grid_enumerates(workflow):
    spec = workflow.spec
    configs = _grid.grid_configs(spec)
    assert 200 <= len(configs) <= 3000
    assert configs[0] == spec.config
    assert set(spec.benchmark.grid) == set(spec.tunables)
    assert not any(d.requires_model or d.type == "text" for d in spec.tunables.values())
    assert [d.name for d in spec.evals.datasets] == ["dev", "test"]
    assert len(workflow.dev.examples) >= 150 and len(workflow.test.examples) >= 100
    assert workflow.module.STATISTIC == "p95"


def test_data_regenerates_byte_for_byte():
    from workflows.faq_latency import data

    dev, test = data.generate()
    assert data.dumps(dev).encode() == (HERE / "dev.jsonl").read_bytes()
    assert data.dumps(test).encode() == (HERE / "test.jsonl").read_bytes()
    assert {r["id"] for r in dev}.isdisjoint(r["id"] for r in test)


async def _run(graph, example):
    usage, nodes = UsageMetadataCallbackHandler(), _replay.node_steps()
    try:
        state, error = await graph.ainvoke(dict(example.inputs), {"callbacks": [usage, nodes]}), None
    except Exception as exc:  # the replay formats it as graphtune's runner does
        state, error = None, f"{type(exc).__name__}: {exc}"
    return state, error, usage.usage_metadata, nodes.steps


def _sample(workflow, configs) -> list:
    """12 dev rows, plus rows that make each behaviour happen: a timeout, a cache hit, a stale cache hit,
    an answer cut at max_tokens."""
    from workflows.faq_latency import logic

    replay = workflow.module.replay
    rows = list(workflow.dev.examples[:12])

    def nodes(name, e):
        return [s.node for s in replay(configs[name], e).steps]

    def stale(name, e):
        return logic.cache_hit(logic.Config.of(configs[name]), logic.request(**e.inputs)) == (True, True)

    for predicate in (lambda e: replay(configs["broken"], e).error is not None,
                      lambda e: nodes("good", e) == ["cache_lookup"],
                      lambda e: stale("broken", e),
                      lambda e: replay(configs["good"], e).output["answer"].endswith("...")):
        rows.append(next(e for e in workflow.dev.examples[12:] if predicate(e)))
    return rows


def test_replay_equals_graph(workflow, configs):
    rows = _sample(workflow, configs)
    seen = {"error": 0, "cache_hit": 0, "rerank": 0}

    async def check_all():
        for name, config in configs.items():
            graph = workflow.spec.build_graph(config)
            for example in rows:
                expected = workflow.module.replay(config, example)
                state, error, usage, steps = await _run(graph, example)
                where = f"{name} on {example.id}"
                assert error == expected.error, where
                assert [(s.node, s.error) for s in expected.steps] == [(n, e) for n, _, e in steps], where
                for step, (_, ms, err) in zip(expected.steps, steps):
                    if err is None:
                        assert ms == pytest.approx(step.ms), where
                if expected.error is None:
                    assert state["sim_ms"] == pytest.approx(expected.latency_ms), where
                    assert {k: state.get(k) for k in expected.output} == expected.output, where
                    assert set(expected.output) == {"answer", "sources"}, where
                else:
                    assert expected.latency_ms == pytest.approx(sum(s.ms for s in expected.steps)), where
                tokens = {expected.model: {"input_tokens": expected.input_tokens, "output_tokens": expected.output_tokens}} \
                    if expected.model else {}
                assert {m: {k: u[k] for k in ("input_tokens", "output_tokens")} for m, u in usage.items()} == tokens, where
                seen["error"] += expected.error is not None
                seen["cache_hit"] += [s.node for s in expected.steps] == ["cache_lookup"]
                seen["rerank"] += any(s.node == "rerank" for s in expected.steps)

    asyncio.run(check_all())
    assert all(seen.values()), seen


def test_eval_runner_scores_equal_replay(workflow, configs):
    spec = workflow.spec
    runner = EvalRunner(spec, concurrency=4)
    examples = _sample(workflow, configs)
    examples += [e for e in workflow.dev.examples[12:] if e not in examples][:20 - len(examples)]
    dataset = workflow.dev.model_copy(update={"examples": examples})
    for name, config in configs.items():
        report = asyncio.run(runner.run(config, dataset=dataset))
        assert [r.example_id for r in report.results] == [e.id for e in examples]
        for result, example in zip(report.results, examples):
            replayed = workflow.result(config, example)
            assert result.error == replayed.error, (name, example.id)
            assert result.answer == replayed.answer and result.sources == replayed.sources, (name, example.id)
            for metric in spec.evals.metrics:
                if metric != "latency_ms":
                    assert result.scores[metric] == pytest.approx(replayed.scores[metric]), (name, example.id, metric)
    assert any(workflow.result(configs["broken"], e).error for e in examples)
    assert any(workflow.result(configs["good"], e).answer is not None and workflow.result(configs["good"], e).scores["contains"] == 0
               for e in examples)


def test_headline_holds_on_dev(workflow, configs):
    """The good config is feasible and about 3x faster at p95; the broken one is infeasible."""
    base = workflow.report(configs["shipped"], workflow.dev)
    good = workflow.report(configs["good"], workflow.dev)
    broken = workflow.report(configs["broken"], workflow.dev)
    assert feasible(good, base, workflow.spec.guardrails)
    assert not feasible(broken, base, workflow.spec.guardrails)
    assert workflow.score(base) > 2.5 * workflow.score(good)
