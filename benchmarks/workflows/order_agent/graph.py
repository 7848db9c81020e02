"""The order agent as a LangGraph loop: ``agent`` -> ``tools`` -> ``agent`` ... -> answer (or ``escalate``).

The nodes only carry state and wait: every decision comes from ``logic`` (shared with the replay).
"""

from __future__ import annotations

import asyncio
from typing import TypedDict

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph

from .. import _sim
from . import logic

SYSTEM = ("You are the order desk of an online shop. Use the tools order_lookup, inventory, shipping_eta and "
          "refund_policy to gather what the customer's question needs, then answer in one sentence.")


class State(TypedDict, total=False):
    task_id: str
    question: str
    order_id: str
    sku: str
    results: dict
    calls: dict
    transcript: int
    rounds: int
    verified: bool
    last_error: tuple | None
    pending: tuple
    turns: int
    route: str
    answer: str
    sim_ms: _sim.SimMs


RUN_FIELDS = ("results", "calls", "transcript", "rounds", "verified", "last_error", "pending")


def _load(state: State) -> logic.Run:
    run = logic.Run()
    for name in RUN_FIELDS:
        if name in state:
            value = state[name]
            setattr(run, name, dict(value) if isinstance(value, dict) else value)
    return run


def _dump(run: logic.Run) -> dict:
    return {name: getattr(run, name) for name in RUN_FIELDS}


async def _ask(reply: logic.Reply, text: str, state: State, tool_calls: list[dict] | None = None) -> None:
    """One scripted model call: the usage callbacks see its tokens and model name as a hosted model's."""
    scripted = _sim.Reply(text, reply.input_tokens, reply.output_tokens, reply.ms, tool_calls or [])
    model = _sim.ScriptedChatModel(model_name=logic.MODEL, respond=lambda _messages: scripted)
    await model.ainvoke([SystemMessage(SYSTEM), HumanMessage(state["question"])])


def build_graph(config: dict):
    cfg = logic.parse(config)

    async def agent(state: State) -> dict:
        fx, run, turn = logic.facts_of(state), _load(state), state.get("turns", 0)
        move = logic.agent_turn(cfg, fx, run, turn)
        if move.action == "fail":
            raise move.error
        update = {**_dump(run), "route": {"call": "tools", "escalate": "escalate"}.get(move.action, END)}
        if move.reply is not None:
            calls = [{"name": t, "args": {"order_id": state["order_id"], "sku": state["sku"]}, "id": f"call-{turn}-{i}",
                      "type": "tool_call"} for i, t in enumerate(run.pending)]
            await _ask(move.reply, move.answer or "", state, calls)
            update.update(turns=turn + 1, sim_ms=move.reply.ms)
        if move.answer is not None:
            update["answer"] = move.answer
        return update

    async def tools(state: State) -> dict:
        fx, run = logic.facts_of(state), _load(state)
        ms, each = logic.tools_turn(cfg, fx, run)
        if cfg.parallel:
            await asyncio.gather(*(_sim.wait(m) for m in each))
        else:
            for m in each:
                await _sim.wait(m)
        return {**_dump(run), "sim_ms": ms}

    async def escalate(state: State) -> dict:
        fx, run, turn = logic.facts_of(state), _load(state), state.get("turns", 0)
        reply, answer = logic.escalate_turn(fx, run, turn)
        await _ask(reply, answer, state)
        return {"answer": answer, "turns": turn + 1, "sim_ms": reply.ms}

    graph = StateGraph(State)
    graph.add_node("agent", agent)
    graph.add_node("tools", tools)
    graph.add_node("escalate", escalate)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", lambda s: s["route"], ["tools", "escalate", END])
    graph.add_edge("tools", "agent")
    graph.add_edge("escalate", END)
    # 12 tool rounds take 25 steps plus the answer: above LangGraph's default recursion limit of 25.
    return graph.compile().with_config(recursion_limit=64)
