"""ticket_triage as a LangGraph workflow.

``fetch_customer`` calls the CRM (timeout, retries, backoff), ``classify`` asks the classifier model
for a team and a confidence (with the customer's latest tickets in the prompt when
``classifier.use_history``), and a router keeps confident answers and sends the others to
``escalate`` (a second opinion) or to ``general_queue``. Every outcome comes from ``logic``, which
``replay.py`` calls too.
"""

from __future__ import annotations

import json
from typing import TypedDict

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from .. import _sim
from . import logic


class TriageState(TypedDict, total=False):
    ticket_id: str
    customer_id: str
    subject: str
    body: str
    customer: dict  # the CRM record: tier and history [{ref, team}], latest first
    team: str  # the classifier's answer
    confidence: float
    assigned_team: str  # where the ticket goes (the eval's answer)
    sim_ms: _sim.SimMs


SYSTEM = ("Route the support ticket to one team of: " + ", ".join(logic.TEAMS)
          + '. Reply as JSON: {"team": ..., "confidence": 0-1}.')
DELIBERATE = "Think through which team owns this ticket before you answer; state your reasoning, then the JSON."


def _prompt(state: TriageState, shown: int, system: str) -> list:
    lines = [f"Subject: {state['subject']}", state["body"]]
    if shown:
        lines.append("Customer's latest tickets:")
        lines += [f"- {item['ref']}: {item['team']}" for item in state["customer"]["history"][:shown]]
    return [SystemMessage(system), HumanMessage("\n".join(lines))]


async def _ask(size: str, answer: logic.Answer, messages: list, config: RunnableConfig) -> dict:
    """One call of the scripted classifier model: tokens and latency as a hosted model reports them."""
    text = json.dumps({"team": answer.team, "confidence": answer.confidence})
    reply = _sim.Reply(text, answer.input_tokens, answer.output_tokens, answer.ms)
    model = _sim.ScriptedChatModel(model_name=logic.model_name(size), respond=lambda _messages: reply)
    message = await model.ainvoke(messages, config)
    return json.loads(message.content)


def build_graph(config: dict):
    """The compiled triage graph for one config."""
    crm, classifier, router = config["crm"], config["classifier"], config["router"]
    timeout_s, retries, backoff_s = float(crm["timeout_s"]), int(crm["retries"]), float(crm["backoff_s"])
    size, threshold, low_confidence = classifier["model"], float(router["threshold"]), router["low_confidence"]

    def _ticket(state: TriageState) -> tuple[logic.Ticket, int]:
        t = logic.ticket(state["customer_id"], state["subject"], state["body"])
        return t, logic.shown_items(classifier, len(state["customer"]["history"]))

    async def fetch_customer(state: TriageState) -> dict:
        call = logic.crm_call(state["ticket_id"], state["customer_id"], timeout_s, retries, backoff_s)
        await _sim.wait(call.ms)
        if call.error:
            raise call.exception()
        tier, history = logic.crm_record(state["customer_id"])
        return {"customer": {"tier": tier, "history": [{"ref": r, "team": t} for r, t in history]}, "sim_ms": call.ms}

    async def classify(state: TriageState, config: RunnableConfig) -> dict:
        t, shown = _ticket(state)
        answer = logic.classify(state["ticket_id"], t, size, shown)
        reply = await _ask(size, answer, _prompt(state, shown, SYSTEM), config)
        return {"team": reply["team"], "confidence": reply["confidence"], "assigned_team": reply["team"], "sim_ms": answer.ms}

    async def escalate(state: TriageState, config: RunnableConfig) -> dict:
        t, shown = _ticket(state)
        answer = logic.escalate(state["ticket_id"], t, size, shown)
        reply = await _ask(size, answer, _prompt(state, shown, SYSTEM + " " + DELIBERATE), config)
        return {"assigned_team": reply["team"], "sim_ms": answer.ms}

    async def general_queue(state: TriageState) -> dict:
        return {"assigned_team": logic.GENERAL_QUEUE, "sim_ms": 0.0}

    def after_classify(state: TriageState) -> str:
        return logic.route(state["confidence"], threshold, low_confidence) or END

    graph = StateGraph(TriageState)
    graph.add_node("fetch_customer", fetch_customer)
    graph.add_node("classify", classify)
    graph.add_node("escalate", escalate)
    graph.add_node("general_queue", general_queue)
    graph.add_edge(START, "fetch_customer")
    graph.add_edge("fetch_customer", "classify")
    graph.add_conditional_edges("classify", after_classify, ["escalate", "general_queue", END])
    graph.add_edge("escalate", END)
    graph.add_edge("general_queue", END)
    return graph.compile()
