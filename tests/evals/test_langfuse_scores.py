"""Eval results go to Langfuse as scores on the eval runs' traces (a local server in Langfuse's shapes)."""

from __future__ import annotations

import asyncio

import pytest

from graphtune.backends.eval_cache import SqliteEvalCache
from graphtune.backends.http_retry import RetryPolicy
from graphtune.backends.langfuse_scores import eval_scores, send_eval_scores, submit_eval_scores
from graphtune.backends.langfuse_settings import LangfuseSettings
from graphtune.evals.runner import EvalRunner
from graphtune.tracing.recorder import TrajectoryRecorder
from tests.backends.langfuse_server import FakeLangfuse


@pytest.fixture
def langfuse(monkeypatch):
    server = FakeLangfuse()
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-test")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-test")
    monkeypatch.setenv("LANGFUSE_HOST", server.url)
    monkeypatch.setenv("GRAPHTUNE_ENV", "ci")
    yield server
    server.close()


def test_the_eval_runner_sends_each_metric_as_a_score_on_its_trace(toy_spec, tmp_path, langfuse):
    recorder = TrajectoryRecorder(f"jsonl:///{tmp_path}/traces", spill_dir=str(tmp_path / "spill"), exporter=None)
    cache = SqliteEvalCache(f"sqlite:///{tmp_path}/cache.db")
    runner = EvalRunner(toy_spec, recorder=recorder, cache=cache)
    report = asyncio.run(runner.run(toy_spec.config, config_version=3, limit=10))
    result = runner.score_export.result(timeout=30)
    metrics = toy_spec.evals.metrics
    assert result.sent == len(langfuse.scores) == sum(
        1 for r in report.results for m in metrics if r.scores.get(m) is not None)
    assert result.failed == result.rejected == 0
    by_trace = {}
    for score in langfuse.scores:
        by_trace.setdefault(score["traceId"], {})[score["name"]] = score
    assert set(by_trace) == {r.trace_id for r in report.results}
    first = report.results[0]
    contains = by_trace[first.trace_id]["contains"]
    assert contains["value"] == first.scores["contains"] and contains["dataType"] == "NUMERIC"
    assert contains["metadata"]["config_version"] == 3 and contains["metadata"]["example_id"] == first.example_id
    assert contains["environment"] == "ci"
    failed = next(r for r in report.results if r.error)
    assert by_trace[failed.trace_id]["error"]["comment"].startswith("RuntimeError")

    # a cached re-run sends nothing new: its scores went out with the run that produced them
    again = EvalRunner(toy_spec, recorder=recorder, cache=cache)
    asyncio.run(again.run(toy_spec.config, config_version=3, limit=10))
    assert again.score_export is None and len(langfuse.scores) == result.sent
    # sending the same report twice reuses the score ids: Langfuse updates instead of duplicating
    assert [s["id"] for s in eval_scores(report)[0]] == [s["id"] for s in langfuse.scores]
    cache.close()
    recorder.close()


def test_rate_limits_are_retried_and_partial_rejections_counted(toy_spec, tmp_path, langfuse):
    recorder = TrajectoryRecorder(f"jsonl:///{tmp_path}/traces", spill_dir=str(tmp_path / "spill"), exporter=None)
    report = asyncio.run(EvalRunner(toy_spec, recorder=recorder).run(toy_spec.config, limit=3))
    settings = LangfuseSettings(public_key="pk-lf-test", secret_key="sk-lf-test", base_url=langfuse.url)
    fast = RetryPolicy(max_retries=2, backoff_s=0.01, max_backoff_s=0.02)
    langfuse.scores.clear()
    langfuse.script(429, '{"message": "slow down"}', {"Retry-After": "0"})
    assert send_eval_scores(report, settings, policy=fast).sent == len(eval_scores(report)[0])
    langfuse.script(207, '{"accepted": 10, "rejected": 2, "errors": [{"message": "score value out of range"}]}')
    partial = send_eval_scores(report, settings, policy=fast)
    assert partial.rejected == 2 and partial.errors == ["score value out of range"]
    for _ in range(3):
        langfuse.script(500, "boom")
    failed = send_eval_scores(report, settings, policy=fast)
    assert failed.failed == len(eval_scores(report)[0]) and failed.sent == 0 and "HTTP 500" in failed.errors[0]
    recorder.close()


def test_without_keys_nothing_is_sent(toy_spec, tmp_path, monkeypatch):
    monkeypatch.delenv("LANGFUSE_PUBLIC_KEY", raising=False)
    monkeypatch.delenv("LANGFUSE_SECRET_KEY", raising=False)
    recorder = TrajectoryRecorder(f"jsonl:///{tmp_path}/traces", spill_dir=str(tmp_path / "spill"), exporter=None)
    runner = EvalRunner(toy_spec, recorder=recorder)
    report = asyncio.run(runner.run(toy_spec.config, limit=2))
    assert runner.score_export is None and submit_eval_scores(report) is None
    recorder.close()
