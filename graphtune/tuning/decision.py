"""The decide step's domain: compare candidates with the baseline, check guardrails, keep to the budget.

Everything here is pure (reports and state dicts in, pydantic records out), so the controller's
decision can be replayed from a checkpoint and tested without a graph.

Comparisons are *paired*: a candidate and the baseline are scored on the same examples, and the
per-example differences carry far less noise than two independent means. Means get a paired t
interval; p50/p95 get a percentile bootstrap over examples with a fixed seed, so the same reports
always give the same decision.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, Field

from graphtune.evals.runner import EvalReport
from graphtune.evals.stats import MetricSummary, paired_mean_ci, paired_quantile_diff_ci, quantile
from graphtune.spec import HIGHER_IS_BETTER, Guardrail
from graphtune.tuning.request import Statistic, TuningGoal, TuningRequest
from graphtune.tuning.units import format_metric, format_number  # noqa: F401  (format_number: re-exported)

QUALITY_METRICS = ("exact", "contains", "token_f1", "judge", "retrieval_hit")
# Rows every comparison shows when the reports have them, after the goal and the guardrails.
STANDARD_ROWS: tuple[tuple[str, Statistic], ...] = (
    *((m, "mean") for m in QUALITY_METRICS), ("latency_ms", "p95"), ("cost_usd", "mean"), ("error", "mean"),
)
_QUANTILES = {"p50": 0.5, "p95": 0.95}
_TOLERANCE = 1e-9  # a candidate exactly at a limit passes despite float rounding (1.2 * x)


def _report(raw: EvalReport | dict) -> EvalReport:
    return raw if isinstance(raw, EvalReport) else EvalReport.model_validate(raw)


def _statistic(values: list[float], statistic: str) -> float | None:
    if not values:
        return None
    if statistic == "mean":
        return sum(values) / len(values)
    return quantile(values, _QUANTILES[statistic])


def _pairs(candidate: EvalReport, baseline: EvalReport, metric: str) -> tuple[list[float], list[float]]:
    """Scores of the examples both reports scored on ``metric``, in the baseline's order."""
    base, cand = baseline.scores_by_example(metric), candidate.scores_by_example(metric)
    ids = [i for i in base if i in cand]
    return [base[i] for i in ids], [cand[i] for i in ids]


def _difference(base: list[float], cand: list[float], statistic: str) -> tuple[float, float | None, float | None]:
    """(candidate - baseline) of the statistic with its 95% interval; needs at least one pair."""
    if statistic == "mean":
        return paired_mean_ci([c - b for b, c in zip(base, cand)])
    return paired_quantile_diff_ci(base, cand, _QUANTILES[statistic])


def objective_value(report: EvalReport, goal: TuningGoal) -> float | None:
    """The goal's statistic of its metric over the report's results (None when never scored)."""
    return report.value(goal.metric, goal.statistic)


# --- rows -----------------------------------------------------------------------------------------


class MetricRow(BaseModel):
    """One metric of a candidate next to the baseline, over the examples both were scored on."""

    metric: str
    statistic: Statistic
    higher_is_better: bool
    baseline: float | None = None
    candidate: float | None = None
    delta: float | None = None
    relative: float | None = Field(None, description="delta / baseline, when the baseline is not 0")
    ci_low: float | None = Field(None, description="95% interval of the difference (candidate - baseline)")
    ci_high: float | None = None
    better: bool | None = Field(None, description="True/False: the interval excludes 0 on the good/bad side; None: inconclusive")
    n: int = Field(0, description="Paired examples")

    def label(self) -> str:
        return f"{self.statistic} {self.metric}"


def metric_row(candidate: EvalReport, baseline: EvalReport, metric: str, statistic: Statistic,
               higher_is_better: bool) -> MetricRow:
    """The paired comparison of one metric; the caller knows its direction (the goal's, a guardrail's, a built-in's)."""
    base, cand = _pairs(candidate, baseline, metric)
    row = MetricRow(metric=metric, statistic=statistic, higher_is_better=higher_is_better, n=len(base))
    if not base:
        return row
    row.baseline, row.candidate = _statistic(base, statistic), _statistic(cand, statistic)
    row.delta, row.ci_low, row.ci_high = _difference(base, cand, statistic)
    row.relative = row.delta / row.baseline if row.baseline else None
    if row.ci_low is not None and row.ci_high is not None:
        good, bad = (row.ci_low > 0, row.ci_high < 0) if higher_is_better else (row.ci_high < 0, row.ci_low > 0)
        row.better = True if good else False if bad else None
    return row


# --- guardrails -----------------------------------------------------------------------------------


class GuardrailCheck(BaseModel):
    guardrail: str = Field(description="The guardrail as the spec or request states it")
    metric: str
    statistic: Statistic
    baseline: float | None = None
    candidate: float | None = None
    limit: float | None = Field(None, description="The worst acceptable candidate value")
    passed: bool | None = Field(None, description="None: not measurable (metric not scored)")
    detail: str = ""
    headroom: float | None = Field(None, description="Share of the allowed slack still unused; < 0.1 is close to the limit")
    uncertain: bool = Field(False, description="Over the limit in point estimate, within noise: passed, and a risk")
    constraint: float | None = Field(None, description="Signed distance past the limit, relative to it: > 0 broken by "
                                                       "that much, <= 0 kept (a model of each guardrail learns from it)")

    def near_limit(self, share: float = 0.1) -> bool:
        return bool(self.passed) and self.headroom is not None and self.headroom < share


def guardrail_check(candidate: EvalReport, baseline: EvalReport, guardrail: Guardrail) -> GuardrailCheck:
    """One guardrail. Ratio and value limits compare point estimates (what the spec states); a margin is a
    non-inferiority test, so it uses the pessimistic end of the paired 95% interval of the difference."""
    g = guardrail
    check = GuardrailCheck(guardrail=g.describe(), metric=g.metric, statistic=g.statistic,
                           baseline=baseline.value(g.metric, g.statistic), candidate=candidate.value(g.metric, g.statistic))
    if g.margin is not None:
        base, cand = _pairs(candidate, baseline, g.metric)
        if len(base) < 2:
            check.detail = f"not measurable: {len(base)} paired example(s) scored on {g.metric}"
            return check
        sign = 1.0 if g.higher_is_better else -1.0
        _, low, high = _difference(base, cand, g.statistic)
        worst_change = sign * (low if sign > 0 else high)  # in the good direction: negative is worse
        check.baseline, check.candidate = _statistic(base, g.statistic), _statistic(cand, g.statistic)
        check.limit = check.baseline - sign * g.margin
        check.passed = worst_change >= -g.margin - _TOLERANCE
        check.constraint = -(worst_change + g.margin) / max(abs(check.limit), 1e-9)
        check.headroom = (worst_change + g.margin) / g.margin if g.margin else None
        unit = lambda v: format_metric(g.metric, v)  # noqa: E731
        check.detail = (f"{unit(check.candidate)} vs baseline {unit(check.baseline)}; worst case "
                        f"(95% CI) {unit(check.baseline + sign * worst_change)}, limit {unit(check.limit)}")
        return check
    if check.candidate is None or (g.max_ratio is not None and check.baseline is None):
        check.detail = f"not measurable: {candidate.unscored.get(g.metric) or f'{g.metric} was not scored'}"
        return check
    check.limit = g.max_value if g.max_value is not None else g.max_ratio * check.baseline
    check.passed = check.candidate <= check.limit + _TOLERANCE * max(1.0, abs(check.limit))
    check.constraint = (check.candidate - check.limit) / max(abs(check.limit), 1e-9)
    # slack: what the limit allows beyond the baseline (ratio), or the limit itself (absolute value)
    slack = check.limit - check.baseline if g.max_ratio is not None and check.limit > check.baseline else abs(check.limit)
    check.headroom = (check.limit - check.candidate) / slack if slack else None
    ratio = f" ({check.candidate / check.baseline:.2f}x baseline)" if g.max_ratio is not None and check.baseline else ""
    check.detail = f"{format_metric(g.metric, check.candidate)}{ratio} vs limit {format_metric(g.metric, check.limit)}"
    if not check.passed and g.max_ratio is not None:
        _within_noise(check, candidate, baseline, g)
    return check


def _within_noise(check: GuardrailCheck, candidate: EvalReport, baseline: EvalReport, g: Guardrail) -> None:
    """A ratio limit broken in point estimate only counts once the paired 95% interval is past it too.

    Latency measured while several configs run at once moves by 10-50% between identical configs;
    a point estimate over the limit is then a risk for the approver to weigh, not a verdict.
    """
    base, cand = _pairs(candidate, baseline, g.metric)
    if len(base) < 2:
        return
    _, low, _ = _difference(base, cand, g.statistic)
    if low is not None and check.baseline is not None and check.baseline + low <= check.limit:
        check.passed, check.uncertain = True, True
        check.detail += (f"; over the limit in point estimate but within noise (95% CI of the change "
                         f"reaches {format_metric(g.metric, check.baseline + low)})")


def guardrail_checks(candidate: EvalReport, baseline: EvalReport, guardrails: list[Guardrail]) -> list[GuardrailCheck]:
    return [guardrail_check(candidate, baseline, g) for g in guardrails]


def check_violation(check: GuardrailCheck) -> float:
    """How far one guardrail is broken: the distance past its limit relative to the limit (0 when it holds)."""
    if check.passed is not False or check.limit is None or check.candidate is None:
        return 0.0
    return max(abs(check.candidate - check.limit) / max(abs(check.limit), 1e-9), 1e-6)


def violation(checks: list[GuardrailCheck]) -> float:
    """How far a config breaks its guardrails: the sum of ``check_violation`` (0 when every guardrail
    holds). Ranks infeasible configs, so a search can move toward feasibility instead of treating
    every broken config as equally bad."""
    return sum(check_violation(check) for check in checks)


def feasible(candidate: EvalReport, baseline: EvalReport, guardrails: list[Guardrail]) -> bool:
    """Every measurable guardrail holds and the run was not stopped early (a stopped run is incomplete
    evidence that it was already losing)."""
    if candidate.stopped_early:
        return False
    return all(c.passed is not False for c in guardrail_checks(candidate, baseline, guardrails))


# --- comparison -----------------------------------------------------------------------------------


class Comparison(BaseModel):
    candidate_id: str
    config_hash: str
    rows: list[MetricRow] = Field(description="Goal first, then guardrail metrics, then the standard rows")
    guardrails: list[GuardrailCheck]
    feasible: bool
    improves: bool = Field(description="The goal's difference interval excludes 0 on the good side")
    meets_target: bool | None = Field(None, description="Point estimate reaches the goal's target_change; None without a target")
    stopped_early: bool = False
    stop_reason: str = ""
    objective: float | None = Field(None, description="The goal statistic over all the candidate's results")
    examples: int = Field(0, description="Examples evaluated")
    complete: bool = Field(True, description="Every selected example was evaluated")
    summary: dict[str, MetricSummary] = Field(default_factory=dict, description="The candidate's own summary")

    @property
    def goal(self) -> MetricRow:
        return self.rows[0]

    def value(self, metric: str, statistic: str = "mean") -> float | None:
        summary = self.summary.get(metric)
        return summary.statistic(statistic) if summary else None

    def ahead(self) -> bool:
        """Better than the baseline on the goal in point estimate (significant or not)."""
        row = self.goal
        return row.delta is not None and (row.delta > 0 if row.higher_is_better else row.delta < 0)


def _meets_target(row: MetricRow, goal: TuningGoal) -> bool | None:
    if goal.target_change is None or row.relative is None:
        return None
    return row.relative <= goal.target_change if goal.target_change < 0 else row.relative >= goal.target_change


def compare(candidate_id: str, candidate: EvalReport, baseline: EvalReport, goal: TuningGoal,
            guardrails: list[Guardrail]) -> Comparison:
    goal_row = metric_row(candidate, baseline, goal.metric, goal.statistic, higher_is_better=goal.direction == "maximize")
    rows, seen = [goal_row], {(goal.metric, goal.statistic)}
    standard = [(m, s, m in HIGHER_IS_BETTER) for m, s in STANDARD_ROWS]
    for metric, statistic, up in [(g.metric, g.statistic, g.higher_is_better) for g in guardrails] + standard:
        if (metric, statistic) in seen or candidate.summary.get(metric) is None or baseline.summary.get(metric) is None:
            continue
        seen.add((metric, statistic))
        row = metric_row(candidate, baseline, metric, statistic, higher_is_better=up)
        if row.n:
            rows.append(row)
    checks = guardrail_checks(candidate, baseline, guardrails)
    return Comparison(
        candidate_id=candidate_id, config_hash=candidate.config_hash, rows=rows, guardrails=checks,
        feasible=not candidate.stopped_early and all(c.passed is not False for c in checks),
        improves=goal_row.better is True, meets_target=_meets_target(goal_row, goal),
        stopped_early=candidate.stopped_early, stop_reason=candidate.stop_reason,
        objective=objective_value(candidate, goal), examples=len(candidate.results),
        complete=not candidate.stopped_early and len(candidate.results) >= candidate.examples_total,
        summary=candidate.summary,
    )


def pareto_front(comparisons: list[Comparison], goal: TuningGoal | None = None,
                 baseline: Comparison | None = None) -> list[str]:
    """Ids not dominated on quality (max), p95 latency_ms (min) and mean cost_usd (min).

    Only complete, feasible candidates take part; the baseline (id ``baseline``) always does, since it
    is what the team runs today. Quality is the goal metric when the goal raises it, else the first
    built-in quality metric the reports have. An axis some point lacks is left out for all.
    """
    pool = ([baseline] if baseline else []) + [c for c in comparisons if c.feasible and c.complete]
    if not pool:
        return []
    if goal is not None and goal.direction == "maximize":  # a goal to raise is a quality: built-in or the spec's own
        quality = (goal.metric, goal.statistic)
    else:
        quality = next(((m, "mean") for m in QUALITY_METRICS if any(c.value(m) is not None for c in pool)), None)
    axes = [(quality, 1.0), (("latency_ms", "p95"), -1.0), (("cost_usd", "mean"), -1.0)]
    axes = [(key, sign) for key, sign in axes if key and all(c.value(*key) is not None for c in pool)]
    points = {c.candidate_id: [sign * c.value(*key) for key, sign in axes] for c in pool}

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [c.candidate_id for c in pool if not any(dominates(points[o.candidate_id], points[c.candidate_id]) for o in pool)]


# --- budget ---------------------------------------------------------------------------------------


class Spent(BaseModel):
    candidates: int = 0
    rounds: int = 0
    examples: int = Field(0, description="Fresh example evaluations (cache hits are free)")
    tokens: int = Field(0, description="Tokens of fresh eval runs plus the controller's own model calls")
    cost_usd: float = 0.0
    wall_s: float = 0.0


def budget_spent(state: dict, now: float | None = None) -> Spent:
    """What the run has used so far. Eval tokens and cost are summed over fresh (non-cached) results,
    which is what this run actually paid for."""
    fresh = [r for raw in (state.get("evals") or {}).values() for r in _report(raw).results if not r.cached]
    usage = state.get("controller_usage") or []
    tokens = sum(r.scores.get("total_tokens") or 0 for r in fresh)
    tokens += sum((u.get("input_tokens") or 0) + (u.get("output_tokens") or 0) for u in usage)
    cost = sum(r.scores.get("cost_usd") or 0 for r in fresh) + sum(u.get("cost_usd") or 0 for u in usage)
    started = state.get("started_at")
    now = time.time() if now is None else now
    return Spent(
        candidates=sum(1 for c in state.get("candidates") or [] if c.get("id") != "baseline"),
        rounds=int(state.get("round") or 0), examples=len(fresh), tokens=int(tokens), cost_usd=float(cost),
        wall_s=max(0.0, now - started) if started else 0.0,
    )


def budget_left(request: TuningRequest, spent: Spent) -> list[str]:
    """Why no more work is allowed; empty while the budget allows another round."""
    b = request.budget
    reasons = []
    if spent.candidates >= b.candidates:
        reasons.append(f"candidate budget used: {spent.candidates} of {b.candidates}")
    if spent.rounds >= b.rounds:
        reasons.append(f"round budget used: {spent.rounds} of {b.rounds}")
    if b.examples is not None and spent.examples >= b.examples:
        reasons.append(f"example budget used: {spent.examples} of {b.examples}")
    if b.tokens is not None and spent.tokens >= b.tokens:
        reasons.append(f"token budget used: {spent.tokens} of {b.tokens}")
    if b.cost_usd is not None and spent.cost_usd >= b.cost_usd:
        reasons.append(f"cost budget used: ${spent.cost_usd:.4g} of ${b.cost_usd:g}")
    if b.wall_time_s is not None and spent.wall_s >= b.wall_time_s:
        reasons.append(f"wall time used: {spent.wall_s:.0f} s of {b.wall_time_s:g} s")
    return reasons


# --- decision -------------------------------------------------------------------------------------


class Decision(BaseModel):
    round: int
    goal: str = ""
    baseline_value: float | None = None
    best_candidate_id: str | None = None
    confident: bool = Field(False, description="The best candidate's improvement is significant")
    comparisons: list[Comparison] = Field(default_factory=list)
    pareto: list[str] = Field(default_factory=list)
    next: Literal["propose", "approve", "finish"]
    reason: str
    exhausted: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list, description="Candidates without an eval report")
    spent: Spent = Field(default_factory=Spent)
    ended_by: str = Field("", description="The rule that ended the search: target, ceiling, budget, patience, unscored, or '' while it goes on")
    baseline_broken: list[str] = Field(default_factory=list, description="Guardrails the baseline itself breaks")

    def comparison(self, candidate_id: str) -> Comparison | None:
        return next((c for c in self.comparisons if c.candidate_id == candidate_id), None)


def _describe(best: Comparison) -> str:
    row = best.goal
    strength = "significant" if best.improves else "not significant: its 95% CI includes 0"
    unit = lambda v, signed=False: format_metric(row.metric, v, signed)  # noqa: E731
    return (f"{best.candidate_id} ({row.label()} {unit(row.baseline)} → {unit(row.candidate)}, "
            f"{unit(row.delta, True)}; {strength})")


# Without a budget from the person, the search stops early once the best has not improved for
# PATIENCE_ROUNDS rounds in a row that together tried at least PATIENCE_CANDIDATES candidates (small
# batches get as many tries as big ones), provided it has a candidate to show. A budget the person
# gave is spent in full, unless the request's target is met: then the same patience applies.
PATIENCE_ROUNDS = 2
PATIENCE_CANDIDATES = 8
# ... and never before this share of the candidate budget is spent: the search's first candidates move one
# tunable at a time to learn what each does, and rarely improve (the suite: runs stopped at 10-12 of 30)
PATIENCE_AFTER = 0.5


def decide(state: dict, now: float | None = None) -> Decision:
    """Compare every evaluated candidate with the baseline, pick the best, and choose the next step.

    Best: the feasible, significantly improving candidate with the largest gain over the baseline on the
    goal (paired, same examples); failing that, the feasible one with the largest gain in point estimate
    (``confident`` False).
    Next: another round while the budget allows and the last round raised the best goal value (round 1
    always may); ``approve`` when a best candidate exists; ``finish`` when nothing is worth approving.
    Once a best candidate significantly meets the goal's target, the search goes on only while it keeps
    improving (patience, even within a budget the person gave): the target is the least the person
    wants, not the most.
    """
    request = TuningRequest.model_validate(state["request"])
    goal = request.goal
    round_ = int(state.get("round") or 1)
    spent = budget_spent(state, now)
    exhausted = budget_left(request, spent)
    evals = state.get("evals") or {}
    base_record = state.get("baseline") or {}
    base_raw = evals.get(base_record.get("config_hash"))
    if base_raw is None:
        return Decision(round=round_, goal=goal.describe(), next="finish", exhausted=exhausted, spent=spent,
                        reason="the baseline has no eval report, so no candidate can be compared: nothing to approve")
    base_report = _report(base_raw)
    if not base_report.results:
        return Decision(round=round_, goal=goal.describe(), next="finish", exhausted=exhausted, spent=spent,
                        reason=f"the baseline could not be evaluated ({base_report.stop_reason or 'no results'}), "
                               "so no candidate can be compared: nothing to approve")

    unmeasured = unmeasured_on_baseline(base_report, goal, request.guardrails)
    if unmeasured:
        return Decision(round=round_, goal=goal.describe(), next="finish", exhausted=exhausted, spent=spent,
                        ended_by="unscored",
                        reason=f"the baseline's {'; '.join(unmeasured)}; nothing was proposed. Fix the spec's evals "
                               "(metric, output path, expected fields, evaluator) or the workflow, then run again")
    base_checks = guardrail_checks(base_report, base_report, request.guardrails)
    base_broken = [f"{c.guardrail}: {c.detail}" for c in base_checks if c.passed is False]
    if not any(r.get("id") != "baseline" for r in state.get("candidates") or []):
        value = objective_value(base_report, goal)
        text = f"baseline scored: {goal.metric} {format_metric(goal.metric, value)} on {len(base_report.results)} examples"
        if base_broken:
            text += ("; the baseline itself breaks " + "; ".join(base_broken)
                     + ": the search heads for feasibility first")
        return Decision(round=round_, goal=goal.describe(), baseline_value=value, next="propose", exhausted=exhausted,
                        spent=spent, reason=text + "; proposing candidates next", baseline_broken=base_broken)

    comparisons: list[Comparison] = []
    skipped: list[str] = []
    round_of: dict[str, int] = {}
    for record in state.get("candidates") or []:
        if record["id"] == "baseline":
            continue
        raw = evals.get(record["config_hash"])
        if raw is None:
            skipped.append(record["id"])
            continue
        comparisons.append(compare(record["id"], _report(raw), base_report, goal, request.guardrails))
        round_of[record["id"]] = int(record.get("round") or round_)
    baseline_self = compare("baseline", base_report, base_report, goal, request.guardrails)

    # Rank by the paired gain over the baseline (the goal statistic on the same examples), so candidates
    # evaluated on different subsets are still compared fairly; identical subsets rank as by goal value.
    def gain(c: Comparison) -> float:
        return c.goal.delta if c.goal.higher_is_better else -c.goal.delta

    ranked = [c for c in comparisons if c.feasible and c.goal.delta is not None]
    improving = [c for c in ranked if c.improves]
    ahead = [c for c in ranked if c.ahead()]
    pool = improving or ahead
    # a candidate over a limit in point estimate (passed only within noise) is shown only when nothing else improves
    clear = [c for c in pool if not any(g.uncertain for g in c.guardrails)]
    best = max(clear or pool, key=gain, default=None)

    def best_gain_by(r: int) -> float:  # 0.0: the baseline itself
        return max([0.0, *(gain(c) for c in ranked if round_of[c.candidate_id] <= r)])

    reference = best_gain_by(round_ - 1)
    improved = best_gain_by(round_) > reference
    stale = 0  # rounds in a row, ending with this one, that did not raise the best
    while stale < round_ and best_gain_by(round_ - stale) <= best_gain_by(round_ - stale - 1):
        stale += 1
    tried_in_vain = sum(1 for c in comparisons if round_of[c.candidate_id] > round_ - stale)

    best_text = _describe(best) if best else None
    # patience only ends a search that has something to show: with nothing feasible and better yet, the budget goes on;
    # a met target makes the rest of any budget optional: the search goes on while it keeps improving
    target_met = bool(best and best.improves and best.meets_target)
    patient = ((bool(request.budget.given) and not target_met) or best is None or round_ <= 1 or stale < PATIENCE_ROUNDS
               or tried_in_vain < PATIENCE_CANDIDATES or len(comparisons) < request.budget.candidates * PATIENCE_AFTER)
    ended_by = ""
    if best and at_ceiling(best, goal):
        next_step, reason, ended_by = "approve", f"{goal.metric} is at its best possible value: {best_text}", "ceiling"
    elif not exhausted and patient:
        progress = f"round {round_} raised the best {goal.metric}" if improved else f"round {round_} done"
        reason = f"{progress}; best so far {best_text or 'none: no feasible candidate beats the baseline yet'}; the budget allows another round"
        next_step = "propose"
    else:
        if exhausted:
            why, ended_by = f"budget exhausted ({'; '.join(exhausted)})", "budget"
        elif target_met:
            rounds = f"rounds {round_ - stale + 1}-{round_}" if stale > 1 else f"round {round_}"
            why, ended_by = f"target met, and {rounds} did not improve on it", "target"
        else:
            rounds = f"rounds {round_ - stale + 1}-{round_} did" if stale > 1 else f"round {round_} did"
            why = (f"{rounds} not improve on the best {goal.metric} so far "
                   f"({format_number(reference, signed=True)} vs the baseline; no budget was given, so patience "
                   f"ends the search)")
            ended_by = "patience"
        if best:
            next_step, reason = "approve", f"{why}: best candidate so far is {best_text}"
        else:
            next_step = "finish"
            reason = f"{why}: no feasible candidate beats the baseline on {goal.describe()}, nothing worth approving; the active config stays"
            if base_broken:
                reason += f" (and the baseline itself breaks {'; '.join(base_broken)})"
    if skipped:
        reason += f" (no eval report for {', '.join(skipped)}: skipped)"
    if next_step != "propose" and goal.target_change is not None:
        reached = bool(best and best.improves and best.meets_target)
        change = f" (the best candidate's change is {best.goal.relative:+.0%})" if best and best.goal.relative is not None else ""
        reason += f"; the requested {goal.target_change:+.0%} was {'reached' if reached else 'not reached'}{change}"
    if next_step == "approve" and best is not None and not best.improves:
        reason += "; not shown to help: its gain is within noise (95% CI includes 0)"

    return Decision(
        round=round_, goal=goal.describe(), baseline_value=objective_value(base_report, goal),
        best_candidate_id=best.candidate_id if best else None, confident=bool(best and best.improves),
        comparisons=comparisons, pareto=pareto_front(comparisons, goal, baseline_self), next=next_step,
        reason=reason, exhausted=exhausted, skipped=skipped, spent=spent, ended_by=ended_by, baseline_broken=base_broken,
    )


def unmeasured_on_baseline(report: EvalReport, goal: TuningGoal, guardrails: list[Guardrail]) -> list[str]:
    """The goal and guardrails the baseline's run could not measure, each with why: a search that cannot
    measure them would spend its budget blind, or with a guardrail silently off."""
    found = []
    for label, metric in [(goal.describe(), goal.metric)] + [(f"guardrail {g.describe()}", g.metric) for g in guardrails]:
        why = report.unscored.get(metric)
        if why is None and metric == goal.metric and objective_value(report, goal) is None:
            why = report.stop_reason or f"no example was scored on {metric}"
        if why:
            found.append(f"{label} could not be measured ({why})")
    return found


def at_ceiling(best: Comparison, goal: TuningGoal) -> bool:
    """The goal cannot get better: a share-of-examples quality metric at 1, or an error rate at 0."""
    from graphtune.spec import HIGHER_IS_BETTER

    value = best.goal.candidate
    if value is None or goal.statistic != "mean":
        return False
    if goal.direction == "maximize" and goal.metric in HIGHER_IS_BETTER and goal.metric != "judge":
        return value >= 1.0 - 1e-9
    return goal.direction == "minimize" and goal.metric == "error" and value <= 1e-9
