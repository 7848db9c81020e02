"""Live evidence: what a baseline and a candidate did on production traffic, as the statistics need it.

The controller's experiment step calls :func:`read_live_evidence` at every look and hands the arms to
``graphtune.tuning.sequential`` (``compare``, ``guardrail_test``, ``srm_check``). This module reads
the trace store and counts; the store is its only I/O, and it decides nothing.

What counts, per arm (a config version):

- runs: ``run_end`` events of the workflow with ``source == production``, ending in ``[since, until)``,
  placed by the split (``graphtune_variant`` ``baseline`` or ``candidate``; requests without a unit
  key, pinned versions and untagged runs are left out unless ``assigned_only=False``: they are not a
  random share of the traffic, so they would bias the arm they land in);
- ``success``: the run ended ``ok``; ``error``: it ended ``error`` (an interrupted run is neither);
- ``net_feedback``: per run, +1 for positive feedback, -1 for negative, 0 without (a score ``s`` in
  [0, 1] counts ``2s - 1``): the quality signal of live traffic. It uses thumbs up and thumbs down
  alike and is measured per served run, so a candidate that merely changes who bothers to rate
  cannot win by selection. ``positive_feedback``: per run, 1 when its feedback is positive (score
  >= 0.5, as hot spots count negative feedback), else 0. ``feedback_score``: the mean score over the
  runs that have feedback. One feedback per trace, the earliest: duplicates in the store (two
  clicks, two processes, a replayed batch) never count twice, and are counted in
  ``duplicate_feedback`` instead;
- ``latency_ms``: the run's duration; ``tokens``: input + output tokens of the run's LLM calls.

Assignment counts for the sample-ratio check come from ``run_start`` events (a request is counted
when it starts, so a variant that crashes before it ends still shows), since ``assignments_since``:
pass the time of the current split revision (``TrafficSplit.updated_at``), because counts from
before a ramp step do not follow the new weights. They count routed units, not requests: the
router assigns a user (or thread) once, and a user who sends ten requests is still one draw, so
counting requests would flag busy users as a mismatch. A run's unit is its hashed user, else its
thread, else the run itself.

Cost: four filtered reads (run ends, run starts, LLM usage, feedback), paged by time so memory stays
bounded by the page and a few numbers per run; about 100k runs take seconds on SQLite.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

from pydantic import BaseModel, ConfigDict, Field

from graphtune.backends.traces import EventQuery, TraceStore
from graphtune.serving.routing import ASSIGNED_VARIANTS
from graphtune.tracing.events import NEGATIVE_FEEDBACK_BELOW, EventKind, TrajectoryEvent
from graphtune.tuning.sequential import SRM_THRESHOLD, ArmStats, SrmResult, srm_check

SOURCES = ("production",)
DEFAULT_PAGE = 20_000
METRICS = ("success", "error", "net_feedback", "positive_feedback", "feedback_score", "latency_ms", "tokens")


class ArmEvidence(BaseModel):
    """One version's live figures: raw counts for a report, and one ``ArmStats`` per metric."""

    model_config = ConfigDict(frozen=True)

    version: int
    runs: int = Field(description="Runs placed by the split that ended in the window")
    ok: int
    errors: int
    rated: int = Field(description="Runs with feedback (one per run)")
    positive: int = Field(description="Runs whose feedback is not negative (score >= 0.5)")
    success: ArmStats
    error: ArmStats
    net_feedback: ArmStats = Field(description="Per run: +1 positive feedback, -1 negative, 0 none")
    positive_feedback: ArmStats = Field(description="Per run: 1 with positive feedback, else 0")
    feedback_score: ArmStats = Field(description="Mean feedback score over rated runs")
    latency_ms: ArmStats
    tokens: ArmStats
    latencies_ms: list[float] = Field(default_factory=list, repr=False, exclude=True,
                                      description="Each run's latency, for quantile guardrails (p95 <= 1.2x)")


class LiveEvidence(BaseModel):
    """Both arms of a live experiment at one look, plus what the sample-ratio check needs."""

    model_config = ConfigDict(frozen=True)

    workflow: str
    baseline_version: int
    candidate_version: int
    since: float
    until: float
    assignments_since: float
    baseline: ArmEvidence
    candidate: ArmEvidence
    assignments: dict[int, int] = Field(description="Units (users, else threads, else runs) that started requests since assignments_since, per version, placed by the split")
    unassigned_runs: int = Field(description="Runs of either version in the window that the split did not place")
    duplicate_feedback: int = Field(description="Feedback events ignored because their run already had one")

    def arms(self, metric: str) -> tuple[ArmStats, ArmStats]:
        """``(candidate, baseline)`` for one of :data:`METRICS`, in the order ``compare`` takes them."""
        if metric not in METRICS:
            raise ValueError(f"live metric {metric!r} is not recorded; expected one of {', '.join(METRICS)}")
        return getattr(self.candidate, metric), getattr(self.baseline, metric)

    def latency_exceeding(self, quantile: float, max_ratio: float) -> tuple[int, int]:
        """(candidate runs slower than ``max_ratio`` x the baseline's ``quantile`` latency, candidate runs),
        what ``quantile_guardrail`` tests. The baseline, the larger arm, gives the threshold."""
        base = sorted(self.baseline.latencies_ms)
        cand = self.candidate.latencies_ms
        if not base or not cand:
            return 0, len(cand)
        threshold = max_ratio * base[min(len(base) - 1, int(quantile * len(base)))]
        return sum(1 for v in cand if v > threshold), len(cand)

    def srm(self, weights, *, threshold: float = SRM_THRESHOLD) -> SrmResult:
        """``srm_check`` of the assignment counts against the split (a ``TrafficSplit`` or ``{version: weight}``)."""
        return srm_check(self.assignments, weights, threshold=threshold)

    def describe(self) -> str:
        def arm(label: str, a: ArmEvidence) -> str:
            return (f"{label} v{a.version}: {a.runs} runs, {a.success.mean:.1%} ok, {a.error.mean:.1%} errors, "
                    f"{a.positive}/{a.rated} positive feedback, mean {a.latency_ms.mean:.0f} ms, {a.tokens.mean:.0f} tokens")
        return f"{self.workflow}: {arm('baseline', self.baseline)}; {arm('candidate', self.candidate)}"


@dataclass
class _Arm:
    version: int
    ok: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    traces: list[str] = field(default_factory=list)

    def evidence(self, tokens: Mapping[str, int], feedback: Mapping[str, float]) -> ArmEvidence:
        n = len(self.traces)
        scores = [feedback[t] for t in self.traces if t in feedback]
        positive = sum(1 for s in scores if s >= NEGATIVE_FEEDBACK_BELOW)
        return ArmEvidence(
            version=self.version, runs=n, ok=self.ok, errors=self.errors, rated=len(scores), positive=positive,
            success=ArmStats.of_counts(self.ok, n), error=ArmStats.of_counts(self.errors, n),
            net_feedback=ArmStats.of_values([2.0 * feedback[t] - 1.0 if t in feedback else 0.0 for t in self.traces]),
            positive_feedback=ArmStats.of_counts(positive, n), feedback_score=ArmStats.of_values(scores),
            latency_ms=ArmStats.of_values(self.latencies), latencies_ms=self.latencies,
            tokens=ArmStats.of_values([float(tokens.get(t, 0)) for t in self.traces]),
        )


def read_live_evidence(
    store: TraceStore, workflow: str, *, baseline_version: int, candidate_version: int, since: float,
    until: float | None = None, assignments_since: float | None = None, assigned_only: bool = True,
    page: int = DEFAULT_PAGE,
) -> LiveEvidence:
    """Per-arm live evidence for ``candidate_version`` against ``baseline_version`` since ``since``
    (unix seconds; the experiment's start). ``until`` defaults to now; ``assignments_since`` to ``since``.
    Blocking (store reads): async code calls it through ``asyncio.to_thread``."""
    for name, version in (("baseline_version", baseline_version), ("candidate_version", candidate_version)):
        if isinstance(version, bool) or not isinstance(version, int):
            raise ValueError(f"{name} is an integer config version; got {version!r}")
    if baseline_version == candidate_version:
        raise ValueError(f"baseline and candidate are the same version ({baseline_version}); nothing to compare")
    until = time.time() if until is None else until
    if not since < until:
        raise ValueError(f"since ({since}) must be before until ({until})")
    assignments_since = since if assignments_since is None else assignments_since
    if page < 1:
        raise ValueError(f"page is a number of events per read, at least 1; got {page}")

    arms = {baseline_version: _Arm(baseline_version), candidate_version: _Arm(candidate_version)}
    arm_of: dict[str, _Arm] = {}
    unassigned = 0
    earliest_start = since
    ends = EventQuery(workflow=workflow, kinds=(EventKind.RUN_END,), sources=SOURCES, since=since, until=until)
    for event in _paged(store, ends, page):
        arm = arms.get(event.config_version)
        if arm is None or event.trace_id in arm_of:
            continue
        if assigned_only and event.variant not in ASSIGNED_VARIANTS:
            unassigned += 1
            continue
        arm_of[event.trace_id] = arm
        arm.traces.append(event.trace_id)
        arm.ok += event.status == "ok"
        arm.errors += event.status == "error"
        if event.duration_ms is not None:
            arm.latencies.append(float(event.duration_ms))
            earliest_start = min(earliest_start, event.time - event.duration_ms / 1000.0)

    tokens: dict[str, int] = {}
    usage = EventQuery(workflow=workflow, kinds=(EventKind.LLM_USAGE,), sources=SOURCES, since=earliest_start, until=until)
    for event in _paged(store, usage, page):
        if event.trace_id in arm_of:
            tokens[event.trace_id] = tokens.get(event.trace_id, 0) + (event.input_tokens or 0) + (event.output_tokens or 0)

    # Feedback may be recorded without a workflow tag: read the window's production feedback, keep this run set's.
    feedback: dict[str, float] = {}
    duplicates = 0
    for event in _paged(store, EventQuery(kinds=(EventKind.FEEDBACK,), sources=SOURCES, since=since, until=until), page):
        if event.trace_id not in arm_of or event.score is None:
            continue
        if event.trace_id in feedback:
            duplicates += 1
        else:
            feedback[event.trace_id] = float(event.score)

    assignments: dict[int, int] = {}
    starts = EventQuery(workflow=workflow, kinds=(EventKind.RUN_START,), sources=SOURCES, since=assignments_since, until=until)
    counted: set[str] = set()
    for event in _paged(store, starts, page):
        if event.config_version is None or event.variant not in ASSIGNED_VARIANTS:
            continue
        unit = _unit_of(event)
        if unit in counted:
            continue
        counted.add(unit)
        assignments[event.config_version] = assignments.get(event.config_version, 0) + 1

    return LiveEvidence(
        workflow=workflow, baseline_version=baseline_version, candidate_version=candidate_version, since=since,
        until=until, assignments_since=assignments_since,
        baseline=arms[baseline_version].evidence(tokens, feedback), candidate=arms[candidate_version].evidence(tokens, feedback),
        assignments=dict(sorted(assignments.items())), unassigned_runs=unassigned, duplicate_feedback=duplicates,
    )


def _unit_of(event: TrajectoryEvent) -> str:
    """What the router assigned for this run: its user, else its thread, else the run alone."""
    if event.user_hash:
        return "u:" + event.user_hash
    if event.thread_id:
        return "t:" + event.thread_id
    return "r:" + event.trace_id


def _paged(store: TraceStore, query: EventQuery, page: int) -> Iterator[TrajectoryEvent]:
    """Every event ``query`` matches, oldest first, read ``page`` at a time.

    Pages advance by time: the next page starts at the last page's last timestamp (inclusive), and
    events already seen at exactly that time are skipped, so ties across a page boundary are neither
    lost nor repeated. A page made entirely of one timestamp doubles the page size to get past it.
    """
    since = query.since
    seen_at_boundary: set[str] = set()
    while True:
        batch = store.read(replace(query, since=since, limit=page))
        for event in batch:
            if event.event_id not in seen_at_boundary:
                yield event
        if len(batch) < page:
            return
        last = batch[-1].time
        at_last = {e.event_id for e in batch if e.time == last}
        if last == since:  # no progress in time: keep what was seen there, read a bigger page
            seen_at_boundary |= at_last
            page *= 2
        else:
            since, seen_at_boundary = last, at_last
