"""support_qa and the judge with the real ChatOpenAI, over HTTP to the local OpenAI-compatible test server."""

import asyncio
import json

import pytest

from graphtune.evals.runner import EvalRunner
from graphtune.llm import chat_model
from graphtune.spec import load_spec
from graphtune.testing.openai_server import OpenAITestServer, Reply


def responder(request: dict) -> Reply:
    if "response_format" in request:  # the judge's structured output
        answer = request["messages"][-1]["content"]
        return Reply(json={"score": 1.0 if "help center" in answer else 0.0, "reason": "compared with the reference"})
    question = request["messages"][-1]["content"]
    return Reply(content=f"According to the help center: {question}", prompt_tokens=500, completion_tokens=25)


@pytest.fixture
def model_server(monkeypatch):
    with OpenAITestServer(responder, model="gpt-4.1-mini") as server:
        monkeypatch.setenv("GRAPHTUNE_MODEL", "gpt-4.1-mini")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "test")
        yield server


def test_support_qa_answers_with_chat_openai_and_the_judge_scores(model_server):
    spec = load_spec("support_qa")
    spec.evals.metrics = [*spec.evals.metrics, "judge"]
    runner = EvalRunner(spec, judge_model=chat_model(), concurrency=4)
    report = asyncio.run(runner.run(spec.config, limit=8))

    answers = [r for r in model_server.requests if "response_format" not in r]
    judged = [r for r in model_server.requests if "response_format" in r]
    assert len(answers) == 8 and len(judged) == 8
    assert {r["model"] for r in answers} == {"gpt-4.1-mini"}
    assert answers[0].get("max_completion_tokens", answers[0].get("max_tokens")) == spec.config["llm"]["max_tokens"] and answers[0]["temperature"] == 0.2
    assert "<context>" in answers[0]["messages"][0]["content"]
    assert all(r.answer.startswith("According to the help center") for r in report.results)
    assert report.value("judge") == 1.0
    assert report.value("total_tokens") == 525 and report.value("cost_usd") == pytest.approx((500 * 0.4 + 25 * 1.6) / 1e6)
    schema = judged[0]["response_format"]["json_schema"]
    assert schema["name"] == "Verdict" and json.dumps(schema).count("score") >= 1
