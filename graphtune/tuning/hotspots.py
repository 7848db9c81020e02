"""Hot spots: the nodes of a workflow that are slow, failing or disliked in production, or in a tuning run's own evals.

The controller's observe step calls ``find_hot_spots(store, workflow, spec.observe)``. Everything
here is plain computation over what a ``TraceStore`` returns; the store passed in is the only I/O.
By default only ``production`` events count (DESIGN.md). ``find_hot_spots(..., source="eval")`` judges
a tuning run's own eval trajectories the same way (the same thresholds, the same shape), so a new
workflow with no production traffic still shows where its baseline fails; each of its hot spots
carries the distinct error messages of its failed calls (``errors``), the evidence proposers read.

Windows: the current window is ``[now - window, now)``; the earlier window of the same length,
``[now - 2 * window, now - window)``, is the baseline for "worse than before".

A node (or ``__run__``, the whole run) is a hot spot when any of these holds:

* ``p95 > observe.p95_ms`` (when set), with at least ``MIN_EVENTS`` calls;
* ``error rate > observe.error_rate``, with at least ``MIN_EVENTS`` calls (nodes with fewer are
  named in the notes instead);
* for ``__run__``: negative feedback per run ``> observe.negative_feedback_rate``, with at least
  ``MIN_EVENTS`` runs;
* p95 up more than ``P95_REGRESSION`` (30%) and by at least ``P95_REGRESSION_MIN_MS`` over the
  earlier window, with at least ``MIN_COMPARE_EVENTS`` calls in both windows;
* error rate up at least ``ERROR_REGRESSION_POINTS`` (5 points) and at least doubled over the
  earlier window, with at least ``MIN_COMPARE_EVENTS`` calls in both windows;
* the node with the largest share of run time, when the run p95 exceeds ``observe.p95_ms``: the
  run is slow and this is where its time goes.

Severity (higher is worse) is the sum of one score per reason, plus the share of run time:

* a threshold reason scores ``value / threshold`` (so >= 1; a zero threshold counts as 0.01);
* a regression scores its relative worsening (``p95_now / p95_before - 1``, or
  ``err_now / max(err_before, 0.01) - 1`` for errors);
* the largest-share reason scores ``run_p95 / threshold * share``;
* every node (not ``__run__``) adds its share of run time (0..1) when known, so among equally bad
  nodes the one holding more of the run's time ranks first.

Each reason's score is capped at ``MAX_REASON_SCORE`` so one outlier ratio cannot swamp the rest.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from graphtune.backends.traces import EventQuery, RunQuery, TraceStore
from graphtune.spec import ObserveSpec
from graphtune.tracing.events import NEGATIVE_FEEDBACK_BELOW, RUN_NODE, EventKind, NodeStats, TrajectoryEvent

MIN_EVENTS = 5  # fewer calls than this say too little about error rate or p95
MIN_COMPARE_EVENTS = 20  # each window needs this many calls before a regression counts
P95_REGRESSION = 0.30  # p95 up more than 30% ...
P95_REGRESSION_MIN_MS = 5.0  # ... and by at least 5 ms (sub-millisecond nodes jitter by more than 30%)
ERROR_REGRESSION_POINTS = 0.05  # error rate up at least 5 points and at least doubled
MAX_REASON_SCORE = 10.0
MAX_SCAN_RUNS = 20_000  # samples are searched among at most about this many recent runs
MAX_STEPS = 20
MAX_ERROR_CHARS = 200
MAX_MESSAGE_CHARS = 300
MAX_VALUE_CHARS = 200

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")


class ErrorSeen(BaseModel):
    """One distinct failure message of a node and how often it occurred."""

    type: str
    message: str
    count: int


class HotSpot(BaseModel):
    """One node (or ``__run__``) that needs attention, with why and how badly."""

    node: str = Field(description='Node name, or "__run__" for the whole run.')
    reasons: list[str]
    severity: float = Field(description="Sum of per-reason scores plus share of run time; see the module docstring.")
    stats: NodeStats = Field(description="The current window.")
    previous: NodeStats | None = Field(None, description="The earlier window of the same length, when it has data.")
    share_of_run_time: float | None = Field(None, description="mean x count / total run time, when known (not for __run__).")
    errors: list[ErrorSeen] = Field(default_factory=list, description="Distinct failures of this node, most frequent first (eval hot spots)")


class TrajectorySample(BaseModel):
    """One recorded run worth reading, trimmed for a chat message or an LLM prompt."""

    trace_id: str
    why: str
    duration_ms: float | None = None
    status: str | None = None
    thread_id: str | None = None
    steps: list[dict[str, Any]] = Field(default_factory=list)


class Observation(BaseModel):
    """What the observe step found for one workflow over one window."""

    workflow: str
    window_s: float
    since: float
    until: float
    runs: int = Field(description="Runs that ended in the window.")
    source: str = Field("production", description="Whose runs: production traffic, or the tuning run's own evals")
    hot_spots: list[HotSpot] = Field(default_factory=list, description="Most severe first.")
    node_stats: list[NodeStats] = Field(default_factory=list)
    samples: list[TrajectorySample] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    def hot_spot(self, node: str) -> HotSpot | None:
        return next((h for h in self.hot_spots if h.node == node), None)


ObserveReport = Observation


# -- durations and formatting ------------------------------------------------------------------
def parse_window(text: str) -> float:
    """'24h', '30m', '7d', '90s', '2w', '1.5h' -> seconds; anything else raises ValueError naming it."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    seconds = float(match.group(1)) * _UNITS[match.group(2)] if match else 0.0
    if seconds <= 0:
        raise ValueError(f"observe window {text!r} is not a duration: expected a positive number and a unit s, m, h, d or w, such as 24h, 30m or 7d")
    return seconds


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms >= 1000:
        return f"{ms / 1000:.1f} s"
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def fmt_pct(rate: float) -> str:
    pct = rate * 100
    return f"{pct:.0f}%" if pct >= 10 or pct == int(pct) else f"{pct:.1f}%"


def fmt_window(seconds: float) -> str:
    """86400 -> '24h', 604800 -> '7d', 1800 -> '30m': the largest whole unit, counting at least 2 days or weeks."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit in "wd" else 1) and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


# -- the rules ---------------------------------------------------------------------------------
def _ratio(value: float, threshold: float) -> float:
    return min(value / max(threshold, 0.01), MAX_REASON_SCORE)


def _what(node: str) -> str:
    return "runs" if node == RUN_NODE else "calls"


def _share_of_run_time(stats: NodeStats, run: NodeStats | None) -> float | None:
    if run is None or stats.node == RUN_NODE or stats.mean_ms is None or not run.mean_ms or not run.count:
        return None
    total = run.mean_ms * run.count
    return stats.mean_ms * stats.count / total if total > 0 else None


def _judge(stats: NodeStats, previous: NodeStats | None, observe: ObserveSpec) -> tuple[list[str], float]:
    """Reasons and their summed score for one node; empty when it is not a hot spot (share excluded)."""
    reasons: list[str] = []
    score = 0.0
    enough = stats.count >= MIN_EVENTS
    if enough and observe.p95_ms is not None and stats.p95_ms is not None and stats.p95_ms > observe.p95_ms:
        reasons.append(f"p95 {fmt_ms(stats.p95_ms)} > threshold {fmt_ms(observe.p95_ms)}")
        score += _ratio(stats.p95_ms, observe.p95_ms)
    if enough and stats.error_rate > observe.error_rate:
        reasons.append(f"error rate {fmt_pct(stats.error_rate)} > {fmt_pct(observe.error_rate)} "
                       f"({stats.errors} of {stats.count} {_what(stats.node)} failed)")
        score += _ratio(stats.error_rate, observe.error_rate)
    if stats.node == RUN_NODE and enough:
        rate = min(stats.negative_feedback / stats.count, 1.0)
        if stats.negative_feedback and rate > observe.negative_feedback_rate:
            reasons.append(f"negative feedback on {fmt_pct(rate)} of runs > {fmt_pct(observe.negative_feedback_rate)} "
                           f"({stats.negative_feedback} of {stats.count})")
            score += _ratio(rate, observe.negative_feedback_rate)
    comparable = previous is not None and stats.count >= MIN_COMPARE_EVENTS and previous.count >= MIN_COMPARE_EVENTS
    if comparable and stats.p95_ms is not None and previous.p95_ms:
        change = stats.p95_ms / previous.p95_ms - 1
        if change > P95_REGRESSION and stats.p95_ms - previous.p95_ms >= P95_REGRESSION_MIN_MS:
            reasons.append(f"p95 up {change:.0%} vs earlier window ({fmt_ms(previous.p95_ms)} -> {fmt_ms(stats.p95_ms)})")
            score += min(change, MAX_REASON_SCORE)
    if comparable:
        before, now = previous.error_rate, stats.error_rate
        if now - before >= ERROR_REGRESSION_POINTS and now >= 2 * before:
            reasons.append(f"error rate up from {fmt_pct(before)} to {fmt_pct(now)} vs earlier window")
            score += min(now / max(before, 0.01) - 1, MAX_REASON_SCORE)
    return reasons, score


def find_hot_spots(
    store: TraceStore,
    workflow: str,
    observe: ObserveSpec,
    *,
    now: float | None = None,
    window_s: float | None = None,
    max_samples: int = 3,
    source: str = "production",
) -> Observation:
    """Rank the hot spots of ``workflow`` from ``source`` events (production traffic, or a tuning run's
    evals) of the last window (see module docstring)."""
    window = float(window_s) if window_s is not None else parse_window(observe.window)
    if window <= 0:
        raise ValueError(f"window_s must be positive, got {window_s!r}")
    until = time.time() if now is None else float(now)
    since = until - window
    label = fmt_window(window)
    sources = (source,)
    what = "production traffic" if source == "production" else f"{source} runs"
    current = [s for s in store.aggregate(workflow=workflow, since=since, until=until, sources=sources) if s.workflow == workflow]
    obs = Observation(workflow=workflow, window_s=window, since=since, until=until, runs=0, node_stats=current, source=source)
    if not current:
        obs.notes.append(f"no {what} for {workflow} in the last {label}: nothing to observe")
        return obs
    earlier = {s.node: s for s in store.aggregate(workflow=workflow, since=since - window, until=since, sources=sources)
               if s.workflow == workflow and s.count} if source == "production" else {}
    by_node = {s.node: s for s in current}
    run = by_node.get(RUN_NODE)
    obs.runs = run.count if run else 0
    if not earlier and source == "production":
        obs.notes.append(f"no production traffic in the earlier {label}: no comparison with before")
    if observe.p95_ms is None:
        obs.notes.append("no p95 threshold set (observe.p95_ms): latency is judged only against the earlier window")
    if run is None or not run.count:
        obs.notes.append(f"no finished {what} in the window: run latency and negative feedback not judged")
    few = sorted(s.node for s in current if 0 < s.count < MIN_EVENTS)
    if few:
        obs.notes.append(f"too few events (< {MIN_EVENTS}) to judge error rate or p95: {', '.join(few)}")

    spots: dict[str, HotSpot] = {}
    for stats in current:
        reasons, score = _judge(stats, earlier.get(stats.node), observe)
        if reasons:
            share = _share_of_run_time(stats, run)
            spots[stats.node] = HotSpot(node=stats.node, reasons=reasons, severity=score, stats=stats,
                                        previous=earlier.get(stats.node), share_of_run_time=share)

    run_slow = (observe.p95_ms is not None and run is not None and run.count >= MIN_EVENTS
                and run.p95_ms is not None and run.p95_ms > observe.p95_ms)
    if run_slow:
        shares = [(share, s) for s in current if (share := _share_of_run_time(s, run)) is not None]
        if shares:
            share, top = max(shares, key=lambda pair: (pair[0], pair[1].node))
            reason = (f"largest share of run time ({fmt_pct(share)}) while run p95 {fmt_ms(run.p95_ms)} "
                      f"> threshold {fmt_ms(observe.p95_ms)}")
            bonus = min(_ratio(run.p95_ms, observe.p95_ms) * share, MAX_REASON_SCORE)
            if top.node in spots:
                spots[top.node].reasons.append(reason)
                spots[top.node].severity += bonus
            else:
                spots[top.node] = HotSpot(node=top.node, reasons=[reason], severity=bonus, stats=top,
                                          previous=earlier.get(top.node), share_of_run_time=share)
    for spot in spots.values():
        spot.severity = round(spot.severity + (spot.share_of_run_time or 0.0), 4)
    obs.hot_spots = sorted(spots.values(), key=lambda h: (-h.severity, h.node))
    if not obs.hot_spots:
        obs.notes.append("no hot spots: every node is within the thresholds and no worse than before")
    if source != "production":
        _attach_errors(store, obs)
    if max_samples > 0:
        obs.samples = _samples(store, obs, max_samples)
    return obs


# -- samples -----------------------------------------------------------------------------------
def _scan_since(obs: Observation) -> float:
    """Where sample searches start: the whole window, or its most recent part when it holds many runs."""
    if obs.runs <= MAX_SCAN_RUNS:
        return obs.since
    return obs.until - obs.window_s * MAX_SCAN_RUNS / obs.runs


def _read(store: TraceStore, obs: Observation, kind: EventKind, workflow: str | None) -> list[TrajectoryEvent]:
    return store.read(EventQuery(workflow=workflow, kinds=(kind,), sources=(obs.source,), since=_scan_since(obs), until=obs.until))


MAX_ERRORS_SEEN = 5


def _attach_errors(store: TraceStore, obs: Observation) -> None:
    """The distinct failure messages of each hot node, most frequent first: what a proposer reads to
    tell a timeout from a refused request, and which limit was hit."""
    failed = _read(store, obs, EventKind.NODE_ERROR, obs.workflow)
    for spot in obs.hot_spots:
        seen: dict[tuple[str, str], int] = {}
        for event in failed:
            if event.name == spot.node:
                a = event.attributes or {}
                key = (str(a.get("error.type") or "error"), _clip(a.get("error.message") or "", MAX_ERROR_CHARS))
                seen[key] = seen.get(key, 0) + 1
        spot.errors = [ErrorSeen(type=t, message=m, count=c)
                       for (t, m), c in sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_ERRORS_SEEN]]


def _error_text(event: TrajectoryEvent) -> str:
    a = event.attributes or {}
    kind, message = a.get("error.type"), a.get("error.message")
    text = f"{kind}: {message}" if kind and message else str(kind or message or "error")
    return _clip(text, MAX_ERROR_CHARS)


def _clip(value: Any, limit: int) -> str:
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, default=str, ensure_ascii=False)
        except (TypeError, ValueError):
            text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first_kind(hot_spots: list[HotSpot]) -> str:
    """Which sample matters most for the top hot spot: 'failing', 'disliked' or 'slowest'."""
    if not hot_spots:
        return "slowest"
    text = " ".join(hot_spots[0].reasons)
    if "negative feedback" in text:
        return "disliked"
    if "error rate" in text:
        return "failing"
    return "slowest"


@dataclass
class _Runs:
    """The runs samples are picked from: the slowest finished ones, and the newest failed ones."""

    slowest: list[TrajectoryEvent]
    failed_newest: list[TrajectoryEvent]


def _runs(store: TraceStore, obs: Observation, max_samples: int, **order) -> list[TrajectoryEvent]:
    """The first runs of the scanned window in an order (``RunQuery``): one more than samples can take,
    so an alternative to each taken one is among them."""
    return store.recent_runs(RunQuery(workflow=obs.workflow, source=obs.source, since=_scan_since(obs), until=obs.until,
                                      limit=max_samples + 1, **order))


def _samples(store: TraceStore, obs: Observation, max_samples: int) -> list[TrajectorySample]:
    runs = _Runs(slowest=_runs(store, obs, max_samples, slowest=True),
                 failed_newest=_runs(store, obs, max_samples, errors_only=True))
    taken: set[str] = set()
    found: dict[str, tuple[str, str]] = {}  # kind -> (trace_id, why)

    if runs.slowest:
        slowest = runs.slowest[0]
        found["slowest"] = (slowest.trace_id, f"slowest run ({fmt_ms(slowest.duration_ms)})")

    errors = _read(store, obs, EventKind.NODE_ERROR, obs.workflow)
    rank = {h.node: i for i, h in enumerate(obs.hot_spots)}
    if errors:
        # the most recent failure in the highest-ranked hot spot; any node failure otherwise
        best = min(reversed(errors), key=lambda e: rank.get(e.name, len(rank)))
        found["failing"] = (best.trace_id, f"failed in {best.name}: {_error_text(best)}")
    elif runs.failed_newest:
        found["failing"] = (runs.failed_newest[0].trace_id, f"run failed: {_error_text(runs.failed_newest[0])}")

    order = ["slowest", "failing", "disliked"]
    first = _first_kind(obs.hot_spots)
    order.remove(first)
    order.insert(0, first)
    samples: list[TrajectorySample] = []
    for kind in order:
        if len(samples) >= max_samples:
            break
        if kind == "disliked":
            sample = _disliked_sample(store, obs, taken)
        elif kind in found:
            trace_id, why = found[kind]
            if trace_id in taken:
                trace_id, why = _alternative(kind, runs, errors, taken, rank) or (None, None)
            sample = _sample(store, trace_id, why) if trace_id else None
        else:
            sample = None
        if sample is not None:
            taken.add(sample.trace_id)
            samples.append(sample)
    return samples


def _alternative(kind, runs: _Runs, errors, taken, rank) -> tuple[str, str] | None:
    """A different trace of the same kind when the first choice is already sampled."""
    if kind == "slowest":
        e = next((e for e in runs.slowest if e.trace_id not in taken), None)
        return (e.trace_id, f"slowest other run ({fmt_ms(e.duration_ms)})") if e else None
    rest = [e for e in errors if e.trace_id not in taken]
    if rest:
        e = min(reversed(rest), key=lambda e: rank.get(e.name, len(rank)))
        return e.trace_id, f"failed in {e.name}: {_error_text(e)}"
    e = next((e for e in runs.failed_newest if e.trace_id not in taken), None)
    return (e.trace_id, f"run failed: {_error_text(e)}") if e else None


def _disliked_sample(store: TraceStore, obs: Observation, taken: set[str]) -> TrajectorySample | None:
    # Feedback may be recorded without a workflow tag: read all production feedback of the window and
    # keep the traces that belong to this workflow.
    feedback = [e for e in _read(store, obs, EventKind.FEEDBACK, None)
                if e.score is not None and e.score < NEGATIVE_FEEDBACK_BELOW and e.workflow in (obs.workflow, None)
                and e.trace_id not in taken]
    for event in list(reversed(feedback))[:5]:
        comment = (event.attributes or {}).get("comment")
        why = f"negative feedback (score {event.score:g})" + (f": {_clip(comment, 120)}" if comment else "")
        events = store.read(EventQuery(trace_id=event.trace_id))
        if any(e.workflow == obs.workflow and e.kind is not EventKind.FEEDBACK for e in events):
            return sample_from_events(event.trace_id, why, events)
    return None


def _sample(store: TraceStore, trace_id: str, why: str) -> TrajectorySample:
    return sample_from_events(trace_id, why, store.read(EventQuery(trace_id=trace_id)))


def sample_from_events(trace_id: str, why: str, events: Iterable[TrajectoryEvent]) -> TrajectorySample:
    """A trimmed sample of one trace: per-node steps, tool calls, messages and feedback, at most ``MAX_STEPS``."""
    events = list(events)
    runs = [e for e in events if e.kind is EventKind.RUN_END]
    root = max(runs, key=lambda e: e.duration_ms or 0.0) if runs else None
    return TrajectorySample(
        trace_id=trace_id, why=why, duration_ms=root.duration_ms if root else None,
        status=root.status if root else None, thread_id=next((e.thread_id for e in events if e.thread_id), None),
        steps=trim_steps(steps_of(events)),
    )


def steps_of(events: list[TrajectoryEvent]) -> list[dict[str, Any]]:
    """One dict per node execution, executed tool call, failed LLM call, message and feedback, in order."""
    tokens: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for e in events:
        if e.kind is EventKind.LLM_USAGE and e.parent_span_id:
            tokens[e.parent_span_id][0] += e.input_tokens or 0
            tokens[e.parent_span_id][1] += e.output_tokens or 0
    ordered = sorted(events, key=lambda e: (e.start_time, e.time))
    steps: list[dict[str, Any]] = []
    for e in ordered:
        a = e.attributes or {}
        if e.kind in (EventKind.NODE_END, EventKind.NODE_ERROR):
            step: dict[str, Any] = {"node": e.name, "duration_ms": e.duration_ms, "status": e.status}
            if e.status == "error":
                step["error"] = _error_text(e)
            if e.span_id in tokens:
                step["tokens"] = {"input": tokens[e.span_id][0], "output": tokens[e.span_id][1]}
        elif e.kind is EventKind.TOOL_CALL and a.get("phase") == "executed":
            step = {"tool": e.name, "node": e.node, "duration_ms": e.duration_ms, "status": e.status}
            if e.status == "error":
                step["error"] = _error_text(e) if a.get("error.message") else _clip(a.get("output", "error"), MAX_ERROR_CHARS)
            elif "output" in a:
                step["output"] = _clip(a["output"], MAX_VALUE_CHARS)
        elif e.kind is EventKind.LLM_USAGE and e.status == "error":
            step = {"llm": e.name, "node": e.node, "duration_ms": e.duration_ms, "status": "error", "error": _error_text(e)}
        elif e.kind is EventKind.MESSAGE:
            content = a.get("content")
            step = {"message": a.get("role", "?"), "node": e.node,
                    "content": _clip(content if content is not None else "", MAX_MESSAGE_CHARS)}
            if a.get("tool_calls"):
                step["tool_calls"] = [c.get("name") for c in a["tool_calls"] if isinstance(c, dict)]
            if e.status == "error":
                step["status"] = "error"
        elif e.kind is EventKind.FEEDBACK:
            step = {"feedback": e.score}
            if a.get("comment"):
                step["comment"] = _clip(a["comment"], MAX_MESSAGE_CHARS)
        else:
            continue
        steps.append({k: v for k, v in step.items() if v is not None})
    return steps


def _is_error(step: dict[str, Any]) -> bool:
    return step.get("status") == "error"


def trim_steps(steps: list[dict[str, Any]], limit: int = MAX_STEPS) -> list[dict[str, Any]]:
    """At most ``limit`` entries: failed steps first, then the beginning and the end; each gap becomes
    one ``{"omitted": n}`` entry (counted in the limit)."""
    if len(steps) <= limit:
        return steps
    keep: set[int] = set()

    def size(indices: set[int]) -> int:
        ordered = sorted(indices)
        gaps = sum(1 for a, b in zip(ordered, ordered[1:]) if b > a + 1)
        gaps += int(bool(ordered) and ordered[0] > 0) + int(bool(ordered) and ordered[-1] < len(steps) - 1)
        return len(indices) + gaps

    candidates = [i for i, s in enumerate(steps) if _is_error(s)][: limit // 3]
    head, tail = 0, len(steps) - 1
    while head <= tail:
        candidates += [head, tail]
        head, tail = head + 1, tail - 1
    for i in candidates:
        if i in keep:
            continue
        if size(keep | {i}) > limit:
            continue
        keep.add(i)
        if len(keep) >= limit:
            break
    out: list[dict[str, Any]] = []
    previous = -1
    for i in sorted(keep):
        if i > previous + 1:
            out.append({"omitted": i - previous - 1})
        out.append(steps[i])
        previous = i
    if previous < len(steps) - 1:
        out.append({"omitted": len(steps) - 1 - previous})
    return out


# -- the chat summary --------------------------------------------------------------------------
def _spot_line(spot: HotSpot) -> str:
    line = f"{spot.node}: " + "; ".join(spot.reasons)
    if spot.node != RUN_NODE and spot.share_of_run_time is not None and "share of run time" not in line:
        line += f"; {fmt_pct(spot.share_of_run_time)} of run time"
    if not any("calls failed" in r or "runs failed" in r for r in spot.reasons):
        line += f" ({spot.stats.count} {_what(spot.node)})"
    if spot.errors:
        line += "; failures: " + "; ".join(f"{e.count}x {e.type}: {e.message}" for e in spot.errors[:3])
    return line


def format_observation(obs: Observation) -> str:
    """A short plain-text summary for a chat message."""
    head = f"{obs.workflow}, last {fmt_window(obs.window_s)}: {obs.runs} {obs.source} run{'s' if obs.runs != 1 else ''}"
    run = next((s for s in obs.node_stats if s.node == RUN_NODE), None)
    if run is not None and run.count:
        head += f", p95 {fmt_ms(run.p95_ms)}, {fmt_pct(run.error_rate)} failed"
        if run.negative_feedback:
            head += f", {run.negative_feedback} negative feedback"
    lines = [head + "."]
    if obs.hot_spots:
        lines.append("Hot spots, worst first:")
        lines += [f"{i}. {_spot_line(spot)}" for i, spot in enumerate(obs.hot_spots, 1)]
    if obs.samples:
        lines.append("Samples: " + "; ".join(f"{s.trace_id[:12]} {s.why}" for s in obs.samples))
    lines += [f"Note: {note}" for note in obs.notes]
    return "\n".join(lines)


__all__ = [
    "HotSpot", "Observation", "ObserveReport", "TrajectorySample", "find_hot_spots", "format_observation",
    "parse_window", "sample_from_events", "steps_of", "trim_steps",
]
