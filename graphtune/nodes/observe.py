"""observe: where the workflow hurts in production, and which config it runs now.

On the first round it claims the workflow (one tuning run per workflow at a time: a second request
is turned away, naming the run that holds it) and pins the baseline: the workflow's active config
version (the spec's config becomes version 1 on first use). Every later comparison and the final
compare-and-set promotion are against this version. ``promote`` and ``finish`` release the claim.
"""

from __future__ import annotations

import asyncio
import uuid

from langchain_core.messages import AIMessage
from langgraph.runtime import Runtime

from graphtune.backends.config_store import TuningBusyError
from graphtune.graphs.context import ControllerContext, authenticated_caller, current_thread_id
from graphtune.graphs.state import CandidateRecord, ControllerState, Outcome
from graphtune.spec import load_spec
from graphtune.tuning.config_paths import config_hash
from graphtune.tuning.hotspots import find_hot_spots, fmt_ms, fmt_pct, fmt_window, parse_window

MAX_SAMPLES = 3


def _active_baseline(ctx: ControllerContext, spec) -> dict:
    with ctx.config_store() as store:
        active = store.ensure_active(spec.workflow, spec.config, actor="graphtune")
    record = CandidateRecord(id="baseline", round=0, proposer="baseline", config=active.config,
                             config_hash=config_hash(active.config), rationale=f"active version {active.version}")
    return {**record.model_dump(mode="json"), "version": active.version}


def _observe(ctx: ControllerContext, spec, window: str | None, evals_since: float | None = None):
    """Production hot spots of the window, and, with ``evals_since``, the hot spots of this run's own
    eval trajectories (every config evaluated since it started), from one open of the trace store."""
    import time

    window_s = parse_window(window) if window else None
    with ctx.trace_store() as store:
        production = find_hot_spots(store, spec.workflow, spec.observe, window_s=window_s, max_samples=MAX_SAMPLES)
        if evals_since is None:
            return production, None
        evals = find_hot_spots(store, spec.workflow, spec.observe, window_s=max(time.time() - evals_since, 1.0) + 1.0,
                               max_samples=MAX_SAMPLES, source="eval")
    return production, evals


def eval_summary(obs) -> str:
    if not obs.hot_spots:
        return f"This run's {obs.runs} eval runs show no hot spot."
    spots = "; ".join(f"{h.node} ({h.reasons[0]}" + (f", e.g. {h.errors[0].type}: {h.errors[0].message}" if h.errors else "") + ")"
                      for h in obs.hot_spots[:3])
    return f"This run's {obs.runs} eval runs show hot spots: {spots}."


def summary(obs) -> str:
    head = f"Observed {obs.runs} production runs of {obs.workflow} in the last {fmt_window(obs.window_s)}"
    if not obs.hot_spots:
        return head + ". " + (obs.notes[-1] if obs.notes else "No hot spots.")
    spots = "; ".join(
        f"{h.node} ({h.reasons[0]})" if h.reasons else h.node for h in obs.hot_spots[:3]
    )
    run = next((s for s in obs.node_stats if s.node == "__run__"), None)
    overall = f" (run p95 {fmt_ms(run.p95_ms)}, {fmt_pct(run.error_rate)} failed)" if run and run.count else ""
    return f"{head}{overall}. Hot spots: {spots}."


def _claim(ctx: ControllerContext, workflow: str, holder: str) -> None:
    caller = authenticated_caller()
    with ctx.config_store() as store:
        store.claim_tuning(workflow, holder, actor=caller.identity if caller else "graphtune")


async def observe(state: ControllerState, runtime: Runtime[ControllerContext]) -> dict:
    ctx = runtime.context or ControllerContext()
    spec = await asyncio.to_thread(load_spec, ctx.spec_source(state["spec"]))
    update: dict = {}
    baseline = state.get("baseline")
    if baseline is None:
        holder = state.get("tuning_claim") or current_thread_id() or f"run-{uuid.uuid4().hex[:12]}"
        try:
            await asyncio.to_thread(_claim, ctx, spec.workflow, holder)
        except TuningBusyError as busy:
            outcome = Outcome(status="busy", workflow=spec.workflow, message=f"Not started: {busy}")
            return {"outcome": outcome.model_dump(mode="json"), "messages": [AIMessage(outcome.message, name="observe")]}
        update["tuning_claim"] = holder
        baseline = await asyncio.to_thread(_active_baseline, ctx, spec)
        update["baseline"] = baseline
    since = float(state["started_at"]) if state.get("evals") and state.get("started_at") else None
    obs, evals_obs = await asyncio.to_thread(_observe, ctx, spec, ctx.observe_window, since)
    first = "baseline" in update
    text = summary(obs) if first else ""  # production is said once, not again every round
    if first:
        text += f" Baseline: active config version {baseline['version']}."
    if evals_obs is not None:
        update["eval_observation"] = evals_obs.model_dump(mode="json")
        text = (text + " " + eval_summary(evals_obs)).strip()
    update["observation"] = obs.model_dump(mode="json")
    update["messages"] = [AIMessage(text or "Production traffic as observed in the first round.", name="observe")]
    return update
