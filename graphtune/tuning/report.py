"""The approval report: what a person reads before promoting a candidate, and the decide step's progress line.

It answers the approver's questions in order: what changes (the config diff), what it buys (paired
metrics with intervals), what it risks (guardrails, regressed examples, thin evidence), and what else
was on the table (other Pareto-optimal candidates). Built from state and a ``Decision``; no I/O.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from graphtune.evals.runner import EvalReport
from graphtune.tuning.config_paths import config_diff, format_diff
from graphtune.tuning.decision import (
    Comparison,
    Decision,
    GuardrailCheck,
    MetricRow,
    Spent,
    format_number,
)
from graphtune.tuning.units import format_metric
from graphtune.tuning.request import TuningGoal, TuningRequest

MAX_CHANGED = 10
ANSWER_CLIP = 200
SMALL_N = 100


class ChangedExample(BaseModel):
    example_id: str
    baseline_score: float | None = None
    candidate_score: float | None = None
    baseline_answer: str | None = None
    candidate_answer: str | None = None
    baseline_error: str | None = None
    candidate_error: str | None = None


class ApprovalReport(BaseModel):
    workflow: str
    request_text: str = ""
    goal: str
    baseline_version: int | None = None
    candidate: dict[str, Any] = Field(description="id, round, proposer, mutations, rationale, config_hash")
    diff: str
    table: list[MetricRow]
    guardrails: list[GuardrailCheck]
    changed_examples: list[ChangedExample] = Field(description="Goal metric changed: worst regressions, then best improvements")
    improved: int = 0
    regressed: int = 0
    confident: bool = False
    risks: list[str] = Field(default_factory=list)
    pareto: list[str] = Field(default_factory=list)
    alternatives: list[str] = Field(default_factory=list)
    spent: Spent = Field(default_factory=Spent)
    decision_reason: str = ""
    live: list[str] = Field(default_factory=list, description="The live experiment's evidence, when one ran")


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= ANSWER_CLIP:
        return text
    return text[: ANSWER_CLIP - 1] + "…"


def changed_examples(baseline: EvalReport, candidate: EvalReport, goal: TuningGoal,
                     limit: int = MAX_CHANGED) -> tuple[list[ChangedExample], int, int]:
    """Examples whose goal score changed, and how many improved and regressed overall.

    Regressions come first (they are what an approver must look at), worst first; improvements follow,
    best first. Each side keeps at least half the slots when it has that many, so a long list of one
    kind never hides the other.
    """
    sign = 1.0 if goal.direction == "maximize" else -1.0
    base = {r.example_id: r for r in baseline.results}
    moved: list[tuple[float, ChangedExample]] = []
    for result in candidate.results:
        before = base.get(result.example_id)
        old = before.scores.get(goal.metric) if before else None
        new = result.scores.get(goal.metric)
        if old is None or new is None or old == new:
            continue
        moved.append((sign * (new - old), ChangedExample(
            example_id=result.example_id, baseline_score=old, candidate_score=new,
            baseline_answer=_clip(before.answer), candidate_answer=_clip(result.answer),
            baseline_error=before.error, candidate_error=result.error)))
    worse = [e for gain, e in sorted((m for m in moved if m[0] < 0), key=lambda m: m[0])]
    better = [e for gain, e in sorted((m for m in moved if m[0] > 0), key=lambda m: -m[0])]
    n_worse = min(len(worse), max(limit // 2, limit - len(better)))
    shown = worse[:n_worse] + better[: limit - n_worse]
    return shown, len(better), len(worse)


def _text_changes(diff: list[tuple[str, Any, Any]]) -> list[str]:
    """Paths of changed prompt-like values: free text needs a human read, metrics miss tone and policy."""
    return [path for path, old, new in diff
            if "prompt" in path or any(isinstance(v, str) and (" " in v or "\n" in v) for v in (old, new))]


def _risks(request: TuningRequest, decision: Decision, comparison: Comparison, text_paths: list[str],
           improved: int, regressed: int, candidates: list[dict]) -> list[str]:
    risks = []
    for check in comparison.guardrails:
        if check.passed is None:
            risks.append(f"guardrail '{check.guardrail}' could not be measured ({check.detail})")
        elif check.near_limit():
            risks.append(f"guardrail '{check.guardrail}' is within 10% of its limit: {check.detail}")
    if regressed:
        risks.append(f"{regressed} example(s) got worse on {request.goal.metric} ({improved} improved)")
    if comparison.goal.n < SMALL_N:
        risks.append(f"only {comparison.goal.n} paired examples: intervals are wide, effects may not hold on live traffic")
    if text_paths:
        risks.append(f"prompt text changed ({', '.join(text_paths)}): read it; metrics do not check tone or policy")
    if not comparison.improves:
        risks.append(f"no significant improvement: the 95% CI of the change in {request.goal.metric} includes 0")
    if decision.exhausted:
        risks.append(f"budget exhausted ({'; '.join(decision.exhausted)}): the search stopped before it converged")
    proposers = {c.get("proposer") for c in candidates if c.get("id") != "baseline"}
    if proposers and "llm" not in proposers:
        risks.append("no LLM proposer ran (offline search only): prompt and reasoning-based changes were not explored")
    stopped = [c.candidate_id for c in decision.comparisons if c.stopped_early]
    if stopped:
        risks.append(f"{len(stopped)} candidate(s) stopped early as clearly worse: {', '.join(stopped)}")
    return risks


def _mutations_text(record: dict | None) -> str:
    if not record or not record.get("mutations"):
        return "no changes"
    return ", ".join(f"{m['path']}={m['value']!r}" for m in record["mutations"])


def _alternative(comparison: Comparison, record: dict | None) -> str:
    row = comparison.goal
    parts = [f"{row.label()} {format_metric(row.metric, row.candidate)} ({format_metric(row.metric, row.delta, signed=True)})"]
    for metric, statistic in (("latency_ms", "p95"), ("cost_usd", "mean")):
        if metric != row.metric and comparison.value(metric, statistic) is not None:
            parts.append(f"{statistic} {metric} {format_metric(metric, comparison.value(metric, statistic))}")
    return f"{comparison.candidate_id} ({_mutations_text(record)}): " + ", ".join(parts)


def build_report(state: dict, decision: Decision, candidate_id: str | None = None) -> ApprovalReport:
    """The report on ``candidate_id`` (default: the decision's best candidate)."""
    candidate_id = candidate_id or decision.best_candidate_id
    if candidate_id is None:
        raise ValueError(f"no candidate to report on: the decision recommends none ({decision.reason})")
    records = {c["id"]: c for c in state.get("candidates") or []}
    record = records.get(candidate_id)
    comparison = decision.comparison(candidate_id)
    if record is None or comparison is None:
        raise ValueError(f"candidate {candidate_id!r} was not evaluated in this run; known: {', '.join(c.candidate_id for c in decision.comparisons) or 'none'}")
    request = TuningRequest.model_validate(state["request"])
    baseline = state["baseline"]
    evals = state["evals"]
    base_report, cand_report = (EvalReport.model_validate(evals[h]) if isinstance(evals[h], dict) else evals[h]
                                for h in (baseline["config_hash"], record["config_hash"]))
    diff = config_diff(baseline["config"], record["config"])
    shown, improved, regressed = changed_examples(base_report, cand_report, request.goal)
    alternatives = [_alternative(c, records.get(c.candidate_id)) for c in decision.comparisons
                    if c.candidate_id in decision.pareto and c.candidate_id != candidate_id]
    return ApprovalReport(
        workflow=request.workflow, request_text=request.text, goal=request.goal.describe(),
        baseline_version=baseline.get("version"),
        candidate={k: record.get(k) for k in ("id", "round", "proposer", "mutations", "rationale", "config_hash")},
        diff=format_diff(diff), table=comparison.rows, guardrails=comparison.guardrails,
        changed_examples=shown, improved=improved, regressed=regressed,
        confident=comparison.improves,
        risks=_risks(request, decision, comparison, _text_changes(diff), improved, regressed, list(records.values())),
        pareto=decision.pareto, alternatives=alternatives, spent=decision.spent, decision_reason=decision.reason,
        live=live_lines(state),
    )


# --- formatting -----------------------------------------------------------------------------------


def format_change(row: MetricRow) -> str:
    """``0.608 → 0.779 (+0.171, 95% CI +0.121…+0.221)``."""
    if row.n == 0:
        return "not measured"
    def unit(value, signed=False):
        return format_metric(row.metric, value, signed)

    if row.delta == 0 and row.ci_low in (0, None) and row.ci_high in (0, None):
        return f"{unit(row.baseline)} → {unit(row.candidate)} (unchanged)"
    text = f"{unit(row.baseline)} → {unit(row.candidate)} ({unit(row.delta, True)}"
    if row.ci_low is not None:
        text += f", 95% CI {unit(row.ci_low, True)}…{unit(row.ci_high, True)}"
    return text + ")"


def _verdict(row: MetricRow) -> str:
    return {True: "better", False: "worse", None: "no clear change"}[row.better]


def _check_mark(check: GuardrailCheck) -> str:
    if check.uncertain:
        return "⚠"
    return {True: "✓", False: "✗", None: "?"}[check.passed]


def _spent_text(spent: Spent) -> str:
    return (f"{spent.candidates} candidates, {spent.rounds} round(s), {spent.examples} fresh example runs, "
            f"{spent.tokens:,} tokens, ${spent.cost_usd:.4g}, {spent.wall_s:.0f} s")


def live_lines(state: dict) -> list[str]:
    """The last look of the run's live experiment, if the candidate reported had one."""
    experiment = state.get("experiment") or {}
    if not experiment:
        return []
    head = (f"{experiment.get('stage', 'experiment')} at {experiment['share']:.0%} of traffic, "
            f"{experiment.get('looks', 0)} looks: {experiment.get('status', 'running')}")
    lines = [head] + ([experiment["note"]] if experiment.get("note") else [])
    look = experiment.get("last_look")
    if look:
        lines += [look.get("summary", ""), f"verdict: {look['verdict']['action']}", *look["verdict"].get("reasons", [])]
    return lines


def format_report(report: ApprovalReport) -> str:
    """Markdown for a chat and a terminal: short lines, one table, no HTML."""
    cand = report.candidate
    lines = [f"## Tuning report: {report.workflow} — candidate {cand['id']}", ""]
    if report.request_text:
        lines += [f"- **Request:** {report.request_text}"]
    version = f"version {report.baseline_version}" if report.baseline_version is not None else "the active config"
    lines += [f"- **Goal:** {report.goal}, against {version}.", f"- **Recommendation:** {report.decision_reason}", ""]
    lines += ["### Change", "", f"Proposed by {cand.get('proposer') or 'unknown'} in round {cand.get('round')}."]
    if cand.get("rationale"):
        lines.append(f"Why: {cand['rationale']}")
    lines += ["", "```", report.diff, "```", ""]
    n = report.table[0].n if report.table else 0
    lines += [f"### Results ({n} paired examples)", "", "| metric | baseline → candidate | verdict |", "|---|---|---|"]
    lines += [f"| {row.label()} | {format_change(row)} | {_verdict(row)} |" for row in report.table]
    lines += ["", "### Guardrails", ""]
    lines += [f"- {_check_mark(c)} {c.guardrail}: {c.detail}" for c in report.guardrails] or ["- none"]
    lines += ["", f"### Changed examples ({report.improved} improved, {report.regressed} regressed)", ""]
    for e in report.changed_examples:
        lines.append(f"- {e.example_id}: {format_number(e.baseline_score)} → {format_number(e.candidate_score)}")
        lines.append(f"  - baseline: {e.baseline_error or e.baseline_answer or '(no answer)'}")
        lines.append(f"  - candidate: {e.candidate_error or e.candidate_answer or '(no answer)'}")
    if not report.changed_examples:
        lines.append("- none")
    if report.live:
        lines += ["", "### Live experiment", ""] + [f"- {line}" for line in report.live]
    lines += ["", "### Risks", ""] + ([f"- {r}" for r in report.risks] or ["- none found"])
    if report.alternatives:
        lines += ["", f"### Alternatives (Pareto front: {', '.join(report.pareto)})", ""]
        lines += [f"- {a}" for a in report.alternatives]
    lines += ["", f"Spent: {_spent_text(report.spent)}."]
    return "\n".join(lines)


def _status(comparison: Comparison, best_id: str | None) -> str:
    if comparison.stopped_early:
        status = f"stopped early: {comparison.stop_reason}" if comparison.stop_reason else "stopped early"
    elif not comparison.feasible:
        broken = [c.guardrail for c in comparison.guardrails if c.passed is False]
        status = "breaks " + "; ".join(broken)
    else:
        status = _verdict(comparison.goal)
    return status + (" · best" if comparison.candidate_id == best_id else "")


def format_decision(decision: Decision) -> str:
    """The decide step's progress message: one row per candidate, the best so far, the next step and why."""
    metric = decision.comparisons[0].goal.metric if decision.comparisons else ""

    def unit(value, signed=False):
        return format_metric(metric, value, signed)

    lines = [f"**Round {decision.round}** — {decision.goal}; baseline {unit(decision.baseline_value)}"]
    if decision.comparisons:
        label = decision.comparisons[0].goal.label()
        lines += ["", f"| candidate | {label} | change (95% CI) | status |", "|---|---|---|---|"]
        for c in decision.comparisons:
            row = c.goal
            change = "n/a" if row.delta is None else unit(row.delta, True)
            if row.ci_low is not None:
                change += f" ({unit(row.ci_low, True)}…{unit(row.ci_high, True)})"
            lines.append(f"| {c.candidate_id} | {unit(c.objective)} | {change} | {_status(c, decision.best_candidate_id)} |")
        lines.append("")
    else:
        lines.append("No candidate has been evaluated yet.")
    if decision.best_candidate_id:
        confidence = "significant" if decision.confident else "not significant"
        lines.append(f"Best so far: {decision.best_candidate_id} ({confidence}). Pareto front: {', '.join(decision.pareto) or 'none'}.")
    lines.append(f"Next: {decision.next} — {decision.reason}")
    return "\n".join(lines)
