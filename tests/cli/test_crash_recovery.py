"""A tuning run killed during evaluation carries on from its checkpoint (PostgreSQL) and runs no
finished example again: the workflow's model calls after the restart are exactly the examples
that had not been scored when the process died."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psycopg
import yaml

from graphtune.testing.openai_server import OpenAITestServer
from tests.cli.test_tune_cli import ROOT, graphtune
from tests.evals.conftest import write_dataset
from tests.evals.model_workflow import respond

REQUEST = "improve toy accuracy; try 1 candidate, at most 1 round"


def model_toy_spec(tmp_path) -> str:
    questions = [("capital of france", "Paris"), ("two plus two", "4"), ("colour of sky", "blue")]
    rows = [{"id": f"r{i:02d}", "inputs": {"question": questions[i % 3][0]},
             "expected": {"answer": questions[i % 3][1], "facts": [questions[i % 3][1]], "sources": ["doc-1"]}}
            for i in range(60)]
    write_dataset(tmp_path / "toy.jsonl", rows)
    spec = {
        "workflow": "toy", "graph": "tests.evals.model_workflow:build_graph",
        "config": {"answer": {"quality": "bad"}},
        "tunables": {"answer.quality": {"type": "choice", "values": ["good", "bad"]}},
        "evals": {"datasets": [{"name": "toy", "path": "toy.jsonl"}], "metrics": ["contains", "latency_ms", "error"],
                  "timeout_s": 10},
        "objective": {"metric": "contains"},
    }
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(tmp_path / "toy.yaml")


def scored_examples(db: str) -> int:
    with psycopg.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM graphtune_eval_results").fetchone()[0]


def test_a_run_killed_during_evaluation_finishes_without_rerunning_scored_examples(tmp_path, pg_url):
    spec = model_toy_spec(tmp_path)
    args = ["tune", "--spec", spec, "--no-input", "--thread", "crash-1", "--batch-size", "1", "--concurrency", "4",
            "--seed", "3", REQUEST]
    with OpenAITestServer(lambda request: respond(request), latency_s=0.1) as model:
        os.environ["GRAPHTUNE_TEST_WORKFLOW_MODEL_URL"] = model.base_url  # inherited by the CLI processes
        try:
            env = {**os.environ, "GRAPHTUNE_DATABASE_URL": pg_url, "PYTHONPATH": str(ROOT)}
            env.pop("GRAPHTUNE_MODEL", None)
            first = subprocess.Popen([sys.executable, "-m", "graphtune.cli", *args], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 120
            while len(model.requests) < 40:  # 120 example runs in all (baseline and one candidate, 60 each)
                assert first.poll() is None, "the run ended before it could be killed: " + first.communicate()[1].decode()
                assert time.monotonic() < deadline, "the evaluation never started"
                time.sleep(0.02)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            calls_before = len(model.requests)
            scored_at_kill = scored_examples(pg_url)

            rerun = json.loads(graphtune(*args, db=pg_url).stdout)
            calls_after = len(model.requests) - calls_before
        finally:
            os.environ.pop("GRAPHTUNE_TEST_WORKFLOW_MODEL_URL", None)
    assert 0 < scored_at_kill < 120 and calls_before < 120
    assert rerun["status"] == "pending_approval" and rerun["thread_id"] == "crash-1"
    assert scored_examples(pg_url) == 120
    assert calls_after == 120 - scored_at_kill  # every scored example was kept; only the rest ran again
