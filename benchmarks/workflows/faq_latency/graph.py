"""The FAQ answer service as a LangGraph workflow: [cache_lookup] -> retrieve -> [rerank] -> generate.

Every decision comes from ``logic`` (shared with ``replay.py``); the nodes only wait for the simulated
time, call the scripted answer model and carry the state.
"""

from __future__ import annotations

from typing import TypedDict

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph

from .._sim import Reply, ScriptedChatModel, SimMs, wait
from . import logic


class State(TypedDict, total=False):
    request_id: str
    question: str
    docs: list[str]  # FAQ entry ids found, best first
    cache_hit: bool
    answer: str
    sources: list[str]  # the entries the answer was written from
    sim_ms: SimMs


def build_graph(config: dict):
    cfg = logic.Config.of(config)

    def req(state: State) -> logic.Request:
        return logic.request(state["request_id"], state["question"])

    async def cache_lookup(state: State) -> dict:
        await wait(logic.CACHE_MS)
        r = req(state)
        hit, _ = logic.cache_hit(cfg, r)
        if not hit:
            return {"cache_hit": False, "sim_ms": logic.CACHE_MS}
        text, sources = logic.cached_answer(cfg, r)
        return {"cache_hit": True, "answer": text, "sources": sources, "sim_ms": logic.CACHE_MS}

    async def retrieve(state: State) -> dict:
        docs, ms, error = logic.search(cfg, req(state))
        await wait(ms)
        if error:
            raise TimeoutError(error)
        return {"docs": list(docs), "sim_ms": ms}

    async def rerank(state: State) -> dict:
        docs, ms = logic.rerank(cfg, req(state), tuple(state["docs"]))
        await wait(ms)
        return {"docs": list(docs), "sim_ms": ms}

    async def generate(state: State) -> dict:
        r = req(state)
        docs = tuple(state["docs"])
        reply = logic.answer(cfg, r, docs)
        model = ScriptedChatModel(model_name=cfg.model, respond=lambda _messages: Reply(
            reply.text, reply.input_tokens, reply.output_tokens, reply.ms))
        context = "\n".join(f"[{d}]" for d in docs)
        message = await model.ainvoke([SystemMessage(f"Answer from these FAQ entries only:\n{context}"),
                                       HumanMessage(state["question"])])
        return {"answer": message.content, "sources": list(docs), "sim_ms": message.response_metadata["sim_ms"]}

    graph = StateGraph(State)
    graph.add_node("retrieve", retrieve)
    graph.add_node("generate", generate)
    if cfg.cache:
        graph.add_node("cache_lookup", cache_lookup)
        graph.add_edge(START, "cache_lookup")
        graph.add_conditional_edges("cache_lookup", lambda s: END if s.get("cache_hit") else "retrieve", ["retrieve", END])
    else:
        graph.add_edge(START, "retrieve")
    if cfg.rerank:
        graph.add_node("rerank", rerank)
        graph.add_edge("retrieve", "rerank")
        graph.add_edge("rerank", "generate")
    else:
        graph.add_edge("retrieve", "generate")
    graph.add_edge("generate", END)
    return graph.compile()
