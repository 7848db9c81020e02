"""The controller: a LangGraph graph that tunes a workflow and asks a person before changing it.

    intake -> observe -> propose ⇉ evaluate (one task per config, in parallel) -> decide
      decide -> observe (another round, while the budget allows and the best still improves)
             -> report -> approve (interrupt) -> promote | reject | edit -> evaluate -> decide ...
                                                | experiment -> experiment_wait (interrupt, live data)
                                                  -> report (approval with live evidence) -> ramp -> promote
             -> finish (nothing worth approving)

``create_controller()`` builds it. It records its own runs (source ``controller``) with the
recorder callback and a ``TrajectoryNode``, into the same trace store as everything else.
"""

from __future__ import annotations

from typing import Literal

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from graphtune.evals.runner import EvalReport
from graphtune.graphs.context import ControllerContext
from graphtune.graphs.state import CandidateRecord, ControllerState, EvalTask
from graphtune.nodes.approve import approve, report
from graphtune.nodes.decide import decide_node, route_after_decide
from graphtune.nodes.evaluate import evaluate
from graphtune.nodes.experiment import experiment, experiment_wait
from graphtune.nodes.intake import intake
from graphtune.nodes.observe import observe
from graphtune.nodes.promote import finish, promote
from graphtune.nodes.propose import propose
from graphtune.nodes.trajectory import TrajectoryNode
from graphtune.tracing.recorder import TrajectoryRecorder, default_recorder, run_tags
from graphtune.tuning.decision import feasible, objective_value
from graphtune.tuning.request import TuningRequest

CONTROLLER = "controller"


def _incumbent(state: ControllerState, request: TuningRequest) -> tuple[str, EvalReport] | None:
    """The best fully evaluated config so far that respects the guardrails (the baseline counts)."""
    evals = state.get("evals", {})
    baseline = state["baseline"]
    if baseline["config_hash"] not in evals:
        return None
    base = EvalReport.model_validate(evals[baseline["config_hash"]])
    best = (baseline["config_hash"], base)
    sign = 1.0 if request.goal.direction == "maximize" else -1.0
    best_value = objective_value(base, request.goal)
    for candidate in state.get("candidates", []):
        raw = evals.get(candidate["config_hash"])
        if raw is None:
            continue
        report = EvalReport.model_validate(raw)
        value = objective_value(report, request.goal)
        if value is None or not feasible(report, base, request.guardrails):
            continue
        if best_value is None or sign * (value - best_value) > 0:
            best, best_value = (candidate["config_hash"], report), value
    return best


def dispatch(state: ControllerState, config: RunnableConfig) -> list[Send] | Literal["decide"]:
    """One evaluate task per config not measured yet: the baseline (round one) and this round's candidates.

    Losers are stopped against the baseline while it runs beside them, later against the best
    config so far; the batch's candidates also race each other (``ControllerContext.race``).
    """
    request = TuningRequest.model_validate(state["request"])
    evals = state.get("evals", {})
    thread_id = str(config.get("configurable", {}).get("thread_id") or "")
    baseline = CandidateRecord.model_validate(state["baseline"])
    common = {"workflow": request.workflow, "spec": state["spec"], "thread_id": thread_id,
              "stop_metric": request.goal.metric, "direction": request.goal.direction}
    tasks: list[Send] = []
    incumbent = _incumbent(state, request)
    if incumbent is None:
        reference = {"reference_hash": baseline.config_hash, "reference_name": "the baseline"}
        tasks.append(Send("evaluate", EvalTask(candidate=baseline, **common).model_dump(mode="json")))
    else:
        digest, best = incumbent
        name = "the baseline" if digest == baseline.config_hash else "the best config so far"
        reference = {"reference_hash": digest, "reference_name": name,
                     "reference_scores": best.scores_by_example(request.goal.metric)}
    batch = [CandidateRecord.model_validate(raw) for raw in state.get("candidates", [])
             if raw["round"] == state.get("round") and raw["config_hash"] not in evals and raw["id"].startswith("c")]
    racing = ctx.race if (ctx := _context()) is not None else True
    peers = [c.config_hash for c in batch] if racing and len(batch) > 1 else []
    for candidate in batch:
        task = EvalTask(candidate=candidate, **common, **reference, peers=peers)
        tasks.append(Send("evaluate", task.model_dump(mode="json")))
    return tasks or "decide"


def _context() -> ControllerContext | None:
    """The run's context inside a routing function (nodes get it as ``runtime.context``)."""
    from langgraph.runtime import get_runtime

    try:
        return get_runtime(ControllerContext).context
    except Exception:  # outside a run (tests calling dispatch directly)
        return None


def after_intake(state: ControllerState) -> Literal["observe", "record"]:
    return "observe" if state.get("request") else "record"


def after_observe(state: ControllerState) -> Literal["propose", "record"]:
    """A workflow another run holds ends the run here, nothing claimed."""
    return "record" if (state.get("outcome") or {}).get("status") == "busy" else "propose"


def after_decide(state: ControllerState) -> Literal["observe", "report", "finish"]:
    """An edited candidate always comes back to the approver; otherwise the decision routes."""
    if (state.get("approval") or {}).get("action") == "edit":
        return "report"
    route = route_after_decide(state)
    return "report" if route == "approve" else route


def _not_recorded(state: ControllerState) -> dict:
    return {}


def build_controller_graph(recorder: TrajectoryRecorder | None = None, *, record: bool = True) -> StateGraph:
    """The uncompiled graph, for callers that compile with their own checkpointer."""
    recording = TrajectoryNode(recorder) if record else _not_recorded
    builder = StateGraph(ControllerState, context_schema=ControllerContext)
    builder.add_node("intake", intake)
    builder.add_node("observe", observe)
    builder.add_node("propose", propose)
    builder.add_node("evaluate", evaluate)
    builder.add_node("decide", decide_node)
    builder.add_node("report", report)
    builder.add_node("record_progress", recording)
    builder.add_node("approve", approve, destinations=("promote", "approve", "evaluate", "experiment"))
    builder.add_node("experiment", experiment, destinations=("experiment_wait", "promote", "approve", "report"))
    builder.add_node("experiment_wait", experiment_wait, destinations=("experiment_wait", "experiment", "report"))
    builder.add_node("promote", promote, destinations=("record",))
    builder.add_node("finish", finish)
    builder.add_node("record", recording)

    builder.add_edge(START, "intake")
    builder.add_conditional_edges("intake", after_intake)
    builder.add_conditional_edges("observe", after_observe)
    builder.add_conditional_edges("propose", dispatch, ["evaluate", "decide"])
    builder.add_edge("evaluate", "decide")
    builder.add_conditional_edges("decide", after_decide)
    builder.add_edge("report", "record_progress")
    builder.add_edge("record_progress", "approve")
    builder.add_edge("finish", "record")
    builder.add_edge("record", END)
    return builder


def create_controller(checkpointer=None, *, recorder: TrajectoryRecorder | None = None, record: bool = True):
    """The compiled controller. Pass a checkpointer to run it locally (approval needs one); graphs
    served by the LangGraph server are compiled without one. ``record=False`` skips self-recording."""
    recorder = (recorder or default_recorder()) if record else None
    graph = build_controller_graph(recorder, record=record).compile(checkpointer=checkpointer, name=CONTROLLER)
    if recorder is None:
        return graph
    return graph.with_config(callbacks=[recorder], metadata=run_tags(CONTROLLER, source=CONTROLLER))
