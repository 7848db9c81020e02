import asyncio
import json

import pytest

from graphtune.backends.eval_cache import SqliteEvalCache
from graphtune.backends.traces import EventQuery
from graphtune.evals.runner import EvalRunner, read_output
from tests.evals import toy_workflow
from tests.evals.conftest import write_dataset


def run(runner, *args, **kwargs):
    return asyncio.run(runner.run(*args, **kwargs))


@pytest.fixture
def cache(tmp_path):
    c = SqliteEvalCache(f"sqlite:///{tmp_path}/cache.db")
    yield c
    c.close()


def test_scores_aggregates_and_a_failing_example_does_not_stop_the_run(toy_spec):
    report = run(EvalRunner(toy_spec), toy_spec.config)
    assert len(report.results) == 40
    failed = [r for r in report.results if r.error]
    assert [r.example_id for r in failed] == ["r05"]
    assert "RuntimeError: the answer service exploded" in failed[0].error
    assert failed[0].scores["contains"] == 0.0 and failed[0].scores["error"] == 1.0
    assert report.value("contains") == pytest.approx(39 / 40)
    assert report.value("error") == pytest.approx(1 / 40)
    summary = report.summary["contains"]
    assert summary.ci_low < summary.mean < summary.ci_high <= 1.0
    assert report.value("latency_ms", "p95") >= report.value("latency_ms", "p50") > 0


def test_different_configs_score_differently(toy_spec):
    runner = EvalRunner(toy_spec)
    good = run(runner, toy_spec.config)
    bad = run(runner, {"answer": {"quality": "bad", "delay_s": 0.001}})
    assert good.value("contains") > 0.9 and bad.value("contains") == 0.0
    assert good.value("retrieval_hit") > 0.9 and bad.value("retrieval_hit") == 0.0
    assert good.config_hash != bad.config_hash


def test_rerun_is_served_from_the_cache(toy_spec, cache):
    runner = EvalRunner(toy_spec, cache=cache)
    first = run(runner, toy_spec.config)
    toy_workflow.CALLS.clear()
    second = run(runner, toy_spec.config)
    assert toy_workflow.CALLS == []
    assert second.cached == 40 and all(r.cached for r in second.results)
    assert second.value("contains") == first.value("contains")
    assert [r.example_id for r in second.results] == [r.example_id for r in first.results]


def test_a_crashed_run_resumes_where_it_stopped(toy_spec, cache):
    runner = EvalRunner(toy_spec, cache=cache)
    run(runner, toy_spec.config, limit=15)  # as if the process died after 15 examples
    toy_workflow.CALLS.clear()
    report = run(runner, toy_spec.config)
    assert len(toy_workflow.CALLS) == 25
    assert report.cached == 15 and len(report.results) == 40


def test_changed_dataset_row_invalidates_the_cache(toy_spec, cache, tmp_path):
    runner = EvalRunner(toy_spec, cache=cache)
    run(runner, toy_spec.config)
    rows = [json.loads(line) for line in (tmp_path / "toy.jsonl").read_text().splitlines()]
    rows[0]["expected"]["facts"] = ["Lyon"]
    write_dataset(tmp_path / "toy.jsonl", rows)
    toy_workflow.CALLS.clear()
    report = run(runner, toy_spec.config)
    assert report.cached == 0 and len(toy_workflow.CALLS) == 40


def test_early_stop_against_a_clearly_better_baseline(toy_spec, tmp_path):
    rows = [{"id": f"e{i:03d}", "inputs": {"question": "capital of france"}, "expected": {"answer": "Paris"}} for i in range(120)]
    write_dataset(tmp_path / "toy.jsonl", rows)
    runner = EvalRunner(toy_spec)
    baseline = run(runner, toy_spec.config)
    assert not baseline.stopped_early
    toy_workflow.CALLS.clear()
    worse = run(runner, {"answer": {"quality": "bad", "delay_s": 0.001}}, baseline=baseline)
    assert worse.stopped_early and "clearly worse" in worse.stop_reason
    assert len(worse.results) < 120 and len(toy_workflow.CALLS) < 120
    same = run(runner, toy_spec.config, baseline=baseline)
    assert not same.stopped_early and len(same.results) == 120


def test_timeout_is_an_error_result(toy_spec, tmp_path):
    write_dataset(tmp_path / "toy.jsonl", [{"id": "h", "inputs": {"question": "hang"}, "expected": {"answer": "x"}},
                                           {"id": "ok", "inputs": {"question": "two plus two"}, "expected": {"answer": "4"}}])
    report = run(EvalRunner(toy_spec), toy_spec.config)
    by_id = {r.example_id: r for r in report.results}
    assert by_id["h"].error.startswith("TimeoutError: no result within") and by_id["ok"].error is None


def test_a_timeout_the_workflow_raises_is_reported_as_itself(toy_spec, tmp_path):
    write_dataset(tmp_path / "toy.jsonl", [{"id": "t", "inputs": {"question": "slow tool"}, "expected": {"answer": "x"}}])
    report = run(EvalRunner(toy_spec), toy_spec.config)
    assert report.results[0].error == "TimeoutError: the order service did not answer within 0.2 s"


def test_concurrency_is_bounded(toy_spec, tmp_path):
    rows = [{"id": f"c{i}", "inputs": {"question": "two plus two"}, "expected": {"answer": "4"}} for i in range(16)]
    write_dataset(tmp_path / "toy.jsonl", rows)
    config = {"answer": {"quality": "good", "delay_s": 0.1}}
    one = run(EvalRunner(toy_spec, concurrency=1), config)
    eight = run(EvalRunner(toy_spec, concurrency=8), config)
    assert one.wall_s > 1.5 and eight.wall_s < one.wall_s / 3


def test_each_example_is_recorded_as_an_eval_trajectory(toy_spec, recorder, store):
    report = run(EvalRunner(toy_spec, recorder=recorder), toy_spec.config, config_version=3, limit=6)
    runs = store.read(EventQuery(kinds=("run_end",)))
    assert len(runs) == 6
    assert {e.source for e in runs} == {"eval"} and {e.config_version for e in runs} == {3}
    assert {e.workflow for e in runs} == {"toy"}
    assert {r.trace_id for r in report.results} == {e.trace_id for e in runs}
    assert [e.status for e in runs if e.trace_id == report.results[5].trace_id] == ["error"]


def test_read_output_follows_paths_into_lists_and_objects():
    class Message:
        content = "hi"

    state = {"messages": [Message(), Message()], "a": {"b": [1, 2]}}
    assert read_output(state, "messages.-1.content") == "hi"
    assert read_output(state, "a.b.1") == 2
    assert read_output(state, "a.c.d") is None and read_output(None, "x") is None


def test_fair_limit_admits_waiting_runs_by_position_and_survives_cancellation():
    from graphtune.evals.runner import FairLimit

    order: list[str] = []

    async def one(limit, name, position, hold=0.01):
        async with limit.slot(position):
            order.append(name)
            await asyncio.sleep(hold)

    async def main():
        limit = FairLimit(1)
        # config a queues all its examples first; b's first example still runs before a's second
        tasks = [asyncio.ensure_future(one(limit, f"a{i}", i)) for i in range(3)]
        tasks += [asyncio.ensure_future(one(limit, f"b{i}", i)) for i in range(3)]
        cancelled = asyncio.ensure_future(one(limit, "never", 0))
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(*tasks)
        return limit

    limit = asyncio.run(main())
    assert order == ["a0", "b0", "a1", "b1", "a2", "b2"]
    assert limit._free == 1 and not limit._waiting


def test_race_stop_keeps_the_better_half_at_each_rung():
    from graphtune.evals.runner import race_stop

    def scores(mean_hits: int, n: int) -> dict[str, float]:
        return {f"e{i:03d}": 1.0 if i % 10 < mean_hits else 0.0 for i in range(n)}

    best, good, fair, poor = scores(9, 30), scores(7, 30), scores(5, 30), scores(3, 30)
    # 100 examples: the first rung is at 25, all four have 30 -> two go on
    assert race_stop(best, [good, fair, poor], "maximize", 100, "contains") == ""
    assert race_stop(good, [best, fair, poor], "maximize", 100, "contains") == ""
    stopped = race_stop(fair, [best, good, poor], "maximize", 100, "contains")
    assert "ranked 3 of 4" in stopped and "keeps 2" in stopped and "30 shared examples" in stopped
    # lower is better: the same ranks turned around
    assert race_stop(poor, [best, good, fair], "minimize", 100, "latency_ms") == ""
    # second rung (50): of those that reached it, one goes on
    best50, good50 = scores(9, 50), scores(7, 50)
    assert "keeps 1" in race_stop(good50, [best50, fair, poor], "maximize", 100, "contains")
    # ties keep everyone; a lone config, too few examples or a peer not there yet never stop
    assert race_stop(scores(5, 30), [scores(5, 30)], "maximize", 100, "contains") == ""
    assert race_stop(poor, [], "maximize", 100, "contains") == ""
    assert race_stop(scores(3, 10), [scores(9, 10), scores(9, 10)], "maximize", 40, "contains") == ""
    assert race_stop(poor, [scores(9, 10), scores(9, 10)], "maximize", 100, "contains") == ""
    # a batch of two does not race: only the early stop against the reference can cut it
    assert race_stop(poor, [best], "maximize", 100, "contains") == ""
    assert "ranked 2 of 2" in race_stop(poor, [best, scores(9, 10)], "maximize", 100, "contains")


def with_metrics(spec_path, metrics, evaluators: str | None = None, module: str = "runner_own_metrics", **changes):
    """The toy spec with its metrics replaced; ``evaluators`` is written to ``<module>.py`` beside it."""
    import yaml

    from graphtune.spec import load_spec

    if evaluators is not None:
        (spec_path.parent / f"{module}.py").write_text(evaluators)
    raw = {**yaml.safe_load(spec_path.read_text()), **changes}
    raw["evals"]["metrics"] = metrics
    spec_path.write_text(yaml.safe_dump(raw))
    return load_spec(spec_path)


COUNTS = ("def answer_words(output, example):\n"
          "    if example.inputs['question'] == 'two plus two':\n"
          "        raise ValueError('no words today')\n"
          "    return len(output['answer'].split())\n")


def test_own_metrics_are_scored_summarised_and_their_errors_named_by_row(toy_spec):
    spec = with_metrics(toy_spec.path, [
        {"name": "answer_exact", "kind": "contains", "output": "answer", "expected": "answer"},
        {"name": "words", "evaluator": "runner_own_metrics.py:answer_words", "direction": "minimize"},
        "error"], COUNTS, objective={"metric": "answer_exact"})
    report = run(EvalRunner(spec), spec.config)
    assert report.value("answer_exact") == pytest.approx(39 / 40)  # r05 fails: a wrong answer
    by_id = {r.example_id: r for r in report.results}
    assert by_id["r00"].scores["words"] == 4.0 and by_id["r05"].scores["words"] is None
    assert by_id["r01"].metric_errors == {"words": "evaluator runner_own_metrics.py:answer_words raised ValueError: no words today"}
    assert report.summary["words"].n == 26  # 40 rows minus 13 raising and 1 failed run
    assert report.metric_errors["words"].startswith("13 of 40 rows; the first, row 'r01': evaluator runner_own_metrics.py")
    assert report.unscored == {}


def test_a_metric_with_no_usable_score_says_which_field_row_and_error(toy_spec):
    spec = with_metrics(toy_spec.path, [
        {"name": "team_exact", "kind": "exact", "output": "assigned_team", "expected": "answer"},
        {"name": "team_hit", "kind": "exact", "output": "answer", "expected": "team"},
        {"name": "words", "evaluator": "runner_never.py:answer_words", "direction": "minimize"}, "contains"],
        "def answer_words(output, example):\n    raise ValueError('not yet')\n", module="runner_never",
        objective={"metric": "team_exact"}, evals={**yaml_evals(toy_spec), "output": {"answer": "reply"}})
    report = run(EvalRunner(spec), spec.config)
    assert report.unscored["team_exact"] == ("team_exact has no usable score on any row; the first, row 'r00': "
                                             "the final state has no 'assigned_team'")
    assert report.unscored["team_hit"] == ("team_hit compares 'answer' with expected.team, which row 'r00' does not have "
                                           "(its expected keys: ['answer', 'facts', 'sources'])")
    assert report.unscored["words"].endswith("row 'r00': evaluator runner_never.py:answer_words raised ValueError: not yet")
    assert report.unscored["contains"].endswith("the final state has no 'reply' (evals.output.answer)")


def yaml_evals(spec):
    return spec.evals.model_dump(exclude={"metrics", "output"})


def test_a_changed_evaluator_does_not_reuse_results_cached_under_the_old_one(toy_spec, cache):
    metrics = [{"name": "words", "evaluator": "runner_cached.py:answer_words", "direction": "minimize"}, "error"]
    source = "def answer_words(output, example):\n    return 1\n"
    spec = with_metrics(toy_spec.path, metrics, source, module="runner_cached", objective={"metric": "error"})
    first = run(EvalRunner(spec, cache=cache), spec.config, limit=5)
    again = run(EvalRunner(spec, cache=cache), spec.config, limit=5)
    assert again.cached == 5 and again.evaluator_version == first.evaluator_version != "1"
    (spec.path.parent / "runner_cached.py").write_text(source + "# counts words now\n")
    changed = run(EvalRunner(spec, cache=cache), spec.config, limit=5)
    assert changed.cached == 0 and changed.evaluator_version != first.evaluator_version


def test_when_every_run_fails_quality_is_unscored_and_errors_are_not(toy_spec, tmp_path):
    from graphtune.evals.datasets import load_dataset

    rows = write_dataset(tmp_path / "boom.jsonl", [{"id": f"b{i}", "inputs": {"question": "boom"}, "expected": {"answer": "x"}}
                                                   for i in range(3)])
    report = run(EvalRunner(toy_spec), toy_spec.config, dataset=load_dataset(rows))
    assert report.value("contains") == 0.0  # zeros stand in for the answers nobody gave...
    assert report.unscored["contains"] == "every example failed; the first, row 'b0': RuntimeError: the answer service exploded"
    assert "error" not in report.unscored and report.value("error") == 1.0  # ...but the errors were measured
