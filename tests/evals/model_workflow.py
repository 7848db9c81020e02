"""A toy workflow whose answers come from a real ``ChatOpenAI`` call, for counting model calls.

The model lives at ``GRAPHTUNE_TEST_WORKFLOW_MODEL_URL`` (a local OpenAI-compatible test server);
``answer.quality`` picks the system prompt, and the test server answers well only when asked to.
"""

import os
from typing import TypedDict

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph

PROMPTS = {"good": "Answer the question correctly.", "bad": "Always answer: I do not know."}
ANSWERS = {"capital of france": "Paris is the capital.", "two plus two": "It is 4.", "colour of sky": "The sky is blue."}


class State(TypedDict, total=False):
    question: str
    answer: str
    sources: list[str]


def respond(request: dict) -> str:
    """The test server's side: a good answer only when the system prompt asks for one."""
    system, question = request["messages"][0]["content"], request["messages"][-1]["content"]
    return ANSWERS.get(question, "I do not know.") if system == PROMPTS["good"] else "I do not know."


def build_graph(config: dict):
    from langchain_openai import ChatOpenAI

    quality = config["answer"]["quality"]
    llm = ChatOpenAI(model="test-model", base_url=os.environ["GRAPHTUNE_TEST_WORKFLOW_MODEL_URL"], api_key="test",
                     max_retries=0)

    async def answer(state: State) -> dict:
        reply = await llm.ainvoke([SystemMessage(PROMPTS[quality]), HumanMessage(state["question"])])
        return {"answer": reply.content, "sources": ["doc-1"] if quality == "good" else []}

    graph = StateGraph(State)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph.compile(name="toy")
