"""evaluate: parallel tasks share one runner, stop losers against a reference read live, never crash the run."""

import asyncio

import yaml
from langgraph.runtime import Runtime

from graphtune.backends.config_store import open_config_store
from graphtune.graphs.context import ControllerContext
from graphtune.graphs.state import CandidateRecord, EvalTask
from graphtune.nodes import evaluate as evaluate_module
from graphtune.nodes.evaluate import evaluate
from graphtune.tuning.config_paths import config_hash
from tests.evals.conftest import toy_spec  # noqa: F401  (fixture)


def task(spec, cid, config, thread="t1", **extra) -> dict:
    record = CandidateRecord(id=cid, round=1, proposer="optuna" if cid != "baseline" else "baseline",
                             config=config, config_hash=config_hash(config))
    return EvalTask(candidate=record, workflow=spec.workflow, spec=str(spec.path), thread_id=thread,
                    stop_metric="contains", direction="maximize", **extra).model_dump(mode="json")


def context(tmp_path, **kw):
    url = f"sqlite:///{tmp_path}/gt.db"
    return ControllerContext(database_url=url, traces_url=url, **{"check_every": 5, **kw})


def test_a_loser_stops_early_against_the_baseline_running_beside_it(toy_spec, tmp_path):
    ctx = context(tmp_path, concurrency=2)
    good = toy_spec.config
    bad = {"answer": {"quality": "bad", "delay_s": 0.001}}

    async def both():
        return await asyncio.gather(
            evaluate(task(toy_spec, "baseline", good), Runtime(context=ctx)),
            evaluate(task(toy_spec, "c1", bad, reference_hash=config_hash(good)), Runtime(context=ctx)),
        )

    base_update, bad_update = asyncio.run(both())
    base = base_update["evals"][config_hash(good)]
    loser = bad_update["evals"][config_hash(bad)]
    assert not base["stopped_early"] and len(base["results"]) == 40
    assert loser["stopped_early"] and "clearly worse than the baseline" in loser["stop_reason"]
    assert len(loser["results"]) < 40
    assert "stopped early" in bad_update["messages"][0].content
    # every evaluated config is stored as a version of the workflow
    with open_config_store(ctx.database_url) as store:
        assert {v.hash for v in store.versions("toy")} == {config_hash(good), config_hash(bad)}


def test_known_reference_scores_stop_a_loser_and_the_cache_serves_a_rerun(toy_spec, tmp_path):
    ctx = context(tmp_path)
    bad = {"answer": {"quality": "bad", "delay_s": 0.001}}
    reference = {f"r{i:02d}": 1.0 for i in range(40)}
    first = asyncio.run(evaluate(task(toy_spec, "c1", bad, reference_hash="x", reference_scores=reference,
                                      reference_name="the best config so far"), Runtime(context=ctx)))
    report = first["evals"][config_hash(bad)]
    assert report["stopped_early"] and "the best config so far" in report["stop_reason"]

    evaluate_module._runners.clear()
    again = asyncio.run(evaluate(task(toy_spec, "c1", bad), Runtime(context=ctx)))
    report = again["evals"][config_hash(bad)]
    assert report["cached"] >= 30 and len(report["results"]) == 40


def test_a_config_whose_graph_cannot_be_built_is_a_failed_result_not_a_crash(toy_spec, tmp_path):
    ctx = context(tmp_path)
    broken = {"answer": {"quality": "explode", "delay_s": 0.001}}
    update = asyncio.run(evaluate(task(toy_spec, "c2", broken), Runtime(context=ctx)))
    report = update["evals"][config_hash(broken)]
    assert report["stopped_early"] and report["results"] == []
    assert "evaluation failed" in report["stop_reason"] and "raised ValueError: no such answer quality" in report["stop_reason"]
    assert "c2: evaluation failed" in update["messages"][0].content


def test_a_missing_spec_is_a_failed_result_naming_it(tmp_path):
    ctx = context(tmp_path)
    record = CandidateRecord(id="c1", round=1, proposer="optuna", config={"a": 1}, config_hash=config_hash({"a": 1}))
    payload = EvalTask(candidate=record, workflow="ghost", spec=str(tmp_path / "nope.yaml"),
                       stop_metric="contains", direction="maximize").model_dump(mode="json")
    update = asyncio.run(evaluate(payload, Runtime(context=ctx)))
    assert "nope.yaml" in update["evals"][config_hash({"a": 1})]["stop_reason"]


def test_the_context_s_model_answers_graphtune_s_workflow_and_judges_it(tmp_path, monkeypatch):
    """--model / context.model reaches every model use of the step: support_qa's answers and the judge."""
    from graphtune.spec import load_spec
    from graphtune.testing.openai_server import OpenAITestServer, Reply

    for name in ("GRAPHTUNE_MODEL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    spec = load_spec("support_qa")
    raw = yaml.safe_load(spec.path.read_text())
    raw["evals"]["metrics"].append("judge")
    raw["evals"]["datasets"][0]["path"] = str(spec.dataset_path())
    raw["rate_limit"] = {"requests_per_s": 500, "max_retries": 2}
    (tmp_path / "qa.yaml").write_text(yaml.safe_dump(raw))

    def responder(request):
        if "response_format" in request:
            return Reply(json={"score": 1.0, "reason": "fine"})
        return Reply(content="From the help center.")

    with OpenAITestServer(responder, model="gpt-4.1-mini") as server:
        ctx = context(tmp_path, model="gpt-4.1-mini", base_url=server.base_url, eval_limit=3, concurrency=3)
        spec = load_spec(tmp_path / "qa.yaml")
        update = asyncio.run(evaluate(task(spec, "baseline", spec.config), Runtime(context=ctx)))
        answers = [r for r in server.requests if "response_format" not in r]
        judged = [r for r in server.requests if "response_format" in r]
    report = update["evals"][config_hash(spec.config)]
    assert len(answers) == 3 and len(judged) == 3
    assert [r["answer"] for r in report["results"]] == ["From the help center."] * 3
    assert report["summary"]["judge"]["mean"] == 1.0
