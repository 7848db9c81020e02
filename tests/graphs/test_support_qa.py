"""support_qa's knobs must matter for real: each test runs the real graph offline on bundled data."""

import asyncio
import json

import pytest

from graphtune.graphs.support_qa import build_graph, default_config
from graphtune.graphs.support_qa import orders
from graphtune.graphs.support_qa.graph import route_confidence
from graphtune.graphs.support_qa.knowledge import DATA_DIR, expand_query, knowledge_base
from graphtune.graphs.support_qa.offline_model import ExtractiveChatModel
from graphtune.tuning.config_paths import set_path
from langchain_core.messages import HumanMessage, SystemMessage


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.delenv("GRAPHTUNE_MODEL", raising=False)


def rows(kind):
    data = [json.loads(line) for line in (DATA_DIR / "eval.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in data if kind in r["tags"]]


def ask(config, question):
    return asyncio.run(build_graph(config).ainvoke({"question": question}))


def configure(**changes):
    config = default_config()
    for path, value in changes.items():
        config = set_path(config, path.replace("__", "."), value)
    return config


def test_bundled_data_meets_the_promised_sizes():
    assert len(knowledge_base().articles) >= 60
    kinds = {k: len(rows(k)) for k in ("direct", "paraphrase", "two_article", "summary", "order")}
    assert sum(kinds.values()) >= 200 and all(kinds.values())


def test_rewrite_finds_paraphrased_questions_keyword_search_misses():
    kb = knowledge_base()
    paraphrases = rows("paraphrase")
    plain = sum(r["expected"]["sources"][0] in [a.id for a, _ in kb.search(r["inputs"]["question"], 1)] for r in paraphrases)
    rewritten = sum(r["expected"]["sources"][0] in [a.id for a, _ in kb.search(expand_query(r["inputs"]["question"]), 1)] for r in paraphrases)
    assert rewritten > plain + len(paraphrases) // 3


def test_top_k_trades_recall_for_tokens():
    two = rows("two_article")[:10]
    kb = knowledge_base()

    def recall(k):
        return sum(len(set(r["expected"]["sources"]) & {a.id for a, _ in kb.search(r["inputs"]["question"], k)}) for r in two)

    assert recall(4) > recall(1)
    question = two[0]["inputs"]["question"]
    small, large = ask(configure(rag__top_k=1), question), ask(configure(rag__top_k=6), question)
    assert len(small["sources"]) == 1 and len(large["sources"]) == 6
    assert len(large["context"]) > 3 * len(small["context"])


def test_max_tokens_caps_the_offline_answer():
    context = "<context>\n[kb-1] Shipping\n" + " ".join(f"Shipping fact number {i} is here." for i in range(40)) + "\n</context>"
    messages = [SystemMessage(f"Answer from {context}"), HumanMessage("shipping fact")]
    short = ExtractiveChatModel(max_tokens=16).invoke(messages)
    long = ExtractiveChatModel(max_tokens=400).invoke(messages)
    assert short.usage_metadata["output_tokens"] <= 16 < long.usage_metadata["output_tokens"]
    assert short.response_metadata["finish_reason"] == "length"
    assert long.usage_metadata["input_tokens"] == short.usage_metadata["input_tokens"] > 100


def test_router_keywords_and_threshold():
    assert route_confidence("Can you summarize returns?", ["summarize"]) == 1.0
    assert route_confidence("Give me a summary of returns", ["summarize"]) == 0.7  # shared stem only
    assert route_confidence("tl;dr of gift cards", ["tl;dr"]) == 1.0
    assert route_confidence("How do refunds work?", ["summarize", "overview"]) == 0.0
    question = "Give me a summary of the return policy"
    assert ask(default_config(), question)["route"] == "question"
    assert ask(configure(router__threshold=0.6), question)["route"] == "summary"


def test_order_questions_need_the_tool_agent():
    order = rows("order")[0]
    question, facts = order["inputs"]["question"], order["expected"]["facts"]
    plain = ask(default_config(), question)["answer"]
    tool_config = configure(nodes__qa_agent__enabled=False, nodes__qa_with_tool_agent__enabled=True, tool__timeout_s=2.0, tool__retries=3)
    with_tool = ask(tool_config, question)["answer"]
    assert not all(f.lower() in plain.lower() for f in facts)
    assert all(f.lower() in with_tool.lower() for f in facts)


def test_a_timeout_below_the_service_latency_raises():
    order_id = next(i for i in orders.orders() if orders.call_latency(i, 0) > 0.2)
    config = configure(nodes__qa_agent__enabled=False, nodes__qa_with_tool_agent__enabled=True, tool__timeout_s=0.1, tool__retries=0)
    with pytest.raises(orders.OrderServiceTimeout, match="did not answer within 0.10 s"):
        ask(config, f"Where is my order {order_id}?")


def test_retries_recover_from_failures():
    failing = [(i, a) for i in orders.orders() for a in range(1) if orders._roll(i, 0, "failure") < orders.FAILURE_RATE]
    assert failing, "the simulated service fails for some orders on the first attempt"
    order_id = failing[0][0]
    with pytest.raises((orders.OrderServiceError, orders.OrderServiceTimeout)):
        asyncio.run(orders.lookup(order_id, timeout_s=2.0, retries=0))
    assert order_id in asyncio.run(orders.lookup(order_id, timeout_s=2.0, retries=3))


def test_factory_rejects_configs_without_exactly_one_answer_agent():
    with pytest.raises(ValueError, match="exactly one of nodes.qa_agent.enabled"):
        build_graph(configure(nodes__qa_agent__enabled=False))


def test_chat_input_works_like_a_question():
    from langchain_core.messages import HumanMessage as Human

    result = asyncio.run(build_graph(default_config()).ainvoke({"messages": [Human("How long does standard shipping take?")]}))
    assert result["messages"][-1].content == result["answer"]
