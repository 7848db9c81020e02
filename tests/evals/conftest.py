import json

import pytest
import yaml

from graphtune.spec import load_spec


def write_dataset(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def toy_spec(tmp_path):
    """A spec for tests/evals/toy_workflow.py with a 40-row dataset (one row fails)."""
    rows = []
    for i in range(40):
        question = ["capital of france", "two plus two", "colour of sky"][i % 3]
        expected = {"capital of france": "Paris", "two plus two": "4", "colour of sky": "blue"}[question]
        rows.append({"id": f"r{i:02d}", "inputs": {"question": question},
                     "expected": {"answer": expected, "facts": [expected], "sources": ["doc-1"]}, "tags": ["toy"]})
    rows[5] = {"id": "r05", "inputs": {"question": "boom"}, "expected": {"answer": "x"}, "tags": []}
    write_dataset(tmp_path / "toy.jsonl", rows)
    spec = {
        "workflow": "toy",
        "graph": "tests.evals.toy_workflow:build_graph",
        "config": {"answer": {"quality": "good", "delay_s": 0.001}},
        "tunables": {"answer.quality": {"type": "choice", "values": ["good", "bad", "explode"]},
                     "answer.delay_s": {"type": "float", "low": 0, "high": 1}},
        "evals": {"datasets": [{"name": "toy", "path": "toy.jsonl"}],
                  "metrics": ["contains", "token_f1", "retrieval_hit", "latency_ms", "total_tokens", "error"],
                  "concurrency": 4, "timeout_s": 2},
        "objective": {"metric": "contains"},
    }
    (tmp_path / "graphtune.yaml").write_text(yaml.safe_dump(spec))
    return load_spec(tmp_path / "graphtune.yaml")
