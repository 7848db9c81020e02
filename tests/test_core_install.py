"""``pip install graphtune`` without extras, for real: a fresh venv holding only the core lock
(requirements/core.txt) and graphtune runs its CLI (records to JSONL and SQLite, evaluates, tunes),
imports every core module, and a feature of an extra it lacks says which extra to install.

A real venv rather than a finder that hides the extras' packages from the dev venv: uv links the core
lock's ~70 packages from its cache in about a second (the cache ``make`` filled; the registry
otherwise), so the venv costs a few seconds once per session, and it proves what a finder cannot:
that the core lock installs and is enough on its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]

WORKFLOW = '''
from typing import TypedDict

from langgraph.graph import END, START, StateGraph

ANSWERS = {"capital of france": "Paris.", "two plus two": "4."}


class State(TypedDict, total=False):
    question: str
    answer: str


def build_graph(config):
    def answer(state: State) -> dict:
        known = config["answer"]["quality"] == "good"
        return {"answer": ANSWERS.get(state["question"], "?") if known else "I do not know."}

    graph = StateGraph(State)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph.compile(name="tiny")
'''


def _run(*args, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=240, **kwargs)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory) -> Path:
    from uv import find_uv_bin

    venv = tmp_path_factory.mktemp("core-venv")
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    _run(find_uv_bin(), "pip", "install", "--quiet", "--python", python, "-r", ROOT / "requirements" / "core.txt")
    _run(find_uv_bin(), "pip", "install", "--quiet", "--python", python, "--no-deps", "-e", ROOT)
    return venv


@pytest.fixture
def work(tmp_path) -> Path:
    """A project folder: the tiny workflow, its spec and dataset; SQLite for configs, JSONL for traces."""
    (tmp_path / "tiny_workflow.py").write_text(WORKFLOW)
    rows = [{"id": f"q{i}", "inputs": {"question": q}, "expected": {"answer": a}}
            for i, (q, a) in enumerate([("capital of france", "Paris"), ("two plus two", "4")] * 3)]
    (tmp_path / "tiny.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "graphtune.yaml").write_text(yaml.safe_dump({
        "workflow": "tiny",
        "graph": "tiny_workflow:build_graph",
        "config": {"answer": {"quality": "bad"}},
        "tunables": {"answer.quality": {"type": "choice", "values": ["good", "bad"]}},
        "evals": {"datasets": [{"name": "tiny", "path": "tiny.jsonl"}], "metrics": ["contains", "error"]},
        "objective": {"metric": "contains"},
    }))
    return tmp_path


def graphtune(venv: Path, work: Path, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    """The venv's ``graphtune`` in ``work``, with none of this machine's graphtune, Langfuse or OpenAI settings."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("GRAPHTUNE_", "LANGFUSE_", "OPENAI_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    base.update(GRAPHTUNE_DATABASE_URL=f"sqlite:///{work}/graphtune.db", GRAPHTUNE_TRACES_URL=f"jsonl:///{work}/traces")
    done = subprocess.run([str(venv / "bin" / "graphtune"), *args], cwd=work, env={**base, **env},
                          capture_output=True, text=True, timeout=240)
    if check and done.returncode != 0:
        raise AssertionError(f"graphtune {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def test_the_core_venv_has_no_package_of_any_extra(core_venv):
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = sorted({Requirement(r).name for extra, reqs in extras.items() if extra != "dev" for r in reqs})
    script = f"import importlib.metadata as m, json\nfound = []\nfor n in {names!r}:\n" \
             "    try: m.distribution(n); found.append(n)\n    except m.PackageNotFoundError: pass\nprint(json.dumps(found))"
    assert json.loads(_run(core_venv / "bin" / "python", "-c", script).stdout) == []


def test_every_core_module_imports_without_the_extras(core_venv):
    """Only the PostgreSQL stores and the web view's pages need their extra; every other module imports on the core."""
    script = textwrap.dedent("""
        import importlib, json, pkgutil, graphtune
        failed = {}
        for module in pkgutil.walk_packages(graphtune.__path__, "graphtune."):
            if module.name.endswith(".__main__"):
                continue
            try:
                importlib.import_module(module.name)
            except Exception as exc:
                failed[module.name] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(failed))
    """)
    failed = json.loads(_run(core_venv / "bin" / "python", "-c", script, cwd=core_venv).stdout)
    web = {name: error for name, error in failed.items() if name.startswith("graphtune.web.")}
    assert web and all(any(f"No module named '{m}'" in e for m in ("jinja2", "matplotlib", "starlette", "multipart"))
                       for e in web.values()), web
    assert {name: error for name, error in failed.items() if name not in web} == {
        "graphtune.backends.postgres": "ModuleNotFoundError: No module named 'psycopg'",
        "graphtune.backends.config_postgres": "ModuleNotFoundError: No module named 'psycopg'",
    }


def test_the_core_records_evaluates_and_tunes_from_the_cli(core_venv, work):
    assert "Usage: graphtune" in graphtune(core_venv, work, "--help").stdout

    report = json.loads(graphtune(core_venv, work, "eval", "--spec", "graphtune.yaml", "--json").stdout)
    assert report["summary"]["contains"]["mean"] == 0.0 and report["config_version"] == 1

    traces = json.loads(graphtune(core_venv, work, "traces", "list", "--source", "eval", "--json").stdout)
    assert len(traces) == 6 and {t["workflow"] for t in traces} == {"tiny"}  # recorded to the JSONL store

    parked = json.loads(graphtune(core_venv, work, "tune", "--spec", "graphtune.yaml", "--no-input", "--seed", "1",
                                  "improve tiny accuracy; try 1 candidate, at most 1 round").stdout)
    assert parked["status"] == "pending_approval"
    assert parked["report"]["candidate"]["mutations"] == [{"path": "answer.quality", "value": "good"}]


@pytest.mark.parametrize("args, env, message", [
    (["traces", "list"], {"GRAPHTUNE_TRACES_URL": "postgresql://nobody@127.0.0.1:1/none"},
     "a PostgreSQL trace store needs the 'postgres' extra (psycopg is not installed): pip install 'graphtune[postgres]'"),
    (["eval", "--spec", "support_qa", "--limit", "1", "--no-record"], {},
     "the support_qa example's retrieval needs the 'examples' extra (bm25s is not installed): pip install 'graphtune[examples]'"),
    (["demo", "--requests", "1"], {},
     "pip install 'graphtune[examples]'"),
    (["ui", "--port", "0"], {},
     "graphtune ui needs the 'web' extra"),
    (["report", "tune-x", "--html", "out.html"], {},
     "graphtune report --html needs the 'web' extra"),
])
def test_a_feature_without_its_extra_says_which_extra_to_install(core_venv, work, args, env, message):
    done = graphtune(core_venv, work, *args, check=False, **env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr + done.stdout


def test_langfuse_handler_without_the_extra_names_it(core_venv, work):
    script = ("from graphtune.backends.langfuse_callback import langfuse_handler\n"
              "try:\n    langfuse_handler()\nexcept ImportError as exc:\n    print(exc)")
    done = _run(core_venv / "bin" / "python", "-c", script, cwd=work,
                env={"PATH": os.environ["PATH"], "LANGFUSE_PUBLIC_KEY": "pk-lf-test", "LANGFUSE_SECRET_KEY": "sk-lf-test"})
    assert "Langfuse's callback handler needs the 'langfuse' extra" in done.stdout
    assert "pip install 'graphtune[langfuse]'" in done.stdout
