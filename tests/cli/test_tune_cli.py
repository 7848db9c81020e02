"""The whole loop through the CLI, each command its own process: ``tune --no-input`` parks a proposal,
``pending`` lists it, ``approve`` promotes it; on SQLite and on PostgreSQL (checkpoints included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from graphtune.backends.config_store import open_config_store
from tests.graphs.conftest import weak_toy_spec  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]


def graphtune(*args: str, db: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "GRAPHTUNE_DATABASE_URL": db, "PYTHONPATH": str(ROOT)}
    env.pop("GRAPHTUNE_MODEL", None)
    env.pop("GRAPHTUNE_TRACES_URL", None)
    done = subprocess.run([sys.executable, "-m", "graphtune.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    if check and done.returncode != 0:
        raise AssertionError(f"graphtune {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/graphtune.db"
    return request.getfixturevalue("pg_url")


def test_tune_no_input_then_pending_then_approve(db, weak_toy_spec):
    parked = json.loads(graphtune("tune", "--spec", str(weak_toy_spec.path), "--no-input", "--batch-size", "2",
                                  "--seed", "3", "improve toy accuracy; try 2 candidates, at most 1 round", db=db).stdout)
    assert parked["status"] == "pending_approval" and parked["workflow"] == "toy"
    assert parked["spent"]["examples"] > 0 and parked["spent"]["candidates"] >= 1  # what the run used, always reported
    thread = parked["thread_id"]
    assert parked["report"]["candidate"]["id"] == parked["candidate_id"]

    listed = json.loads(graphtune("pending", "--json", db=db).stdout)
    assert [t["thread_id"] for t in listed] == [thread]

    done = graphtune("approve", thread, "--reason", "ship it", "--as", "dana", db=db)
    assert "promoted" in done.stdout
    with open_config_store(db) as store:
        assert store.active("toy").config["answer"]["quality"] == "good"
        entry = store.history("toy")[0]
        assert (entry.action, entry.actor, entry.reason) == ("promote", "dana", "ship it")
    assert json.loads(graphtune("pending", "--json", db=db).stdout) == []

    again = graphtune("approve", thread, db=db, check=False)
    assert again.returncode == 2 and "not waiting for approval" in again.stderr


def test_reject_from_the_cli_keeps_the_active_version(tmp_path, weak_toy_spec):
    db = f"sqlite:///{tmp_path}/graphtune.db"
    parked = json.loads(graphtune("tune", "--spec", str(weak_toy_spec.path), "--no-input", "--batch-size", "2",
                                  "--seed", "3", "improve toy accuracy; try 2 candidates, at most 1 round", db=db).stdout)
    graphtune("reject", parked["thread_id"], "-m", "too risky", db=db)
    with open_config_store(db) as store:
        assert store.active("toy").version == 1
        assert store.history("toy")[0].action == "reject"


def test_tune_without_a_request_or_spec_is_a_clear_error(tmp_path):
    done = graphtune("tune", db=f"sqlite:///{tmp_path}/g.db", check=False)
    assert done.returncode == 2 and "say what to tune" in done.stderr


def test_a_second_tuning_run_of_a_held_workflow_is_turned_away_until_unlocked(tmp_path, weak_toy_spec):
    db = f"sqlite:///{tmp_path}/graphtune.db"
    args = ["tune", "--spec", str(weak_toy_spec.path), "--no-input", "--batch-size", "2", "--seed", "3",
            "improve toy accuracy; try 2 candidates, at most 1 round"]
    first = json.loads(graphtune(*args, db=db).stdout)
    assert first["status"] == "pending_approval"  # holds toy while it waits
    second = json.loads(graphtune(*args, db=db).stdout)
    assert second["outcome"]["status"] == "busy"
    assert first["thread_id"] in second["outcome"]["message"] and "graphtune unlock toy" in second["outcome"]["message"]
    released = graphtune("unlock", "toy", "-m", "abandoned", "--as", "ops", db=db).stdout
    assert first["thread_id"] in released
    third = json.loads(graphtune(*args, db=db).stdout)
    assert third["status"] == "pending_approval"
    with open_config_store(db) as store:
        assert any(e.action == "release" and e.actor == "ops" for e in store.history("toy"))


def _closed_port_url() -> str:
    """An endpoint where nothing listens: a port the OS just handed out, closed again."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_an_unreachable_or_unauthorized_model_fails_the_run_at_intake(tmp_path, weak_toy_spec, monkeypatch):
    """An unreachable model endpoint used to be labelled 'malformed output' on every call, fail every
    example and end no_change with exit 0. Now intake stops the run with what to fix, exit 1."""
    from graphtune.testing.openai_server import OpenAITestServer

    args = ["tune", "--spec", str(weak_toy_spec.path), "--no-input", "improve toy accuracy; try 2 candidates, at most 1 round"]
    db = f"sqlite:///{tmp_path}/graphtune.db"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-for-this-server")
    monkeypatch.setenv("OPENAI_BASE_URL", _closed_port_url())
    unreachable = _with_model(args, db)
    assert unreachable.returncode == 1, unreachable.stderr
    out = json.loads(unreachable.stdout)
    outcome = out["outcome"]
    assert out["spent"]["examples"] == 0 and out["spent"]["candidates"] == 0  # reported even when nothing was spent
    assert outcome["status"] == "failed" and "cannot reach the model endpoint" in outcome["message"]
    assert "OPENAI_BASE_URL" in outcome["message"]

    with OpenAITestServer(api_key="sk-the-right-key") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        refused = _with_model(args, db)
        assert server.requests == []  # no chat call was made with a refused key
    assert refused.returncode == 1, refused.stderr
    outcome = json.loads(refused.stdout)["outcome"]
    assert outcome["status"] == "failed" and "refused the API key (HTTP 401" in outcome["message"]
    assert "OPENAI_API_KEY" in outcome["message"]
    with open_config_store(db) as store:
        assert store.tuning_claim("toy") is None  # nothing is held by a run that never started


def _with_model(args: list[str], db: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GRAPHTUNE_DATABASE_URL": db, "PYTHONPATH": str(ROOT), "GRAPHTUNE_MODEL": "test-model"}
    env.pop("GRAPHTUNE_TRACES_URL", None)
    return subprocess.run([sys.executable, "-m", "graphtune.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)


# -- --model and --rate-limit (in process: a model can be scripted and an integration hidden) ----------

def _tune_in_process(*args: str):
    from typer.testing import CliRunner

    from graphtune.cli import app

    return CliRunner().invoke(app, ["tune", *args])


@pytest.fixture
def local_env(tmp_path, monkeypatch):
    for name in ("GRAPHTUNE_MODEL", "OPENAI_BASE_URL", "GRAPHTUNE_TRACES_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GRAPHTUNE_DATABASE_URL", f"sqlite:///{tmp_path}/graphtune.db")
    monkeypatch.setenv("OPENAI_API_KEY", "test")


def test_tune_model_is_the_controller_s_and_its_request_is_completed_by_the_reader(local_env, weak_toy_spec, monkeypatch):
    from graphtune.testing.openai_server import OpenAITestServer, Reply

    def responder(request):
        name = request["response_format"]["json_schema"]["name"]
        if name == "RequestDraft":
            return Reply(json={"workflow": "toy"})  # the budget left out
        return Reply(json={"candidates": [{"mutations": [{"path": "answer.quality", "value": "good"}], "rationale": "better answers"}]})

    with OpenAITestServer(responder) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        done = _tune_in_process("--spec", str(weak_toy_spec.path), "--no-input", "--model", "openai:test-model",
                                "--rate-limit", "200", "improve toy accuracy; try 2 candidates, at most 1 round")
        sent = [(r["model"], r["response_format"]["json_schema"]["name"]) for r in server.requests]
    assert done.exit_code == 0, done.output
    assert sent[:2] == [("test-model", "RequestDraft"), ("test-model", "ProposalSet")]
    assert "no LLM configured" not in done.output
    out = json.loads(done.output)
    assert out["report"]["candidate"]["proposer"] == "llm" and out["report"]["candidate"]["rationale"] == "better answers"
    request = _thread_values(out["thread_id"])["request"]
    assert (request["budget"]["candidates"], request["budget"]["rounds"]) == (2, 1)
    assert any("the deterministic reader filled them in from the text: candidates=2, rounds=1" in n for n in request["notes"])


def _thread_values(thread_id: str) -> dict:
    import asyncio

    from graphtune.graphs.context import ControllerContext
    from graphtune.graphs.local_controller import LocalController

    return asyncio.run(LocalController(context=ControllerContext()).state(thread_id)).values


def test_tune_model_without_its_integration_fails_naming_the_package(local_env, weak_toy_spec, monkeypatch):
    monkeypatch.setitem(sys.modules, "langchain_anthropic", None)  # as if not installed
    done = _tune_in_process("--spec", str(weak_toy_spec.path), "--no-input", "--model", "anthropic:claude-sonnet-4-5",
                            "improve toy accuracy")
    assert done.exit_code == 1
    outcome = json.loads(done.output)["outcome"]
    assert outcome["status"] == "failed" and "pip install 'graphtune[anthropic]'" in outcome["message"]


@pytest.mark.parametrize("rate", ["0", "-2"])
def test_tune_rate_limit_must_be_above_zero(local_env, weak_toy_spec, rate):
    done = _tune_in_process("--spec", str(weak_toy_spec.path), "--no-input", "--rate-limit", rate, "improve toy accuracy")
    assert done.exit_code == 2 and "--rate-limit: expected model requests per second above 0" in done.output
