"""A weak toy workflow for controller tests: its active config answers badly, so any tuning run
that tries ``answer.quality: good`` finds a clear, fast improvement."""

import pytest
import yaml

from graphtune.spec import load_spec
from tests.evals.conftest import write_dataset


@pytest.fixture
def weak_toy_spec(tmp_path):
    return write_weak_toy_spec(tmp_path)


def write_weak_toy_spec(folder, workflow: str = "toy"):
    """The toy's spec and dataset in ``folder``, under the workflow name ``workflow``."""
    rows = []
    for i in range(60):
        question, expected = [("capital of france", "Paris"), ("two plus two", "4"), ("colour of sky", "blue")][i % 3]
        rows.append({"id": f"r{i:02d}", "inputs": {"question": question},
                     "expected": {"answer": expected, "facts": [expected], "sources": ["doc-1"]}})
    write_dataset(folder / "toy.jsonl", rows)
    spec = {
        "workflow": workflow,
        "description": "A toy question answerer.",
        "graph": "tests.evals.toy_workflow:build_graph",
        "config": {"answer": {"quality": "bad", "delay_s": 0.001}},
        "tunables": {"answer.quality": {"type": "choice", "values": ["good", "bad", "explode"]},
                     "answer.delay_s": {"type": "float", "low": 0.001, "high": 0.003, "step": 0.001}},
        "evals": {"datasets": [{"name": "toy", "path": "toy.jsonl"}],
                  "metrics": ["contains", "latency_ms", "error"], "concurrency": 8, "timeout_s": 2},
        "objective": {"metric": "contains"},
        "guardrails": [{"metric": "error", "statistic": "mean", "max_value": 0.05}],
    }
    (folder / f"{workflow}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_spec(folder / f"{workflow}.yaml")
