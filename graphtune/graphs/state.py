"""The controller's state: what one tuning run produces, step by step.

``messages`` makes LangGraph Studio's chat view work; every step appends a short AI message. The
rest holds plain JSON (``model_dump()`` of the pydantic records below), so checkpoints stay
readable from any client. Records cross node boundaries as these models; helpers convert.

Lifecycle: intake sets ``request`` -> observe sets ``observation`` -> propose appends
``candidates`` -> evaluate (one task per config, in parallel) merges ``evals`` -> decide sets
``decision`` and loops or goes on -> approve sets ``approval`` -> promote sets ``outcome``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from pydantic import BaseModel, Field
from typing_extensions import NotRequired, TypedDict

from graphtune.tuning.mutations import Mutation


def merge_dicts(left: dict | None, right: dict | None) -> dict:
    """Parallel eval tasks each add their config's report; later writes for a key win."""
    return {**(left or {}), **(right or {})}


def extend(left: list | None, right: list | None) -> list:
    return [*(left or []), *(right or [])]


class CandidateRecord(BaseModel):
    """One config the controller evaluates. The baseline is candidate ``baseline`` with no mutations."""

    id: str = Field(description="baseline, c1, c2, ... in proposal order; e1, e2 for edits by the approver")
    round: int
    proposer: str = Field(description="baseline, llm, optuna or human")
    mutations: list[Mutation] = Field(default_factory=list)
    rationale: str = ""
    config: dict[str, Any]
    config_hash: str


class EvalTask(BaseModel):
    """The payload of one parallel ``evaluate`` task (a LangGraph ``Send``)."""

    candidate: CandidateRecord
    workflow: str
    spec: str = Field(description="Spec name or path, as resolved by intake")
    thread_id: str = ""
    reference_hash: str | None = Field(None, description="Config hash whose per-example scores losers are stopped against")
    reference_scores: dict[str, float] | None = Field(
        None, description="Per-example objective scores of the reference when already known; else read live")
    reference_name: str = "the baseline"
    peers: list[str] = Field(default_factory=list, description="Config hashes evaluated beside this one in a race (successive halving)")
    stop_metric: str = Field(description="The goal's metric: losers are stopped on its per-example scores")
    direction: Literal["maximize", "minimize"]


class Approval(BaseModel):
    """The approver's answer to the approval interrupt (validated resume value)."""

    action: Literal["approve", "reject", "edit", "experiment"]
    actor: str = Field(min_length=1)
    comment: str = ""
    candidate_id: str | None = Field(None, description="Which candidate to promote; default the recommended one")
    mutations: list[Mutation] = Field(default_factory=list, description="For edit: the changed candidate, as mutations of the baseline")


class ExperimentRecord(BaseModel):
    """The candidate's live experiment: its split, the stage (experiment, then the ramp after approval) and the last look."""

    workflow: str
    candidate_id: str
    baseline_version: int
    candidate_version: int
    stage: Literal["experiment", "ramp"] = "experiment"
    share: float
    split_revision: int
    started_at: float
    stage_started_at: float
    looks: int = 0
    status: Literal["running", "decided", "stopped"] = "running"
    last_look: dict | None = None  # tuning.experiment.LiveLook
    note: str = ""  # how it ended, for the report


class Outcome(BaseModel):
    status: Literal["promoted", "rejected", "no_change", "conflict", "unknown_workflow", "failed", "busy"]
    workflow: str | None = None
    version: int | None = None
    from_version: int | None = None
    message: str = ""


class ControllerState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    graphtune_trajectory: NotRequired[dict[str, Any]]  # TrajectoryNode's cursor, kept in checkpoints
    request: NotRequired[dict | None]  # TuningRequest
    spec: NotRequired[str]  # spec name or path the run uses
    baseline: NotRequired[dict | None]  # CandidateRecord of the active config, plus "version"
    round: NotRequired[int]
    observation: NotRequired[dict | None]  # tuning.hotspots.Observation, samples trimmed
    eval_observation: NotRequired[dict | None]  # the same, from this run's own eval trajectories
    candidates: NotRequired[Annotated[list[dict], extend]]  # CandidateRecord, every round
    rejected_proposals: NotRequired[Annotated[list[dict], extend]]  # {round, proposer, candidate, reasons}
    evals: NotRequired[Annotated[dict[str, dict], merge_dicts]]  # config_hash -> EvalReport
    controller_usage: NotRequired[Annotated[list[dict], extend]]  # {step, input_tokens, output_tokens, cost_usd}
    started_at: NotRequired[float]
    decision: NotRequired[dict | None]  # tuning.decision.Decision
    report: NotRequired[dict | None]  # tuning.report.ApprovalReport shown at approval
    approval: NotRequired[dict | None]  # Approval
    approval_error: NotRequired[str | None]
    outcome: NotRequired[dict | None]  # Outcome
    experiment: NotRequired[dict | None]  # ExperimentRecord of the candidate's live experiment
    tuning_claim: NotRequired[str | None]  # the holder id of this run's claim on the workflow (its thread id)
