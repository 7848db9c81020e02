"""The toy graph: lookup (a service with a timeout and retries), then answer."""

from __future__ import annotations

from typing import TypedDict

from langgraph.graph import END, START, StateGraph

from workflows import _sim

from . import logic


class State(TypedDict, total=False):
    id: str
    answer: str
    sim_ms: _sim.SimMs


def build_graph(config: dict):
    tool, style = config["tool"], config["answer"]

    async def lookup(state: State) -> dict:
        ms, ok = logic.lookup_attempts(state["id"], tool["timeout_ms"], tool["retries"])
        await _sim.wait(ms)
        if not ok:
            raise TimeoutError(f"lookup did not answer within {tool['timeout_ms']} ms")
        return {"sim_ms": ms}

    async def answer(state: State) -> dict:
        text, tokens, ms = logic.answer(state["id"], style["style"], style["max_tokens"])
        model = _sim.ScriptedChatModel(model_name="toy-model", respond=lambda _: _sim.Reply(text, 50, tokens, ms))
        reply = await model.ainvoke(state["id"])
        return {"answer": reply.content, "sim_ms": ms}

    graph = StateGraph(State)
    graph.add_node("lookup", lookup)
    graph.add_node("answer", answer)
    graph.add_edge(START, "lookup")
    graph.add_edge("lookup", "answer")
    graph.add_edge("answer", END)
    return graph.compile()
