"""support_qa: the bundled example workflow graphtune tunes, built from a config dict.

router (summary or question, by keyword list and confidence threshold) -> [rewrite] -> retrieve
(bm25s, top_k, optional rerank) -> qa_agent | qa_with_tool_agent -> [summary]. The answer step is
``ChatOpenAI`` when a model is configured (``GRAPHTUNE_MODEL``), else a deterministic extractive
answerer that honours ``llm.max_tokens``. The tool agent calls a slow, sometimes failing order
service whose timeout and retries are tunable. Nodes are async: run it with ``ainvoke``/``astream``,
as the LangGraph server does.
"""

from __future__ import annotations

import asyncio
import copy
import re
from functools import cache
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import StructuredTool
from langgraph.graph import END, START, MessagesState, StateGraph

from graphtune.graphs.support_qa import orders
from graphtune.graphs.support_qa.knowledge import KnowledgeBase, expand_query, knowledge_base, words
from graphtune.graphs.support_qa.offline_model import ExtractiveChatModel
from graphtune.llm import chat_model, model_available
from graphtune.tuning.config_paths import get_path

@cache
def _spec_config() -> dict[str, Any]:
    from graphtune.spec import load_spec

    return load_spec("support_qa").config


def default_config() -> dict[str, Any]:
    """The shipped config, from the bundled spec (graphs/support_qa.yaml): one source of truth."""
    return copy.deepcopy(_spec_config())


ORDER_ID = re.compile(r"\bLG-\d{5}\b", re.I)
RERANK_SECONDS_PER_CANDIDATE = 0.002  # what the cross-encoder it stands in for costs per article
REWRITE_OFFLINE_SECONDS = 0.015  # what the small-model call it stands in for costs


class SupportState(MessagesState, total=False):
    question: str
    route: str
    route_confidence: float
    query: str
    sources: list[str]
    context: str
    answer: str
    tool_result: str


def build_graph(config: dict | None = None):
    """Compile support_qa for ``config`` (missing keys take the shipped config's values)."""
    cfg = _merged(_spec_config(), config or {})
    kb = knowledge_base()  # loads files: do it here, never inside an async node
    answer_nodes = [n for n in ("qa_agent", "qa_with_tool_agent") if get_path(cfg, f"nodes.{n}.enabled")]
    if len(answer_nodes) != 1:
        raise ValueError(f"exactly one of nodes.qa_agent.enabled, nodes.qa_with_tool_agent.enabled must be true; got {answer_nodes or 'none'}")
    answer_node = answer_nodes[0]
    summary_on = bool(get_path(cfg, "nodes.summary.enabled"))

    graph = StateGraph(SupportState)
    graph.add_node("router", _router(cfg))
    graph.add_node("retrieve", _retrieve(cfg, kb))
    graph.add_node(answer_node, _answer(cfg, with_tool=answer_node == "qa_with_tool_agent"))
    graph.add_edge(START, "router")
    if cfg["rag"]["rewrite"]:
        graph.add_node("rewrite", _rewrite(cfg))
        graph.add_edge("router", "rewrite")
        graph.add_edge("rewrite", "retrieve")
    else:
        graph.add_edge("router", "retrieve")
    if summary_on:
        graph.add_node("summary", _summary(cfg))
        graph.add_conditional_edges("retrieve", lambda s: "summary" if s["route"] == "summary" else answer_node, [answer_node, "summary"])
        graph.add_edge("summary", END)
    else:
        graph.add_edge("retrieve", answer_node)
    graph.add_edge(answer_node, END)
    return graph.compile(name="support_qa")


def _merged(base: dict, override: dict) -> dict:
    result = copy.deepcopy(base)
    for key, value in override.items():
        result[key] = _merged(result[key], value) if isinstance(value, dict) and isinstance(result.get(key), dict) else copy.deepcopy(value)
    return result


def route_confidence(question: str, keywords: list[str]) -> float:
    """1.0 for a keyword as a whole word or phrase, 0.7 for a shared stem (first five letters), else 0."""
    text = question.lower()
    best = 0.0
    for keyword in keywords:
        keyword = keyword.lower()
        if re.search(rf"(?<!\w){re.escape(keyword)}(?!\w)", text):
            return 1.0
        stem = keyword[:5]
        if len(stem) == 5 and any(w.startswith(stem) for w in words(text)):
            best = 0.7
    return best


def _question(state: SupportState) -> str:
    if state.get("question"):
        return state["question"]
    human = [m for m in state.get("messages", []) if isinstance(m, HumanMessage)]
    if not human:
        raise ValueError("support_qa needs a 'question' or a human message")
    return str(human[-1].content)


def _router(cfg: dict):
    keywords, threshold = cfg["router"]["summary_keywords"], cfg["router"]["threshold"]

    async def router(state: SupportState) -> dict:
        question = _question(state)
        confidence = route_confidence(question, keywords)
        return {"question": question, "query": question, "route_confidence": confidence,
                "route": "summary" if confidence >= threshold else "question"}

    return router


def _rewrite(cfg: dict):
    model = chat_model(cfg["llm"]["model"], temperature=0, max_tokens=64) if model_available() else None

    async def rewrite(state: SupportState, config: RunnableConfig) -> dict:
        if model is None:
            await asyncio.sleep(REWRITE_OFFLINE_SECONDS)
            return {"query": expand_query(state["question"])}
        reply = await model.ainvoke([SystemMessage(cfg["prompts"]["rewrite"]), HumanMessage(state["question"])], config)
        return {"query": f"{state['question']} {reply.content}"}

    return rewrite


def _retrieve(cfg: dict, kb: KnowledgeBase):
    top_k, rerank = int(cfg["rag"]["top_k"]), bool(cfg["rag"]["rerank"])

    async def retrieve(state: SupportState) -> dict:
        query = state["query"]
        hits = kb.search(query, min(3 * top_k, 20) if rerank else top_k)
        if rerank and hits:
            await asyncio.sleep(RERANK_SECONDS_PER_CANDIDATE * len(hits))
            hits = rerank_hits(kb, query, hits)
        hits = hits[:top_k]
        context = "\n".join(f"[{a.id}] {a.title}\n{a.body}" for a, _ in hits)
        return {"sources": [a.id for a, _ in hits], "context": f"<context>\n{context}\n</context>"}

    return retrieve


def rerank_hits(kb: KnowledgeBase, query: str, hits: list) -> list:
    """Order by BM25 plus how much of the query the title covers and how many query bigrams the body holds."""
    query_stems = kb.stem(query)
    query_words = words(query)
    bigrams = {" ".join(pair) for pair in zip(query_words, query_words[1:])}
    top = max(score for _, score in hits) or 1.0

    def score(hit) -> float:
        article, bm25 = hit
        title_cover = len(query_stems & kb.stem(article.title)) / max(1, len(query_stems))
        body = " ".join(words(article.body))
        return 0.5 * bm25 / top + title_cover + 0.3 * sum(b in body for b in bigrams)

    return sorted(hits, key=score, reverse=True)


def _model(cfg: dict, mode: str):
    """Built once per compiled graph: ChatOpenAI when a model is configured, else the offline answerer."""
    llm = cfg["llm"]
    if model_available():
        return chat_model(llm["model"], temperature=llm["temperature"], max_tokens=llm["max_tokens"])
    return ExtractiveChatModel(mode=mode, max_tokens=llm["max_tokens"])


def _answer(cfg: dict, *, with_tool: bool):
    prompt = cfg["prompts"]["answer"]
    model = _model(cfg, "answer")
    timeout_s, retries = float(cfg["tool"]["timeout_s"]), int(cfg["tool"]["retries"])

    async def order_status(order_id: str) -> str:
        """Look up the status, carrier and delivery date of an order by its id (LG-12345)."""
        return await orders.lookup(order_id, timeout_s=timeout_s, retries=retries)

    order_tool = StructuredTool.from_function(coroutine=order_status)

    async def answer(state: SupportState, config: RunnableConfig) -> dict:
        question = state["question"]
        order_id = ORDER_ID.search(question) if with_tool else None
        if order_id:
            result = await order_tool.ainvoke({"order_id": order_id.group(0).upper()}, config)
            if not model_available():
                return {"answer": result, "tool_result": result, "sources": [], "messages": [AIMessage(result)]}
            context = f"<context>\n[order-service] order status\n{result}\n</context>"
        else:
            context = state["context"]
        reply = await model.ainvoke([SystemMessage(prompt.replace("{context}", context)), HumanMessage(question)], config)
        text = str(reply.content)
        return {"answer": text, "messages": [AIMessage(text)]}

    return answer


def _summary(cfg: dict):
    prompt = cfg["prompts"]["summary"]
    model = _model(cfg, "summary")

    async def summary(state: SupportState, config: RunnableConfig) -> dict:
        reply = await model.ainvoke(
            [SystemMessage(prompt.replace("{context}", state["context"])), HumanMessage(state["question"])], config)
        text = str(reply.content)
        return {"answer": text, "messages": [AIMessage(text)]}

    return summary
