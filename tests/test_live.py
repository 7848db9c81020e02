"""Live evidence from a trace store: per-arm figures from known events, one feedback per run, only
production runs the split placed, assignment counts for the sample-ratio check, paging by time."""

from __future__ import annotations

import math
import uuid

import pytest

from graphtune.backends.traces import open_trace_store
from graphtune.live import METRICS, read_live_evidence
from graphtune.tracing.events import EventKind, TrajectoryEvent
from graphtune.tuning.sequential import compare

T0 = 1_800_000_000.0


@pytest.fixture(params=["sqlite", "postgres", "jsonl"])
def trace_store(request, tmp_path):
    url = {"sqlite": f"sqlite:///{tmp_path}/traces.db", "jsonl": f"jsonl:///{tmp_path}/traces"}.get(request.param)
    store = open_trace_store(url or request.getfixturevalue("pg_url"))
    yield store
    store.close()


def run(t: float, version: int, *, variant: str | None = "baseline", status: str = "ok", duration_ms: float = 100.0,
        tokens: tuple[int, ...] = (), source: str = "production", workflow: str = "qa", score: float | None = None,
        extra_scores: tuple[float, ...] = ()) -> tuple[str, list[TrajectoryEvent]]:
    """One recorded run: start, LLM usage, end, and feedback events, as the recorder writes them."""
    trace = uuid.uuid4().hex
    tags = dict(trace_id=trace, workflow=workflow, config_version=version, variant=variant, source=source)
    start = t - duration_ms / 1000.0
    events = [TrajectoryEvent(kind=EventKind.RUN_START, time=start, span_id=trace[:16], name=workflow, **tags)]
    for i, n in enumerate(tokens):
        events.append(TrajectoryEvent(kind=EventKind.LLM_USAGE, time=start + 0.001 * (i + 1), span_id=uuid.uuid4().hex[:16],
                                      name="m", input_tokens=n, output_tokens=1, status="ok", **tags))
    events.append(TrajectoryEvent(kind=EventKind.RUN_END, time=t, span_id=trace[:16], name=workflow, status=status,
                                  duration_ms=duration_ms, **tags))
    for i, s in enumerate(((score,) if score is not None else ()) + extra_scores):
        # feedback carries no version: it is joined to its run by trace id (and may lack the workflow tag)
        events.append(TrajectoryEvent(kind=EventKind.FEEDBACK, time=t + 1 + i, trace_id=trace, span_id=uuid.uuid4().hex[:16],
                                      name="user_feedback", workflow=workflow if i % 2 == 0 else None, source=source, score=s))
    return trace, events


def write(store, *runs) -> None:
    store.write([e for _, events in runs for e in events])


def test_arm_figures_from_known_events(trace_store):
    write(trace_store,
          run(T0 + 1, 1, duration_ms=100, tokens=(10, 20), score=1.0),
          run(T0 + 2, 1, duration_ms=300, status="error", score=0.0),
          run(T0 + 3, 1, duration_ms=200, tokens=(5,)),
          run(T0 + 4, 2, variant="candidate", duration_ms=50, tokens=(7,), score=0.8),
          run(T0 + 5, 2, variant="candidate", duration_ms=70, status="interrupted", score=0.2))
    evidence = read_live_evidence(trace_store, "qa", baseline_version=1, candidate_version=2, since=T0, until=T0 + 100)

    base, cand = evidence.baseline, evidence.candidate
    assert (base.version, base.runs, base.ok, base.errors, base.rated, base.positive) == (1, 3, 2, 1, 2, 1)
    assert (cand.version, cand.runs, cand.ok, cand.errors, cand.rated, cand.positive) == (2, 2, 1, 0, 2, 1)
    assert base.success.mean == pytest.approx(2 / 3) and base.error.mean == pytest.approx(1 / 3)
    assert cand.error.mean == 0 and cand.success.mean == 0.5  # interrupted: neither ok nor an error
    assert base.positive_feedback.n == 3 and base.positive_feedback.mean == pytest.approx(1 / 3)
    assert base.feedback_score.n == 2 and base.feedback_score.mean == 0.5
    # net feedback per run: +1 / -1 / 0 without feedback; a score s counts 2s - 1
    assert base.net_feedback.n == 3 and base.net_feedback.mean == pytest.approx(0.0)
    assert cand.net_feedback.n == 2 and cand.net_feedback.mean == pytest.approx((0.6 - 0.6) / 2)
    assert cand.feedback_score.mean == pytest.approx(0.5)
    assert base.latency_ms.mean == pytest.approx(200) and base.latency_ms.variance == pytest.approx(10_000)
    assert base.tokens.n == 3 and base.tokens.mean == pytest.approx((32 + 0 + 6) / 3)  # input + output per run
    assert cand.tokens.mean == pytest.approx(8 / 2)
    assert evidence.assignments == {1: 3, 2: 2}
    assert evidence.duplicate_feedback == 0 and evidence.unassigned_runs == 0
    for metric in METRICS:  # every metric is ready for the sequential tests
        candidate, baseline = evidence.arms(metric)
        assert compare(candidate, baseline, metric=metric, min_samples=2).metric == metric
    with pytest.raises(ValueError, match="expected one of success, error"):
        evidence.arms("accuracy")
    assert "baseline v1: 3 runs" in evidence.describe()
    # fits in a report (the per-run latencies, kept for quantile guardrails, stay out of it)
    assert type(evidence).model_validate_json(evidence.model_dump_json()).model_dump() == evidence.model_dump()
    assert "latencies_ms" not in evidence.model_dump()["baseline"]
    # p95 of the baseline (100, 200, 300 ms) is 300: no candidate run is above 1.2x of it, one is above 0.2x
    assert evidence.latency_exceeding(0.95, 1.2) == (0, 2) and evidence.latency_exceeding(0.95, 0.2) == (1, 2)


def test_duplicate_feedback_counts_once_and_the_first_answer_stands(trace_store):
    write(trace_store,
          run(T0 + 1, 1, score=0.0, extra_scores=(1.0, 1.0)),  # a thumbs down, then two thumbs up for the same run
          run(T0 + 2, 2, variant="candidate", score=1.0, extra_scores=(1.0,)))
    evidence = read_live_evidence(trace_store, "qa", baseline_version=1, candidate_version=2, since=T0, until=T0 + 100)
    assert (evidence.baseline.rated, evidence.baseline.positive) == (1, 0)
    assert evidence.baseline.feedback_score.mean == 0.0
    assert (evidence.candidate.rated, evidence.candidate.positive) == (1, 1)
    assert evidence.duplicate_feedback == 3


def test_only_production_runs_of_the_workflow_the_split_placed_count(trace_store):
    write(trace_store,
          run(T0 + 1, 1), run(T0 + 2, 2, variant="candidate"),
          run(T0 + 3, 2, variant="candidate", source="eval", score=0.0),  # an eval run of the candidate
          run(T0 + 4, 1, source="controller"),
          run(T0 + 5, 2, variant="candidate", workflow="other"),
          run(T0 + 6, 1, variant="unassigned"),  # no unit key: always the baseline, not a random share
          run(T0 + 7, 2, variant=None),  # the version pinned by name, outside the experiment
          run(T0 + 8, 3, variant="candidate"),  # a third version
          run(T0 - 5, 1), run(T0 + 200, 2, variant="candidate"))  # outside the window
    evidence = read_live_evidence(trace_store, "qa", baseline_version=1, candidate_version=2, since=T0, until=T0 + 100)
    assert (evidence.baseline.runs, evidence.candidate.runs) == (1, 1)
    assert evidence.candidate.rated == 0  # the eval run's feedback is not the candidate's
    assert evidence.unassigned_runs == 2
    assert evidence.assignments == {1: 1, 2: 1, 3: 1}  # every placed version, for the split's check

    everything = read_live_evidence(trace_store, "qa", baseline_version=1, candidate_version=2, since=T0, until=T0 + 100,
                                    assigned_only=False)
    assert (everything.baseline.runs, everything.candidate.runs) == (2, 2)


def test_assignment_counts_feed_the_sample_ratio_check(trace_store):
    runs = [run(T0 + 1 + i * 0.01, 1) for i in range(60)] + [run(T0 + 1 + i * 0.01, 2, variant="candidate") for i in range(40)]
    runs += [run(T0 + 0.5, 2, variant="candidate") for _ in range(30)]  # before the latest ramp step
    write(trace_store, *runs)
    evidence = read_live_evidence(trace_store, "qa", baseline_version=1, candidate_version=2, since=T0, until=T0 + 100,
                                  assignments_since=T0 + 0.9)
    assert evidence.assignments == {1: 60, 2: 40}
    assert evidence.candidate.runs == 70  # the arm itself covers the whole experiment
    assert not evidence.srm({1: 0.6, 2: 0.4}).flagged
    mismatch = evidence.srm({1: 0.9, 2: 0.1})
    assert mismatch.flagged and mismatch.observed == {1: 60, 2: 40}


def test_paging_by_time_loses_and_repeats_nothing_even_across_tied_timestamps(trace_store):
    runs = [run(T0 + 1 + (i // 7), 1 + i % 2, variant="candidate" if i % 2 else "baseline", tokens=(i,),
                score=(i % 3) / 2) for i in range(50)]  # seven run ends share each timestamp
    write(trace_store, *runs)
    whole = read_live_evidence(trace_store, "qa", baseline_version=1, candidate_version=2, since=T0, until=T0 + 100)
    paged = read_live_evidence(trace_store, "qa", baseline_version=1, candidate_version=2, since=T0, until=T0 + 100, page=3)
    assert whole.baseline.runs + whole.candidate.runs == 50
    assert paged.model_dump() == whole.model_dump()


def test_an_empty_window_and_bad_arguments():
    from graphtune.backends.sqlite import SqliteTraceStore

    store = SqliteTraceStore("sqlite:///:memory:")
    evidence = read_live_evidence(store, "qa", baseline_version=1, candidate_version=2, since=T0, until=T0 + 1)
    assert evidence.baseline.runs == evidence.candidate.runs == 0 and evidence.assignments == {}
    assert math.isclose(evidence.baseline.latency_ms.mean, 0.0)
    with pytest.raises(ValueError, match="same version"):
        read_live_evidence(store, "qa", baseline_version=1, candidate_version=1, since=T0)
    with pytest.raises(ValueError, match="must be before until"):
        read_live_evidence(store, "qa", baseline_version=1, candidate_version=2, since=T0, until=T0)
    with pytest.raises(ValueError, match="candidate_version is an integer"):
        read_live_evidence(store, "qa", baseline_version=1, candidate_version="2", since=T0)
