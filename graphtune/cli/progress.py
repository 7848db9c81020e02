"""What ``graphtune tune`` shows while it runs: each step's messages (decide tables rendered as tables)
and, on a terminal, a live display of the candidates under evaluation (examples done, errors, early stops)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

QUIET_NODES = {"record", "record_progress"}
MARKDOWN_NODES = {"decide", "report"}  # their messages hold tables: rendered, never raw pipes


class TuneProgress:
    """Receives the controller's messages (``on_message``) and evaluate's ``eval_progress`` events (``on_event``).

    The live display lasts one round of evaluations: the next step's message ends it, with a one-line
    summary, so the round's decision prints below it."""

    def __init__(self, console: Console, live: bool):
        self.console = console
        self.live = live  # a terminal, not --json: draw the display; otherwise only messages
        self._progress: Progress | None = None
        self._tasks: dict[str, Any] = {}  # candidate -> its row in the display
        self._state: dict[str, dict] = {}  # candidate -> done, total, errors, stopped (None while running)

    # -- messages ------------------------------------------------------------------------------
    def on_message(self, node: str, message: Any) -> None:
        if node in QUIET_NODES or getattr(message, "type", "") != "ai":
            return
        if node != "evaluate":
            self._end_round()
        if node in MARKDOWN_NODES:
            if node == "decide":
                self.console.print(f"[dim]{node}[/dim]")
            self.console.print(Markdown(str(message.content)))
        else:
            self.console.print(f"[dim]{node}[/dim]  {escape(str(message.content))}", highlight=False)

    # -- evaluation events ---------------------------------------------------------------------
    def on_event(self, event: dict) -> None:
        if event.get("kind") != "eval_progress" or not self.live:
            return
        progress = self._progress or self._start()
        name = str(event.get("candidate"))
        if name not in self._tasks:
            self._tasks[name] = progress.add_task(name, total=None, errors=0, note="")
        state = self._state.setdefault(name, {"done": 0, "total": None, "errors": 0, "stopped": None})
        state.update(done=event.get("done", 0), total=event.get("total"), errors=event.get("errors", 0))
        note = ""
        if event.get("finished"):
            state["stopped"] = bool(event.get("stopped"))
            note = "stopped early" if state["stopped"] else "done"
        progress.update(self._tasks[name], total=state["total"], completed=state["done"], errors=state["errors"], note=note)
        totals = [s["total"] for s in self._state.values()]
        progress.update(self._summary_task, completed=sum(s["done"] for s in self._state.values()),
                        total=None if None in totals else sum(totals),
                        errors=sum(s["errors"] for s in self._state.values()), note=self._summary())

    def close(self) -> None:
        self._end_round()

    # -- internals -----------------------------------------------------------------------------
    def _start(self) -> Progress:
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[errors]} errors"), TextColumn("[yellow]{task.fields[note]}"),
                   TimeElapsedColumn())
        self._progress = Progress(*columns, console=self.console, transient=True)
        self._progress.start()
        self._summary_task = self._progress.add_task("examples", total=None, errors=0, note="")
        return self._progress

    def _summary(self) -> str:
        finished = [s for s in self._state.values() if s["stopped"] is not None]
        stopped = sum(1 for s in finished if s["stopped"])
        return f"{len(finished)}/{len(self._state)} candidates done, {stopped} stopped early"

    def _end_round(self) -> None:
        if self._progress is None:
            return
        self._progress.stop()
        self._progress = None
        examples = sum(s["done"] for s in self._state.values())
        errors = sum(s["errors"] for s in self._state.values())
        self.console.print(f"[dim]evaluated: {self._summary()}; {examples} examples, {errors} errors[/dim]")
        self._tasks.clear()
        self._state.clear()
