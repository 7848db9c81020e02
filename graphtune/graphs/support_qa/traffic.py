"""Simulated production traffic for support_qa: real runs of the ACTIVE config, recorded, with user feedback.

``simulate_production(150, recorder=recorder)`` is what the demo, the tests and the benchmarks use to
give the controller something to observe. Each request is a question sampled (seeded) from the
bundled eval set, asked by one of a pool of simulated users and run exactly as an application runs
the workflow: the config comes from the config store's active version (``graphtune.active_version``),
the run is tagged with ``run_tags(source="production", config_version=..., user_id=...)`` and the
recorder is its callback. Because every question has a labelled answer, the simulated users can be
honest critics: a user whose answer misses the expected facts (``contains`` < 1) or whose request
failed leaves a thumbs down; a share of the satisfied ones leave a thumbs up.

The workflow's nodes are async: the runs are ``ainvoke`` calls with bounded concurrency, inside one
``asyncio.run`` for the sync entry point, or awaited directly with ``asimulate_production``.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from graphtune.evals.evaluators import RunOutcome, score
from graphtune.evals.runner import read_output
from graphtune.tracing.recorder import TrajectoryRecorder, default_recorder, run_tags

DEFAULT_CONCURRENCY = 8
DISLIKE_BELOW = 1.0  # a user dislikes an answer that misses any expected fact (contains < 1)


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
    - ``config``: run this config instead of the active one (its version tag is looked up by hash).
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
    graph = await asyncio.to_thread(spec.build_graph, run_config)
    rng = random.Random(seed)
    pool = [f"user-{i:03d}" for i in range(users or max(5, n // 5))]
    plan = [(rng.choice(examples), rng.choice(pool), rng.random() < like_rate) for _ in range(n)]
    limit = asyncio.Semaphore(max(1, concurrency))

    async def one(index: int, example, user: str, likes: bool) -> tuple[str, float, str | None, float | None]:
        run_id = uuid.uuid4()  # the trace id is the root run id, known in advance for feedback
        call = {
            "run_id": run_id,
            "callbacks": [recorder],
            "metadata": run_tags(spec.workflow, config_version=version, source="production", user_id=user),
            "configurable": {"thread_id": f"prod-{seed}-{index}"},
        }
        async with limit:
            started = time.perf_counter()
            state, error = None, None
            try:
                state = await graph.ainvoke(dict(example.inputs), call)
            except Exception as exc:  # a failed request is traffic too: recorded, and the user is unhappy
                error = f"{type(exc).__name__}: {exc}"
            latency_ms = (time.perf_counter() - started) * 1000
        answer = read_output(state, spec.evals.output.answer)
        outcome = RunOutcome(answer=None if answer is None else str(answer), sources=None, latency_ms=latency_ms, error=error)
        correct = score(["contains"], outcome, example.expected)["contains"] if example.expected else None
        trace_id = run_id.hex
        if error is not None or (correct is not None and correct < DISLIKE_BELOW):
            recorder.feedback(trace_id, thumbs_up=False, workflow=spec.workflow, user_id=user,
                              comment="the request failed" if error else "the answer missed what I asked")
        elif likes:
            recorder.feedback(trace_id, thumbs_up=True, workflow=spec.workflow, user_id=user)
        return trace_id, latency_ms, error, correct

    started = time.perf_counter()
    results = await asyncio.gather(*(one(i, ex, user, likes) for i, (ex, user, likes) in enumerate(plan)))
    seconds = time.perf_counter() - started
    await asyncio.to_thread(recorder.flush)
    latencies = sorted(r[1] for r in results)
    disliked = [r[0] for r in results if r[2] is not None or (r[3] is not None and r[3] < DISLIKE_BELOW)]
    liked = sum(1 for (r, (_, _, likes)) in zip(results, plan)
                if r[2] is None and (r[3] is None or r[3] >= DISLIKE_BELOW) and likes)
    return TrafficSummary(
        workflow=spec.workflow, config_version=version, requests=n,
        failed=sum(1 for r in results if r[2] is not None),
        thumbs_up=liked, thumbs_down=len(disliked),
        correct=sum(1 for r in results if r[2] is None and r[3] is not None and r[3] >= DISLIKE_BELOW),
        p50_ms=_percentile(latencies, 0.50), p95_ms=_percentile(latencies, 0.95), seconds=seconds,
        trace_ids=[r[0] for r in results], disliked_trace_ids=disliked,
    )


def _prepare(workflow: str, config: dict | None, database_url: str | None):
    """(spec, labelled questions, config version or None, the config to run)."""
    from graphtune.backends.configs import open_config_store
    from graphtune.configs import active_version
    from graphtune.evals.datasets import load_dataset
    from graphtune.spec import load_spec
    from graphtune.tuning.configs import config_hash

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
    return spec, examples, active.version, active.config


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[index]


__all__ = ["TrafficSummary", "asimulate_production", "simulate_production"]
