"""Chat models from ``provider:model`` names (LangChain's ``init_chat_model``), one shared pace, SDK retries."""

from __future__ import annotations

import asyncio
import sys

import pytest
from langchain_openai import ChatOpenAI

from graphtune.graphs.context import ControllerContext
from graphtune.llm import ModelSettings, ModelUnavailable, chat_model, current_settings, model_available, split_model, using
from graphtune.spec import load_spec
from graphtune.testing.openai_server import OpenAITestServer
from graphtune.throttling import shared_limiter
from tests.fakes import counted_acquires


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("GRAPHTUNE_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(("name", "expected"), [
    ("gpt-4.1-mini", ("openai", "gpt-4.1-mini")),
    ("openai:gpt-4.1-mini", ("openai", "gpt-4.1-mini")),
    ("anthropic:claude-sonnet-4-5", ("anthropic", "claude-sonnet-4-5")),
    ("ollama:llama3.1:8b", ("ollama", "llama3.1:8b")),
    ("llama3:8b", ("openai", "llama3:8b")),  # an Ollama tag served OpenAI-compatibly: llama3 is no provider
    ("claude-sonnet-4-5", ("openai", "claude-sonnet-4-5")),  # a bare name keeps meaning OpenAI-compatible
])
def test_provider_prefixes_are_langchain_s_and_a_bare_name_is_openai_compatible(name, expected):
    assert split_model(name) == expected


def test_a_bare_name_is_chat_openai_at_the_configured_base_url(monkeypatch):
    monkeypatch.setenv("GRAPHTUNE_MODEL", "test-model")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    model = chat_model(temperature=0)
    assert isinstance(model, ChatOpenAI) and model.model_name == "test-model"
    assert model.openai_api_base == "http://127.0.0.1:9/v1" and model.temperature == 0


@pytest.mark.parametrize("name", ["test-model", "openai:test-model"])
def test_the_model_answers_over_http_through_init_chat_model(name):
    async def ask():
        return await chat_model(settings=ModelSettings(model=name, base_url=server.base_url)).ainvoke("hello")

    with OpenAITestServer() as server:
        reply = asyncio.run(ask())
        [sent] = server.requests
    assert reply.content == "ok: hello" and sent["model"] == "test-model"


@pytest.mark.parametrize(("name", "package", "extra"), [
    ("anthropic:claude-sonnet-4-5", "langchain-anthropic", "graphtune[anthropic]"),
    ("ollama:llama3.1", "langchain-ollama", "graphtune[ollama]"),
    ("groq:llama-3.1-8b-instant", "langchain-groq", None),
])
def test_a_provider_without_its_integration_names_the_package_to_install(monkeypatch, name, package, extra):
    module = package.replace("-", "_")
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    monkeypatch.setitem(sys.modules, "langchain_community.chat_models", None)  # ollama's old home, too
    with pytest.raises(ModelUnavailable) as raised:
        chat_model(name)
    message = str(raised.value)
    assert name in message and f"pip install {package}" in message and "not installed" in message
    if extra:
        assert extra in message


def test_no_model_configured_is_a_clear_error():
    assert not model_available()
    with pytest.raises(ModelUnavailable, match="no LLM configured"):
        chat_model()


def test_every_model_of_a_pace_shares_one_limiter_that_paces_every_attempt_retries_included():
    """A pace far above the test's need, so the test waits on nothing: what counts is who asks the limiter."""
    with counted_acquires(shared_limiter(1000.0)) as asked, OpenAITestServer() as server:
        server.throttle(429, requests=2, retry_after_s=0.01)
        settings = ModelSettings(model="test-model", base_url=server.base_url, requests_per_s=1000.0, max_retries=4)
        first, second = chat_model(settings=settings), chat_model("other-model", settings=settings)
        assert asyncio.run(first.ainvoke("hi")).content == "ok: hi"  # two 429s, retried by the SDK
        assert asyncio.run(second.ainvoke("hi")).content == "ok: hi"
    assert len(asked) == 4  # three attempts of the first call, one of the second
    assert first.max_retries == 4 and first.root_async_client.max_retries == 4


def test_using_scopes_the_settings_over_the_environment(monkeypatch):
    monkeypatch.setenv("GRAPHTUNE_MODEL", "env-model")
    with using(ModelSettings(model="run-model", requests_per_s=2.0)):
        assert current_settings().model == "run-model" and chat_model().model_name == "run-model"
    assert current_settings().model == "env-model"


def test_a_run_s_settings_come_from_its_context_then_the_spec_then_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHTUNE_MODEL", "env-model")
    spec = load_spec("support_qa")
    spec.rate_limit = spec.rate_limit.model_copy(update={"requests_per_s": 3.0, "max_retries": 2})
    assert ControllerContext(model=None).model_settings(spec) == ModelSettings(
        model="env-model", requests_per_s=3.0, max_retries=2)
    assert ControllerContext(model="ollama:llama3.1", rate_limit=9.0).model_settings(spec) == ModelSettings(
        model="ollama:llama3.1", requests_per_s=9.0, max_retries=2)
