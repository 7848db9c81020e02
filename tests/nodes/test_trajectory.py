"""TrajectoryNode: records a conversation's new messages and requested tool calls, once each,
with one trace per turn, across invocations, restarts and trimmed histories."""

from __future__ import annotations

import sqlite3

import pytest
from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

from graphtune import EventKind, EventQuery, TrajectoryNode, TrajectoryRecorder, TrajectoryState
from graphtune.nodes.trajectory import CURSOR_KEY, new_cursor, new_messages
from tests.fakes import ai, scripted


class TrackedState(MessagesState, TrajectoryState):
    pass


@tool
def lookup(city: str) -> str:
    """Weather for a city."""
    return f"sunny in {city}"




def weather_turn(city: str, call_id: str, tokens=(12, 6)):
    """The scripted model's replies for one turn: a tool call, then the final answer."""
    return [
        ai("", tool_calls=[{"name": "lookup", "args": {"city": city}, "id": call_id}], tokens=tokens),
        ai(f"It is sunny in {city}.", tokens=(20, 5)),
    ]


def agent_graph(model, trajectory, *, state=TrackedState, checkpointer=None, record_each_step=False):
    """agent -> tools -> agent ... -> trajectory -> END; or the trajectory node after every model step."""
    bound = model.bind_tools([lookup])

    def agent(s) -> dict:
        return {"messages": [bound.invoke(s["messages"])]}

    def route(s) -> str:
        return "tools" if s["messages"][-1].tool_calls else ("done" if record_each_step else "trajectory")

    builder = StateGraph(state)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode([lookup]))
    builder.add_node("trajectory", trajectory)
    builder.add_edge(START, "agent")
    if record_each_step:
        builder.add_edge("agent", "trajectory")
        builder.add_conditional_edges("trajectory", route, {"tools": "tools", "done": END})
    else:
        builder.add_conditional_edges("agent", route, ["tools", "trajectory"])
        builder.add_edge("trajectory", END)
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=checkpointer or InMemorySaver())


def message_events(store, **query):
    """What TrajectoryNode records: messages and requested tool calls (not the recorder's executions)."""
    return [
        e for e in store.read(EventQuery(**query))
        if e.kind is EventKind.MESSAGE or (e.kind is EventKind.TOOL_CALL and e.attributes.get("phase") == "requested")
    ]


def test_records_human_ai_tool_messages_and_requested_tool_calls(store, recorder):
    graph = agent_graph(scripted(*weather_turn("Paris", "call-1")), TrajectoryNode(recorder))
    cfg = {"configurable": {"thread_id": "t1"}, "metadata": {"graphtune_workflow": "weather", "graphtune_variant": "v2"}}
    graph.invoke({"messages": [HumanMessage("Weather in Paris?", id="h1")]}, config=cfg)
    assert recorder.flush(10)

    events = message_events(store)
    assert [(e.kind.value, e.name) for e in events] == [
        ("message", "gen_ai.user.message"),
        ("message", "gen_ai.assistant.message"),
        ("tool_call", "lookup"),
        ("message", "gen_ai.tool.message"),
        ("message", "gen_ai.assistant.message"),
    ]
    human, call_msg, call, tool_msg, final = events
    assert human.attributes["role"] == "human" and human.attributes["content"] == "Weather in Paris?"
    assert human.attributes["message_id"] == "h1"
    assert call_msg.attributes["tool_calls"][0]["name"] == "lookup"
    assert (call_msg.input_tokens, call_msg.output_tokens) == (12, 6)
    assert (final.input_tokens, final.output_tokens) == (20, 5)
    assert call.attributes["phase"] == "requested"
    assert call.attributes["gen_ai.tool.name"] == "lookup"
    assert call.attributes["gen_ai.tool.call.id"] == "call-1"
    assert call.attributes["gen_ai.tool.call.arguments"] == {"city": "Paris"}
    assert call.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool_msg.attributes["tool_call_id"] == "call-1"
    assert tool_msg.attributes["gen_ai.tool.name"] == "lookup"
    assert tool_msg.attributes["content"] == "sunny in Paris"
    assert final.attributes["content"] == "It is sunny in Paris."
    assert {(e.thread_id, e.workflow, e.variant, e.source, e.node) for e in events} == {
        ("t1", "weather", "v2", "production", "trajectory")
    }
    assert len({e.trace_id for e in events}) == 1
    assert len({e.event_id for e in events}) == 5


@pytest.mark.parametrize("state", [TrackedState, MessagesState], ids=["cursor-in-state", "cursor-in-memory"])
def test_second_invocation_records_only_new_messages(store, recorder, state):
    model = scripted(*weather_turn("Paris", "c1"), *weather_turn("Rome", "c2"))
    graph = agent_graph(model, TrajectoryNode(recorder), state=state)
    cfg = {"configurable": {"thread_id": "t2"}}
    graph.invoke({"messages": [HumanMessage("Paris?")]}, config=cfg)
    assert recorder.flush(10)
    written_after_first = recorder.stats()["written"]
    assert written_after_first == 5

    graph.invoke({"messages": [HumanMessage("And Rome?")]}, config=cfg)
    assert recorder.flush(10)
    assert recorder.stats()["written"] - written_after_first == 5  # only the second turn was submitted
    events = message_events(store)
    assert len(events) == 10
    contents = [e.attributes["content"] for e in events if e.kind is EventKind.MESSAGE]
    assert contents == ["Paris?", "", "sunny in Paris", "It is sunny in Paris.", "And Rome?", "", "sunny in Rome", "It is sunny in Rome."]
    values = graph.get_state(cfg).values
    if state is TrackedState:
        cursor = values[CURSOR_KEY]
        assert cursor["last_id"] == values["messages"][-1].id and cursor["count"] == 8
    else:
        assert CURSOR_KEY not in values


def test_turns_get_their_own_trace_and_tool_loops_share_one(store, recorder):
    model = scripted(*weather_turn("Paris", "c1"), *weather_turn("Rome", "c2"))
    # the trajectory node runs after every model step, so one turn is recorded in several steps
    graph = agent_graph(model, TrajectoryNode(recorder), record_each_step=True)
    cfg = {"configurable": {"thread_id": "t3"}}
    graph.invoke({"messages": [HumanMessage("Paris?")]}, config=cfg)
    graph.invoke({"messages": [HumanMessage("Rome?")]}, config=cfg)
    assert recorder.flush(10)
    events = message_events(store)
    assert len(events) == 10
    first, second = events[:5], events[5:]
    assert len({e.trace_id for e in first}) == 1
    assert len({e.trace_id for e in second}) == 1
    assert first[0].trace_id != second[0].trace_id
    assert first[0].attributes["content"] == "Paris?" and second[0].attributes["content"] == "Rome?"


def test_turn_left_open_by_a_tool_call_continues_its_trace():
    """A human message while the last AI message still waits for tool results does not start a turn."""
    from graphtune.nodes.trajectory import MessageTrajectory

    class Collect:
        def __init__(self):
            self.events = []

        def trace_id_of(self, run_id):
            return None

        def record(self, event, user_id=None):
            self.events.append(event)

    sink = Collect()
    traj = MessageTrajectory(sink)  # type: ignore[arg-type]
    cfg = {"configurable": {"thread_id": "open"}}
    msgs = [HumanMessage("a", id="1"), AIMessage("", id="2", tool_calls=[{"name": "t", "args": {}, "id": "x"}])]
    traj.record({"messages": msgs}, cfg)
    msgs += [ToolMessage("r", tool_call_id="x", id="3"), HumanMessage("also this", id="4"), AIMessage("done", id="5")]
    traj.record({"messages": msgs}, cfg)
    msgs += [HumanMessage("next", id="6")]
    traj.record({"messages": msgs}, cfg)
    by_id = {e.attributes["message_id"]: e.trace_id for e in sink.events if e.kind is EventKind.MESSAGE}
    assert by_id["1"] == by_id["2"] == by_id["3"] == by_id["4"] == by_id["5"]
    assert by_id["6"] != by_id["1"]


def test_recording_the_same_messages_twice_stores_them_once(store, recorder):
    checkpointer = InMemorySaver()
    graph = agent_graph(scripted(*weather_turn("Paris", "c1")), TrajectoryNode(recorder), state=MessagesState,
                        checkpointer=checkpointer)
    cfg = {"configurable": {"thread_id": "t4"}}
    graph.invoke({"messages": [HumanMessage("Paris?")]}, config=cfg)
    assert recorder.flush(10)
    before = {e.event_id for e in message_events(store)}
    assert len(before) == 5

    # a "restart": a new graph and a fresh node whose in-memory cursor is empty, so the whole
    # history is offered again together with the new turn
    graph = agent_graph(scripted(*weather_turn("Rome", "c2")), TrajectoryNode(recorder), state=MessagesState,
                        checkpointer=checkpointer)
    graph.invoke({"messages": [HumanMessage("Rome?")]}, config=cfg)
    assert recorder.flush(10)
    assert recorder.stats()["written"] == 5 + 10  # the old turn was submitted again ...
    after = message_events(store)
    assert len(after) == 10  # ... but stored once
    assert before < {e.event_id for e in after}
    assert [e.attributes["content"] for e in after if e.name == "gen_ai.user.message"] == ["Paris?", "Rome?"]


def test_cursor_survives_a_restart_with_a_sqlite_checkpointer(tmp_path, store):
    checkpoints = str(tmp_path / "checkpoints.db")
    cfg = {"configurable": {"thread_id": "t5"}}

    def boot(model):
        rec = TrajectoryRecorder(store, sample_rate=1.0, spill_dir=str(tmp_path / "spill"), flush_interval=0.02)
        conn = sqlite3.connect(checkpoints, check_same_thread=False)
        graph = agent_graph(model, TrajectoryNode(rec), checkpointer=SqliteSaver(conn))
        return rec, conn, graph

    rec, conn, graph = boot(scripted(*weather_turn("Paris", "c1")))
    graph.invoke({"messages": [HumanMessage("Paris?")]}, config=cfg)
    rec.close()
    conn.close()

    rec, conn, graph = boot(scripted(*weather_turn("Rome", "c2")))  # a new process, in effect
    try:
        graph.invoke({"messages": [HumanMessage("Rome?")]}, config=cfg)
        assert rec.flush(10)
        assert rec.stats()["written"] == 5  # only the new turn
        events = message_events(store, thread_id="t5")
        assert len(events) == 10
        assert [e.attributes["content"] for e in events if e.name == "gen_ai.user.message"] == ["Paris?", "Rome?"]
        assert len(graph.get_state(cfg).values["messages"]) == 8
    finally:
        rec.close()
        conn.close()


def _trimming_graph(trajectory, remove):
    """Each turn: drop the messages ``remove`` picks from the history, then answer."""
    counter = {"n": 0}

    def trim(state) -> dict:
        old = state["messages"][:-1]
        return {"messages": [RemoveMessage(id=m.id) for m in remove(old)]}

    def answer(state) -> dict:
        counter["n"] += 1
        return {"messages": [AIMessage(f"answer {counter['n']}", id=f"a{counter['n']}")]}

    builder = StateGraph(TrackedState)
    builder.add_node("trim", trim)
    builder.add_node("answer", answer)
    builder.add_node("trajectory", trajectory)
    builder.add_edge(START, "trim")
    builder.add_edge("trim", "answer")
    builder.add_edge("answer", "trajectory")
    builder.add_edge("trajectory", END)
    return builder.compile(checkpointer=InMemorySaver())


@pytest.mark.parametrize(
    "remove",
    [
        pytest.param(lambda old: old[:-1], id="keep-last-recorded"),
        pytest.param(lambda old: old, id="drop-everything-old"),
        pytest.param(lambda old: old[-1:], id="drop-only-last-recorded"),
    ],
)
def test_trimmed_history_records_only_new_messages(store, recorder, remove):
    graph = _trimming_graph(TrajectoryNode(recorder), remove)
    cfg = {"configurable": {"thread_id": "trim"}}
    for i in range(1, 4):
        graph.invoke({"messages": [HumanMessage(f"question {i}", id=f"h{i}")]}, config=cfg)
    assert recorder.flush(10)
    events = message_events(store)
    assert [e.attributes["message_id"] for e in events] == ["h1", "a1", "h2", "a2", "h3", "a3"]
    assert len({e.event_id for e in events}) == 6
    assert len({e.trace_id for e in events}) == 3  # one trace per question


def test_message_events_share_the_recorded_run_trace(store, recorder):
    graph = agent_graph(scripted(*weather_turn("Oslo", "c9"), *weather_turn("Bergen", "c10")), TrajectoryNode())
    cfg = {"configurable": {"thread_id": "t6"}, "callbacks": [recorder], "metadata": {"user_id": "user-plain-42"}}
    graph.invoke({"messages": [HumanMessage("Oslo? mail me at kari@example.no")]}, config=cfg)
    graph.invoke({"messages": [HumanMessage("Bergen?")]}, config=cfg)
    assert recorder.flush(10)
    runs = [e for e in store.read(EventQuery(kinds=(EventKind.RUN_START,)))]
    assert len(runs) == 2
    for run in runs:
        events = store.read(EventQuery(trace_id=run.trace_id))
        msgs = [e for e in events if e.kind is EventKind.MESSAGE]
        assert len(msgs) == 4
        node_span = next(e.span_id for e in events if e.kind is EventKind.NODE_START and e.node == "trajectory")
        assert {e.parent_span_id for e in msgs} == {node_span}
        assert {e.user_hash for e in events} == {run.user_hash}
    assert runs[0].user_hash and runs[0].user_hash != "user-plain-42"
    first_human = message_events(store, trace_id=runs[0].trace_id)[0]
    assert first_human.attributes["content"] == "Oslo? mail me at [EMAIL]"


def test_tool_error_messages_are_marked():
    from graphtune.nodes.trajectory import message_events as build

    msg = ToolMessage("boom", tool_call_id="c", name="lookup", status="error", id="t")
    (event,) = build(msg, "tool", "t", "a" * 32, None, "th", {})
    assert event.status == "error" and event.attributes["error.type"] == "ToolError"


def test_new_messages_diff():
    msgs = [HumanMessage("a", id="1"), AIMessage("b", id="2"), HumanMessage("c", id="3")]
    assert [i for i, _ in new_messages(msgs, new_cursor())] == [0, 1, 2]
    assert [i for i, _ in new_messages(msgs, {**new_cursor(), "last_id": "2", "count": 2})] == [2]
    assert new_messages(msgs, {**new_cursor(), "last_id": "3", "count": 3}) == []
    # the last recorded message was removed: every message is offered again (event ids dedupe them)
    assert [i for i, _ in new_messages(msgs, {**new_cursor(), "last_id": "gone", "count": 3})] == [0, 1, 2]
    # plain dict messages without ids get stable stand-in ids
    plain = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    from graphtune.nodes.trajectory import message_id

    assert message_id(plain[0], 0) == message_id(dict(plain[0]), 0) != message_id(plain[1], 1)
    assert [i for i, _ in new_messages(plain, {**new_cursor(), "last_id": message_id(plain[0], 0), "count": 1})] == [1]


def test_recording_failure_never_breaks_the_graph(recorder):
    class Exploding(dict):
        def get(self, *a, **k):
            raise RuntimeError("state access failed")

    node = TrajectoryNode(recorder)
    assert node(Exploding(), {"configurable": {"thread_id": "x"}}) == {}
