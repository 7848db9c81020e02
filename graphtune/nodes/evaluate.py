"""evaluate: one config over the eval set, as one of several parallel tasks (a LangGraph ``Send``).

All tasks of one controller run share one ``EvalRunner`` and so one concurrency limit, one result
cache and one recorder. A task stops early once its config is clearly worse than the reference
(the baseline in round one, the best config so far later) on paired examples, or, in a batch of
three or more, once it falls behind in the race with the other candidates of its batch (successive
halving: half go on at 25% of the examples, a quarter at 50%; ``evals.runner.race_stop``). Scores of configs running in the same step are read live as
they arrive, so nothing waits for anything to finish.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict

from langchain_core.messages import AIMessage
from langgraph.runtime import Runtime

from graphtune.evals.runner import EvalReport, EvalRunner, race_stop
from graphtune.graphs.context import ControllerContext
from graphtune.graphs.state import EvalTask
from graphtune.llm import using
from graphtune.spec import load_spec
from graphtune.tracing.recorder import recorder_for

MAX_ANSWER_CHARS = 300
_LIVE_LIMIT = 256

# (thread id, config hash) -> per-example goal scores, filled while that config is evaluated
_live: OrderedDict[tuple[str, str], dict[str, float]] = OrderedDict()
# event loop -> {(thread id, spec): runner}: one runner (and concurrency limit) per controller run
_runners: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def live_scores(thread_id: str, config_hash: str) -> dict[str, float]:
    key = (thread_id, config_hash)
    if key not in _live:
        _live[key] = {}
        while len(_live) > _LIVE_LIMIT:
            _live.popitem(last=False)
    return _live[key]


def _new_runner(ctx: ControllerContext, spec):
    if ctx.runner_factory is not None:
        return ctx.runner_factory(spec)
    judge = ctx.build_chat_model(spec, temperature=0) if "judge" in spec.evals.metrics and ctx.has_model() else None
    return EvalRunner(spec, recorder=recorder_for(ctx.resolved_traces_url(), capture_state=False), cache=ctx.eval_cache(),
                      concurrency=ctx.concurrency or spec.evals.concurrency, judge_model=judge)


async def _runner(ctx: ControllerContext, spec, thread_id: str):
    """The run's shared runner. Created without awaiting in between, so parallel tasks get the same one."""
    per_loop = _runners.setdefault(asyncio.get_running_loop(), {})
    key = (thread_id, str(spec.path))
    if key not in per_loop:
        per_loop[key] = asyncio.ensure_future(asyncio.to_thread(_new_runner, ctx, spec))
    return await per_loop[key]


def _store_version(ctx: ControllerContext, workflow: str, config: dict) -> int:
    with ctx.config_store() as store:
        return store.put(workflow, config, actor="graphtune", source="eval").version


def _clip(report: EvalReport) -> dict:
    for result in report.results:
        if result.answer and len(result.answer) > MAX_ANSWER_CHARS:
            result.answer = result.answer[:MAX_ANSWER_CHARS] + "…"
    return report.model_dump(mode="json")


def _failed(task: EvalTask, error: Exception) -> EvalReport:
    return EvalReport(workflow=task.workflow, dataset="", dataset_hash="", config_hash=task.candidate.config_hash,
                      results=[], summary={}, examples_total=0, stopped_early=True,
                      stop_reason=f"evaluation failed: {type(error).__name__}: {error}")


def describe(candidate_id: str, report: EvalReport, metric: str) -> str:
    if not report.results and report.stop_reason:
        return f"{candidate_id}: {report.stop_reason}"
    value = report.value(metric)
    text = f"{candidate_id}: {metric} {value:.3f}" if value is not None else f"{candidate_id}: no {metric} measured"
    fresh = len(report.results) - report.cached
    text += f" on {len(report.results)} examples ({fresh} run, {report.cached} cached)"
    if report.stopped_early:
        text += f"; stopped early: {report.stop_reason}"
    return text


async def evaluate(payload: dict, runtime: Runtime[ControllerContext]) -> dict:
    task = EvalTask.model_validate(payload)
    ctx = runtime.context or ControllerContext()
    candidate = task.candidate
    mine = live_scores(task.thread_id, candidate.config_hash)
    metric = task.stop_metric
    progress = {"kind": "eval_progress", "candidate": candidate.id, "total": None, "done": 0, "errors": 0}

    def tell(**changes) -> None:
        """Progress for whoever streams ``custom`` events (the CLI's display); a no-op otherwise."""
        progress.update(changes)
        runtime.stream_writer(dict(progress))

    def on_result(result) -> None:
        value = result.scores.get(metric)
        if value is not None:
            mine[result.example_id] = value
        tell(done=progress["done"] + 1, errors=progress["errors"] + (result.error is not None))

    reference = None
    if task.reference_hash and task.reference_hash != candidate.config_hash:
        reference = task.reference_scores if task.reference_scores is not None else live_scores(task.thread_id, task.reference_hash)
    peers = [live_scores(task.thread_id, digest) for digest in task.peers if digest != candidate.config_hash]

    def race(results, total: int) -> str:
        return race_stop(mine, peers, task.direction, total, metric) if peers else ""
    try:
        spec = await asyncio.to_thread(load_spec, ctx.spec_source(task.spec))
        version = await asyncio.to_thread(_store_version, ctx, spec.workflow, candidate.config)
        runner = await _runner(ctx, spec, task.thread_id)
        with using(ctx.model_settings(spec)):  # the workflow's own model calls: the run's model, pace and retries
            report = await runner.run(
                candidate.config, config_version=version, variant=candidate.id, limit=ctx.eval_limit,
                baseline=reference, check_every=ctx.check_every, on_result=on_result,
                stop_on=(metric, task.direction),
                reference_name=task.reference_name, should_stop=race, on_start=lambda total: tell(total=total),
            )
    except Exception as error:  # one broken candidate never ends the tuning run
        report = _failed(task, error)
    tell(finished=True, stopped=report.stop_reason if report.stopped_early else "")
    return {
        "evals": {candidate.config_hash: _clip(report)},
        "messages": [AIMessage(describe(candidate.id, report, metric), name="evaluate")],
    }
