"""ticket_triage's run computed without the graph: the same ``logic`` calls in the graph's order."""

from __future__ import annotations

from .._sim import Replayed, Step
from . import logic


def replay(config: dict, example) -> Replayed:
    """The graph's outcome on ``example`` under ``config``, exactly (see ``graph.py``)."""
    crm, classifier, router = config["crm"], config["classifier"], config["router"]
    inputs = example.inputs
    ticket_id, customer_id = inputs["ticket_id"], inputs["customer_id"]
    call = logic.crm_call(ticket_id, customer_id, float(crm["timeout_s"]), int(crm["retries"]), float(crm["backoff_s"]))
    steps = [Step("fetch_customer", call.ms, call.error_text, {"tool": "crm", "attempts": call.attempts})]
    if call.error:
        return Replayed(output={}, latency_ms=call.ms, steps=steps, error=call.error_text)

    size = classifier["model"]
    t = logic.ticket(customer_id, inputs["subject"], inputs["body"])
    shown = logic.shown_items(classifier, t.history_len)
    first = logic.classify(ticket_id, t, size, shown)
    steps.append(Step("classify", first.ms, attributes={"model": logic.model_name(size), "confidence": first.confidence}))
    latency, team = 0.0 + call.ms + first.ms, first.team
    input_tokens, output_tokens = first.input_tokens, first.output_tokens
    next_node = logic.route(first.confidence, float(router["threshold"]), router["low_confidence"])
    if next_node == "escalate":
        second = logic.escalate(ticket_id, t, size, shown)
        steps.append(Step("escalate", second.ms, attributes={"model": logic.model_name(size)}))
        latency, team = latency + second.ms, second.team
        input_tokens, output_tokens = input_tokens + second.input_tokens, output_tokens + second.output_tokens
    elif next_node == "general_queue":
        steps.append(Step("general_queue", 0.0))
        latency, team = latency + 0.0, logic.GENERAL_QUEUE
    return Replayed(output={"assigned_team": team, "team": first.team, "confidence": first.confidence},
                    latency_ms=latency, steps=steps, input_tokens=input_tokens, output_tokens=output_tokens,
                    model=logic.model_name(size))
