"""``graphtune config`` on a SQLite store, driven through typer's CliRunner."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from graphtune.backends.config_store import open_config_store
from graphtune.cli import app

SPEC = """\
# a spec written by hand
workflow: demo_wf
description: test workflow
graph: graphtune.graphs.traffic_demo:build_graph
config:
  llm: {temperature: 0.2}
  rag: {top_k: 4}
evals:
  datasets:
    - {name: smoke, path: smoke.jsonl}
objective: {metric: contains}
"""
V2 = {"llm": {"temperature": 0.2}, "rag": {"top_k": 8}, "prompts": {"answer": "Answer briefly.\nUse {context}."}}


@pytest.fixture
def db(tmp_path, monkeypatch):
    """A project directory with graphtune.yaml; demo_wf has v1 (from the spec) and v2 (active)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "graphtune.yaml").write_text(SPEC)
    url = f"sqlite:///{tmp_path}/graphtune.db"
    with open_config_store(url) as store:
        store.ensure_active("demo_wf", {"llm": {"temperature": 0.2}, "rag": {"top_k": 4}}, actor="spec")
        store.put("demo_wf", V2, actor="controller", source="eval", note="top_k sweep")
        store.promote("demo_wf", 2, expected_active=1, actor="alice", reason="better recall", evidence="eval-17")
    return url


def run(*args):
    return CliRunner().invoke(app, ["config", *args])


def assert_one_error_line(result, code, *parts):
    assert result.exit_code == code, result.output
    line = result.stderr.strip()
    assert line.startswith("error:") and "\n" not in line, line
    for part in parts:
        assert part in line, line


def test_show_the_active_config_of_the_spec_workflow(db):
    result = run("show", "--db", db)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "demo_wf v2 (active)" in out and "stored" in out and "by controller from eval: top_k sweep" in out
    assert "promoted" in out and "by alice: better recall [eval-17]" in out
    assert "top_k: 8" in out and "answer: |-\n    Answer briefly.\n    Use {context}." in out
    with open_config_store(db) as store:
        assert store.active("demo_wf").hash[:12] in out


def test_show_a_given_version_and_the_split(db):
    with open_config_store(db) as store:
        store.set_split("demo_wf", {2: 0.9, 1: 0.1}, expected_revision=None, actor="ctl", reason="canary")
    result = run("show", "-w", "demo_wf", "--version", "1", "--db", db)
    assert result.exit_code == 0, result.output
    assert "v1 (not active; active is v2)" in result.stdout and "top_k: 4" in result.stdout
    assert "traffic split (revision 1): v1 10%, v2 90%" in result.stdout
    data = json.loads(run("show", "--json", "--db", db).stdout)
    assert data["config_version"]["version"] == 2 and data["active"] is True
    assert data["promoted"]["actor"] == "alice" and data["split"]["weights"] == {"1": 0.1, "2": 0.9}


def test_history_newest_first(db):
    result = run("history", "--db", db)
    assert result.exit_code == 0, result.output
    for word in ("promote", "register", "alice", "better recall", "eval-17", "from eval"):
        assert word in result.stdout
    entries = json.loads(run("history", "--json", "--db", db).stdout)
    assert [e["action"] for e in entries] == ["promote", "register", "promote", "register"]


def test_diff_between_two_versions(db):
    result = run("diff", "1", "2", "--db", db)
    assert result.exit_code == 0, result.output
    assert "demo_wf v1 -> v2" in result.stdout and "rag.top_k: 4 -> 8" in result.stdout
    assert 'prompts.answer: null -> "Answer briefly.\\nUse {context}."' in result.stdout
    changes = json.loads(run("diff", "2", "1", "--json", "--db", db).stdout)
    assert {"path": "rag.top_k", "old": 8, "new": 4} in changes


def test_rollback_records_who_and_why(db, monkeypatch):
    monkeypatch.setattr("getpass.getuser", lambda: "carol")
    result = run("rollback", "1", "--reason", "answers got longer", "--evidence", "https://t/42", "--db", db)
    assert result.exit_code == 0, result.output
    assert "demo_wf: rolled back from v2 to v1 by carol: answers got longer" in result.stdout
    assert "rag.top_k: 8 -> 4" in result.stdout
    with open_config_store(db) as store:
        assert store.active("demo_wf").version == 1
        entry = store.history("demo_wf", limit=1)[0]
    assert (entry.action, entry.actor, entry.reason, entry.evidence, entry.from_version) == (
        "rollback", "carol", "answers got longer", "https://t/42", 2)
    again = run("rollback", "1", "-m", "again", "--as", "dan", "--db", db)
    assert_one_error_line(again, 1, "already active")


def test_export_replaces_only_the_config(db, tmp_path):
    result = run("export", "--db", db)
    assert result.exit_code == 0, result.output
    exported = yaml.safe_load(result.stdout)
    original = yaml.safe_load(SPEC)
    assert list(exported) == list(original)
    assert exported["config"] == V2
    assert {k: v for k, v in exported.items() if k != "config"} == {k: v for k, v in original.items() if k != "config"}
    assert result.stdout.startswith("# a spec written by hand\nworkflow: demo_wf\n")  # comments and layout kept
    assert result.stdout.endswith("    - {name: smoke, path: smoke.jsonl}\nobjective: {metric: contains}\n")

    out = tmp_path / "exported.yaml"
    result = run("export", "--spec", "graphtune.yaml", "--output", str(out), "--db", db)
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(out.read_text())["config"] == V2


@pytest.mark.parametrize("text", [
    '{"workflow": "demo_wf", "config": {"rag": {"top_k": 4}}, "objective": {"metric": "contains"}}',
    "workflow: demo_wf\nconfig:\n  rag: &rag {top_k: 4}\nobjective: {metric: contains}\nshared: *rag\n",
], ids=["json", "alias-into-config"])
def test_export_of_a_spec_the_lines_cannot_be_kept_from(db, tmp_path, text):
    (tmp_path / "odd.yaml").write_text(text)
    result = run("export", "-w", "demo_wf", "--spec", "odd.yaml", "--db", db)
    assert result.exit_code == 0, result.output
    exported = yaml.safe_load(result.stdout)
    assert exported == {**yaml.safe_load(text), "config": V2}
    assert list(exported) == list(yaml.safe_load(text))


def test_init_stores_the_spec_config_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "graphtune.yaml").write_text(SPEC)
    url = f"sqlite:///{tmp_path}/fresh.db"
    first = run("init", "--as", "ops", "--db", url)
    assert first.exit_code == 0, first.output
    assert "demo_wf: v1 from graphtune.yaml is now active" in first.stdout
    second = run("init", "--db", url)
    assert second.exit_code == 0 and "already active" in second.stdout
    with open_config_store(url) as store:
        assert store.active("demo_wf").config == yaml.safe_load(SPEC)["config"]
        assert [e.actor for e in store.history("demo_wf")] == ["ops", "ops"]


def test_unknown_workflow_and_version_are_one_line_errors(db):
    assert_one_error_line(run("show", "-w", "nope", "--db", db), 1, "'nope'", "demo_wf")
    assert_one_error_line(run("history", "-w", "nope", "--db", db), 1, "'nope'")
    assert_one_error_line(run("show", "--version", "9", "--db", db), 1, "no config version 9", "known versions: 1, 2")
    assert_one_error_line(run("diff", "1", "9", "--db", db), 1, "no config version 9")
    assert_one_error_line(run("rollback", "9", "--reason", "r", "--db", db), 1, "no config version 9")
    assert_one_error_line(run("export", "-w", "nope", "--db", db), 1, "'nope'")


def test_bad_store_url_and_missing_spec(db, tmp_path, monkeypatch):
    assert_one_error_line(run("show", "--db", "jsonl:///traces"), 2, "traces only", "sqlite:///")
    monkeypatch.chdir(tmp_path / "..")
    assert_one_error_line(run("show", "--db", db), 2, "graphtune.yaml", "no such spec file")
