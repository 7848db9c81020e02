"""TrajectoryRecorder on real LangGraph graphs: the span tree, run tags, errors, interrupts, LLM
usage, tool executions, custom events, async runs and the ``graphtune.trace`` one-liner."""

from __future__ import annotations

import asyncio
import operator
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, TypedDict

import pytest
from langchain_core.callbacks import adispatch_custom_event, dispatch_custom_event
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import Command, interrupt

import graphtune
from graphtune import EventKind, EventQuery, TrajectoryRecorder
from tests.fakes import ai, scripted

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


class S(TypedDict):
    x: int


class Fan(TypedDict):
    x: int
    seen: Annotated[list[str], operator.add]




def events_of(store, recorder, **query):
    assert recorder.flush(10), "the writer did not finish in time"
    return store.read(EventQuery(**query))


def kinds(events):
    return [(e.kind.value, e.name) for e in events]


def inc(state: S) -> dict:
    return {"x": state["x"] + 1}


def chain(n: int, name: str = "wf"):
    builder = StateGraph(S)
    prev = START
    for i in range(n):
        builder.add_node(f"n{i}", inc)
        builder.add_edge(prev, f"n{i}")
        prev = f"n{i}"
    return builder.compile(name=name)


# -- the span tree --------------------------------------------------------------------------------


def test_run_and_node_events_form_a_tree_under_the_root_span(store, recorder):
    graph = chain(3)
    assert graph.invoke({"x": 0}, config={"callbacks": [recorder]}) == {"x": 3}
    events = events_of(store, recorder)

    assert kinds(events) == [
        ("run_start", "wf"),
        ("node_start", "n0"), ("node_end", "n0"),
        ("node_start", "n1"), ("node_end", "n1"),
        ("node_start", "n2"), ("node_end", "n2"),
        ("run_end", "wf"),
    ]
    (trace_id,) = {e.trace_id for e in events}
    assert HEX32.match(trace_id)
    for e in events:
        assert HEX16.match(e.span_id)
        assert HEX32.match(e.event_id)
    run_start, run_end = events[0], events[-1]
    assert run_start.span_id == run_end.span_id
    assert run_start.parent_span_id is None
    node_events = events[1:-1]
    assert {e.parent_span_id for e in node_events} == {run_start.span_id}
    # each node run has its own span, shared by its start and end events
    spans = {}
    for e in node_events:
        spans.setdefault(e.node, set()).add(e.span_id)
    assert all(len(s) == 1 for s in spans.values())
    assert len({next(iter(s)) for s in spans.values()}) == 3
    assert run_start.span_id not in {next(iter(s)) for s in spans.values()}

    assert run_end.status == "ok" and run_end.duration_ms >= 0
    assert all(e.status == "ok" and e.duration_ms >= 0 for e in events if e.kind is EventKind.NODE_END)
    assert run_start.attributes == {"input": {"x": 0}}
    assert run_end.attributes == {"output": {"x": 3}}
    n1_end = next(e for e in events if e.kind is EventKind.NODE_END and e.node == "n1")
    assert n1_end.attributes == {"output": {"x": 2}}


def test_subgraph_nodes_are_children_of_the_subgraph_node_span(store, recorder):
    inner_builder = StateGraph(S)
    inner_builder.add_node("inner_a", inc)
    inner_builder.add_node("inner_b", inc)
    inner_builder.add_edge(START, "inner_a")
    inner_builder.add_edge("inner_a", "inner_b")
    inner = inner_builder.compile()

    def calls_subgraph(state: S) -> dict:  # a subgraph invoked from inside a node function
        return inner.invoke(state)

    builder = StateGraph(S)
    builder.add_node("first", inc)
    builder.add_node("sub", inner)  # a compiled subgraph as a node
    builder.add_node("caller", calls_subgraph)
    builder.add_edge(START, "first")
    builder.add_edge("first", "sub")
    builder.add_edge("sub", "caller")
    graph = builder.compile(name="outer")

    assert graph.invoke({"x": 0}, config={"callbacks": [recorder]}) == {"x": 5}
    events = events_of(store, recorder)
    assert len({e.trace_id for e in events}) == 1
    root = next(e for e in events if e.kind is EventKind.RUN_START)
    starts = [e for e in events if e.kind is EventKind.NODE_START]
    assert [e.name for e in starts] == ["first", "sub", "inner_a", "inner_b", "caller", "inner_a", "inner_b"]
    by_name = {}
    for e in starts:
        by_name.setdefault(e.name, []).append(e)
    for top in ("first", "sub", "caller"):
        assert by_name[top][0].parent_span_id == root.span_id
    sub_span, caller_span = by_name["sub"][0].span_id, by_name["caller"][0].span_id
    assert [e.parent_span_id for e in by_name["inner_a"]] == [sub_span, caller_span]
    assert [e.parent_span_id for e in by_name["inner_b"]] == [sub_span, caller_span]
    # every parent span is a recorded span of the same trace: the events form one tree
    recorded = {e.span_id for e in events}
    assert all(e.parent_span_id in recorded for e in events if e is not root and e.kind is not EventKind.RUN_END)
    # exactly one run: the nested graph is not a second root
    assert sum(e.kind is EventKind.RUN_START for e in events) == 1


def test_parallel_branches_each_get_their_own_span(store, recorder):
    def branch(name):
        return lambda state: {"seen": [name]}

    builder = StateGraph(Fan)
    for name in ("a", "b", "c"):
        builder.add_node(name, branch(name))
        builder.add_edge(START, name)
    builder.add_node("join", lambda state: {"x": len(state["seen"])})
    builder.add_edge(["a", "b", "c"], "join")
    graph = builder.compile()
    assert graph.invoke({"x": 0, "seen": []}, config={"callbacks": [recorder]})["x"] == 3
    events = events_of(store, recorder)
    root = events[0]
    ends = [e for e in events if e.kind is EventKind.NODE_END]
    assert sorted(e.node for e in ends) == ["a", "b", "c", "join"]
    assert {e.parent_span_id for e in ends} == {root.span_id}
    assert len({e.span_id for e in ends}) == 4


# -- run tags and ids -------------------------------------------------------------------------------


def test_run_tags_come_from_metadata_and_thread_id_from_configurable(store, recorder):
    graph = chain(2)
    config = {
        "callbacks": [recorder],
        "metadata": {
            "graphtune_workflow": "support_qa", "graphtune_config_version": 7,
            "graphtune_variant": "candidate", "graphtune_source": "eval",
        },
        "configurable": {"thread_id": "thread-42"},
    }
    graph.invoke({"x": 0}, config=config)
    events = events_of(store, recorder)
    assert len(events) == 6
    for e in events:
        assert (e.workflow, e.config_version, e.variant, e.source, e.thread_id) == (
            "support_qa", 7, "candidate", "eval", "thread-42"
        )


def test_untagged_run_defaults_to_production_and_the_graph_name(store, recorder):
    chain(1, name="my_graph").invoke({"x": 0}, config={"callbacks": [recorder]})
    events = events_of(store, recorder)
    assert {(e.workflow, e.source, e.thread_id, e.config_version, e.variant) for e in events} == {
        ("my_graph", "production", None, None, None)
    }


def test_config_run_id_becomes_the_trace_id(store, recorder):
    run_id = uuid.uuid4()
    chain(2).invoke({"x": 0}, config={"callbacks": [recorder], "run_id": run_id})
    events = events_of(store, recorder)
    assert {e.trace_id for e in events} == {run_id.hex}
    assert events[0].span_id == run_id.hex[16:]


def test_each_run_gets_its_own_trace(store, recorder):
    graph = chain(2)
    for i in range(3):
        graph.invoke({"x": i}, config={"callbacks": [recorder]})
    events = events_of(store, recorder)
    traces = {}
    for e in events:
        traces.setdefault(e.trace_id, []).append(e.kind.value)
    assert len(traces) == 3
    assert all(v.count("run_start") == 1 and v.count("run_end") == 1 and len(v) == 6 for v in traces.values())


def test_concurrent_runs_from_many_threads_are_recorded_completely(store, recorder):
    graph = chain(4)

    def run(i):
        return graph.invoke({"x": i}, config={"callbacks": [recorder], "configurable": {"thread_id": f"t{i}"}})

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, range(40)))
    assert [r["x"] for r in results] == [i + 4 for i in range(40)]
    events = events_of(store, recorder)
    assert len(events) == 40 * (2 + 2 * 4)
    by_trace = {}
    for e in events:
        by_trace.setdefault(e.trace_id, []).append(e)
    assert len(by_trace) == 40
    for trace_events in by_trace.values():
        assert len({e.thread_id for e in trace_events}) == 1
        root = next(e for e in trace_events if e.kind is EventKind.RUN_START)
        assert all(e.parent_span_id == root.span_id for e in trace_events if e.node)
    assert recorder.stats()["dropped"] == 0


# -- failures and interrupts ---------------------------------------------------------------------------


class Boom(RuntimeError):
    pass


def test_failing_node_records_node_error_and_the_exception_propagates(store, recorder):
    def explode(state):
        raise Boom("the node failed")

    builder = StateGraph(S)
    builder.add_node("ok", inc)
    builder.add_node("explode", explode)
    builder.add_edge(START, "ok")
    builder.add_edge("ok", "explode")
    graph = builder.compile(name="fails")

    with pytest.raises(Boom, match="the node failed"):
        graph.invoke({"x": 0}, config={"callbacks": [recorder]})
    events = events_of(store, recorder)
    assert kinds(events) == [
        ("run_start", "fails"), ("node_start", "ok"), ("node_end", "ok"),
        ("node_start", "explode"), ("node_error", "explode"), ("run_end", "fails"),
    ]
    error = events[4]
    assert error.status == "error"
    assert error.attributes["error.type"] == f"{__name__}.Boom"
    assert "the node failed" in error.attributes["error.message"]
    assert error.parent_span_id == events[0].span_id
    assert events[-1].status == "error"
    assert events[-1].attributes["error.type"] == f"{__name__}.Boom"


def test_interrupt_is_recorded_as_interrupted_not_error(store, recorder):
    def ask(state: S) -> dict:
        answer = interrupt("how much?")
        return {"x": answer}

    builder = StateGraph(S)
    builder.add_node("prep", inc)
    builder.add_node("ask", ask)
    builder.add_edge(START, "prep")
    builder.add_edge("prep", "ask")
    graph = builder.compile(checkpointer=InMemorySaver())
    config = {"callbacks": [recorder], "configurable": {"thread_id": "approval-1"}}

    first = graph.invoke({"x": 0}, config=config)
    assert first["__interrupt__"][0].value == "how much?"
    second = graph.invoke(Command(resume=41), config=config)
    assert second == {"x": 41}

    events = events_of(store, recorder)
    assert not [e for e in events if e.status == "error" or e.kind is EventKind.NODE_ERROR]
    asks = [e for e in events if e.kind is EventKind.NODE_END and e.node == "ask"]
    assert [e.status for e in asks] == ["interrupted", "ok"]
    assert len({e.trace_id for e in asks}) == 2  # the resume is a run of its own
    run_ends = [e for e in events if e.kind is EventKind.RUN_END]
    assert len(run_ends) == 2
    assert run_ends[0].status == "interrupted"  # parked at the interrupt, not finished
    assert run_ends[1].status == "ok"
    assert {e.thread_id for e in events} == {"approval-1"}


# -- async -------------------------------------------------------------------------------------------


def test_ainvoke_records_the_same_events(store, recorder):
    async def ainc(state: S) -> dict:
        await adispatch_custom_event("progress", {"at": state["x"]})
        return {"x": state["x"] + 1}

    builder = StateGraph(S)
    builder.add_node("a", ainc)
    builder.add_node("b", ainc)
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    graph = builder.compile(name="async_wf")

    result = asyncio.run(graph.ainvoke({"x": 0}, config={"callbacks": [recorder], "configurable": {"thread_id": "at"}}))
    assert result == {"x": 2}
    events = events_of(store, recorder)
    assert kinds(events) == [
        ("run_start", "async_wf"),
        ("node_start", "a"), ("custom", "progress"), ("node_end", "a"),
        ("node_start", "b"), ("custom", "progress"), ("node_end", "b"),
        ("run_end", "async_wf"),
    ]
    assert len({e.trace_id for e in events}) == 1
    assert {e.thread_id for e in events} == {"at"}
    node_spans = {e.node: e.span_id for e in events if e.kind is EventKind.NODE_START}
    customs = [e for e in events if e.kind is EventKind.CUSTOM]
    assert [(c.node, c.parent_span_id, c.attributes["data"]) for c in customs] == [
        ("a", node_spans["a"], {"at": 0}), ("b", node_spans["b"], {"at": 1})
    ]


def test_ainvoke_failure_propagates_and_is_recorded(store, recorder):
    async def explode(state):
        raise Boom("async failure")

    builder = StateGraph(S)
    builder.add_node("explode", explode)
    builder.add_edge(START, "explode")
    graph = builder.compile()
    with pytest.raises(Boom):
        asyncio.run(graph.ainvoke({"x": 0}, config={"callbacks": [recorder]}))
    events = events_of(store, recorder)
    assert [e.kind for e in events][-2:] == [EventKind.NODE_ERROR, EventKind.RUN_END]
    assert events[-1].status == "error"


# -- the one-liner ----------------------------------------------------------------------------------------


def test_trace_one_liner_attaches_recorder_and_tags(store, recorder):
    traced = graphtune.trace(chain(2), workflow="support_qa", recorder=recorder, config_version=3, variant="b", source="eval")
    assert traced.invoke({"x": 1}) == {"x": 3}
    assert traced.invoke({"x": 1}, config={"configurable": {"thread_id": "t9"}}) == {"x": 3}
    events = events_of(store, recorder)
    assert len(events) == 12
    assert {(e.workflow, e.config_version, e.variant, e.source) for e in events} == {("support_qa", 3, "b", "eval")}
    assert {e.thread_id for e in events} == {None, "t9"}
    assert len({e.trace_id for e in events}) == 2


def test_trace_one_liner_defaults_workflow_to_graph_name(store, recorder):
    traced = graphtune.trace(chain(1, name="named_graph"), recorder=recorder)
    traced.invoke({"x": 0})
    events = events_of(store, recorder)
    assert {e.workflow for e in events} == {"named_graph"}
    assert {e.source for e in events} == {"production"}


# -- LLM usage, tools, custom events ----------------------------------------------------------------


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def broken(a: int) -> int:
    """A tool that always fails."""
    raise ValueError("tool exploded")


def agent_graph(model, tools, **tool_node_kw):
    bound = model.bind_tools(tools)

    def agent(state: MessagesState) -> dict:
        return {"messages": [bound.invoke(state["messages"])]}

    def route(state: MessagesState) -> str:
        return "tools" if state["messages"][-1].tool_calls else END

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(tools, **tool_node_kw))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", route, ["tools", END])
    builder.add_edge("tools", "agent")
    return builder.compile(name="agent_wf")


def test_llm_usage_and_tool_executions_are_recorded_with_node_attribution(store, recorder):
    model = scripted(
        ai("", tool_calls=[{"name": "add", "args": {"a": 2, "b": 3}, "id": "call-1"}], tokens=(11, 7)),
        ai("It is 5.", tokens=(23, 4)),
    )
    graph = agent_graph(model, [add])
    out = graph.invoke({"messages": [("user", "2+3?")]}, config={"callbacks": [recorder]})
    assert out["messages"][-1].content == "It is 5."
    events = events_of(store, recorder)
    assert len({e.trace_id for e in events}) == 1

    usage = [e for e in events if e.kind is EventKind.LLM_USAGE]
    assert [(e.input_tokens, e.output_tokens, e.node, e.status) for e in usage] == [(11, 7, "agent", "ok"), (23, 4, "agent", "ok")]
    assert all(e.attributes["gen_ai.request.model"] == "scripted-model" for e in usage)
    agent_spans = [e.span_id for e in events if e.kind is EventKind.NODE_START and e.node == "agent"]
    assert [e.parent_span_id for e in usage] == agent_spans

    (call,) = [e for e in events if e.kind is EventKind.TOOL_CALL]
    assert call.name == "add" and call.node == "tools" and call.status == "ok"
    assert call.attributes["phase"] == "executed"
    assert call.attributes["gen_ai.tool.name"] == "add"
    assert call.attributes["gen_ai.tool.call.id"] == "call-1"
    assert call.attributes["input"] == {"a": 2, "b": 3}
    assert call.attributes["output"] == "5"
    tools_span = next(e.span_id for e in events if e.kind is EventKind.NODE_START and e.node == "tools")
    assert call.parent_span_id == tools_span
    assert call.duration_ms is not None and call.duration_ms >= 0


def test_failing_tool_is_recorded_as_an_error_tool_call(store, recorder):
    model = scripted(
        ai("", tool_calls=[{"name": "broken", "args": {"a": 1}, "id": "call-x"}]),
        ai("sorry"),
    )
    graph = agent_graph(model, [broken], handle_tool_errors=True)
    graph.invoke({"messages": [("user", "go")]}, config={"callbacks": [recorder]})
    events = events_of(store, recorder)
    (call,) = [e for e in events if e.kind is EventKind.TOOL_CALL]
    assert call.status == "error"
    assert call.attributes["phase"] == "executed"
    assert call.attributes["error.type"] == "ValueError"
    assert call.attributes["error.message"] == "tool exploded"
    assert call.attributes["gen_ai.tool.call.id"] == "call-x"
    assert call.node == "tools"


def test_custom_events_are_recorded_with_their_payload(store, recorder):
    def step(state: S) -> dict:
        dispatch_custom_event("retrieval_done", {"docs": 3, "query": "refund policy"})
        return {"x": state["x"] + 1}

    builder = StateGraph(S)
    builder.add_node("retrieve", step)
    builder.add_edge(START, "retrieve")
    graph = builder.compile()
    graph.invoke({"x": 0}, config={"callbacks": [recorder], "metadata": {"graphtune_workflow": "rag"}})
    events = events_of(store, recorder)
    (custom,) = [e for e in events if e.kind is EventKind.CUSTOM]
    assert custom.name == "retrieval_done"
    assert custom.attributes["data"] == {"docs": 3, "query": "refund policy"}
    assert custom.node == "retrieve" and custom.workflow == "rag"
    assert custom.trace_id == events[0].trace_id
    node_span = next(e.span_id for e in events if e.kind is EventKind.NODE_START)
    assert custom.parent_span_id == node_span
    assert HEX16.match(custom.span_id) and custom.span_id != node_span


def test_feedback_is_recorded_against_a_trace(store, recorder):
    run_id = uuid.uuid4()
    chain(1).invoke({"x": 0}, config={"callbacks": [recorder], "run_id": run_id})
    recorder.feedback(run_id.hex, thumbs_up=False, comment="wrong answer", workflow="wf", user_id="u-1")
    recorder.feedback(run_id.hex, score=0.75, workflow="wf")
    with pytest.raises(ValueError):
        recorder.feedback(run_id.hex, score=1.5)
    with pytest.raises(ValueError):
        recorder.feedback(run_id.hex)
    events = events_of(store, recorder, kinds=(EventKind.FEEDBACK,))
    assert sorted(e.score for e in events) == [0.0, 0.75]
    assert {e.trace_id for e in events} == {run_id.hex}
    thumbs = next(e for e in events if e.score == 0.0)
    assert thumbs.user_hash and thumbs.user_hash != "u-1"
