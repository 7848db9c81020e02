"""Live experiments from the CLI, each command its own process: start, pending, the kill switch, check."""

import json

from graphtune.backends.config_store import open_config_store
from tests.cli.test_tune_cli import graphtune
from tests.graphs.conftest import weak_toy_spec  # noqa: F401  (fixture)


def test_start_list_stop_and_check_a_live_experiment(tmp_path, weak_toy_spec):
    db = f"sqlite:///{tmp_path}/graphtune.db"
    parked = json.loads(graphtune("tune", "--spec", str(weak_toy_spec.path), "--no-input", "--batch-size", "2",
                                  "--seed", "3", "improve toy accuracy; try 2 candidates, at most 1 round", db=db).stdout)
    thread = parked["thread_id"]
    started = json.loads(graphtune("experiment", "start", thread, "--share", "0.2", "--as", "dana", "--json", db=db).stdout)
    assert started["status"] == "experiment_pending" and started["experiment"]["share"] == 0.2
    with open_config_store(db) as store:
        assert sorted(store.split("toy").weights.values()) == [0.2, 0.8]

    listed = graphtune("pending", db=db).stdout
    assert thread in listed and "live experiment at 20%" in listed

    stopped = graphtune("experiment", "stop", "toy", "-m", "incident", "--as", "ops", db=db).stdout
    assert "every request goes to version 1 again" in stopped
    with open_config_store(db) as store:
        assert store.split("toy") is None and store.history("toy")[0].actor == "ops"

    checked = json.loads(graphtune("experiment", "check", "--json", db=db).stdout)
    assert [c["status"] for c in checked if c.get("thread_id") == thread] == ["pending_approval"]  # back at approval
    assert "traffic split changed by ops (incident)" in "\n".join(checked[0]["report"]["live"])

    bad = graphtune("experiment", "start", thread, "--share", "1.5", db=db, check=False)
    assert bad.returncode == 2 and "between 0 and 1" in bad.stderr
