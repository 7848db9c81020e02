"""The local OpenAI-compatible server, driven by the real ``ChatOpenAI`` over HTTP."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from graphtune.testing.openai_server import OpenAITestServer, Reply, scripted


@pytest.fixture
def serve():
    """Start servers for a test and stop them afterwards: ``server = serve(responder, latency_s=...)``."""
    started: list[OpenAITestServer] = []

    def start(responder=None, **kwargs) -> OpenAITestServer:
        server = OpenAITestServer(responder, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def chat(server: OpenAITestServer, **kwargs) -> ChatOpenAI:
    kwargs.setdefault("max_retries", 0)
    return ChatOpenAI(model="test-model", base_url=server.base_url, api_key="test", **kwargs)


def http(method: str, url: str, data: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


class Person(BaseModel):
    name: str
    age: int


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_invoke_returns_scripted_content_and_usage(serve):
    server = serve(scripted(Reply(content="hello there", prompt_tokens=11, completion_tokens=7)))
    message = chat(server).invoke("hi")
    assert isinstance(message, AIMessage)
    assert message.content == "hello there"
    assert message.usage_metadata["input_tokens"] == 11
    assert message.usage_metadata["output_tokens"] == 7
    assert message.usage_metadata["total_tokens"] == 18
    assert message.response_metadata["finish_reason"] == "stop"
    assert message.response_metadata["model_name"] == "test-model"


def test_default_responder_echoes_and_counts_words(serve):
    server = serve()
    prompt = "please summarise this very long request about graphs and nodes"
    message = chat(server).invoke(prompt)
    assert message.content == f"ok: {prompt[:40]}"
    assert message.usage_metadata["input_tokens"] == 10  # rough word count of the prompt
    assert message.usage_metadata["output_tokens"] == 7


def test_requests_records_bodies(serve):
    server = serve(scripted("a", "b"))
    llm = chat(server, temperature=0.3)
    llm.invoke([("system", "be brief"), ("user", "first")])
    llm.invoke("second")
    assert [r["model"] for r in server.requests] == ["test-model", "test-model"]
    assert server.requests[0]["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
    ]
    assert server.requests[0]["temperature"] == 0.3
    assert server.requests[1]["messages"][-1]["content"] == "second"


def test_concurrent_ainvoke_overlap(serve):
    server = serve(latency_s=1.0)  # serialised, 16 answers would take 16 s
    llm = chat(server)

    async def run():
        return await asyncio.gather(*(llm.ainvoke(f"question {i}") for i in range(16)))

    started = time.perf_counter()
    messages = asyncio.run(run())
    elapsed = time.perf_counter() - started
    assert elapsed < 8, f"16 x 1 s took {elapsed:.2f} s: requests were serialised"
    assert server.max_concurrency() >= 8
    assert sorted(m.content for m in messages) == sorted(f"ok: question {i}" for i in range(16))


def test_serves_32_concurrent_requests(serve):
    # each answer waits 2 s, so all 32 are in flight together even when a busy machine starts the
    # threads slowly; served one at a time they would take 64 s
    server = serve(latency_s=2.0)
    body = json.dumps({"model": "test-model", "messages": [{"role": "user", "content": "x"}]}).encode()
    statuses: list[int] = []

    def call():
        statuses.append(http("POST", f"{server.base_url}/chat/completions", body)[0])

    threads = [threading.Thread(target=call) for _ in range(32)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.perf_counter() - started < 32
    assert statuses == [200] * 32
    assert server.max_concurrency() == 32


def test_structured_output_parses_json_reply(serve):
    server = serve(scripted(Reply(json={"name": "Ada", "age": 36})))
    person = chat(server).with_structured_output(Person).invoke("who?")
    assert person == Person(name="Ada", age=36)
    response_format = server.requests[0]["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "Person"


def test_dict_reply_is_json_content(serve):
    server = serve(lambda request: {"name": "Bob", "age": 4})
    assert chat(server).with_structured_output(Person).invoke("who?") == Person(name="Bob", age=4)


def test_bind_tools_returns_tool_call(serve):
    server = serve(scripted(Reply(tool_calls=[{"name": "add", "args": {"a": 2, "b": 3}}]), "5"))
    llm = chat(server).bind_tools([add])
    message = llm.invoke("2 + 3?")
    assert message.response_metadata["finish_reason"] == "tool_calls"
    [call] = message.tool_calls
    assert call["name"] == "add" and call["args"] == {"a": 2, "b": 3}
    assert call["id"].startswith("call_")
    assert server.requests[0]["tools"][0]["function"]["name"] == "add"
    assert llm.invoke("again").content == "5"


def test_tool_calls_without_declared_tools_is_a_500_naming_the_mistake(serve):
    server = serve(scripted(Reply(tool_calls=[{"name": "add", "args": {}}])))
    with pytest.raises(openai.InternalServerError, match="declared no tools"):
        chat(server).invoke("x")


def test_stream_yields_content_in_chunks(serve):
    server = serve(scripted(Reply(content="one two three four", prompt_tokens=3, completion_tokens=4)))
    chunks = list(chat(server).stream("count", stream_usage=True))
    pieces = [c.content for c in chunks if c.content]
    assert pieces == ["one", " two", " three", " four"]
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert total.content == "one two three four"
    assert total.usage_metadata["input_tokens"] == 3 and total.usage_metadata["output_tokens"] == 4
    assert server.requests[0]["stream"] is True
    assert server.requests[0]["stream_options"] == {"include_usage": True}


def test_stream_tool_calls(serve):
    server = serve(scripted(Reply(tool_calls=[{"name": "add", "args": {"a": 1, "b": 1}}])))
    total = None
    for chunk in chat(server).bind_tools([add]).stream("1 + 1?"):
        total = chunk if total is None else total + chunk
    assert [(c["name"], c["args"]) for c in total.tool_calls] == [("add", {"a": 1, "b": 1})]


def test_429_then_200_is_retried(serve):
    server = serve(scripted(Reply(status=429, retry_after_s=0.01), "finally"))
    assert chat(server, max_retries=2).invoke("x").content == "finally"
    assert len(server.requests) == 2


def test_500_without_retries_raises(serve):
    server = serve(scripted(Reply(status=500, content="boom")))
    with pytest.raises(openai.InternalServerError, match="boom"):
        chat(server).invoke("x")


def test_responder_exception_is_a_500_and_the_server_keeps_serving(serve):
    calls = []

    def responder(request):
        calls.append(request)
        if len(calls) == 1:
            raise RuntimeError("script bug")
        return "recovered"

    server = serve(responder)
    # x-should-retry: false, so the client does not re-run a deterministic failure
    with pytest.raises(openai.InternalServerError, match="script bug"):
        chat(server, max_retries=2).invoke("x")
    assert len(calls) == 1
    assert chat(server).invoke("y").content == "recovered"


def test_malformed_json_is_400(serve):
    server = serve()
    status, body = http("POST", f"{server.base_url}/chat/completions", b"{not json")
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert "JSON" in body["error"]["message"]
    assert server.requests == []


def test_unknown_path_is_404(serve):
    server = serve()
    status, body = http("GET", f"{server.base_url}/nope")
    assert status == 404 and "error" in body
    assert http("POST", f"{server.base_url}/completions", b"{}")[0] == 404


def test_models_lists_the_model(serve):
    server = serve(model="my-model")
    status, body = http("GET", f"{server.base_url}/models")
    assert status == 200
    assert [m["id"] for m in body["data"]] == ["my-model"]


def test_scripted_repeats_last_reply():
    responder = scripted("a", "b")
    assert [responder({}) for _ in range(4)] == ["a", "b", "b", "b"]


def test_context_manager_stops_the_server():
    with OpenAITestServer() as server:
        assert chat(server).invoke("x").content == "ok: x"
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{server.base_url}/models", timeout=2)
    server.stop()  # idempotent


def test_throttle_refuses_the_next_requests_with_retry_after_then_serves(serve):
    server = serve(scripted("fine"))
    server.throttle(429, requests=2, retry_after_s=0.02)
    client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as raised:
            client.chat.completions.create(model="test-model", messages=[{"role": "user", "content": "hi"}])
        assert raised.value.response.headers["retry-after"] == "0.020"
    assert client.chat.completions.create(model="test-model", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content == "fine"
    assert server.throttled == {429: 2} and len(server.requests) == 1  # the responder saw only the served one


def test_a_throttle_within_the_client_s_retries_is_ridden_out(serve):
    server = serve(scripted("fine"))
    server.throttle(503, requests=2, retry_after_s=0.01)
    assert chat(server, max_retries=2).invoke("hi").content == "fine"
    assert server.throttled == {503: 2}


def test_a_throttle_for_a_while_refuses_every_request_meanwhile(serve):
    server = serve()
    server.throttle(503, seconds=600)
    with pytest.raises(openai.InternalServerError):
        chat(server).invoke("hi")
    assert server.throttled == {503: 1}


def test_limit_rate_refuses_what_exceeds_the_bucket_with_the_wait_for_the_next_slot(serve):
    server = serve()
    server.limit_rate(0.01, burst=1)  # one request now, the next in 100 s
    client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    client.chat.completions.create(model="test-model", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="test-model", messages=[{"role": "user", "content": "hi"}])
    assert 90 < float(raised.value.response.headers["retry-after"]) <= 100
    server.limit_rate(None)
    client.chat.completions.create(model="test-model", messages=[{"role": "user", "content": "hi"}])
    assert server.throttled == {429: 1} and len(server.requests) == 2


def test_throttle_takes_a_count_or_a_duration():
    with pytest.raises(ValueError, match="requests= or seconds="):
        OpenAITestServer().throttle(429)
