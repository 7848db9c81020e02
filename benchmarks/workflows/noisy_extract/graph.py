"""noisy_extract's LangGraph: ocr -> extract -> validate, back to extract while the output fails
validation and retries are left. Every decision comes from ``logic`` (shared with the replay)."""

from __future__ import annotations

import logging
from typing import TypedDict

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph

from .. import _sim
from . import logic

log = logging.getLogger("noisy_extract")

SYSTEM = {
    "plain": "Extract the vendor, the total and the due date from this invoice.",
    "schema": "Extract the invoice's fields as `vendor | amount CUR | YYYY-MM-DD`: the amount due with two decimals "
              "and its ISO currency code, the due date read in the document's locale.",
    "few_shot": "Extract the invoice's fields as `vendor | amount CUR | YYYY-MM-DD`, as in these examples.\n"
                "<three worked invoices with their answers>",
}


class State(TypedDict, total=False):
    upload_id: str
    document: dict
    misread: bool  # the OCR misread a digit of the total
    attempts: int
    draft: str
    valid: bool
    answer: str
    sim_ms: _sim.SimMs


def build_graph(config: dict):
    x, ocr_cfg = config["extractor"], config["ocr"]
    model, style, retries, dpi = x["model"], x["prompt_style"], int(x["validate_retries"]), int(ocr_cfg["dpi"])
    temperature = float(x["temperature"])  # passed to the model, which (being an extractor) ignores it
    log.setLevel(config["logging"]["level"].upper())
    # telemetry.batch_size, queue.priority and ocr.language_hint are read by the deployment, not by the graph.

    async def ocr(state: State) -> dict:
        result = logic.ocr(state["upload_id"], state["document"], dpi)
        await _sim.wait(result.ms)
        if result.timed_out:
            raise logic.ocr_timeout(dpi)
        return {"misread": result.misread, "attempts": 0, "sim_ms": result.ms}

    async def extract(state: State) -> dict:
        k = state["attempts"]
        a = logic.attempt(state["upload_id"], state["document"], model, style, dpi, k)
        reply = _sim.Reply(a.text, a.input_tokens, a.output_tokens, a.ms)
        chat = _sim.ScriptedChatModel(model_name=model, respond=lambda _messages: reply)
        messages = [SystemMessage(SYSTEM[style]), HumanMessage(f"<OCR text of {state['document']['doc_id']}>")]
        if k:
            messages.append(HumanMessage(f"Your answer {state['draft']!r} failed validation; answer again."))
        message = await chat.ainvoke(messages, temperature=temperature)
        log.debug("extract attempt %d: %s", k + 1, message.content)
        return {"draft": message.content, "attempts": k + 1, "sim_ms": a.ms}

    async def validate(state: State) -> dict:
        await _sim.wait(logic.VALIDATE_MS)
        return {"valid": logic.valid(state["draft"]), "answer": state["draft"], "sim_ms": logic.VALIDATE_MS}

    def retry(state: State) -> str:
        return "extract" if not state["valid"] and state["attempts"] <= retries else END

    graph = StateGraph(State)
    graph.add_node("ocr", ocr)
    graph.add_node("extract", extract)
    graph.add_node("validate", validate)
    graph.add_edge(START, "ocr")
    graph.add_edge("ocr", "extract")
    graph.add_edge("extract", "validate")
    graph.add_conditional_edges("validate", retry, ["extract", END])
    return graph.compile()
