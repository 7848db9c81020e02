"""``langfuse://``: reading observations from Langfuse's public API (a local server in its documented shapes)."""

from __future__ import annotations

import time
import uuid
from typing import TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from graphtune.backends.http_retry import RetryPolicy
from graphtune.backends.langfuse_observations import events_from_observations, parse_observation
from graphtune.backends.langfuse_settings import LangfuseSettings
from graphtune.backends.langfuse_source import LangfuseApiError, LangfuseObservationsApi, LangfuseTraceSource
from graphtune.backends.otlp_exporter import OtlpExporter, OtlpSettings
from graphtune.backends.traces import (
    EventQuery,
    ReadOnlyTraceStoreError,
    UnknownBackendError,
    open_trace_store,
    recording_url,
)
from graphtune.spec import ObserveSpec
from graphtune.tracing.events import EventKind
from graphtune.tracing.recorder import TrajectoryRecorder, run_tags
from graphtune.tuning.hotspots import find_hot_spots
from tests.backends.langfuse_server import FakeLangfuse, iso

FAST = RetryPolicy(max_retries=3, backoff_s=0.01, max_backoff_s=0.02,
                   retry_statuses=frozenset({408, 429, 500, 502, 503, 504}))


@pytest.fixture
def langfuse(monkeypatch):
    server = FakeLangfuse()
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-test")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-test")
    monkeypatch.setenv("LANGFUSE_BASE_URL", server.url)
    monkeypatch.delenv("GRAPHTUNE_OTLP_ENDPOINT", raising=False)
    yield server
    server.close()


def source(server: FakeLangfuse, **options) -> LangfuseTraceSource:
    settings = LangfuseSettings(public_key="pk-lf-test", secret_key="sk-lf-test", base_url=server.url)
    api = LangfuseObservationsApi(settings, page_limit=options.pop("page_limit", 1000), policy=FAST, timeout_s=2.0)
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return LangfuseTraceSource(f"langfuse+http://{server.host}" + (f"?{query}" if query else ""), api=api)


def observation(trace: str, oid: str, start: float, end: float | None, **fields) -> dict:
    return {"id": oid, "traceId": trace, "projectId": "p", "startTime": iso(int(start * 1e9)),
            "endTime": iso(int(end * 1e9)) if end is not None else None, "parentObservationId": None,
            "type": "SPAN", "name": "LangGraph", "level": "DEFAULT", **fields}


def callback_handler_trace(trace: str, start: float, generate_ms: float = 30.0, fail: bool = False) -> list[dict]:
    """Observations as Langfuse's own LangChain CallbackHandler records a LangGraph run."""
    md = {"graphtune_workflow": "support_qa", "graphtune_source": "production"}
    root, retrieve, generate, chain, llm = (f"{trace[:8]}{i:08x}" for i in range(5))
    g0 = start + 0.010
    g1 = g0 + generate_ms / 1000
    return [
        observation(trace, root, start, g1 + 0.001, type="CHAIN", sessionId="thread-9", userId="bob@example.com",
                    traceName="LangGraph", metadata=md),
        observation(trace, retrieve, start + 0.001, start + 0.009, parentObservationId=root, type="CHAIN", name="retrieve",
                    metadata={**md, "langgraph_node": "retrieve", "langgraph_step": 1}),
        observation(trace, generate, g0, g1, parentObservationId=root, type="CHAIN", name="generate",
                    level="ERROR" if fail else "DEFAULT", statusMessage="model timed out" if fail else None,
                    metadata={**md, "langgraph_node": "generate", "langgraph_step": 2}),
        observation(trace, chain, g0 + 0.001, g1 - 0.001, parentObservationId=generate, type="CHAIN",
                    name="RunnableSequence", metadata={**md, "langgraph_node": "generate"}),
        observation(trace, llm, g0 + 0.002, g1 - 0.002, parentObservationId=chain, type="GENERATION", name="ChatOpenAI",
                    model="gpt-4o-mini", usageDetails={"input": 120, "output": 30, "total": 150}, metadata=md),
    ]


def test_the_url_opens_a_read_only_source(langfuse, monkeypatch):
    store = open_trace_store(f"langfuse+http://{langfuse.host}")
    assert isinstance(store, LangfuseTraceSource) and store.api.settings.base_url == langfuse.url
    assert isinstance(open_trace_store("langfuse://"), LangfuseTraceSource)  # base URL from LANGFUSE_BASE_URL
    for call in (lambda: store.write([]), lambda: store.prune(0), lambda: store.delete_user("x"),
                 lambda: store.get_or_create_meta("k", "v")):
        with pytest.raises(ReadOnlyTraceStoreError, match="read-only trace source"):
            call()
    # recorders never write there: they record to the database URL instead
    monkeypatch.setenv("GRAPHTUNE_TRACES_URL", "langfuse://")
    monkeypatch.setenv("GRAPHTUNE_DATABASE_URL", "sqlite:///tmp/x.db")
    assert recording_url(None) == "sqlite:///tmp/x.db"
    assert recording_url("jsonl:///tmp/t") == "jsonl:///tmp/t"
    monkeypatch.delenv("LANGFUSE_SECRET_KEY")
    with pytest.raises(UnknownBackendError, match="LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY"):
        open_trace_store("langfuse://")


def test_callback_handler_observations_map_to_runs_nodes_and_usage(langfuse):
    now = time.time()
    trace = uuid.uuid4().hex
    langfuse.observations += callback_handler_trace(trace, now - 60, fail=True)
    with source(langfuse) as store:
        events = store.read(EventQuery(trace_id=trace))
    by_kind = {}
    for e in events:
        by_kind.setdefault(e.kind, []).append(e)
    assert [e.name for e in by_kind[EventKind.NODE_END]] == ["retrieve"]
    (failed,) = by_kind[EventKind.NODE_ERROR]
    assert failed.name == "generate" and failed.status == "error" and failed.attributes["error.message"] == "model timed out"
    assert failed.duration_ms == pytest.approx(30.0, abs=0.01)
    (run,) = by_kind[EventKind.RUN_END]
    assert run.workflow == "support_qa" and run.thread_id == "thread-9" and run.parent_span_id is None
    (usage,) = by_kind[EventKind.LLM_USAGE]
    assert (usage.input_tokens, usage.output_tokens, usage.node) == (120, 30, "generate")
    assert usage.parent_span_id == failed.span_id  # linked through the unmapped RunnableSequence
    assert usage.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert all(e.user_hash and "bob" not in e.user_hash for e in events)  # a plain user id is hashed
    assert not any(e.name == "RunnableSequence" for e in events)
    assert langfuse.observation_requests()[0]["traceId"] == [trace]


def test_paging_follows_the_cursor_across_partial_pages(langfuse):
    now = time.time()
    for i in range(250):
        langfuse.observations += callback_handler_trace(uuid.uuid4().hex, now - 3000 + i * 10)
    with source(langfuse, page_limit=400, lookback=0) as store:
        stats = {s.node: s for s in store.aggregate(workflow="support_qa", since=now - 3600, until=now)}
        assert store.stats()["pages"] == 4  # 1250 observations, 400 a page: the last page is partial
    assert stats["__run__"].count == 250 and stats["generate"].count == 250 and stats["retrieve"].count == 250
    assert stats["generate"].input_tokens == 250 * 120 and stats["__run__"].output_tokens == 250 * 30
    requests = langfuse.observation_requests()
    assert [r.get("cursor") is not None for r in requests] == [False, True, True, True]
    assert requests[0]["limit"] == ["400"] and "fromStartTime" in requests[0] and "toStartTime" in requests[0]
    assert requests[0]["fromStartTime"][0].endswith("Z")


def test_429_and_500_answers_are_retried_with_backoff(langfuse):
    now = time.time()
    langfuse.observations += callback_handler_trace(uuid.uuid4().hex, now - 100)
    langfuse.script(429, '{"message": "rate limited"}', {"Retry-After": "0"})
    langfuse.script(500, '{"message": "boom"}')
    with source(langfuse) as store:
        events = store.read(EventQuery(since=now - 3600))
        assert store.stats()["retries"] == 2
    assert {e.kind for e in events} >= {EventKind.RUN_END, EventKind.NODE_END, EventKind.LLM_USAGE}


def test_errors_that_persist_raise_a_clear_error(langfuse):
    for _ in range(4):
        langfuse.script(503, "unavailable")
    with source(langfuse) as store, pytest.raises(LangfuseApiError, match="HTTP 503 .* after 4 attempts"):
        store.read(EventQuery(since=time.time() - 60))
    settings = LangfuseSettings(public_key="pk-lf-test", secret_key="wrong", base_url=langfuse.url)
    api = LangfuseObservationsApi(settings, policy=FAST)
    with pytest.raises(LangfuseApiError, match="refused the keys .*LANGFUSE_SECRET_KEY"):
        list(api.observations(since=0))
    assert len(langfuse.observation_requests()) == 5  # 401 is not retried


def test_malformed_pages_and_items_are_skipped_with_a_count(langfuse):
    now = time.time()
    good = callback_handler_trace(uuid.uuid4().hex, now - 100)
    langfuse.script(200, '{"data": "not a list", "meta": {"cursor": "MA=="}}')  # skipped; its cursor is followed
    langfuse.observations += good + [{"id": "broken", "traceId": "t"}, "not an object"]
    with source(langfuse) as store:
        events = store.read(EventQuery(since=now - 3600))
        stats = store.stats()
    assert stats["malformed_pages"] == 1 and stats["malformed_observations"] == 2 and stats["observations"] == 5
    assert sum(e.kind is EventKind.RUN_END for e in events) == 1
    langfuse.script(200, "<html>gateway error</html>")  # not JSON at all: skipped, counted, no cursor to follow
    with source(langfuse) as store:
        assert store.read(EventQuery(since=now - 3600)) == []
        assert store.stats()["malformed_pages"] == 1


def test_unfinished_observations_give_starts_but_no_durations():
    start = time.time() - 5
    items = [observation("a" * 32, "b" * 16, start, None, type="CHAIN", metadata={"graphtune_workflow": "w"})]
    events, unfinished = events_from_observations([parse_observation(i) for i in items])
    assert unfinished == 1 and [e.kind for e in events] == [EventKind.RUN_START]


class State(TypedDict, total=False):
    question: str
    answer: str


def slow_graph():
    def retrieve(state):
        return {"answer": "docs"}

    def generate(state):
        time.sleep(0.02)
        return {"answer": "an answer"}

    graph = StateGraph(State)
    graph.add_node("retrieve", retrieve)
    graph.add_node("generate", generate)
    graph.add_edge(START, "retrieve")
    graph.add_edge("retrieve", "generate")
    graph.add_edge("generate", END)
    return graph.compile()


def test_exported_runs_read_back_give_the_same_hot_spots(langfuse, tmp_path):
    """graphtune's recorder exports to Langfuse; observe on ``langfuse://`` sees what the store sees."""
    exporter = OtlpExporter(OtlpSettings(endpoint=f"{langfuse.url}/api/public/otel/v1/traces", langfuse=True,
                                         headers={"Authorization": langfuse.auth, "x-langfuse-ingestion-version": "4"},
                                         flush_interval_s=0.05))
    recorder = TrajectoryRecorder(f"jsonl:///{tmp_path}/traces", spill_dir=str(tmp_path / "spill"), exporter=exporter)
    graph = slow_graph()
    for i in range(8):
        graph.invoke({"question": "q"}, config={"callbacks": [recorder], "configurable": {"thread_id": f"t{i}"},
                                                "metadata": run_tags("support_qa", config_version=2, user_id=f"u{i}")})
    recorder.flush()
    assert exporter.flush(10) and exporter.stats()["sent_spans"] == 24

    spec = ObserveSpec(window="1h", p95_ms=10)
    with open_trace_store(f"jsonl:///{tmp_path}/traces") as local:
        expected = find_hot_spots(local, "support_qa", spec)
        local_events = local.read(EventQuery(kinds=(EventKind.NODE_END, EventKind.RUN_END)))
    with source(langfuse) as remote:
        seen = find_hot_spots(remote, "support_qa", spec)
        remote_events = remote.read(EventQuery(kinds=(EventKind.NODE_END, EventKind.RUN_END)))
    assert [h.node for h in seen.hot_spots] == [h.node for h in expected.hot_spots] and seen.hot_spots
    assert seen.hot_spots[0].node in ("generate", "__run__")
    assert seen.runs == expected.runs == 8
    local_stats = {s.node: s for s in expected.node_stats}
    for stats in seen.node_stats:
        assert stats.count == local_stats[stats.node].count
        assert stats.p95_ms == pytest.approx(local_stats[stats.node].p95_ms, abs=0.01)
    def identity(e):  # a run's own name ("LangGraph") is not exported: its span is named after the workflow
        return (e.trace_id, e.span_id, e.parent_span_id, e.name if e.kind is EventKind.NODE_END else e.kind,
                e.user_hash, e.thread_id, e.config_version)

    assert {identity(e) for e in remote_events} == {identity(e) for e in local_events}
    durations = {e.span_id: e.duration_ms for e in local_events}
    for e in remote_events:  # timestamps travel at microsecond precision
        assert e.duration_ms == pytest.approx(durations[e.span_id], abs=0.005)
    assert seen.samples  # samples are read per trace from Langfuse too
    exporter.close()
    recorder.close()
