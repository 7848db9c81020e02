"""Eval examples against a throttling OpenAI-compatible server: retried through, or one clear error each.

support_qa answers with the real ChatOpenAI over HTTP (graphtune.llm), inside the run's model settings
(``using``), as the controller's evaluate step and ``graphtune eval`` run it."""

from __future__ import annotations

import asyncio

import pytest

from graphtune.evals.runner import EvalRunner
from graphtune.llm import ModelSettings, using
from graphtune.spec import load_spec
from graphtune.testing.openai_server import OpenAITestServer
from graphtune.throttling import shared_limiter
from tests.fakes import counted_acquires

EXAMPLES = 8


@pytest.fixture
def server(monkeypatch):
    for name in ("GRAPHTUNE_MODEL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    with OpenAITestServer(model="gpt-4.1-mini") as server:
        yield server


def evaluate(server: OpenAITestServer, **settings) -> list:
    spec = load_spec("support_qa")

    async def run():
        with using(ModelSettings(model="gpt-4.1-mini", base_url=server.base_url, **settings)):
            return await EvalRunner(spec, concurrency=4).run(spec.config, limit=EXAMPLES)

    return asyncio.run(run()).results


@pytest.mark.parametrize("status", [429, 503])
def test_no_example_fails_for_a_throttle_that_clears_within_the_retry_budget(server, status):
    server.throttle(status, requests=5, retry_after_s=0.01)  # however they interleave, no call sees more than 5
    results = evaluate(server, max_retries=6)
    assert [r.error for r in results] == [None] * EXAMPLES
    assert server.throttled == {status: 5}
    assert all(r.answer.startswith("ok: ") for r in results)


def test_a_throttle_longer_than_the_retry_budget_is_one_clear_error_per_example(server):
    server.throttle(429, requests=10_000, retry_after_s=0.01)
    results = evaluate(server, max_retries=1)
    assert len(results) == EXAMPLES and all(r.error for r in results)
    for result in results:
        assert result.error.startswith("rate limited: the model endpoint still answered HTTP 429 after its retries")
        assert "--rate-limit" in result.error and "malformed" not in result.error
    assert server.throttled[429] == 2 * EXAMPLES  # each example: the call and its one retry


def test_an_outage_longer_than_the_budget_names_the_status(server):
    server.throttle(503, requests=10_000, retry_after_s=0.01)
    [result, *_] = evaluate(server, max_retries=0)
    assert result.error.startswith("the model endpoint failed: HTTP 503 after its retries")


def test_the_run_s_rate_limiter_paces_every_example(server):
    """A pace far above the test's need, so the test waits on nothing: the limiter is asked once per call."""
    with counted_acquires(shared_limiter(1000.0)) as asked:
        results = evaluate(server, requests_per_s=1000.0)
    assert [r.error for r in results] == [None] * EXAMPLES and len(asked) == len(server.requests) == EXAMPLES


def test_a_second_event_loop_against_the_same_endpoint_still_reaches_it(server):
    """langchain-openai shares one async HTTP client per base URL across the process; a second
    ``asyncio.run`` (the CLI, a benchmark, a test reusing a freed port) got "Event loop is closed"
    from connections of the first loop. Each model now has a client of its own."""
    first = evaluate(server)
    second = evaluate(server)
    assert [r.error for r in first + second] == [None] * (2 * EXAMPLES)
