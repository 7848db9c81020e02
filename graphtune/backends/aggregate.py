"""Per-node statistics shared by the stores: exact percentiles from raw durations, and the
log-bucket latency histogram that rollup tables keep (relative error of a quantile <= 1%)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from graphtune.tracing.events import NodeStats

# Bucket i holds durations in [RATIO**i, RATIO**(i+1)) milliseconds; its midpoint is within 1% of any member.
RATIO = 1.02
_LOG_RATIO = math.log(RATIO)
_MIN_MS = 0.001


def bucket_of(duration_ms: float) -> int:
    return math.floor(math.log(max(duration_ms, _MIN_MS)) / _LOG_RATIO)


def bucket_value(bucket: int) -> float:
    return RATIO ** (bucket + 0.5)


def exact_quantile(sorted_values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default, PostgreSQL's percentile_cont)."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def histogram_quantile(hist: dict[int, int], q: float) -> float | None:
    """``exact_quantile`` with each rank's value replaced by its bucket's midpoint (so within 1%).

    Interpolating between the two ranks like the exact definition matters in sparse tails, where
    neighbouring values can lie several buckets apart.
    """
    total = sum(hist.values())
    if total == 0:
        return None
    pos = (total - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, total - 1)
    lo_value = None
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if lo_value is None and seen > lo:
            lo_value = bucket_value(bucket)
        if seen > hi:
            return lo_value + (bucket_value(bucket) - lo_value) * (pos - lo)
    return bucket_value(max(hist))


@dataclass
class NodeAccumulator:
    """Running totals for one (workflow, node): fed raw durations or merged histograms."""

    count: int = 0
    errors: int = 0
    duration_sum: float = 0.0
    durations: list[float] = field(default_factory=list)
    hist: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    input_tokens: int = 0
    output_tokens: int = 0
    negative_feedback: int = 0

    def add(self, duration_ms: float | None, is_error: bool) -> None:
        self.count += 1
        self.errors += int(is_error)
        if duration_ms is not None:
            self.duration_sum += duration_ms
            self.durations.append(duration_ms)

    def merge_hist(self, hist: dict[int, int]) -> None:
        for bucket, n in hist.items():
            self.hist[int(bucket)] += int(n)

    def to_stats(self, workflow: str, node: str) -> NodeStats:
        timed = len(self.durations) + sum(self.hist.values())
        if self.hist:
            merged = dict(self.hist)
            for d in self.durations:
                merged[bucket_of(d)] = merged.get(bucket_of(d), 0) + 1
            p50, p95 = histogram_quantile(merged, 0.5), histogram_quantile(merged, 0.95)
        else:
            ordered = sorted(self.durations)
            p50, p95 = exact_quantile(ordered, 0.5), exact_quantile(ordered, 0.95)
        return NodeStats(
            workflow=workflow,
            node=node,
            count=self.count,
            errors=self.errors,
            error_rate=self.errors / self.count if self.count else 0.0,
            p50_ms=p50,
            p95_ms=p95,
            mean_ms=self.duration_sum / timed if timed else None,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            negative_feedback=self.negative_feedback,
        )


class StatsBuilder:
    """Collects accumulators keyed by (workflow, node) and emits sorted NodeStats."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[str, str], NodeAccumulator] = defaultdict(NodeAccumulator)

    def __getitem__(self, key: tuple[str, str]) -> NodeAccumulator:
        return self.nodes[key]

    def add_tokens(self, key: tuple[str, str], input_tokens: int | None, output_tokens: int | None) -> None:
        acc = self.nodes[key]
        acc.input_tokens += input_tokens or 0
        acc.output_tokens += output_tokens or 0

    def add_negative_feedback(self, rows: Iterable[tuple[str, str, int]]) -> None:
        for workflow, node, n in rows:
            self.nodes[(workflow, node)].negative_feedback += n

    def build(self) -> list[NodeStats]:
        return [acc.to_stats(wf, node) for (wf, node), acc in sorted(self.nodes.items())]


def stats_of_loaded_events(events: list, query) -> list[NodeStats]:
    """``stats_from_events`` for stores that hold a window's events in memory (JSONL, ``langfuse://``):
    ``query`` (an ``EventQuery``) picks the events counted; a trace's nodes come from all of ``events``."""

    def nodes_of_traces(trace_ids) -> dict[str, set]:
        wanted = set(trace_ids)
        found: dict[str, set] = defaultdict(set)
        for e in events:
            if e.trace_id in wanted and e.kind.value in ("node_end", "node_error"):
                found[e.trace_id].add((e.workflow or "", e.name))
                found[e.trace_id].add((e.workflow or "", "__run__"))
        return found

    return stats_from_events((e for e in events if query.matches(e)), nodes_of_traces)


def stats_from_events(events: Iterable, nodes_of_traces) -> list[NodeStats]:
    """The shared definition of per-node statistics, computed from raw events.

    - node_end / node_error events give counts, errors and latency under (workflow, node);
    - run_end events give the same for whole runs under (workflow, "__run__");
    - llm_usage tokens count for their node and for "__run__";
    - a negative feedback event counts once for every node of its trace and for "__run__".
      ``nodes_of_traces(trace_ids)`` returns {trace_id: {(workflow, node), ...}}, searched outside
      the window too, because feedback usually arrives after the run.
    """
    from graphtune.tracing.events import NEGATIVE_FEEDBACK_BELOW, RUN_NODE, EventKind

    builder = StatsBuilder()
    negative_traces: dict[str, int] = defaultdict(int)
    for event in events:
        workflow = event.workflow or ""
        kind = event.kind
        if kind in (EventKind.NODE_END, EventKind.NODE_ERROR):
            builder[(workflow, event.name)].add(event.duration_ms, kind is EventKind.NODE_ERROR)
        elif kind is EventKind.RUN_END:
            builder[(workflow, RUN_NODE)].add(event.duration_ms, event.status == "error")
        elif kind is EventKind.LLM_USAGE:
            builder.add_tokens((workflow, event.node or RUN_NODE), event.input_tokens, event.output_tokens)
            if event.node:
                builder.add_tokens((workflow, RUN_NODE), event.input_tokens, event.output_tokens)
        elif kind is EventKind.FEEDBACK and event.score is not None and event.score < NEGATIVE_FEEDBACK_BELOW:
            negative_traces[event.trace_id] += 1
    if negative_traces:
        found = nodes_of_traces(list(negative_traces))
        for trace_id, n in negative_traces.items():
            for workflow, node in found.get(trace_id, ()):
                builder.nodes[(workflow, node)].negative_feedback += n
    return builder.build()
