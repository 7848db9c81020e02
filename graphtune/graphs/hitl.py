"""The approval as LangChain's human-in-the-loop (HITL) wire format: the card a chat UI renders and
the answers it sends back.

Agent Chat UI and Agent Inbox render an interrupt holding ``action_requests`` / ``review_configs``
as a card: the action's ``name`` is its title, its ``description`` sits behind a toggle, and every
``args`` field is a text box for "Edit". So the title says what is asked in plain words (with the
warning when the gain is not significant), the description is a short summary with the link to the
approval page in the web view (the full report is already in the chat), and ``args`` holds only what a person may change: the mutations, as
``path: value`` lines. The UI sends edited fields back as strings; they are parsed here.

Answers understood (``card_answer``): the current format ``{"decisions": [{"type": "approve" |
"reject" | "edit", ...}]}``, and Agent Inbox's older list ``[{"type": "accept" | "ignore" |
"response" | "edit", "args": ...}]``. Ending the thread from the card (``Command(goto="__end__")``,
"Mark as Resolved"; or "ignore") is a rejection that says so (``ENDED_COMMENT``), which frees the
workflow for the next tuning request.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from graphtune.tuning.report import ApprovalReport, format_change

ENDED_COMMENT = "ended from the chat without an answer (Mark as Resolved)"
DECISIONS = ("approve", "reject", "edit")  # what LangChain's HITL UIs offer
MUTATIONS_HELP = ('one "path: value" line per tunable (e.g. "rag.top_k: 8"), or JSON: '
                  '[{"path": "rag.top_k", "value": 8}] or {"rag.top_k": 8}')


def card_title(report: ApprovalReport) -> str:
    """The card's title: what approving does, and the warning an approver must not miss."""
    title = f"Promote {report.candidate['id']} as the new config of {report.workflow}"
    return title + ("" if report.confident else " (⚠ gain not significant)")


def card_summary(report: ApprovalReport, error: str | None = None, page_url: str | None = None) -> str:
    """A few lines: the change, the headline metric with its interval, the guardrails, the warning,
    and the link to the approval page (charts, per-example wins and losses) when there is one."""
    lines = [f"**Your last answer was refused:** {error}", ""] if error else []
    change = "; ".join(f"`{m['path']}` → `{json.dumps(m['value'], ensure_ascii=False)}`" for m in report.candidate.get("mutations") or []) or "none"
    lines.append(f"**Change:** {change}")
    if report.table:
        lines.append(f"**{report.table[0].label()}:** {format_change(report.table[0])}")
    marks = {True: "✓", False: "✗", None: "?"}
    guards = "; ".join(f"{'⚠' if g.uncertain else marks[g.passed]} {g.guardrail}" for g in report.guardrails)
    lines.append(f"**Guardrails:** {guards or 'none'}")
    if not report.confident:
        lines.append("**⚠ Not significant:** the 95% interval of the change includes 0; approving may ship no real gain.")
    if page_url:
        lines.append(f"**Approval page** (charts, examples won and lost): [{page_url}]({page_url})")
    lines.append("The full report is in the chat above. Edit the mutations to try another value; "
                 "the edited candidate is evaluated and comes back here.")
    return "\n\n".join(lines)


def card_args(report: ApprovalReport) -> dict[str, str]:
    """The editable fields: the candidate's mutations as ``path: value`` lines (YAML)."""
    mutations = {m["path"]: m["value"] for m in report.candidate.get("mutations") or []}
    return {"mutations": yaml.safe_dump(mutations, sort_keys=False, allow_unicode=True, width=1000).strip()}


def hitl_request(report: ApprovalReport, error: str | None = None, page_url: str | None = None) -> dict[str, list[dict]]:
    """``action_requests`` and ``review_configs`` of the approval interrupt (LangChain's ``HITLRequest``)."""
    title = card_title(report)
    return {
        "action_requests": [{"name": title, "description": card_summary(report, error, page_url), "args": card_args(report)}],
        "review_configs": [{"action_name": title, "allowed_decisions": list(DECISIONS),
                            "args_schema": {"type": "object", "properties": {"mutations": {
                                "type": "string", "description": MUTATIONS_HELP}}}}],
    }


def parse_mutations(raw: Any) -> list[dict]:
    """Mutations as a list of ``{"path", "value"}``, from what a client sent: that list, a mapping
    ``path -> value``, or a string holding either as YAML or JSON (a UI's text box). ``ValueError``
    naming what was expected otherwise."""
    if isinstance(raw, str):
        try:
            raw = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ValueError(f"mutations: cannot read the text{where} ({getattr(error, 'problem', None) or error}); "
                             f"expected {MUTATIONS_HELP}") from None
    if isinstance(raw, dict):
        raw = [{"path": str(path), "value": value} for path, value in raw.items()]
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"mutations: expected {MUTATIONS_HELP}; got {json.dumps(raw, default=str)[:200]}")
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) != {"path", "value"}:
            raise ValueError(f"mutations[{i}]: expected {{\"path\": ..., \"value\": ...}}, got "
                             f"{json.dumps(item, default=str)[:200]}; write {MUTATIONS_HELP}")
    return raw


def card_answer(value: Any) -> dict:
    """A HITL UI's answer as graphtune's resume value (``{"action", "comment", "mutations"}``)."""
    if isinstance(value, dict):
        decisions = value.get("decisions")
        if not isinstance(decisions, list) or len(decisions) != 1 or not isinstance(decisions[0], dict):
            raise ValueError(f"decisions: expected one decision, got {json.dumps(decisions, default=str)[:200]}")
        return _decision(decisions[0])
    if len(value) != 1 or not isinstance(value[0], dict):
        raise ValueError(f"expected one response, got {json.dumps(value, default=str)[:200]}")
    return _inbox_response(value[0])


def _decision(decision: dict) -> dict:
    kind = decision.get("type")
    if kind == "edit":
        args = (decision.get("edited_action") or {}).get("args") or {}
        return {"action": "edit", "mutations": parse_mutations(args.get("mutations")),
                "comment": decision.get("message") or ""}
    if kind in ("approve", "reject"):
        return {"action": kind, "comment": decision.get("message") or ""}
    raise ValueError(f"decisions[0].type: expected approve, edit or reject, got {kind!r}")


def _inbox_response(response: dict) -> dict:
    """Agent Inbox's older ``HumanResponse``: accept, edit (``args.args``), response (text), ignore."""
    kind, args = response.get("type"), response.get("args")
    if kind == "accept":
        return {"action": "approve"}
    if kind == "ignore":
        return {"action": "reject", "comment": ENDED_COMMENT}
    if kind == "response":
        return {"action": "reject", "comment": str(args or "")}
    if kind == "edit":
        edited = (args or {}).get("args") if isinstance(args, dict) else None
        return {"action": "edit", "mutations": parse_mutations((edited or {}).get("mutations"))}
    raise ValueError(f"[0].type: expected accept, edit, response or ignore, got {kind!r}")


def is_card_answer(value: Any) -> bool:
    return (isinstance(value, dict) and "decisions" in value) or (
        isinstance(value, list) and bool(value) and isinstance(value[0], dict) and "type" in value[0])


def end_as_reject(command: dict) -> bool:
    """Turn a run command that only ends the thread (``{"goto": "__end__"}``) into the rejection it means,
    in place; True when it did. LangGraph would otherwise re-run the waiting approval and wait again."""
    goto = command.get("goto")
    ends = goto == "__end__" or goto == ["__end__"]
    others = any(v not in (None, {}, []) for k, v in command.items() if k != "goto")
    if not ends or others:
        return False
    command["goto"] = None
    command["resume"] = {"action": "reject", "comment": ENDED_COMMENT}
    return True
