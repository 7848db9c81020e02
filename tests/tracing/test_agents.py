"""Recording prebuilt agents: LangChain v1 ``create_agent`` with ``TrajectoryMiddleware`` and
LangGraph's ``create_react_agent`` with ``trajectory_post_model_hook``, driven by a scripted model."""

from __future__ import annotations

import warnings

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from graphtune import EventKind, EventQuery, TrajectoryRecorder
from graphtune.tracing.agents import TrajectoryMiddleware, trajectory_post_model_hook
from tests.fakes import ai, scripted


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@tool(return_direct=True)
def lookup_order(order_id: str) -> str:
    """Look up an order; its answer goes straight to the user."""
    return f"order {order_id} ships tomorrow"




def turn(a: int, b: int, call_id: str):
    return [
        ai("", tool_calls=[{"name": "multiply", "args": {"a": a, "b": b}, "id": call_id}], tokens=(30, 9)),
        ai(f"The answer is {a * b}.", tokens=(45, 6)),
    ]


def recorded(store, **query):
    """Message events and requested tool calls: what the hooks record."""
    return [
        e for e in store.read(EventQuery(**query))
        if e.kind is EventKind.MESSAGE or (e.kind is EventKind.TOOL_CALL and e.attributes.get("phase") == "requested")
    ]


def assert_one_turn(events, a, b, call_id):
    assert [(e.kind.value, e.name) for e in events] == [
        ("message", "gen_ai.user.message"),
        ("message", "gen_ai.assistant.message"),
        ("tool_call", "multiply"),
        ("message", "gen_ai.tool.message"),
        ("message", "gen_ai.assistant.message"),
    ]
    human, request, call, result, answer = events
    assert human.attributes["content"] == f"What is {a} times {b}?"
    assert request.attributes["tool_calls"][0]["id"] == call_id
    assert (request.input_tokens, request.output_tokens) == (30, 9)
    assert call.attributes["gen_ai.tool.call.id"] == call_id
    assert call.attributes["gen_ai.tool.call.arguments"] == {"a": a, "b": b}
    assert result.attributes["tool_call_id"] == call_id and result.attributes["content"] == str(a * b)
    assert answer.attributes["content"] == f"The answer is {a * b}."
    assert (answer.input_tokens, answer.output_tokens) == (45, 6)
    assert len({e.trace_id for e in events}) == 1


def test_create_agent_with_trajectory_middleware(store, recorder):
    agent = create_agent(
        model=scripted(*turn(6, 7, "call-1"), *turn(3, 4, "call-2")),
        tools=[multiply],
        middleware=[TrajectoryMiddleware(recorder)],
        checkpointer=InMemorySaver(),
    )
    cfg = {"configurable": {"thread_id": "agent-1"}, "metadata": {"graphtune_workflow": "calc"}}
    out = agent.invoke({"messages": [HumanMessage("What is 6 times 7?")]}, config=cfg)
    assert out["messages"][-1].content == "The answer is 42."
    assert out["graphtune_trajectory"]["last_id"] == out["messages"][-1].id  # the cursor lives in agent state
    assert recorder.flush(10)
    first = recorded(store)
    assert_one_turn(first, 6, 7, "call-1")
    assert {(e.thread_id, e.workflow) for e in first} == {("agent-1", "calc")}

    agent.invoke({"messages": [HumanMessage("What is 3 times 4?")]}, config=cfg)
    assert recorder.flush(10)
    events = recorded(store)
    assert len(events) == 10  # nothing of the first turn recorded twice
    assert_one_turn(events[5:], 3, 4, "call-2")
    assert events[5].trace_id != events[0].trace_id  # a new turn, a new trace


def test_create_agent_records_tool_results_after_the_last_model_call(store, recorder):
    agent = create_agent(
        model=scripted(ai("", tool_calls=[{"name": "lookup_order", "args": {"order_id": "A17"}, "id": "call-o"}])),
        tools=[lookup_order],
        middleware=[TrajectoryMiddleware(recorder)],
    )
    out = agent.invoke({"messages": [HumanMessage("Where is order A17?")]}, config={"configurable": {"thread_id": "o1"}})
    assert out["messages"][-1].content == "order A17 ships tomorrow"  # return_direct: no model call after the tool
    assert recorder.flush(10)
    events = recorded(store)
    assert [e.name for e in events] == ["gen_ai.user.message", "gen_ai.assistant.message", "lookup_order", "gen_ai.tool.message"]
    assert events[-1].attributes["content"] == "order A17 ships tomorrow"


def test_create_agent_traced_by_the_recorder_shares_the_run_trace(store, recorder):
    agent = create_agent(model=scripted(*turn(2, 5, "call-t")), tools=[multiply], middleware=[TrajectoryMiddleware(recorder)])
    agent.invoke({"messages": [HumanMessage("What is 2 times 5?")]},
                 config={"callbacks": [recorder], "configurable": {"thread_id": "traced"}})
    assert recorder.flush(10)
    (run,) = store.read(EventQuery(kinds=(EventKind.RUN_START,)))
    events = recorded(store)
    assert_one_turn(events, 2, 5, "call-t")
    assert {e.trace_id for e in events} == {run.trace_id}
    executed = [e for e in store.read(EventQuery(kinds=(EventKind.TOOL_CALL,))) if e.attributes["phase"] == "executed"]
    assert len(executed) == 1 and executed[0].trace_id == run.trace_id
    usage = store.read(EventQuery(kinds=(EventKind.LLM_USAGE,)))
    assert [(e.input_tokens, e.output_tokens) for e in usage] == [(30, 9), (45, 6)]


def _react_agent(model, recorder, **kw):
    from langgraph.prebuilt import create_react_agent

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from langgraph.warnings import LangGraphDeprecatedSinceV10

            warnings.simplefilter("ignore", LangGraphDeprecatedSinceV10)
        except ImportError:  # pragma: no cover - older langgraph
            pass
        return create_react_agent(model, [multiply], post_model_hook=trajectory_post_model_hook(recorder), **kw)


def test_create_react_agent_with_post_model_hook(store, recorder):
    agent = _react_agent(scripted(*turn(6, 7, "call-r1"), *turn(8, 9, "call-r2")), recorder, checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "react-1"}}
    out = agent.invoke({"messages": [HumanMessage("What is 6 times 7?")]}, config=cfg)
    assert out["messages"][-1].content == "The answer is 42."
    assert recorder.flush(10)
    assert_one_turn(recorded(store), 6, 7, "call-r1")

    agent.invoke({"messages": [HumanMessage("What is 8 times 9?")]}, config=cfg)
    assert recorder.flush(10)
    events = recorded(store)
    assert len(events) == 10
    assert_one_turn(events[5:], 8, 9, "call-r2")
    assert {e.thread_id for e in events} == {"react-1"}
