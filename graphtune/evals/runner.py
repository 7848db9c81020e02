"""The eval runner: one config over a dataset, with bounded async concurrency, a result cache,
recorded trajectories and early stopping against a baseline.

Each example runs the compiled workflow with the recorder attached (source ``eval``, tagged with
the config version), is scored, and is written to the cache at once, so a crashed run resumes
where it stopped. A failing example is an error result, never the end of the run.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import math
import time
import uuid
from collections.abc import Mapping
from contextlib import asynccontextmanager
from typing import Any, Callable, Literal, Union

from langchain_core.callbacks import UsageMetadataCallbackHandler
from langchain_core.runnables.config import var_child_runnable_config
from pydantic import BaseModel, Field

from graphtune.backends.eval_cache import CacheKey, EvalCache
from graphtune.evals.datasets import Dataset, Example, load_dataset
from graphtune.evals.evaluators import (EVALUATOR_VERSION, RunOutcome, evaluator_version, judge_answer, missing_outputs, question_of,
                                       read_output, score, score_declared)
from graphtune.evals.evaluators import QUALITY as QUALITY_METRICS
from graphtune.evals.stats import MetricSummary, clearly_worse, summarize
from graphtune.spec import WorkflowSpec
from graphtune.throttling import model_failure
from graphtune.tuning.config_paths import config_hash


class ExampleResult(BaseModel):
    example_id: str
    scores: dict[str, float | None]
    answer: str | None = None
    sources: list[str] | None = None
    error: str | None = None
    metric_errors: dict[str, str] = Field(default_factory=dict, description="metric -> why this row has no usable score on it "
                                          "(its evaluator raised, the output field it reads is missing)")
    trace_id: str | None = None
    cached: bool = False


class EvalReport(BaseModel):
    workflow: str
    dataset: str
    dataset_hash: str
    config_hash: str
    config_version: int | None = None
    evaluator_version: str = EVALUATOR_VERSION
    results: list[ExampleResult]
    summary: dict[str, MetricSummary]
    examples_total: int = Field(description="Examples selected for this run")
    cached: int = Field(0, description="Results served from the cache")
    stopped_early: bool = False
    stop_reason: str = ""
    wall_s: float = 0.0
    unscored: dict[str, str] = Field(default_factory=dict, description="metric -> why it was scored on no example "
                                     "(the field, the row, the first error)")
    metric_errors: dict[str, str] = Field(default_factory=dict, description="metric -> on how many rows it had no usable "
                                          "score, and the first row's reason")

    def value(self, metric: str, statistic: str = "mean") -> float | None:
        summary = self.summary.get(metric)
        return summary.statistic(statistic) if summary else None

    def scores_by_example(self, metric: str) -> dict[str, float]:
        return {r.example_id: r.scores[metric] for r in self.results if r.scores.get(metric) is not None}


def price(spec: WorkflowSpec, usage: dict[str, dict]) -> float:
    """USD for the tokens of each model, by the spec's pricing (longest matching model-name prefix)."""
    total = 0.0
    for model, tokens in usage.items():
        matches = [name for name in spec.pricing if model.startswith(name)]
        if matches:
            rate = spec.pricing[max(matches, key=len)]
            total += tokens.get("input_tokens", 0) * rate.input_per_1m / 1e6 + tokens.get("output_tokens", 0) * rate.output_per_1m / 1e6
    return total


Reference = Union["EvalReport", Mapping[str, float], Callable[[], Mapping[str, float]]]
"""What losers are stopped against: a finished report, per-example scores, or a function returning
the scores known so far (a reference evaluated at the same time, in parallel)."""


def reference_scores(reference: Reference, metric: str) -> Mapping[str, float]:
    if isinstance(reference, EvalReport):
        return reference.scores_by_example(metric)
    if callable(reference):
        return reference()
    return reference


def stop_reason(mine: Mapping[str, float], reference: Mapping[str, float], metric: str,
                direction: Literal["maximize", "minimize"], what: str = "the baseline") -> str:
    """Why a config should stop now (clearly worse than the reference on paired examples), or ""."""
    sign = 1.0 if direction == "maximize" else -1.0
    differences = [sign * (mine[i] - reference[i]) for i in mine.keys() & reference.keys()]
    if clearly_worse(differences):
        mean = sum(differences) / len(differences)
        return f"clearly worse than {what} on {metric} after {len(differences)} paired examples (mean difference {sign * mean:+.3f})"
    return ""


RACE_RUNGS = (0.25, 0.5)  # successive halving: keep the better half at 25% of the examples, a quarter at 50%
RACE_MIN_EXAMPLES = 20  # a rung earlier than this says too little to rank on
RACE_MIN_BATCH = 3  # configs evaluated side by side before successive halving applies


def race_stop(mine: Mapping[str, float], peers: list[Mapping[str, float]], direction: Literal["maximize", "minimize"],
              total: int, metric: str, rungs: tuple[float, ...] = RACE_RUNGS) -> str:
    """Why a config should stop now in a race against the configs evaluated beside it, or "".

    Successive halving (as in Hyperband): at each rung the configs that have reached it are ranked
    by their mean on the examples all of them have scored; those below the kept share stop. Ties
    keep everyone. A batch of four keeps two at 25% of the examples and one at 50%.

    A batch of two does not race (``RACE_MIN_BATCH``): halving it stops one config at a quarter of
    the examples on the goal alone, and the tuning suite showed that cutting the config that keeps
    the guardrails, beside one that leads on the goal and then breaks one, costs more than finishing
    both. Only the early stop against the reference applies to it.
    """
    if len(peers) + 1 < RACE_MIN_BATCH:
        return ""
    sign = 1.0 if direction == "maximize" else -1.0
    for level, fraction in reversed(list(enumerate(rungs))):
        k = max(RACE_MIN_EXAMPLES, math.ceil(fraction * total))
        if len(mine) < k or k >= total:
            continue
        racers = [mine] + [p for p in peers if len(p) >= k]
        if len(racers) < 2:
            return ""
        common = set(mine).intersection(*racers[1:])
        if len(common) < RACE_MIN_EXAMPLES:
            return ""
        means = [sum(r[i] for i in common) / len(common) for r in racers]
        keep = max(1, math.ceil(len(racers) / 2 ** (level + 1)))
        rank = 1 + sum(1 for m in means[1:] if sign * (m - means[0]) > 1e-12)
        if rank > keep:
            return (f"ranked {rank} of {len(racers)} configs of its batch on {metric} after {len(common)} shared examples "
                    f"(successive halving keeps {keep})")
        return ""
    return ""


RUN_METRICS = ("latency_ms", "input_tokens", "output_tokens", "total_tokens", "cost_usd", "error")


def usable(result: ExampleResult, metric: str) -> bool:
    """A score that shows the metric can be measured: not the stand-in a failed run gets (0 for quality,
    ``on_error``), nor a row the metric has a note on. Cost, latency and errors are measured on any run."""
    if result.error is not None and metric not in RUN_METRICS:
        return False
    return result.scores.get(metric) is not None and metric not in result.metric_errors


def unscored_reasons(spec: WorkflowSpec, results: list[ExampleResult], examples: list[Example]) -> dict[str, str]:
    """Each metric with no usable score on any example, and why, naming the field, the row and the first error.
    Every run failing leaves every quality metric unscored: zeros stood in for answers nobody gave."""
    if not results:
        return {}
    return {m: unscored_reason(spec, m, results, examples) for m in spec.evals.metric_names
            if not any(usable(r, m) for r in results)}


def unscored_reason(spec: WorkflowSpec, metric: str, results: list[ExampleResult], examples: list[Example]) -> str:
    """Why ``metric`` has no usable score on any example."""
    first = results[0]
    if all(r.error for r in results):
        return f"every example failed; the first, row {first.example_id!r}: {first.error}"
    first = next(r for r in results if not r.error)
    noted = next((r for r in results if metric in r.metric_errors), None)
    if noted is not None:
        return f"{metric} has no usable score on any row; the first, row {noted.example_id!r}: {noted.metric_errors[metric]}"
    row = next((e for e in examples if e.id == first.example_id), None)
    declared = next((m for m in spec.evals.declared if metric in m.directions()), None)
    if declared is None and metric in QUALITY_METRICS:
        output = spec.evals.output.sources if metric == "retrieval_hit" else spec.evals.output.answer
        wanted = {"retrieval_hit": "sources", "contains": "facts or answer"}.get(metric, "answer")
    elif declared is not None and hasattr(declared, "kind"):
        output, wanted = declared.output, declared.expected
    elif declared is not None:
        return f"{metric}: evaluator {declared.evaluator} returned no score on any row (the first, {first.example_id!r})"
    else:
        return f"no example was scored on {metric}"
    if row is not None and not row.expected:
        return f"row {first.example_id!r} has no expected values; {metric} compares {output!r} with expected.{wanted}"
    if row is not None:
        return (f"{metric} compares {output!r} with expected.{wanted}, which row {first.example_id!r} does not have "
                f"(its expected keys: {sorted(row.expected)})")
    return f"no example was scored on {metric}"


def metric_errors(results: list[ExampleResult]) -> dict[str, str]:
    """Per metric, how many rows had no usable score and the first row's reason."""
    noted: dict[str, list[ExampleResult]] = {}
    for result in results:
        for metric in result.metric_errors:
            noted.setdefault(metric, []).append(result)
    return {m: f"{len(rows)} of {len(results)} rows; the first, row {rows[0].example_id!r}: {rows[0].metric_errors[m]}"
            for m, rows in noted.items()}


class _UsageCounter(UsageMetadataCallbackHandler):
    """Token usage per model, counted inline: a sync handler otherwise costs a thread hop per callback."""

    run_inline = True


def _detached(coroutine):
    """Run as its own trace: called from inside a graph node (the controller's evaluate step),
    LangChain would otherwise make every eval run a child of that node's run."""
    context = contextvars.copy_context()
    context.run(var_child_runnable_config.set, None)
    return asyncio.get_running_loop().create_task(coroutine, context=context)


class FairLimit:
    """A concurrency limit that admits waiting runs by example position, not by arrival.

    Several configs evaluated at once then advance in step (example 1 of each, then example 2, ...),
    so a loser has paired examples against a reference running beside it from the start, and can
    be stopped early. A plain FIFO semaphore would run whichever config queued first to the end.
    """

    def __init__(self, limit: int):
        self._free = limit
        self._waiting: list[tuple[int, int, asyncio.Future]] = []
        self._arrivals = itertools.count()

    async def acquire(self, position: int) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (position, next(self._arrivals), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # granted, then cancelled: hand the slot on
                self.release()
            raise

    def release(self) -> None:
        while self._waiting:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():
                future.set_result(None)
                return
        self._free += 1

    @asynccontextmanager
    async def slot(self, position: int):
        await self.acquire(position)
        try:
            yield
        finally:
            self.release()


class EvalRunner:
    """Runs configs of one spec; share one runner (and its concurrency limit) across parallel candidates."""

    def __init__(
        self,
        spec: WorkflowSpec,
        *,
        recorder=None,
        cache: EvalCache | None = None,
        concurrency: int | None = None,
        judge_model=None,
        limit: FairLimit | None = None,
    ):
        self.spec = spec
        self.recorder = recorder
        self.cache = cache
        self.concurrency = concurrency or spec.evals.concurrency
        self._shared_limit = limit
        self._limit: tuple[asyncio.AbstractEventLoop, FairLimit] | None = None
        self.judge_model = judge_model
        self.evaluator_version = evaluator_version(spec)
        self.score_export = None  # the last report's Langfuse score upload (a Future), when keys are set

    @property
    def limit(self) -> FairLimit:
        """The concurrency limit: the shared one if given, else one per event loop (asyncio.run makes a new loop)."""
        if self._shared_limit is not None:
            return self._shared_limit
        loop = asyncio.get_running_loop()
        if self._limit is None or self._limit[0] is not loop:
            self._limit = (loop, FairLimit(self.concurrency))
        return self._limit[1]

    async def run(
        self,
        config: dict | None = None,
        *,
        dataset: Dataset | None = None,
        config_version: int | None = None,
        variant: str | None = None,
        limit: int | None = None,
        baseline: Reference | None = None,
        check_every: int = 20,
        on_result: Callable[[ExampleResult], None] | None = None,
        stop_on: tuple[str, Literal["maximize", "minimize"]] | None = None,
        reference_name: str = "the baseline",
        should_stop: Callable[[dict[str, ExampleResult], int], str] | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> EvalReport:
        """Evaluate ``config``; with ``baseline``, stop early once clearly worse than it on ``stop_on``
        (metric, direction; default the spec's objective), checked every ``check_every`` fresh results.
        ``should_stop(results, total)`` adds a rule of the caller's (a race against parallel configs), checked as often.
        ``on_start(total)`` hears how many examples the run will score, before the first result."""
        spec = self.spec
        config = spec.config if config is None else config
        dataset = dataset or await asyncio.to_thread(load_dataset, spec.dataset_path(), spec.evals.datasets[0].name)
        examples = dataset.select(limit=limit)
        if on_start:
            on_start(len(examples))
        key = CacheKey(config_hash(config), dataset.hash, self.evaluator_version)
        started = time.perf_counter()

        cached = await asyncio.to_thread(self.cache.get_many, key, [e.id for e in examples]) if self.cache else {}
        results: dict[str, ExampleResult] = {}
        for example in examples:
            if example.id in cached:
                results[example.id] = ExampleResult.model_validate({**cached[example.id], "cached": True})
                if on_result:
                    on_result(results[example.id])
        pending = [e for e in examples if e.id not in results]

        graph = await asyncio.to_thread(spec.build_graph, config) if pending else None
        stopped = ""
        tasks = {asyncio.ensure_future(self._run_one(graph, example, position, config_version, variant)): example
                 for position, example in enumerate(pending)}
        fresh = 0
        try:
            for finished in asyncio.as_completed(tasks):
                result = await finished
                results[result.example_id] = result
                fresh += 1
                if self.cache:
                    await asyncio.to_thread(self.cache.put, key, result.example_id, result.model_dump(exclude={"cached"}))
                if on_result:
                    on_result(result)
                if fresh % check_every == 0 and len(results) < len(examples):
                    if baseline is not None:
                        stopped = self._stop_reason(results, baseline, stop_on, reference_name)
                    if not stopped and should_stop is not None:
                        stopped = should_stop(results, len(examples))
                    if stopped:
                        break
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.recorder is not None and pending:
            await asyncio.to_thread(self.recorder.flush, 30.0)

        ordered = [results[e.id] for e in examples if e.id in results]
        summary = {m: summarize([r.scores[m] for r in ordered if r.scores.get(m) is not None]) for m in spec.evals.metric_names}
        report = EvalReport(
            workflow=spec.workflow, dataset=dataset.name, dataset_hash=dataset.hash, config_hash=key.config_hash,
            config_version=config_version, evaluator_version=self.evaluator_version, results=ordered, summary=summary,
            examples_total=len(examples), cached=len(cached), stopped_early=bool(stopped), stop_reason=stopped,
            wall_s=time.perf_counter() - started, unscored=unscored_reasons(spec, ordered, examples),
            metric_errors=metric_errors(ordered),
        )
        if self.recorder is not None and pending:
            # With Langfuse keys set, the scores go to the runs' traces there, on a background thread.
            from graphtune.backends.langfuse_scores import submit_eval_scores

            self.score_export = submit_eval_scores(report)
        return report

    def _stop_reason(self, results: dict[str, ExampleResult], baseline: Reference, stop_on, what: str) -> str:
        metric, direction = stop_on or (self.spec.objective.metric, self.spec.objective.direction)
        mine = {i: r.scores[metric] for i, r in results.items() if r.scores.get(metric) is not None}
        return stop_reason(mine, reference_scores(baseline, metric), metric, direction, what)

    async def _run_one(self, graph, example: Example, position: int, config_version: int | None, variant: str | None) -> ExampleResult:
        from graphtune.tracing.recorder import run_tags

        spec = self.spec
        usage = _UsageCounter()
        run_id = uuid.uuid4()
        callbacks = [usage] + ([self.recorder] if self.recorder is not None else [])
        run_config = {
            "callbacks": callbacks,
            "run_id": run_id,
            "metadata": {**run_tags(spec.workflow, config_version=config_version, variant=variant, source="eval"),
                         "graphtune_example_id": example.id},
            "configurable": {"thread_id": f"eval-{example.id}-{run_id.hex[:8]}"},
        }
        async with self.limit.slot(position):
            started = time.perf_counter()
            error = None
            state: Any = None
            run = _detached(graph.ainvoke(dict(example.inputs), run_config))
            try:
                # asyncio.wait, not wait_for: a TimeoutError the workflow raises itself is its own error,
                # never "no result within"
                await asyncio.wait({run}, timeout=spec.evals.timeout_s)
                if not run.done():
                    run.cancel()
                    await asyncio.gather(run, return_exceptions=True)
                    error = f"TimeoutError: no result within {spec.evals.timeout_s:g} s (evals.timeout_s)"
                else:
                    state = run.result()
            except asyncio.CancelledError:
                run.cancel()
                raise
            except Exception as exc:  # a failing example is a result, not the end of the run
                error = model_failure(exc) or f"{type(exc).__name__}: {exc}"
            latency_ms = (time.perf_counter() - started) * 1000
            tokens = usage.usage_metadata
            answer = read_output(state, spec.evals.output.answer)
            sources = read_output(state, spec.evals.output.sources)
            outcome = RunOutcome(
                answer=None if answer is None else str(answer),
                sources=list(sources) if isinstance(sources, (list, tuple)) else None,
                latency_ms=latency_ms,
                input_tokens=sum(t.get("input_tokens", 0) for t in tokens.values()),
                output_tokens=sum(t.get("output_tokens", 0) for t in tokens.values()),
                cost_usd=price(spec, tokens),
                error=error,
            )
            scores = score(spec.evals.metric_names, outcome, example.expected)
            notes = missing_outputs(spec, outcome)
            declared, declared_notes = await score_declared(spec, state, example, error)
            scores.update(declared)
            notes.update(declared_notes)
            if "judge" in spec.evals.metric_names and self.judge_model is not None and error is None and example.expected:
                try:
                    scores["judge"] = await judge_answer(self.judge_model, question_of(example.inputs), outcome.answer or "", example.expected)
                except Exception:  # a judge failure leaves the example unjudged, not failed
                    scores["judge"] = None
        return ExampleResult(example_id=example.id, scores=scores, answer=outcome.answer, sources=outcome.sources,
                             error=error, metric_errors=notes, trace_id=run_id.hex if self.recorder is not None else None)
