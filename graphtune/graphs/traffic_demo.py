"""A small help-desk workflow used by ``graphtune demo`` to produce realistic traces offline.

router -> retrieve -> answer -> (order_lookup tool for order questions) -> trajectory. Latencies
come from a seeded random generator; the order service is slow, times out now and then (a node error) and
sometimes answers with an error (a failed tool result), so the
recorded traffic has a real hot spot to find.
"""

from __future__ import annotations

import random
import time
import uuid

from langchain_core.messages import AIMessage, ToolMessage
from langgraph.graph import END, START, MessagesState, StateGraph

from graphtune.nodes.trajectory import TrajectoryNode, TrajectoryState
from graphtune.tracing.recorder import TrajectoryRecorder

QUESTIONS = [
    "How do I reset my password?",
    "Where is my order 4417?",
    "Can I change the e-mail address on my account?",
    "What is the status of order 9120?",
    "How do refunds work?",
    "My order 5023 has not arrived yet",
]


class DemoState(MessagesState, TrajectoryState):
    intent: str
    context: str


def build_traffic_demo(seed: int = 7, recorder: TrajectoryRecorder | None = None):
    rng = random.Random(seed)

    def router(state: DemoState) -> dict:
        time.sleep(rng.uniform(0.0005, 0.0015))
        text = str(state["messages"][-1].content).lower()
        return {"intent": "order" if "order" in text else "faq"}

    def retrieve(state: DemoState) -> dict:
        time.sleep(rng.uniform(0.003, 0.006))
        return {"context": "help-center articles about " + state["intent"]}

    def answer(state: DemoState) -> dict:
        time.sleep(rng.uniform(0.004, 0.009))
        if state["intent"] == "order":
            call = {"name": "order_lookup", "args": {"question": str(state["messages"][-1].content)}, "id": f"call_{uuid.uuid4().hex[:8]}"}
            return {"messages": [AIMessage("", tool_calls=[call])]}
        return {"messages": [AIMessage("Here is what the help center says: " + state["context"])]}

    def order_lookup(state: DemoState) -> dict:
        call = state["messages"][-1].tool_calls[0]
        time.sleep(rng.uniform(0.015, 0.060))  # the slow external order service
        roll = rng.random()
        if roll < 0.1:
            raise TimeoutError("order service did not answer within 60 ms")
        if roll < 0.25:
            return {"messages": [ToolMessage("order service timed out", tool_call_id=call["id"], name="order_lookup", status="error"),
                                 AIMessage("Sorry, I could not look up your order right now.")]}
        return {"messages": [ToolMessage("shipped, arriving Tuesday", tool_call_id=call["id"], name="order_lookup"),
                             AIMessage("Your order has shipped and arrives Tuesday.")]}

    def after_answer(state: DemoState) -> str:
        last = state["messages"][-1]
        return "order_lookup" if isinstance(last, AIMessage) and last.tool_calls else "trajectory"

    graph = StateGraph(DemoState)
    graph.add_node("router", router)
    graph.add_node("retrieve", retrieve)
    graph.add_node("answer", answer)
    graph.add_node("order_lookup", order_lookup)
    graph.add_node("trajectory", TrajectoryNode(recorder))
    graph.add_edge(START, "router")
    graph.add_edge("router", "retrieve")
    graph.add_edge("retrieve", "answer")
    graph.add_conditional_edges("answer", after_answer, ["order_lookup", "trajectory"])
    graph.add_edge("order_lookup", "trajectory")
    graph.add_edge("trajectory", END)
    return graph.compile(name="helpdesk")


def helpdesk_graph():
    """Factory named in langgraph.json: compiled without a checkpointer (the server brings its own)."""
    return build_traffic_demo()
