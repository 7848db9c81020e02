"""The approval report: diff, changed examples, risks, and the Markdown a person reads."""

from __future__ import annotations

import pytest

from graphtune.spec import Guardrail
from graphtune.tuning.config_paths import config_hash, set_path
from graphtune.tuning.decision import decide
from graphtune.tuning.report import (
    ApprovalReport,
    build_report,
    changed_examples,
    format_change,
    format_decision,
    format_report,
)
from graphtune.tuning.request import Budget, TuningGoal
from tests.tuning.test_decision import NOW, baseline_scores, make_report, make_state, variant

F1_GOAL = TuningGoal(metric="token_f1", direction="maximize")


def change_prompt(state: dict, candidate_id: str, text: str) -> None:
    """Give a candidate a new answer prompt too, keeping its eval report under the new config hash."""
    record = next(c for c in state["candidates"] if c["id"] == candidate_id)
    old_hash = record["config_hash"]
    record["config"] = set_path(record["config"], "prompts.answer", text)
    record["mutations"].append({"path": "prompts.answer", "value": text})
    record["config_hash"] = config_hash(record["config"])
    state["evals"][record["config_hash"]] = state["evals"].pop(old_hash)


def clean_state(**kwargs) -> dict:
    """c1 fixes misses and loses nothing; c2 is faster with a small loss (a Pareto alternative)."""
    base = baseline_scores()
    return make_state([("c1", 1, variant(base, gain=0.45)), ("c2", 1, variant(base, loss=0.05, latency=0.8, cost=0.9, seed=2))],
                      base=base, **kwargs)


def test_report_has_diff_table_guardrails_and_alternatives():
    state = clean_state()
    decision = decide(state, now=NOW)
    report = build_report(state, decision)
    assert report.candidate["id"] == "c1" and report.candidate["proposer"] == "llm"
    assert report.diff == "rag.top_k: 2 -> 3"
    assert report.table == decision.comparison("c1").rows and report.table[0].metric == "contains"
    assert [g.guardrail for g in report.guardrails] == ["p95 latency_ms <= 1.2x baseline", "mean error <= 0.05"]
    assert report.baseline_version == 3 and report.goal == "maximize mean contains"
    assert report.regressed == 0 and report.improved > 30 and report.confident
    assert report.risks == []  # 200 paired examples, significant, nothing regressed, LLM proposer, no prompt change
    assert decision.pareto == ["c1", "c2"]  # c1 is as fast and cheap as the baseline, and better
    assert len(report.alternatives) == 1 and report.alternatives[0].startswith("c2 (rag.top_k=4): mean contains ")
    # any evaluated candidate can be reported on, e.g. the alternative
    assert build_report(state, decision, "c2").candidate["id"] == "c2"


def test_report_needs_a_candidate():
    base = baseline_scores()
    state = make_state([("c1", 1, variant(base, loss=0.3))], base=base, budget=Budget(candidates=1))
    decision = decide(state, now=NOW)
    assert decision.best_candidate_id is None
    with pytest.raises(ValueError, match="no candidate to report on"):
        build_report(state, decision)
    with pytest.raises(ValueError, match="'c9' was not evaluated"):
        build_report(state, decision, "c9")


def test_changed_examples_show_worst_regressions_then_best_improvements():
    n = 20
    base = {"token_f1": [0.5] * n}
    cand = [0.5] * n
    for i in range(12):  # q000..q011 regress, q011 the most
        cand[i] = 0.5 - 0.01 * (i + 1)
    for i, gain in zip((12, 13, 14), (0.1, 0.3, 0.2)):
        cand[i] = 0.5 + gain
    answers = [f"long answer {i} " + "x" * 400 for i in range(n)]
    shown, improved, regressed = changed_examples(make_report(base), make_report({"token_f1": cand}, answers=answers), F1_GOAL)
    assert (improved, regressed) == (3, 12)
    assert [e.example_id for e in shown] == ["q011", "q010", "q009", "q008", "q007", "q006", "q005", "q013", "q014", "q012"]
    assert shown[0].baseline_score == 0.5 and shown[0].candidate_score == pytest.approx(0.38)
    assert len(shown[0].candidate_answer) == 200 and shown[0].candidate_answer.startswith("long answer 11 ")
    # with few improvements the regressions fill the slots; with many, regressions keep half
    only_worse, _, _ = changed_examples(make_report(base), make_report({"token_f1": [0.4] * n}), F1_GOAL)
    assert len(only_worse) == 10
    many_better = [0.6] * 15 + [0.4] * 5
    mixed, improved, regressed = changed_examples(make_report(base), make_report({"token_f1": many_better}), F1_GOAL)
    assert (improved, regressed) == (15, 5) and [e.candidate_score for e in mixed] == [0.4] * 5 + [0.6] * 5
    # a minimize goal: a lower score is the improvement
    latency = TuningGoal(metric="latency_ms", direction="minimize", statistic="p95")
    shown, improved, regressed = changed_examples(make_report({"latency_ms": [100.0, 100.0]}),
                                                  make_report({"latency_ms": [150.0, 80.0]}), latency)
    assert (improved, regressed) == (1, 1) and [e.example_id for e in shown] == ["q000", "q001"]


def test_risks_name_what_an_approver_should_doubt():
    base = baseline_scores(n=60)
    scores = variant(base, gain=0.3, loss=0.1, latency=1.19)  # within 10% of the 1.2x p95 limit
    state = make_state([("c1", 1, scores), ("c2", 1, variant(base, loss=0.5, seed=3))], base=base, proposer="optuna",
                       budget=Budget(candidates=2), stopped={"c2"})
    change_prompt(state, "c1", "Answer in one sentence, politely: {context}")
    decision = decide(state, now=NOW)
    report = build_report(state, decision)
    assert report.candidate["id"] == "c1" and not report.confident and report.regressed > 0
    text = "\n".join(report.risks)
    assert "guardrail 'p95 latency_ms <= 1.2x baseline' is within 10% of its limit" in text
    assert f"{report.regressed} example(s) got worse on contains ({report.improved} improved)" in text
    assert "only 60 paired examples" in text
    assert "prompt text changed (prompts.answer)" in text
    assert "no significant improvement" in text
    assert "budget exhausted (candidate budget used: 2 of 2)" in text
    assert "no LLM proposer ran" in text
    assert "1 candidate(s) stopped early as clearly worse: c2" in text
    assert 'prompts.answer: "Answer briefly: {context}" -> "Answer in one sentence, politely: {context}"' in report.diff
    assert "rag.top_k: 2 -> 3" in report.diff


def test_format_report_is_markdown_with_the_metric_table_and_is_stable():
    state = clean_state()
    decision = decide(state, now=NOW)
    report = build_report(state, decision)
    text = format_report(report)
    goal = report.table[0]
    assert format_change(goal).startswith(f"{goal.baseline:.3f} → {goal.candidate:.3f} (+{goal.delta:.3f}, 95% CI +")
    lines = text.splitlines()
    assert lines[0] == "## Tuning report: support_qa — candidate c1"
    assert "| metric | baseline → candidate | verdict |" in lines
    assert f"| mean contains | {format_change(goal)} | better |" in lines
    assert sum(1 for line in lines if line.startswith("| ")) == 1 + len(report.table)
    for heading in ("### Change", "### Guardrails", "### Changed examples", "### Risks", "### Alternatives"):
        assert any(line.startswith(heading) for line in lines), heading
    assert "```\nrag.top_k: 2 -> 3\n```" in text
    assert "- ✓ p95 latency_ms <= 1.2x baseline: " in text
    # the same state gives the same text, also after a JSON round trip (checkpoint, interrupt payload)
    again = build_report(state, decide(state, now=NOW))
    assert format_report(again) == text
    assert format_report(ApprovalReport.model_validate_json(report.model_dump_json())) == text


def test_format_decision_lists_candidates_and_the_next_step():
    base = baseline_scores()
    state = make_state([("c1", 1, variant(base, gain=0.45)), ("c2", 1, variant(base, loss=0.5, seed=3)),
                        ("c3", 1, variant(base, gain=0.5, latency=1.5, seed=4))], base=base, stopped={"c2"},
                       guardrails=[Guardrail(metric="latency_ms", statistic="p95", max_ratio=1.2)])
    decision = decide(state, now=NOW)
    text = format_decision(decision)
    lines = text.splitlines()
    assert lines[0].startswith("**Round 1** — maximize mean contains; baseline 0.")
    row = {line.split(" | ")[0].strip("| "): line for line in lines if line.startswith("| c")}
    assert row["c1"].endswith("| better · best |")
    assert "stopped early: clearly worse" in row["c2"]
    assert row["c3"].endswith("| breaks p95 latency_ms <= 1.2x baseline |")
    assert "Best so far: c1 (significant)." in text
    assert lines[-1] == f"Next: propose — {decision.reason}"
