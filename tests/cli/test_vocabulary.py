"""One option vocabulary across every command group (--db, --as, --reason/-m, --json), the old
spellings still working with a notice, and --version."""

from __future__ import annotations

import json
import time

import click
import pytest
import typer
from typer.testing import CliRunner

from graphtune.backends.config_store import open_config_store
from graphtune.backends.traces import open_trace_store
from graphtune.cli import app
from graphtune.tracing.events import EventKind, TrajectoryEvent

# Commands whose output is itself the data (a spec's YAML, dataset rows as JSONL) or that run a long loop.
NO_JSON = {"config export", "evals from-traces", "traces show",  # their output is the data itself
           "ui"}  # a server: it prints only its address


def leaf_commands() -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}

    def walk(command: click.Command, path: str) -> None:
        children = getattr(command, "commands", None)
        if children:
            for name, child in children.items():
                walk(child, f"{path} {name}".strip())
        else:
            found[path] = command

    walk(typer.main.get_command(app), "")
    return found


def option_names(command: click.Command) -> set[str]:
    return {name for param in command.params if not getattr(param, "hidden", False) for name in param.opts}


def test_one_name_per_idea_in_every_group():
    commands = leaf_commands()
    assert {"tune", "approve", "traces list", "config rollback", "experiment stop", "init"} <= set(commands)
    for path, command in commands.items():
        names = option_names(command)
        assert not names & {"--backend", "--actor", "--comment"}, path
        if "--reason" in names:
            assert "-m" in names, path
        if path not in NO_JSON and path != "tune":
            assert "--json" in names, f"{path} has no --json"
    assert "--json" in option_names(commands["tune"])  # the same as --no-input
    for path in ("traces list", "traces stats", "traces prune", "evals from-traces", "eval", "tune", "unlock",
                 "config rollback", "experiment stop", "forget-user"):
        assert "--db" in option_names(commands[path]), path
    for path in ("approve", "reject", "unlock", "config rollback", "config init", "experiment start", "experiment stop"):
        assert "--as" in option_names(commands[path]), path


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("graphtune ")


def _event(age_s: float) -> TrajectoryEvent:
    return TrajectoryEvent(kind=EventKind.RUN_END, time=time.time() - age_s, trace_id="a" * 32, span_id="b" * 16,
                           workflow="shop", source="production", duration_ms=12.0, status="ok")


def test_old_spellings_still_work_with_a_notice_on_stderr(tmp_path):
    url = f"sqlite:///{tmp_path}/g.db"
    with open_trace_store(url) as store:
        store.write([_event(0)])
    old = CliRunner().invoke(app, ["traces", "list", "--backend", url, "--json"])
    assert old.exit_code == 0, old.output
    assert len(json.loads(old.stdout)) == 1
    assert old.stderr.strip() == "deprecated: --backend is now --db; the old spelling will go in a later release"
    new = CliRunner().invoke(app, ["traces", "list", f"--db={url}", "--json"])
    assert new.exit_code == 0 and new.stderr == "" and json.loads(new.stdout) == json.loads(old.stdout)

    with open_config_store(url) as store:
        store.ensure_active("shop", {"k": 1}, actor="spec")
        store.put("shop", {"k": 2}, actor="x", source="eval")
        store.promote("shop", 2, expected_active=1, actor="x", reason="r")
    rolled = CliRunner().invoke(app, ["config", "rollback", "1", "-w", "shop", "--comment", "old words",
                                      "--actor", "dan", "--db", url, "--json"])
    assert rolled.exit_code == 0, rolled.output
    assert json.loads(rolled.stdout)["version"] == 1
    assert rolled.stderr.count("deprecated:") == 2
    with open_config_store(url) as store:
        entry = store.history("shop", limit=1)[0]
    assert (entry.actor, entry.reason) == ("dan", "old words")


def test_an_old_spelling_a_command_never_had_stays_unknown(tmp_path):
    result = CliRunner().invoke(app, ["traces", "list", "--actor", "x", "--db", f"sqlite:///{tmp_path}/g.db"])
    assert result.exit_code == 2 and "--actor" in result.output


@pytest.fixture
def store_url(tmp_path):
    url = f"sqlite:///{tmp_path}/g.db"
    with open_config_store(url) as store:
        store.ensure_active("shop", {"k": 1}, actor="spec")
        store.put("shop", {"k": 2}, actor="x", source="eval")
    return url


def test_unlock_json(store_url):
    with open_config_store(store_url) as store:
        store.claim_tuning("shop", "tune-1", actor="ann")
    held = CliRunner().invoke(app, ["unlock", "shop", "-m", "stale", "--as", "ops", "--db", store_url, "--json"])
    assert held.exit_code == 0, held.output
    out = json.loads(held.stdout)
    assert out["workflow"] == "shop" and out["released"]["thread_id"] == "tune-1"
    free = CliRunner().invoke(app, ["unlock", "shop", "--db", store_url, "--json"])
    assert json.loads(free.stdout) == {"workflow": "shop", "released": None}


def test_experiment_stop_json(store_url):
    with open_config_store(store_url) as store:
        store.set_split("shop", {1: 0.9, 2: 0.1}, expected_revision=None, actor="x", reason="try")
    stopped = CliRunner().invoke(app, ["experiment", "stop", "shop", "-m", "incident", "--db", store_url, "--json"])
    assert stopped.exit_code == 0, stopped.output
    out = json.loads(stopped.stdout)
    assert out["stopped"] is True and out["active_version"] == 1 and out["cleared_split"]["weights"]
    again = json.loads(CliRunner().invoke(app, ["experiment", "stop", "shop", "--db", store_url, "--json"]).stdout)
    assert again["stopped"] is False and again["cleared_split"] is None


def test_prune_json(tmp_path):
    url = f"sqlite:///{tmp_path}/g.db"
    with open_trace_store(url) as store:
        store.write([_event(3 * 86400)])
    result = CliRunner().invoke(app, ["traces", "prune", "--older-than", "1d", "--db", url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["deleted_events"] == 1
