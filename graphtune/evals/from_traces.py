"""Production runs with user feedback, turned into eval rows for labelling.

A row keeps the run's input (as recorded, after redaction), what the workflow answered and the
feedback, but no ``expected``: the runner runs such rows and scores only latency, tokens and errors
until someone writes the expected answer.
"""

from __future__ import annotations

from typing import Any

from graphtune.backends.traces import EventQuery, TraceStore
from graphtune.tracing.events import NEGATIVE_FEEDBACK_BELOW, EventKind


def rows_from_traces(store: TraceStore, *, workflow: str | None, feedback: str = "negative", since: float | None = None,
                     limit: int = 200) -> list[dict[str, Any]]:
    events = store.read(EventQuery(workflow=workflow, kinds=(EventKind.FEEDBACK,), sources=("production",), since=since))
    latest: dict[str, Any] = {}
    for event in sorted(events, key=lambda e: e.time):
        latest[event.trace_id] = event  # the user's last word on a trace counts
    rows = []
    for trace_id, event in sorted(latest.items(), key=lambda item: -item[1].time):
        negative = event.score is not None and event.score < NEGATIVE_FEEDBACK_BELOW
        if (feedback == "negative" and not negative) or (feedback == "positive" and negative):
            continue
        run = {e.kind: e for e in store.read(EventQuery(trace_id=trace_id, kinds=(EventKind.RUN_START, EventKind.RUN_END)))}
        start = run.get(EventKind.RUN_START)
        if start is None or not isinstance(start.attributes.get("input"), dict):
            continue  # nothing to replay: the run's input was not captured
        end = run.get(EventKind.RUN_END)
        rows.append({
            "id": f"trace-{trace_id[:16]}",
            "inputs": start.attributes["input"],
            "tags": ["from-traces", f"feedback:{'negative' if negative else 'positive'}"],
            "observed": {
                "output": observed_answer(end.attributes.get("output") if end else None),
                "status": end.status if end else None,
                "feedback_score": event.score,
                "comment": event.attributes.get("comment"),
                "trace_id": trace_id,
                "config_version": start.config_version,
            },
        })
        if len(rows) >= limit:
            break
    return rows


def observed_answer(output: Any) -> Any:
    """The answer a person labelling the row needs to see, not the whole final state."""
    if isinstance(output, dict):
        if "answer" in output:
            return output["answer"]
        messages = output.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
            return messages[-1].get("content")
    return output
