"""The decide node: writes the decision and a progress message, and routes to the next step inside a graph."""

from __future__ import annotations

from langchain_core.messages import AIMessage
from langgraph.graph import END, START, StateGraph

from graphtune.graphs.context import ControllerContext
from graphtune.graphs.state import ControllerState
from graphtune.nodes.decide import decide_node, route_after_decide
from graphtune.tuning.decision import Decision
from graphtune.tuning.request import Budget
from tests.tuning.test_decision import baseline_scores, make_state, variant


def test_decide_node_writes_json_decision_and_a_message():
    base = baseline_scores()
    state = make_state([("c1", 1, variant(base, gain=0.45)), ("c2", 1, variant(base, loss=0.3, seed=2))], base=base)
    state["started_at"] = None  # no wall clock in play: the node uses time.time()
    update = decide_node(state, None)
    decision = Decision.model_validate(update["decision"])
    assert decision.best_candidate_id == "c1" and decision.next == "propose"
    assert update["decision"]["comparisons"][0]["candidate_id"] == "c1"  # plain JSON, checkpoint-ready
    [message] = update["messages"]
    assert isinstance(message, AIMessage) and message.content.startswith("**Round 1**")
    assert "| c1 |" in message.content and "| c2 |" in message.content and "Next: propose" in message.content


def test_route_after_decide_maps_propose_to_observe():
    assert route_after_decide({"decision": {"next": "propose"}}) == "observe"
    assert route_after_decide({"decision": {"next": "approve"}}) == "approve"
    assert route_after_decide({"decision": {"next": "finish"}}) == "finish"
    assert route_after_decide({}) == "finish"


def _graph():
    builder = StateGraph(ControllerState, context_schema=ControllerContext)
    builder.add_node("decide", decide_node)
    for name in ("observe", "approve", "finish"):
        builder.add_node(name, lambda state, name=name: {"messages": [AIMessage(content=f"reached {name}")]})
        builder.add_edge(name, END)
    builder.add_edge(START, "decide")
    builder.add_conditional_edges("decide", route_after_decide, ["observe", "approve", "finish"])
    return builder.compile()


def test_decide_routes_inside_a_graph():
    base = baseline_scores()
    graph = _graph()
    cases = {
        "observe": make_state([("c1", 1, variant(base, gain=0.45))], base=base),
        "approve": make_state([("c1", 1, variant(base, gain=0.45))], base=base, budget=Budget(candidates=1)),
        "finish": make_state([("c1", 1, variant(base, loss=0.3))], base=base, budget=Budget(candidates=1)),
    }
    for expected, state in cases.items():
        state["started_at"] = None
        result = graph.invoke(state, context=ControllerContext())
        assert result["messages"][-1].content == f"reached {expected}", expected
        assert result["decision"]["next"] == {"observe": "propose"}.get(expected, expected)
