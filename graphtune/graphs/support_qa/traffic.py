"""Simulated production traffic for support_qa: real served runs, recorded, with user feedback.

``simulate_production(150, recorder=recorder)`` is what the demo, the tests and the benchmarks use to
give the controller something to observe. Each request is a question sampled (seeded) from the
bundled eval set, asked by one of a pool of simulated users and served exactly as an application
serves the workflow: through ``graphtune.serving.ServedWorkflow``, which routes the user by the
config store's active version and traffic split (so a live experiment's candidate gets its share),
runs that version's graph with the recorder and tags the run (source ``production``, config version,
variant, user). Feedback goes through the same wrapper. Because every question has a labelled
answer, the simulated users can be honest critics: a user whose answer misses the expected facts
(``contains`` < 1) or whose request failed leaves a thumbs down; a share of the satisfied ones leave
a thumbs up. ``config=`` pins one config instead (benchmarks): its runs are not routed.

The workflow's nodes are async: the runs are ``ainvoke`` calls with bounded concurrency, inside one
``asyncio.run`` for the sync entry point, or awaited directly with ``asimulate_production``.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from graphtune.evals.evaluators import RunOutcome, score
from graphtune.evals.runner import read_output
from graphtune.serving import ServedWorkflow
from graphtune.tracing.recorder import TrajectoryRecorder, default_recorder, run_tags

DEFAULT_CONCURRENCY = 8
DISLIKE_BELOW = 1.0  # a user dislikes an answer that misses any expected fact (contains < 1)


@dataclass
class VersionTraffic:
    """The requests one config version served in a burst, and their thumbs down."""

    requests: int = 0
    thumbs_down: int = 0

    @property
    def negative_feedback_rate(self) -> float:
        return self.thumbs_down / self.requests if self.requests else 0.0


@dataclass
class TrafficSummary:
    """What one burst of simulated traffic did; ``negative_feedback_rate`` is thumbs down per request."""

    workflow: str
    config_version: int | None
    requests: int
    failed: int
    thumbs_up: int
    thumbs_down: int
    correct: int  # answers stating every expected fact
    p50_ms: float
    p95_ms: float
    seconds: float
    trace_ids: list[str]
    disliked_trace_ids: list[str]
    by_version: dict[int, VersionTraffic] = field(default_factory=dict)  # where the router sent the requests

    @property
    def negative_feedback_rate(self) -> float:
        return self.thumbs_down / self.requests if self.requests else 0.0

    @property
    def error_rate(self) -> float:
        return self.failed / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "negative_feedback_rate": self.negative_feedback_rate, "error_rate": self.error_rate}

    def describe(self) -> str:
        version = f"v{self.config_version}" if self.config_version is not None else "an unversioned config"
        return (f"{self.requests} requests on {self.workflow} {version}: {self.failed} failed, "
                f"{self.thumbs_down} thumbs down ({self.negative_feedback_rate:.0%} negative feedback), "
                f"{self.thumbs_up} thumbs up, p95 {self.p95_ms:.0f} ms")


def simulate_production(
    n: int,
    *,
    recorder: TrajectoryRecorder | None = None,
    seed: int = 0,
    config: dict | None = None,
    workflow: str = "support_qa",
    database_url: str | None = None,
    users: int | None = None,
    like_rate: float = 0.3,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> TrafficSummary:
    """Serve ``n`` simulated production requests of ``workflow`` and record them with feedback.

    - ``recorder``: where runs and feedback go (default: the process-wide recorder, i.e. the store
      named by ``GRAPHTUNE_TRACES_URL`` / ``GRAPHTUNE_DATABASE_URL``). Flushed before returning.
    - ``seed``: picks the questions, the users and who of the satisfied users leaves a thumbs up.
    - ``config``: run this config instead of serving the active one and the split (its version tag is
      looked up by hash); such runs are not routed.
    - ``workflow``: a bundled workflow name or a spec file; its first eval dataset supplies the questions.
    - ``database_url``: the config store (default ``GRAPHTUNE_DATABASE_URL``). A workflow without an
      active version gets its spec's config stored and activated, as the controller does.
    - ``users``: size of the simulated user pool (default ``max(5, n // 5)``).
    - ``like_rate``: share of correct answers that get a thumbs up. Wrong answers and failures
      always get a thumbs down.
    - ``concurrency``: requests in flight at once.

    Sync: runs its own event loop. From async code, ``await asimulate_production(...)``.
    """
    return asyncio.run(asimulate_production(
        n, recorder=recorder, seed=seed, config=config, workflow=workflow, database_url=database_url,
        users=users, like_rate=like_rate, concurrency=concurrency))


async def asimulate_production(
    n: int,
    *,
    recorder: TrajectoryRecorder | None = None,
    seed: int = 0,
    config: dict | None = None,
    workflow: str = "support_qa",
    database_url: str | None = None,
    users: int | None = None,
    like_rate: float = 0.3,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> TrafficSummary:
    """``simulate_production`` for callers that already run an event loop."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    recorder = recorder or default_recorder()
    # spec, dataset, config store and graph building read files and databases: off the event loop
    spec, examples, version, run_config = await asyncio.to_thread(_prepare, workflow, config, database_url)
    rng = random.Random(seed)
    pool = [f"user-{i:03d}" for i in range(users or max(5, n // 5))]
    plan = [(rng.choice(examples), rng.choice(pool), rng.random() < like_rate) for _ in range(n)]
    limit = asyncio.Semaphore(max(1, concurrency))
    if run_config is None:
        served = ServedWorkflow(spec, database_url, recorder=recorder)
        serve, give_feedback = _served_requests(served)
    else:
        served = None
        graph = await asyncio.to_thread(spec.build_graph, run_config)
        serve, give_feedback = _pinned_requests(graph, spec.workflow, version, recorder)

    async def one(index: int, example, user: str, likes: bool) -> _Request:
        async with limit:
            started = time.perf_counter()
            trace_id, served_version, error, state = await serve(example, user, f"prod-{seed}-{index}")
            latency_ms = (time.perf_counter() - started) * 1000
        answer = read_output(state, spec.evals.output.answer)
        outcome = RunOutcome(answer=None if answer is None else str(answer), sources=None, latency_ms=latency_ms, error=error)
        correct = score(["contains"], outcome, example.expected)["contains"] if example.expected else None
        disliked = error is not None or (correct is not None and correct < DISLIKE_BELOW)
        if disliked:
            await give_feedback(trace_id, False, user, "the request failed" if error else "the answer missed what I asked")
        elif likes:
            await give_feedback(trace_id, True, user, None)
        return _Request(trace_id, served_version, latency_ms, error, correct, disliked, liked=likes and not disliked)

    started = time.perf_counter()
    try:
        results = await asyncio.gather(*(one(i, ex, user, likes) for i, (ex, user, likes) in enumerate(plan)))
    finally:
        if served is not None:
            await asyncio.to_thread(served.close)
    seconds = time.perf_counter() - started
    await asyncio.to_thread(recorder.flush)
    latencies = sorted(r.latency_ms for r in results)
    by_version: dict[int, VersionTraffic] = {}
    for r in results:
        if r.version is not None:
            counts = by_version.setdefault(r.version, VersionTraffic())
            counts.requests += 1
            counts.thumbs_down += r.disliked
    return TrafficSummary(
        workflow=spec.workflow, config_version=version, requests=n,
        failed=sum(1 for r in results if r.error is not None),
        thumbs_up=sum(r.liked for r in results), thumbs_down=sum(r.disliked for r in results),
        correct=sum(1 for r in results if r.error is None and r.correct is not None and r.correct >= DISLIKE_BELOW),
        p50_ms=_percentile(latencies, 0.50), p95_ms=_percentile(latencies, 0.95), seconds=seconds,
        trace_ids=[r.trace_id for r in results], disliked_trace_ids=[r.trace_id for r in results if r.disliked],
        by_version=dict(sorted(by_version.items())),
    )


@dataclass
class _Request:
    trace_id: str
    version: int | None
    latency_ms: float
    error: str | None
    correct: float | None
    disliked: bool
    liked: bool


def _served_requests(served: ServedWorkflow):
    """(serve, feedback) through the serving wrapper: routed by the split, tagged, feedback checked."""

    async def serve(example, user: str, thread_id: str):
        run_id = uuid.uuid4()  # the trace id: known in advance, so a failed request can get feedback too
        try:
            run = await served.ainvoke(dict(example.inputs), unit_key=user, run_id=run_id,
                                       config={"configurable": {"thread_id": thread_id}})
        except Exception as exc:  # a failed request is traffic too: recorded, and the user is unhappy
            info = served.ledger.run(run_id.hex)
            return run_id.hex, info.config_version if info else None, f"{type(exc).__name__}: {exc}", None
        return run.trace_id, run.config_version, None, run.output

    async def feedback(trace_id: str, thumbs_up: bool, user: str, comment: str | None) -> None:
        await served.afeedback(trace_id, thumbs_up=thumbs_up, user_id=user, comment=comment)

    return serve, feedback


def _pinned_requests(graph, workflow: str, version: int | None, recorder: TrajectoryRecorder):
    """(serve, feedback) for one pinned config: the graph run directly with the recorder and run tags."""

    async def serve(example, user: str, thread_id: str):
        run_id = uuid.uuid4()
        call = {"run_id": run_id, "callbacks": [recorder],
                "metadata": run_tags(workflow, config_version=version, source="production", user_id=user),
                "configurable": {"thread_id": thread_id}}
        try:
            return run_id.hex, version, None, await graph.ainvoke(dict(example.inputs), call)
        except Exception as exc:
            return run_id.hex, version, f"{type(exc).__name__}: {exc}", None

    async def feedback(trace_id: str, thumbs_up: bool, user: str, comment: str | None) -> None:
        recorder.feedback(trace_id, thumbs_up=thumbs_up, workflow=workflow, user_id=user, comment=comment)

    return serve, feedback


def _prepare(workflow: str, config: dict | None, database_url: str | None):
    """(spec, labelled questions, the active or pinned version, the pinned config or None to serve)."""
    from graphtune.backends.config_store import open_config_store
    from graphtune.active import active_version
    from graphtune.evals.datasets import load_dataset
    from graphtune.spec import load_spec
    from graphtune.tuning.config_paths import config_hash

    spec = load_spec(workflow)
    examples = [e for e in load_dataset(spec.dataset_path()).examples if e.labelled]
    if not examples:
        raise ValueError(f"{spec.dataset_path()}: no labelled rows to simulate users with")
    if config is not None:
        with open_config_store(database_url) as store:
            found = store.find(spec.workflow, config_hash(config))
        return spec, examples, found.version if found else None, config
    active = active_version(spec.workflow, url=database_url, ttl=0)
    if active is None:
        with open_config_store(database_url) as store:
            active = store.ensure_active(spec.workflow, spec.config, actor="graphtune")
    return spec, examples, active.version, None  # served: the router picks each request's config


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[index]


__all__ = ["TrafficSummary", "VersionTraffic", "asimulate_production", "simulate_production"]
