"""Render traces for the terminal: a trace as a tree of spans, messages and tool calls."""

from __future__ import annotations

import datetime

from rich.text import Text
from rich.tree import Tree

from graphtune.tracing.events import EventKind, TrajectoryEvent

_STATUS_STYLE = {"ok": "green", "error": "bold red", "interrupted": "yellow", None: "dim"}


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.1f} ms"


def fmt_time(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _preview(value, limit: int = 80) -> str:
    text = value if isinstance(value, str) else str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Span:
    def __init__(self, start: TrajectoryEvent):
        self.start = start
        self.end: TrajectoryEvent | None = None
        self.children: list = []  # spans and leaf events, in time order


def build_tree(events: list[TrajectoryEvent]) -> Tree:
    """Spans (run, node) nest by parent span id; messages, LLM calls and tool calls hang below."""
    events = sorted(events, key=lambda e: e.start_time if e.kind not in (EventKind.RUN_START, EventKind.NODE_START) else e.time)
    spans: dict[str, _Span] = {}
    roots: list = []
    first = events[0]
    for e in events:
        if e.kind in (EventKind.RUN_START, EventKind.NODE_START):
            spans[e.span_id] = _Span(e)
    for e in events:
        if e.kind in (EventKind.RUN_END, EventKind.NODE_END, EventKind.NODE_ERROR):
            if e.span_id in spans:
                spans[e.span_id].end = e
                continue
            item = e  # an end without its start (e.g. pruned): show as a leaf
        elif e.kind in (EventKind.RUN_START, EventKind.NODE_START):
            item = spans[e.span_id]
        else:
            item = e
        parent = spans.get(e.parent_span_id) if e.parent_span_id else None
        (parent.children if parent is not None and parent is not item else roots).append(item)

    title = Text.assemble(
        ("trace ", "bold"), (first.trace_id, "cyan"), "  ",
        (f"workflow={first.workflow or '-'}  thread={first.thread_id or '-'}  source={first.source}  {fmt_time(first.time)}", "dim"),
    )
    tree = Tree(title)
    for item in roots:
        _add(tree, item)
    return tree


def _add(parent: Tree, item) -> None:
    if isinstance(item, _Span):
        end = item.end
        status = end.status if end else None
        label = Text.assemble(
            ("▶ " if item.start.kind is EventKind.RUN_START else "● ", "bold"), (item.start.name, "bold"), "  ",
            (fmt_ms(end.duration_ms) if end else "running / not finished", "magenta"), "  ",
            (status or "open", _STATUS_STYLE.get(status, "dim")),
        )
        if end is not None and end.status == "error":
            label.append(f"  {end.attributes.get('error.type', '')}: {_preview(end.attributes.get('error.message', ''))}", "red")
        branch = parent.add(label)
        for child in item.children:
            _add(branch, child)
        return
    parent.add(_leaf(item))


def _leaf(e: TrajectoryEvent) -> Text:
    a = e.attributes
    if e.kind is EventKind.MESSAGE:
        role = a.get("role", "?")
        content = a.get("content")
        text = Text.assemble(("💬 ", ""), (f"{role}: ", "bold blue"), _preview(content if content not in (None, "") else "(no text)"))
        if a.get("tool_calls"):
            names = ", ".join(str(c.get("name")) for c in a["tool_calls"] if isinstance(c, dict))
            text.append(f"  → calls {names}", "cyan")
        if e.status == "error":
            text.append("  error", "bold red")
        return text
    if e.kind is EventKind.TOOL_CALL:
        phase = a.get("phase", "")
        detail = a.get("output") if phase == "executed" else a.get("gen_ai.tool.call.arguments")
        return Text.assemble(("🔧 ", ""), (e.name, "bold cyan"), f" ({phase}) ", (fmt_ms(e.duration_ms), "magenta"), "  ",
                             (e.status or "", _STATUS_STYLE.get(e.status, "dim")), "  ", _preview(detail if detail is not None else ""))
    if e.kind is EventKind.LLM_USAGE:
        return Text.assemble(("🤖 ", ""), (e.name or "llm", "bold"), "  ", (fmt_ms(e.duration_ms), "magenta"),
                             f"  tokens in={e.input_tokens or 0} out={e.output_tokens or 0}  ",
                             (e.status or "", _STATUS_STYLE.get(e.status, "dim")))
    if e.kind is EventKind.FEEDBACK:
        return Text.assemble(("👍 " if (e.score or 0) >= 0.5 else "👎 ", ""), f"{e.name} score={e.score}",
                             f"  {a.get('comment', '')}")
    if e.kind in (EventKind.NODE_END, EventKind.NODE_ERROR, EventKind.RUN_END):
        return Text.assemble(("● ", ""), (e.name, "bold"), "  ", (fmt_ms(e.duration_ms), "magenta"), "  ", (e.status or "", _STATUS_STYLE.get(e.status, "dim")))
    return Text.assemble(("• ", ""), (f"{e.kind.value} {e.name}", "dim"), "  ", _preview(a))
