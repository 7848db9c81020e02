"""What a person asks the controller for: a ``TuningRequest`` (workflow, objective, guardrails, budget, scope).

The intake step builds one from a chat message (an LLM with structured output, or the deterministic
parser in ``graphtune.tuning.request_parser`` when no model is configured) or takes it as given.
Everything left unsaid comes from the workflow's spec: its objective, its guardrails.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from graphtune.spec import Guardrail, Objective, WorkflowSpec

Statistic = Literal["mean", "p50", "p95"]


class Budget(BaseModel):
    """Limits of one tuning run; whichever is reached first ends the search with the best candidate so far."""

    candidates: int = Field(30, ge=1, le=200, description="Candidates evaluated in total (the baseline is not counted)")
    rounds: int = Field(15, ge=1, le=50, description="observe -> propose -> evaluate rounds at most")
    examples: int | None = Field(None, ge=1, description="Example evaluations at most (cache hits are free)")
    tokens: int | None = Field(None, ge=1, description="Tokens spent by evals and by the controller's own model calls")
    cost_usd: float | None = Field(None, gt=0, description="USD spent by evals and the controller's model, by the spec's pricing")
    wall_time_s: float | None = Field(900.0, gt=0, description="Seconds from intake to the approval report")
    given: list[str] = Field(default_factory=list, description="The limits the person set; the rest are defaults")

    @model_validator(mode="after")
    def _record_given(self):
        """Remember which limits were set, once: a stored request keeps its own list."""
        if "given" not in self.model_fields_set:
            self.given = sorted(f for f in self.model_fields_set if getattr(self, f) is not None)
        return self


class TuningGoal(BaseModel):
    """The objective of this run: the spec's metric by default, optionally with a statistic and a target."""

    metric: str
    direction: Literal["maximize", "minimize"]
    statistic: Statistic = "mean"
    target_change: float | None = Field(
        None, description="Wanted relative change vs the baseline, e.g. -0.2 for 'cut 20%', 0.05 for '+5%'")

    @classmethod
    def from_objective(cls, objective: Objective) -> TuningGoal:
        return cls(metric=objective.metric, direction=objective.direction or "maximize")

    def describe(self) -> str:
        verb = "maximize" if self.direction == "maximize" else "minimize"
        text = f"{verb} {self.statistic} {self.metric}"
        if self.target_change is not None:
            text += f" (target {self.target_change:+.0%} vs baseline)"
        return text


class TuningRequest(BaseModel):
    workflow: str
    goal: TuningGoal
    guardrails: list[Guardrail] = Field(default_factory=list)
    budget: Budget = Field(default_factory=Budget)
    scope: list[str] = Field(default_factory=list, description="Tunable paths or path prefixes to search; empty means all")
    text: str = Field("", description="The request as the person wrote it")
    notes: list[str] = Field(default_factory=list, description="How the request was read, and what came from the spec's defaults")

    @classmethod
    def default_for(cls, spec: WorkflowSpec, text: str = "") -> TuningRequest:
        """The spec's own objective and guardrails, default budget, whole search space."""
        return cls(workflow=spec.workflow, goal=TuningGoal.from_objective(spec.objective),
                   guardrails=list(spec.guardrails), text=text)
