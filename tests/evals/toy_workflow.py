"""A tiny async workflow for runner tests: answers from a table, fails on 'boom', hangs on 'hang'."""

import asyncio
from typing import TypedDict

from langgraph.graph import END, START, StateGraph

ANSWERS = {"capital of france": "Paris is the capital.", "two plus two": "It is 4.", "colour of sky": "The sky is blue."}
CALLS: list[str] = []


class State(TypedDict, total=False):
    question: str
    answer: str
    sources: list[str]


def build_graph(config: dict):
    quality = config["answer"]["quality"]
    if quality == "explode":
        raise ValueError("no such answer quality")

    async def answer(state: State) -> dict:
        question = state["question"]
        CALLS.append(question)
        if question == "boom":
            raise RuntimeError("the answer service exploded")
        if question == "slow tool":
            raise TimeoutError("the order service did not answer within 0.2 s")
        if question == "hang":
            await asyncio.sleep(30)
        await asyncio.sleep(config["answer"]["delay_s"])
        text = ANSWERS.get(question, "I do not know.") if quality == "good" else "I do not know."
        return {"answer": text, "sources": ["doc-1"] if quality == "good" else []}

    graph = StateGraph(State)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph.compile(name="toy")
