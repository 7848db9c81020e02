"""OTLP export: spans decoded by a local receiver (opentelemetry-proto), env switches, and bad endpoints."""

from __future__ import annotations

import base64
import logging
from typing import TypedDict

import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph

from graphtune.backends import langfuse_settings
from graphtune.backends.otlp_exporter import OtlpSettings, open_exporter, otlp_settings_from_env, parse_headers, traces_url
from graphtune.backends.traces import EventQuery, open_trace_store
from graphtune.tracing.events import EventKind
from graphtune.tracing.recorder import TrajectoryRecorder, run_tags
from tests.tracing.otlp_receiver import OtlpReceiver
from tests.waiting import wait_until


class State(TypedDict, total=False):
    question: str
    answer: str


@tool
def lookup(q: str) -> str:
    """Look a question up."""
    return f"found {q}"


def build_graph(fail: bool = False):
    model = FakeMessagesListChatModel(responses=[AIMessage(
        "an answer", usage_metadata={"input_tokens": 11, "output_tokens": 7, "total_tokens": 18},
        response_metadata={"model_name": "fake-model"},
    )] * 50)

    def retrieve(state: State) -> State:
        return {"answer": lookup.invoke({"q": state["question"]})}

    def generate(state: State) -> State:
        if fail:
            raise ValueError("generation failed")
        return {"answer": model.invoke(state["question"]).content}

    graph = StateGraph(State)
    graph.add_node("retrieve", retrieve)
    graph.add_node("generate", generate)
    graph.add_edge(START, "retrieve")
    graph.add_edge("retrieve", "generate")
    graph.add_edge("generate", END)
    return graph.compile()


@pytest.fixture
def receiver():
    r = OtlpReceiver()
    yield r
    r.close()


@pytest.fixture(params=["process", "thread"])
def sender(request) -> str:
    """Every export behaviour holds for the sender process (the default) and the in-process thread."""
    return request.param


def fast_settings(receiver: OtlpReceiver, **overrides) -> OtlpSettings:
    """Short intervals and backoffs, but a request timeout no busy machine reaches: retries and drops
    happen only where a test scripts them (a status, or a held receiver with a short timeout)."""
    values = dict(endpoint=f"{receiver.url}/v1/traces", flush_interval_s=0.05, backoff_s=0.01, max_backoff_s=0.05,
                  max_retries=2, timeout_s=60.0)
    values.update(overrides)
    return OtlpSettings(**values)


def run(graph, recorder, question="what is up?", thread="thread-1", user="alice@example.com", **tags):
    config = {"callbacks": [recorder], "configurable": {"thread_id": thread},
              "metadata": run_tags("support_qa", config_version=4, variant="candidate", user_id=user, **tags)}
    try:
        return graph.invoke({"question": question}, config=config)
    except ValueError:
        return None


def test_spans_follow_the_genai_conventions_and_the_recorders_tree(tmp_path, receiver, sender):
    exporter = open_exporter(fast_settings(receiver, langfuse=True, environment="staging", service="helpdesk", sender=sender))
    recorder = TrajectoryRecorder(f"jsonl:///{tmp_path}/traces", spill_dir=str(tmp_path / "spill"), exporter=exporter)
    run(build_graph(), recorder)
    recorder.flush()
    assert exporter.flush(60)
    spans = {s.name: s for s in receiver.spans}
    assert set(spans) == {"invoke_workflow support_qa", "invoke_agent retrieve", "invoke_agent generate",
                          "chat fake-model", "execute_tool lookup"}

    root, retrieve, generate = spans["invoke_workflow support_qa"], spans["invoke_agent retrieve"], spans["invoke_agent generate"]
    chat, tool_span = spans["chat fake-model"], spans["execute_tool lookup"]
    assert root.parent_span_id == ""
    assert retrieve.parent_span_id == generate.parent_span_id == root.span_id
    assert chat.parent_span_id == generate.span_id and tool_span.parent_span_id == retrieve.span_id
    assert len({s.trace_id for s in spans.values()}) == 1

    # ids and links are exactly the recorder's: the store holds the same tree
    with open_trace_store(f"jsonl:///{tmp_path}/traces") as store:
        events = store.read(EventQuery())
    ends = {e.span_id: e for e in events if e.kind in (EventKind.RUN_END, EventKind.NODE_END, EventKind.LLM_USAGE, EventKind.TOOL_CALL)}
    assert set(ends) == {s.span_id for s in spans.values()}
    for s in spans.values():
        event = ends[s.span_id]
        assert s.trace_id == event.trace_id and s.parent_span_id == (event.parent_span_id or "")
        assert (s.end_ns - s.start_ns) / 1e6 == pytest.approx(event.duration_ms, abs=0.01)

    assert root.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert root.attributes["gen_ai.workflow.name"] == "support_qa"
    assert retrieve.attributes["gen_ai.operation.name"] == "invoke_agent" and retrieve.attributes["gen_ai.agent.name"] == "retrieve"
    assert chat.kind == 3 and chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.usage.input_tokens"] == 11 and chat.attributes["gen_ai.usage.output_tokens"] == 7
    assert tool_span.attributes["gen_ai.operation.name"] == "execute_tool" and tool_span.attributes["gen_ai.tool.name"] == "lookup"
    assert root.attributes["input.value"] == '{"question":"what is up?"}'
    assert root.attributes["output.value"] == '{"question":"what is up?","answer":"an answer"}'
    assert tool_span.attributes["input.value"] and tool_span.attributes["output.value"]
    # node spans carry no state unless GRAPHTUNE_OTLP_NODE_IO asks for it
    assert not {"input.value", "output.value"} & (retrieve.attributes.keys() | generate.attributes.keys())
    for s in spans.values():
        assert s.attributes["session.id"] == "thread-1" and s.attributes["gen_ai.conversation.id"] == "thread-1"
        assert s.attributes["graphtune.workflow"] == "support_qa" and s.attributes["graphtune.config_version"] == 4
        # users are hashed, never plain: the same hash the store holds
        assert s.attributes["user.id"] == ends[s.span_id].user_hash and "alice" not in s.attributes["user.id"]
        # the Langfuse attributes: trace name, tags, metadata, observation type
        assert s.attributes["langfuse.trace.name"] == "support_qa"
        assert s.attributes["langfuse.trace.tags"] == ["env:staging", "service:helpdesk", "workflow:support_qa",
                                                       "variant:candidate", "source:production"]
        assert s.attributes["langfuse.trace.metadata.graphtune_config_version"] == 4
        assert s.resource["service.name"] == "helpdesk"
    assert {s.attributes["langfuse.observation.type"] for s in spans.values()} == {"chain", "agent", "generation", "tool"}
    assert recorder.stats()["export_sent_spans"] == 5
    exporter.close()
    recorder.close()


def test_errors_carry_error_type_and_status(tmp_path, receiver, sender):
    exporter = open_exporter(fast_settings(receiver, langfuse=True, sender=sender))
    recorder = TrajectoryRecorder(f"jsonl:///{tmp_path}/traces", spill_dir=str(tmp_path / "spill"), exporter=exporter)
    run(build_graph(fail=True), recorder)
    recorder.flush()
    assert exporter.flush(60)
    spans = {s.name: s for s in receiver.spans}
    failed = spans["invoke_agent generate"]
    assert failed.status_code == 2 and failed.status_message == "generation failed"
    assert failed.attributes["error.type"] == "ValueError"
    assert failed.attributes["langfuse.observation.level"] == "ERROR"
    assert spans["invoke_workflow support_qa"].status_code == 2
    assert spans["invoke_agent retrieve"].status_code == 1
    exporter.close()
    recorder.close()


def test_node_io_puts_each_nodes_state_on_its_span(tmp_path, receiver, sender):
    assert otlp_settings_from_env({"GRAPHTUNE_OTLP_ENDPOINT": receiver.url, "GRAPHTUNE_OTLP_NODE_IO": "on"}).node_io
    assert not otlp_settings_from_env({"GRAPHTUNE_OTLP_ENDPOINT": receiver.url}).node_io
    exporter = open_exporter(fast_settings(receiver, node_io=True, sender=sender))
    recorder = TrajectoryRecorder(f"jsonl:///{tmp_path}/traces", spill_dir=str(tmp_path / "spill"), exporter=exporter)
    run(build_graph(), recorder)
    run(build_graph(fail=True), recorder, thread="failing")
    recorder.flush()
    assert exporter.flush(60)
    spans = {(s.attributes["session.id"], s.name): s for s in receiver.spans}
    retrieve = spans["thread-1", "invoke_agent retrieve"]
    assert retrieve.attributes["input.value"] == '{"question":"what is up?"}'
    assert retrieve.attributes["output.value"] == '{"answer":"found what is up?"}'
    assert spans["thread-1", "invoke_agent generate"].attributes["output.value"] == '{"answer":"an answer"}'
    failed = spans["failing", "invoke_agent generate"]
    assert failed.attributes["input.value"] and failed.status_code == 2 and failed.attributes["error.type"] == "ValueError"
    assert spans["thread-1", "invoke_workflow support_qa"].attributes["input.value"] == '{"question":"what is up?"}'
    exporter.close()
    recorder.close()


@pytest.mark.parametrize("limit, most", [({"max_batch_spans": 2}, 2), ({"max_batch_bytes": 1}, 1)])
def test_batches_are_split_at_the_span_and_byte_limits(tmp_path, receiver, limit, most, sender):
    exporter = open_exporter(fast_settings(receiver, **limit, sender=sender))  # a span over the byte limit still goes, alone
    recorder = TrajectoryRecorder(f"jsonl:///{tmp_path}/traces", spill_dir=str(tmp_path / "spill"), exporter=exporter)
    run(build_graph(), recorder)
    recorder.flush()
    assert exporter.flush(60)
    sizes = [len(r.spans) for r in receiver.requests]
    assert sum(sizes) == 5 and max(sizes) == most and exporter.stats()["sent_spans"] == 5
    exporter.close()
    recorder.close()


def test_events_that_cannot_be_encoded_are_skipped_and_counted():
    from graphtune.tracing.events import TrajectoryEvent
    from graphtune.tracing.otel_spans import SpanEncoder

    def end(trace_id: str, span_id: str) -> TrajectoryEvent:
        return TrajectoryEvent(kind=EventKind.NODE_END, time=1_700_000_000.0, trace_id=trace_id, span_id=span_id,
                               name="n", duration_ms=1.0, status="ok")

    encoder = SpanEncoder()
    spans = encoder.encode([end("ab" * 16, "cd" * 8), end("not hex", "cd" * 8), end("ab" * 8, "cd" * 8),
                            end("ab" * 16, "ef" * 8)])
    assert len(spans) == 2 and encoder.invalid == 2


def test_redaction_hook_and_sample_rate_apply_to_the_export(tmp_path, receiver, sender):
    exporter = open_exporter(fast_settings(receiver, sender=sender))
    recorder = TrajectoryRecorder(f"jsonl:///{tmp_path}/traces", spill_dir=str(tmp_path / "spill"), exporter=exporter,
                                  redact=lambda text: text.replace("secret", "[MASKED]"))
    run(build_graph(), recorder, question="my secret question")
    recorder.flush()
    assert exporter.flush(60)
    values = [v for s in receiver.spans for k, v in s.attributes.items() if k in ("input.value", "output.value")]
    assert values and not any("secret" in v for v in values)
    assert any("[MASKED]" in v for v in values)
    recorder.close()

    before = len(receiver.spans)
    sampled = TrajectoryRecorder(f"jsonl:///{tmp_path}/traces2", spill_dir=str(tmp_path / "spill"), exporter=exporter, sample_rate=0.0)
    for i in range(3):
        run(build_graph(), sampled, thread=f"t{i}")
    run(build_graph(fail=True), sampled, thread="failing")  # traces with an error are always kept
    sampled.flush()
    assert exporter.flush(60)
    kept = receiver.spans[before:]
    assert kept and {s.attributes["session.id"] for s in kept} == {"failing"}
    assert "langfuse.trace.name" not in kept[0].attributes  # a plain OTLP target gets no Langfuse attributes
    exporter.close()
    sampled.close()


def test_langfuse_keys_target_langfuses_endpoint_with_basic_auth(tmp_path, receiver, monkeypatch):
    monkeypatch.delenv("GRAPHTUNE_OTLP_ENDPOINT", raising=False)
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-test")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-test")
    monkeypatch.setenv("LANGFUSE_HOST", receiver.url)
    monkeypatch.setenv("GRAPHTUNE_ENV", "ci")
    settings = otlp_settings_from_env()
    assert settings.endpoint == f"{receiver.url}/api/public/otel/v1/traces" and settings.langfuse
    # every recorder created without an explicit exporter picks the export up from the environment
    recorder = TrajectoryRecorder(f"jsonl:///{tmp_path}/traces", spill_dir=str(tmp_path / "spill"))
    exporter = recorder.pipeline.exporter
    assert exporter is not None and exporter.settings.endpoint == settings.endpoint
    run(build_graph(), recorder)
    recorder.flush()
    assert exporter.flush(60)
    request = receiver.requests[0]
    assert request.path == "/api/public/otel/v1/traces"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"pk-lf-test:sk-lf-test").decode()
    assert request.headers["x-langfuse-ingestion-version"] == "4"
    assert request.headers["content-type"] == "application/x-protobuf"
    assert "env:ci" in request.spans[0].attributes["langfuse.trace.tags"]
    exporter.close()
    recorder.close()


def test_langfuse_base_url_wins_over_host_and_export_can_be_switched_off(monkeypatch):
    env = {"LANGFUSE_PUBLIC_KEY": "pk", "LANGFUSE_SECRET_KEY": "sk", "LANGFUSE_BASE_URL": "https://lf.example.com/",
           "LANGFUSE_HOST": "https://other.example.com"}
    assert otlp_settings_from_env(env).endpoint == "https://lf.example.com/api/public/otel/v1/traces"
    assert otlp_settings_from_env({**env, "GRAPHTUNE_OTLP_EXPORT": "off"}) is None
    assert otlp_settings_from_env({**env, "LANGFUSE_TRACING_ENABLED": "false"}) is None
    assert otlp_settings_from_env({}) is None


def test_missing_keys_skip_export_with_one_log_line(caplog, monkeypatch):
    monkeypatch.setattr(langfuse_settings, "_logged", set())
    env = {"LANGFUSE_PUBLIC_KEY": "pk-lf-only"}
    with caplog.at_level(logging.WARNING, logger="graphtune.langfuse"):
        assert otlp_settings_from_env(env) is None
        assert otlp_settings_from_env(env) is None
    lines = [r.getMessage() for r in caplog.records if r.name == "graphtune.langfuse"]
    assert lines == ["Langfuse off: LANGFUSE_SECRET_KEY is not set (both LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY are needed)"]


def test_generic_otlp_endpoint_and_headers_from_env():
    settings = otlp_settings_from_env({"GRAPHTUNE_OTLP_ENDPOINT": "http://collector:4318",
                                       "GRAPHTUNE_OTLP_HEADERS": "x-api-key=abc%3D%3D, x-team = tuning"})
    assert settings.endpoint == "http://collector:4318/v1/traces" and not settings.langfuse
    assert settings.headers == {"x-api-key": "abc==", "x-team": "tuning"}
    assert traces_url("http://phoenix:6006/v1/traces") == "http://phoenix:6006/v1/traces"
    with pytest.raises(ValueError, match="not key=value"):
        parse_headers("novalue")
    # an explicit endpoint at Langfuse's OTLP path still gets Basic auth from the keys
    langfuse = otlp_settings_from_env({"GRAPHTUNE_OTLP_ENDPOINT": "http://lf:3000/api/public/otel",
                                       "LANGFUSE_PUBLIC_KEY": "pk", "LANGFUSE_SECRET_KEY": "sk"})
    assert langfuse.langfuse and langfuse.headers["Authorization"].startswith("Basic ")


# -- bad endpoints: retried with backoff, then dropped with a count; the workflow never waits ------
@pytest.mark.parametrize("status", [401, 429, 500])
def test_failures_are_retried_with_backoff_then_delivered(tmp_path, receiver, status, sender):
    receiver.script(status, status)
    exporter = open_exporter(fast_settings(receiver, sender=sender))
    recorder = TrajectoryRecorder(f"jsonl:///{tmp_path}/traces", spill_dir=str(tmp_path / "spill"), exporter=exporter)
    run(build_graph(), recorder)
    recorder.flush()
    assert exporter.flush(60)
    stats = recorder.stats()
    assert stats["export_retries"] == 2 and stats["export_sent_spans"] == 5 and stats["export_dropped_spans"] == 0
    assert receiver.received == 3
    exporter.close()
    recorder.close()


@pytest.mark.parametrize("status", [401, 429, 500])
def test_failures_beyond_the_retries_drop_with_a_count(tmp_path, receiver, status, sender):
    receiver.script(status, status, status)
    exporter = open_exporter(fast_settings(receiver, sender=sender))
    recorder = TrajectoryRecorder(f"jsonl:///{tmp_path}/traces", spill_dir=str(tmp_path / "spill"), exporter=exporter)
    run(build_graph(), recorder)
    recorder.flush()
    assert exporter.flush(60)
    stats = recorder.stats()
    assert stats["export_dropped_spans"] == 5 and stats["export_failed_batches"] == 1 and stats["export_retries"] == 2
    assert stats["written"] >= 5  # the store got everything regardless
    # the next batch goes through: a failure is not sticky
    run(build_graph(), recorder, thread="later")
    recorder.flush()
    assert exporter.flush(60)
    assert recorder.stats()["export_sent_spans"] == 5
    exporter.close()
    recorder.close()


def test_a_hanging_endpoint_never_holds_up_the_workflow_or_the_store(tmp_path, receiver, sender):
    """The receiver holds the export request unanswered and the exporter would wait 120 s for its reply: a
    store write that waited on the export fails the flush below, a run that waited stalls the test."""
    receiver.hold()
    exporter = open_exporter(fast_settings(receiver, timeout_s=120.0, max_retries=0, flush_interval_s=0.01, sender=sender))
    recorder = TrajectoryRecorder(f"jsonl:///{tmp_path}/traces", spill_dir=str(tmp_path / "spill"), exporter=exporter)
    graph = build_graph()
    run(graph, recorder, thread="t0")
    assert recorder.flush(60)
    wait_until(lambda: receiver.received, what="the first export request reaching the held receiver")
    for i in range(1, 5):
        run(graph, recorder, thread=f"t{i}")
    assert recorder.flush(60)  # the store write does not wait for the export
    assert receiver.received >= 1 and receiver.answered == 0  # ... which is still stuck in its first request
    with open_trace_store(f"jsonl:///{tmp_path}/traces") as store:
        assert {e.thread_id for e in store.read(EventQuery())} == {f"t{i}" for i in range(5)}

    receiver.release()  # the endpoint answers: the held batch and everything queued behind it go through
    assert exporter.flush(60)
    stats = recorder.stats()
    assert stats["export_sent_spans"] == 25 and stats["export_dropped_spans"] == 0 and stats["export_retries"] == 0
    assert receiver.answered == receiver.received
    assert {s.attributes["session.id"] for s in receiver.spans} == {f"t{i}" for i in range(5)}
    exporter.close()
    recorder.close()


def test_a_request_that_times_out_is_retried_then_dropped_with_a_count(tmp_path, receiver, sender):
    receiver.hold()  # never answers while the exporter waits: each attempt ends in the client's timeout
    exporter = open_exporter(fast_settings(receiver, timeout_s=0.2, max_retries=1, sender=sender))
    recorder = TrajectoryRecorder(f"jsonl:///{tmp_path}/traces", spill_dir=str(tmp_path / "spill"), exporter=exporter)
    run(build_graph(), recorder)
    assert recorder.flush(60)
    assert exporter.flush(60)
    stats = recorder.stats()
    assert stats["export_dropped_spans"] == 5 and stats["export_failed_batches"] == 1 and stats["export_retries"] == 1
    assert stats["export_sent_spans"] == 0 and stats["written"] >= 5
    assert receiver.received == 2 and receiver.answered == 0
    exporter.close()
    recorder.close()


def test_a_full_export_queue_drops_and_counts(tmp_path, receiver, sender):
    receiver.hold()  # the sender is stuck in its first request while the workflow keeps submitting
    # room for one run's 8 events (so the first run reaches the receiver), not for the nine behind it
    exporter = open_exporter(fast_settings(receiver, max_queue=20, timeout_s=120.0, max_retries=0, sender=sender))
    recorder = TrajectoryRecorder(f"jsonl:///{tmp_path}/traces", spill_dir=str(tmp_path / "spill"), exporter=exporter,
                                  flush_interval=0.01)
    run(build_graph(), recorder, thread="t0")
    assert recorder.flush(60)
    wait_until(lambda: receiver.received, what="the first export request reaching the held receiver")
    for i in range(1, 10):
        run(build_graph(), recorder, thread=f"t{i}")
        assert recorder.flush(60)
    receiver.release()
    assert exporter.flush(60)
    stats = recorder.stats()
    assert stats["export_queue_dropped_events"] > 0 and stats["export_sent_spans"] > 0
    assert stats["dropped"] == 0  # the recorder itself lost nothing
    exporter.close()
    recorder.close()


def test_wire_encoding_decodes_with_opentelemetry_proto():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from graphtune.tracing import otlp_wire as wire
    from tests.tracing.otlp_receiver import value_of

    attrs = wire.span_attributes([("s", "héllo " * 40), ("b", True), ("f", False), ("i", -3), ("big", 2**40),
                                  ("d", 0.25), ("l", ["a", "b"]), ("none", None)]) + wire.string_attribute("long", "x" * 300)
    head = wire.span_head(bytes(range(16)), bytes(range(8)), bytes(range(1, 9)),
                          1_700_000_000_123_456_789, 1_700_000_001_000_000_000)
    encoded = wire.span(head=head, name="n" * 200, kind=3, attributes=attrs, status_code=2, status_message="boom")
    body = wire.export_request((("service.name", "svc"),), "graphtune", "1.0", [encoded] * 3)
    message = ExportTraceServiceRequest()
    message.ParseFromString(body)
    scope_spans = message.resource_spans[0].scope_spans[0]
    assert scope_spans.scope.name == "graphtune" and len(scope_spans.spans) == 3
    span = scope_spans.spans[2]
    assert span.name == "n" * 200 and span.kind == 3 and span.parent_span_id == bytes(range(1, 9))
    assert span.trace_id == bytes(range(16)) and span.span_id == bytes(range(8))
    assert span.start_time_unix_nano == 1_700_000_000_123_456_789 and span.end_time_unix_nano == 1_700_000_001_000_000_000
    assert span.status.code == 2 and span.status.message == "boom"
    decoded = {kv.key: value_of(kv.value) for kv in span.attributes}
    assert decoded == {"s": "héllo " * 40, "b": True, "f": False, "i": -3, "big": 2**40, "d": 0.25, "l": ["a", "b"],
                       "long": "x" * 300}
    assert message.resource_spans[0].resource.attributes[0].value.string_value == "svc"


def test_langfuses_own_handler_is_opt_in_and_never_gets_a_plain_user_id(tmp_path, monkeypatch):
    from graphtune.backends.langfuse_callback import langfuse_handler, langfuse_metadata, with_langfuse_callback

    monkeypatch.delenv("LANGFUSE_PUBLIC_KEY", raising=False)
    monkeypatch.delenv("LANGFUSE_SECRET_KEY", raising=False)
    recorder = TrajectoryRecorder(f"jsonl:///{tmp_path}/traces", spill_dir=str(tmp_path / "spill"), exporter=None)
    assert langfuse_handler() is None
    plain = with_langfuse_callback(build_graph(), "support_qa", recorder=recorder)
    assert plain.config["callbacks"] == [recorder]
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-test")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-test")
    monkeypatch.setenv("LANGFUSE_HOST", "http://127.0.0.1:9")
    both = with_langfuse_callback(build_graph(), "support_qa", recorder=recorder, variant="b")
    assert len(both.config["callbacks"]) == 2 and both.config["metadata"]["langfuse_trace_name"] == "support_qa"
    metadata = langfuse_metadata("support_qa", recorder=recorder, user_id="alice@example.com", thread_id="t1")
    assert metadata["langfuse_user_id"] == recorder.pipeline._hash_user("alice@example.com") != "alice@example.com"
    assert metadata["langfuse_session_id"] == "t1"
    recorder.close()
