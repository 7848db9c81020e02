"""noisy_extract: the spec and its grid load, the data regenerates byte for byte, and the replay equals
the real graph (outputs, simulated latency, errors, tokens, node steps) and graphtune's own EvalRunner."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from langchain_core.callbacks import BaseCallbackHandler, UsageMetadataCallbackHandler

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _grid  # noqa: E402
import _replay  # noqa: E402
from workflows.noisy_extract import data  # noqa: E402
from workflows.noisy_extract.graph import build_graph  # noqa: E402

from graphtune.evals.datasets import Dataset  # noqa: E402
from graphtune.evals.runner import EvalRunner  # noqa: E402
from graphtune.tuning.config_paths import set_path  # noqa: E402

HERE = BENCHMARKS / "workflows" / "noisy_extract"


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setenv("SIM_TIME_SCALE", "0")


@pytest.fixture(scope="module")
def wf():
    return _replay.load_workflow("noisy_extract")


def _config(wf, **changes) -> dict:
    config = wf.spec.config
    for path, value in changes.items():
        config = set_path(config, path.replace("__", "."), value)
    return config


def _configs(wf) -> dict[str, dict]:
    return {
        "shipped": wf.spec.config,
        "good": _config(wf, extractor__prompt_style="schema", extractor__validate_retries=3, ocr__dpi=300),
        "timeouts": _config(wf, extractor__model="docllm-mini", extractor__validate_retries=4, ocr__dpi=600,
                            extractor__temperature=0.9, logging__level="debug"),
    }


def _sample(wf, configs: dict[str, dict], size: int) -> list:
    """The first dev rows, plus rows where the replay says a run times out or retries (so both are checked)."""
    rows = list(wf.dev.examples[: size - 4])
    rest = wf.dev.examples[size - 4:]
    rows += [e for e in rest if wf.module.replay(configs["timeouts"], e).error][:2]
    rows += [e for e in rest if len(wf.module.replay(configs["timeouts"], e).steps) > 3 and e not in rows][:2]
    return rows


class _Nodes(BaseCallbackHandler):
    """The graph's node executions in order, with the error of a node that raised."""

    run_inline = True

    def __init__(self):
        self.steps: list[list] = []
        self._runs: dict = {}

    def on_chain_start(self, serialized, inputs, *, run_id, tags=None, metadata=None, **kwargs):
        name = kwargs.get("name")
        if name and name == (metadata or {}).get("langgraph_node") and any(t.startswith("graph:step") for t in tags or []):
            self._runs[run_id] = len(self.steps)
            self.steps.append([name, None])

    def on_chain_error(self, error, *, run_id, **kwargs):
        if run_id in self._runs:
            self.steps[self._runs[run_id]][1] = f"{type(error).__name__}: {error}"


def test_spec_loads_and_grid_enumerates(wf):
    configs = _grid.grid_configs(wf.spec)
    assert 200 <= len(configs) <= 3000
    assert configs[0] == wf.spec.config
    assert all(not d.requires_model and d.type != "text" for d in wf.spec.tunables.values())
    assert set(wf.spec.benchmark.grid) == set(wf.spec.tunables)
    assert [d.name for d in wf.spec.evals.datasets] == ["dev", "test"]


def test_data_regenerates_byte_for_byte(tmp_path):
    data.write(tmp_path)
    for name, minimum in (("dev", 150), ("test", 100)):
        fresh, committed = (tmp_path / f"{name}.jsonl").read_bytes(), (HERE / f"{name}.jsonl").read_bytes()
        assert fresh == committed, f"{name}.jsonl differs from data.generate()"
        assert fresh.count(b"\n") >= minimum


def test_replay_equals_graph(wf):
    configs = _configs(wf)
    rows = _sample(wf, configs, 14)
    assert len(rows) >= 12

    async def run(config, example):
        usage, nodes = UsageMetadataCallbackHandler(), _Nodes()
        try:
            state, error = await build_graph(config).ainvoke(example.inputs, {"callbacks": [usage, nodes]}), None
        except Exception as exc:
            state, error = None, f"{type(exc).__name__}: {exc}"
        return state, error, usage.usage_metadata, nodes.steps

    seen = {"errors": 0, "retries": 0}
    for label, config in configs.items():
        for example in rows:
            state, error, usage, steps = asyncio.run(run(config, example))
            expected = wf.module.replay(config, example)
            where = f"{label} {example.id}"
            assert error == expected.error, where
            assert steps == [[s.node, s.error] for s in expected.steps], where
            tokens = {m: (u["input_tokens"], u["output_tokens"]) for m, u in usage.items()}
            assert tokens == ({expected.model: (expected.input_tokens, expected.output_tokens)}
                              if expected.input_tokens or expected.output_tokens else {}), where
            if error is None:
                assert state["answer"] == expected.output["answer"], where
                assert state["sim_ms"] == pytest.approx(expected.latency_ms, rel=1e-12), where
            seen["errors"] += error is not None
            seen["retries"] += sum(s[0] == "extract" for s in steps) > 1
    assert seen["errors"] and seen["retries"], f"the sample should hold timeouts and retries: {seen}"


def test_eval_runner_scores_equal_the_replay(wf):
    configs = _configs(wf)
    rows = _sample(wf, configs, 20)
    subset = Dataset(name=wf.dev.name, path=wf.dev.path, hash=wf.dev.hash, examples=rows)
    metrics = [m for m in wf.spec.evals.metrics if m != "latency_ms"]
    for label in ("shipped", "timeouts"):
        report = asyncio.run(EvalRunner(wf.spec).run(configs[label], dataset=subset))
        assert len(report.results) == len(rows)
        for result in report.results:
            example = next(e for e in rows if e.id == result.example_id)
            expected = wf.result(configs[label], example)
            assert result.error == expected.error and result.answer == expected.answer, (label, example.id)
            for metric in metrics:
                assert result.scores[metric] == pytest.approx(expected.scores[metric], rel=1e-9, abs=1e-12), (label, example.id, metric)
