"""What a live experiment tests, and what one look at its data says. No I/O.

Offline metrics do not exist on live traffic (nobody labels production answers), so a tuning goal
maps to the live metric that stands for it:

- quality (contains, judge, exact, ...) -> ``net_feedback`` (per run: +1 thumbs up, -1 thumbs down,
  0 without feedback), higher is better;
- ``latency_ms`` -> mean run latency, lower is better;
- ``tokens`` / ``cost_usd`` -> tokens per run, lower is better;
- ``error`` -> error rate, lower is better.

Every experiment also guards what the goal is not about. The request's guardrails on what live
traffic records carry over with their margins (the spec's ``p95 latency_ms <= 1.2x baseline``
becomes a quantile test; ``error <= 0.05`` an absolute limit); metrics the request does not guard
get the defaults: the error rate may rise by at most 2 points, mean latency by at most 20%, and net
feedback may fall by at most 0.03 (about three more thumbs down per hundred runs). Offline-only
metrics (contains, cost) stay with the eval sets. The
statistics are always valid (``graphtune.tuning.sequential``), so the controller may look after
every batch of requests; a sample-ratio mismatch halts the experiment.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from graphtune.evals.evaluators import QUALITY
from graphtune.tuning.request import TuningRequest
from graphtune.spec import Guardrail
from graphtune.tuning.sequential import (
    Comparison,
    GuardrailResult,
    SrmResult,
    Verdict,
    compare,
    non_inferiority,
    promotion_decision,
    quantile_guardrail,
    value_limit,
)

DEFAULT_SHARE = 0.1
RAMP = (0.5, 1.0)  # after approval: half the traffic, then all of it (promotion)
ERROR_MARGIN = 0.02
LATENCY_MARGIN = 0.2
FEEDBACK_MARGIN = 0.03
LIVE_GUARDED = ("latency_ms", "error", "tokens")  # request guardrails on these carry over to live traffic
QUANTILES = {"p50": 0.5, "p95": 0.95}


class LiveGuardrail(BaseModel):
    """One limit on the candidate's live traffic: ``margin`` worse than the baseline (``relative``: a
    share of it), or an absolute ``max_value``; ``statistic`` p50/p95 (latency only) tests the quantile."""

    metric: str
    margin: float = 0.0
    relative: bool = False
    higher_is_better: bool = False
    statistic: Literal["mean", "p50", "p95"] = "mean"
    max_value: float | None = None

    def describe(self) -> str:
        what = self.metric if self.statistic == "mean" else f"{self.statistic} {self.metric}"
        if self.max_value is not None:
            return f"{what} at most {self.max_value:g}"
        if self.relative:
            return f"{what} at most {1 + self.margin:g}x baseline"
        return f"{what} at most {self.margin:g} {'below' if self.higher_is_better else 'above'} baseline"

    @classmethod
    def from_spec(cls, g: Guardrail) -> LiveGuardrail:
        """The request's (or spec's) guardrail, with its margins, as a live test."""
        if g.max_ratio is not None:
            return cls(metric=g.metric, margin=g.max_ratio - 1.0, relative=True, statistic=g.statistic)
        if g.max_value is not None:
            return cls(metric=g.metric, max_value=g.max_value, higher_is_better=g.higher_is_better)
        return cls(metric=g.metric, margin=g.margin or 0.0, higher_is_better=g.higher_is_better)


class LivePlan(BaseModel):
    """The live metric standing for the goal, and the guardrails every look checks."""

    primary: str
    higher_is_better: bool
    guardrails: list[LiveGuardrail] = Field(default_factory=list)

    def describe(self) -> str:
        direction = "higher" if self.higher_is_better else "lower"
        guards = "; ".join(g.describe() for g in self.guardrails)
        return f"{self.primary} ({direction} is better); guardrails: {guards or 'none'}"


GUARDRAILS = (LiveGuardrail(metric="error", margin=ERROR_MARGIN),
              LiveGuardrail(metric="latency_ms", margin=LATENCY_MARGIN, relative=True),
              LiveGuardrail(metric="net_feedback", margin=FEEDBACK_MARGIN, higher_is_better=True))


def check_guardrails(evidence, guardrails) -> list[GuardrailResult]:
    """Always-valid tests of the candidate arm for each guardrail (``evidence``: ``LiveEvidence``):
    non-inferiority against the baseline, an absolute limit, or a latency quantile."""
    results = []
    for g in guardrails:
        cand, base = evidence.arms(g.metric)
        if g.max_value is not None:
            results.append(value_limit(cand, max_value=g.max_value, higher_is_better=g.higher_is_better, metric=g.metric))
        elif g.statistic != "mean":
            quantile = QUANTILES[g.statistic]
            exceeding, n = evidence.latency_exceeding(quantile, 1.0 + g.margin)
            results.append(quantile_guardrail(exceeding, n, quantile=quantile, metric=g.describe()))
        elif g.relative and base.n and base.mean == 0:
            continue  # a relative limit on a zero baseline (no latency recorded) cannot be checked
        else:
            results.append(non_inferiority(cand, base, margin=g.margin, relative=g.relative,
                                           higher_is_better=g.higher_is_better, metric=g.metric))
    return results


def live_plan(request: TuningRequest) -> LivePlan:
    """The goal's live stand-in, the request's guardrails on what live traffic records (latency,
    errors, tokens; quantile limits only for latency), and the default guardrails for the rest."""
    metric = request.goal.metric
    if metric in QUALITY:
        primary, higher = "net_feedback", True
    elif metric == "latency_ms":
        primary, higher = "latency_ms", False
    elif metric in ("tokens", "cost_usd"):
        primary, higher = "tokens", False
    else:
        primary, higher = "error", False
    requested = [LiveGuardrail.from_spec(g) for g in request.guardrails
                 if g.metric in LIVE_GUARDED and (g.statistic == "mean" or g.metric == "latency_ms") and g.metric != primary]
    guarded = {g.metric for g in requested}
    defaults = [g for g in GUARDRAILS if g.metric != primary and g.metric not in guarded]
    return LivePlan(primary=primary, higher_is_better=higher, guardrails=requested + defaults)


class LiveLook(BaseModel):
    """One look at an experiment's data: the comparison, the guardrails, the sample-ratio check and
    the verdict (for a ramp step, only the guardrails and the sample ratio count)."""

    stage: Literal["experiment", "ramp"]
    share: float
    runs: dict[str, int]
    primary: Comparison
    guardrails: list[GuardrailResult]
    srm: SrmResult | None = None
    verdict: Verdict
    summary: str = ""

    @property
    def decided(self) -> bool:
        return self.verdict.action != "continue"

    def lines(self) -> list[str]:
        return [self.summary, f"verdict: {self.verdict.action}", *self.verdict.reasons]


def judge(evidence, plan: LivePlan, weights: dict[int, float] | None, *, stage: Literal["experiment", "ramp"],
          share: float, previous: Comparison | None = None) -> LiveLook:
    """Read one look of ``evidence`` (``graphtune.live.LiveEvidence``). ``weights`` is the split the
    traffic followed (None when it is gone: no sample-ratio check). During a ramp only the guardrails
    and the sample ratio decide: promote when every guardrail holds, stop when one breaks."""
    candidate, baseline = evidence.arms(plan.primary)
    primary = compare(candidate, baseline, metric=plan.primary, higher_is_better=plan.higher_is_better,
                      previous=previous if previous is not None and previous.metric == plan.primary else None)
    guards = check_guardrails(evidence, plan.guardrails)
    srm = evidence.srm(weights) if weights and len(weights) > 1 else None
    if stage == "ramp":
        verdict = _ramp_verdict(guards, srm)
    else:
        verdict = promotion_decision(primary, guards, srm)
    return LiveLook(stage=stage, share=share, runs={"baseline": evidence.baseline.runs, "candidate": evidence.candidate.runs},
                    primary=primary, guardrails=guards, srm=srm, verdict=verdict, summary=evidence.describe())


def _ramp_verdict(guards: list[GuardrailResult], srm: SrmResult | None) -> Verdict:
    if srm is not None and srm.flagged:
        return Verdict(action="halt", reasons=[f"sample-ratio mismatch: {srm.detail}"])
    broken = [g for g in guards if g.decision == "inferior"]
    if broken:
        return Verdict(action="stop", reasons=[f"guardrail {g.metric} broken: {g.detail}" for g in broken])
    if all(g.passed for g in guards):
        return Verdict(action="promote", reasons=[f"guardrail {g.metric} holds: {g.detail}" for g in guards])
    return Verdict(action="continue", reasons=[f"guardrail {g.metric} not yet shown: {g.detail}" for g in guards if not g.passed])


def next_share(current: float) -> float | None:
    """The ramp step after ``current`` (1.0 means promote), or None when fully ramped."""
    return next((s for s in RAMP if s > current + 1e-9), None)
