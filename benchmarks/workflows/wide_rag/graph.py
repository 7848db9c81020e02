"""wide_rag's graph: chunk -> retrieve -> (rerank) -> generate, over simulated services and a scripted
answer model. Every decision is made in ``logic`` (shared with the replay); nodes only wait for their
simulated time and report it in ``sim_ms``."""

from __future__ import annotations

from functools import partial
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

from .._sim import ScriptedChatModel, SimMs, wait
from . import logic


class State(TypedDict, total=False):
    # inputs (one eval row's ``inputs``)
    qid: str
    question: str
    question_tokens: int
    corpus_tokens: int
    facts: list[dict[str, Any]]
    # work
    chunked: logic.Chunked
    retrieved: logic.Retrieved
    context: logic.Context
    answer: str
    sim_ms: SimMs


def build_graph(config: dict):
    k = logic.knobs(config)
    model = ScriptedChatModel(model_name=logic.MODEL, respond=partial(logic.respond, k))

    async def chunk(state: State) -> dict:
        c = logic.chunk(logic.world(state), k)
        await wait(c.ms)
        return {"chunked": c, "sim_ms": c.ms}

    async def retrieve(state: State) -> dict:
        r = logic.retrieve(logic.world(state), k, state["chunked"])
        await wait(r.ms)
        update = {"retrieved": r, "sim_ms": r.ms}
        if not k.rerank:
            update["context"] = logic.no_rerank(r)
        return update

    async def rerank(state: State) -> dict:
        ctx = logic.rerank(logic.world(state), k, state["retrieved"])
        await wait(ctx.ms)
        return {"context": ctx, "sim_ms": ctx.ms}

    async def generate(state: State) -> dict:
        reply = await model.ainvoke(logic.prompt(logic.world(state), state["context"]))
        return {"answer": reply.content, "sim_ms": reply.response_metadata["sim_ms"]}

    graph = StateGraph(State)
    graph.add_node("chunk", chunk)
    graph.add_node("retrieve", retrieve)
    graph.add_node("generate", generate)
    graph.add_edge(START, "chunk")
    graph.add_edge("chunk", "retrieve")
    if k.rerank:
        graph.add_node("rerank", rerank)
        graph.add_edge("retrieve", "rerank")
        graph.add_edge("rerank", "generate")
    else:
        graph.add_edge("retrieve", "generate")
    graph.add_edge("generate", END)
    return graph.compile()
