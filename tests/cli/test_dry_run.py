"""``graphtune tune --dry-run``: what would be searched and the baseline on a few examples; nothing else spent."""

from __future__ import annotations

import asyncio
import json

from typer.testing import CliRunner

from graphtune.backends.config_store import open_config_store
from graphtune.backends.traces import open_trace_store
from graphtune.cli import app
from graphtune.graphs.context import ControllerContext
from graphtune.graphs.local_controller import LocalController
from tests.graphs.conftest import weak_toy_spec  # noqa: F401  (fixture)

REQUEST = "improve toy accuracy; try 3 candidates, at most 1 round"


def dry_run(*args: str):
    return CliRunner().invoke(app, ["tune", "--dry-run", *args])


def test_dry_run_json_shows_the_search_and_the_baseline_and_spends_nothing_else(tmp_path, weak_toy_spec):  # noqa: F811
    db = f"sqlite:///{tmp_path}/g.db"
    result = dry_run("--spec", str(weak_toy_spec.path), REQUEST, "--limit", "4", "--db", db, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["dry_run"] is True and out["workflow"] == "toy"
    assert out["tunables"]["answer.quality"]["values"] == ["good", "bad", "explode"]
    assert out["request"]["goal"]["metric"] == "contains"
    assert [g["metric"] for g in out["request"]["guardrails"]] == ["error"]
    assert out["budget"]["candidates"] == 3 and out["budget"]["rounds"] == 1 and out["budget"]["examples_per_candidate"] == 4
    report = out["baseline"]["report"]
    assert len(report["results"]) == 4 and report["summary"]["contains"]["mean"] == 0.0  # the shipped config is bad
    assert out["baseline"]["config"] == "the spec's config (not stored yet)"

    with open_config_store(db) as store:
        assert store.versions("toy") == []  # no config stored, no workflow claimed
    with open_trace_store(db) as traces:
        assert traces.traces(since=0) == []  # nothing recorded
    assert asyncio.run(LocalController(context=ControllerContext(database_url=db), record=False).pending()) == []


def test_dry_run_text_defaults_to_a_few_examples(tmp_path, weak_toy_spec):  # noqa: F811
    result = dry_run("--spec", str(weak_toy_spec.path), REQUEST, "--db", f"sqlite:///{tmp_path}/g.db")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "search space: 2 tunables" in out and "one of 'good', 'bad', 'explode'" in out
    assert "objective: maximize mean contains" in out and "guardrail: mean error <= 0.05" in out
    assert "budget: 3 candidates, 1 rounds" in out and "900 s wall time" in out
    assert "5/5 examples" in out and " ms" in out  # a few examples, latency with its unit


def test_dry_run_of_a_missing_spec_is_one_line(tmp_path):
    result = dry_run("--spec", str(tmp_path / "nope.yaml"), "--db", f"sqlite:///{tmp_path}/g.db")
    assert result.exit_code == 2 and "no such spec file" in result.stderr and result.stderr.count("\n") == 1
