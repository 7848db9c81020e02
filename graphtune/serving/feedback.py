"""Feedback intake for served runs: check it, keep one per run, count what was turned away.

User feedback is the live experiment's primary evidence, and it arrives from outside (a button in an
application, an API call), so it is checked before it is recorded:

- ``missing_value``: neither a thumbs up/down nor a score was given;
- ``invalid_value``: both were given, the thumbs is not a bool, or the score is not a number in [0, 1];
- ``unknown_trace``: the trace id is empty, or names no production run of this workflow (one served by
  this process, or, with a trace store to ask, one recorded by another process);
- ``duplicate``: the run already has feedback. The first answer stands: counting a second one would
  weigh a user who clicks twice double, and a changed mind cannot be told from a double click.

Each call lands in exactly one of these counters or in ``recorded``; nothing turned away is recorded
or raises, so a bad client cannot break the request path. The live evidence reader
(``graphtune.live``) keeps one feedback per trace as well, so duplicates that reach the store by
another route (two processes, a replay) still never count twice.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

FeedbackOutcome = Literal["recorded", "missing_value", "invalid_value", "unknown_trace", "duplicate"]
OUTCOMES: tuple[FeedbackOutcome, ...] = ("recorded", "missing_value", "invalid_value", "unknown_trace", "duplicate")
DEFAULT_REMEMBERED_RUNS = 100_000


class FeedbackStats(BaseModel):
    """Feedback calls by outcome; ``received`` is their sum."""

    model_config = ConfigDict(frozen=True)

    received: int = 0
    recorded: int = 0
    missing_value: int = 0
    invalid_value: int = 0
    unknown_trace: int = 0
    duplicate: int = 0


@dataclass(frozen=True, slots=True)
class ServedRunInfo:
    """What feedback needs to know about a run this process served."""

    config_version: int | None
    variant: str
    user_id: Any = None


@dataclass(frozen=True, slots=True)
class StoredRun:
    """A run found in the trace store: whether it is a production run of the workflow, and whether it
    already has feedback there."""

    known: bool
    has_feedback: bool


def feedback_score(thumbs_up: Any, score: Any) -> tuple[FeedbackOutcome | None, float | None]:
    """(None, score in [0, 1]) for valid feedback, else (the outcome that turns it away, None)."""
    if thumbs_up is None and score is None:
        return "missing_value", None
    if thumbs_up is not None and score is not None:
        return "invalid_value", None
    if thumbs_up is not None:
        return (None, 1.0 if thumbs_up else 0.0) if isinstance(thumbs_up, bool) else ("invalid_value", None)
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score) or not 0.0 <= score <= 1.0:
        return "invalid_value", None
    return None, float(score)


class FeedbackLedger:
    """Runs served recently and runs that got feedback, both bounded (oldest forgotten first), plus the
    outcome counters. Thread-safe. ``lookup`` asks the trace store about runs this process does not
    remember (served by another process, or forgotten); None trusts memory alone."""

    def __init__(self, *, remember: int = DEFAULT_REMEMBERED_RUNS,
                 lookup: Callable[[str], StoredRun] | None = None):
        if remember < 1:
            raise ValueError(f"remember is a number of runs, at least 1; got {remember}")
        self.remember = remember
        self.lookup = lookup
        self._runs: OrderedDict[str, ServedRunInfo] = OrderedDict()
        self._answered: OrderedDict[str, None] = OrderedDict()
        self._counts = dict.fromkeys(OUTCOMES, 0)
        self._lock = threading.Lock()

    def served(self, trace_id: str, info: ServedRunInfo) -> None:
        with self._lock:
            self._runs[trace_id] = info
            self._runs.move_to_end(trace_id)
            while len(self._runs) > self.remember:
                self._runs.popitem(last=False)

    def run(self, trace_id: str) -> ServedRunInfo | None:
        with self._lock:
            return self._runs.get(trace_id)

    def check(self, trace_id: Any, thumbs_up: Any, score: Any) -> tuple[FeedbackOutcome, float | None, ServedRunInfo | None]:
        """Decide one feedback call. ``"recorded"`` means the caller must record it now: the run is
        marked as answered, so a concurrent second call for it is a ``duplicate``. Blocking when the
        run is not in memory and ``lookup`` reads the trace store."""
        refused, value = feedback_score(thumbs_up, score)
        if refused is not None:
            return self._count(refused), None, None
        if not isinstance(trace_id, str) or not trace_id:
            return self._count("unknown_trace"), None, None
        info = self.run(trace_id)
        stored_feedback = False
        if info is None:
            stored = self.lookup(trace_id) if self.lookup is not None else None
            if stored is None or not stored.known:
                return self._count("unknown_trace"), None, None
            stored_feedback = stored.has_feedback
        with self._lock:
            if stored_feedback or trace_id in self._answered:
                self._counts["duplicate"] += 1
                return "duplicate", None, info
            self._answered[trace_id] = None
            while len(self._answered) > self.remember:
                self._answered.popitem(last=False)
            self._counts["recorded"] += 1
        return "recorded", value, info

    def undo(self, trace_id: str) -> None:
        """Forget a ``recorded`` decision whose recording failed, so the user may try again."""
        with self._lock:
            if trace_id in self._answered:
                del self._answered[trace_id]
                self._counts["recorded"] -= 1

    def _count(self, outcome: FeedbackOutcome) -> FeedbackOutcome:
        with self._lock:
            self._counts[outcome] += 1
        return outcome

    def stats(self) -> FeedbackStats:
        with self._lock:
            counts = dict(self._counts)
        return FeedbackStats(received=sum(counts.values()), **counts)
