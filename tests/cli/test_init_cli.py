"""``graphtune init``: a starter spec that loads, from a suite workflow's factory or a factory's default config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from graphtune.cli import app
from graphtune.evals.datasets import load_dataset
from graphtune.spec import load_spec
from graphtune.starter_spec import infer_tunable

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "benchmarks" / "workflows"

FACTORY = '''
from typing import TypedDict

from langgraph.graph import END, START, StateGraph

DEFAULT = {"llm": {"temperature": 0.2, "max_tokens": 256, "model": "off"}, "rag": {"rerank": False, "top_k": 0},
           "keywords": ["a", "b"], "timeout_s": 2.5}


class In(TypedDict):
    question: str
    user_id: int


class State(In, total=False):
    answer: str


def build(config: dict = DEFAULT):
    graph = StateGraph(State, input_schema=In)
    graph.add_node("answer", lambda state: {"answer": state["question"]})
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph.compile()


def no_default(config):
    config["llm"]["model"]  # a factory reading its config raises for a config it cannot use
    return build(config)
'''


def init(*args: str):
    return CliRunner().invoke(app, ["init", *args])


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "starter_graph.py").write_text(FACTORY)
    return tmp_path


@pytest.mark.parametrize("name", ["faq_latency", "order_agent"])
def test_init_on_a_suite_workflow_writes_a_spec_that_loads(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    shipped = load_spec(SUITE / name / "graphtune.yaml")
    (tmp_path / "config.json").write_text(json.dumps(shipped.config))
    result = init(f"{SUITE / name / 'graph.py'}:build_graph", "--config", "config.json", "-o", "tuned/graphtune.yaml")
    assert result.exit_code == 0, result.output

    spec = load_spec(tmp_path / "tuned" / "graphtune.yaml")
    assert spec.workflow == name and spec.config == shipped.config
    assert set(spec.tunables) <= set(shipped.tunables) and len(spec.tunables) >= 5
    assert spec.build_graph() is not None  # the graph reference resolves from the spec's folder
    row = load_dataset(spec.dataset_path()).examples[0]
    assert set(row.inputs) >= {"question"} and "answer" not in row.inputs and row.expected["answer"].startswith("TODO")
    assert "TODO" in (tmp_path / "tuned" / "graphtune.yaml").read_text()


def test_init_from_a_module_and_its_default_config(project):
    result = init("starter_graph:build", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["workflow"] == "starter_graph" and summary["dataset_written"]
    spec = load_spec(project / "graphtune.yaml")
    assert spec.graph == "starter_graph:build"
    tunables = {path: domain.model_dump(exclude={"description", "requires_model"}) for path, domain in spec.tunables.items()}
    assert tunables == {
        "llm.temperature": {"type": "float", "low": 0.0, "high": 1.0, "step": None, "log": False},
        "llm.max_tokens": {"type": "int", "low": 64, "high": 1024, "step": 1, "log": True},
        "llm.model": {"type": "choice", "values": ["off"]},  # quoted, so YAML keeps it text
        "rag.rerank": {"type": "bool"},
        "rag.top_k": {"type": "int", "low": 0, "high": 10, "step": 1, "log": False},
        "timeout_s": {"type": "float", "low": 0.625, "high": 10.0, "step": None, "log": True},
    }
    assert "keywords: not tunable as it stands (list)" in (project / "graphtune.yaml").read_text()
    row = json.loads((project / "dev.jsonl").read_text())
    assert row["inputs"] == {"question": "TODO: question", "user_id": 0}  # the declared input schema, exactly


def test_init_never_overwrites_a_spec_or_a_dataset(project):
    (project / "graphtune.yaml").write_text("mine\n")
    result = init("starter_graph:build")
    assert result.exit_code == 2 and "graphtune.yaml exists" in result.stderr
    assert (project / "graphtune.yaml").read_text() == "mine\n"

    (project / "dev.jsonl").write_text('{"id": "1", "inputs": {"question": "q", "user_id": 3}}\n')
    kept = init("starter_graph:build", "-o", "other.yaml")
    assert kept.exit_code == 0, kept.output
    assert "kept" in kept.stdout and (project / "dev.jsonl").read_text().startswith('{"id": "1"')


@pytest.mark.parametrize("args, message", [
    (["starter_graph"], "expected module:function or path/to/file.py:function"),
    (["no_such_module:build"], "cannot import 'no_such_module'"),
    (["starter_graph:missing"], "has no callable 'missing'"),
    (["starter_graph:no_default"], "no default config; pass --config FILE"),
    (["starter_graph:no_default", "--config", "absent.yaml"], "--config absent.yaml: cannot read it"),
    (["starter_graph:no_default", "--config", "list.yaml"], "expected a mapping of settings"),
    (["starter_graph:no_default", "--config", "bad.yaml"], "the factory raised KeyError"),
])
def test_bad_input_is_one_clear_line(project, args, message):
    (project / "list.yaml").write_text("- 1\n- 2\n")
    (project / "bad.yaml").write_text("llm: {}\n")
    result = init(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not (project / "graphtune.yaml").exists()


@pytest.mark.parametrize("value, domain", [
    (True, {"type": "bool"}),
    (8, {"type": "int", "low": 2, "high": 32, "log": True}),
    (1, {"type": "int", "low": 1, "high": 4}),
    (-2, {"type": "int", "low": -8, "high": 0}),
    (0.5, {"type": "float", "low": 0.0, "high": 1.0}),
    ("gpt-4.1", {"type": "choice", "values": ["gpt-4.1"]}),
    (None, None),
])
def test_tunables_inferred_from_leaves(value, domain):
    assert infer_tunable(value)[0] == domain
    assert yaml.safe_load(yaml.safe_dump(domain)) == domain
