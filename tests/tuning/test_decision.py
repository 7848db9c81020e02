"""The decide step's domain: paired comparisons, guardrails, Pareto front, budget and the next step.

Reports are synthetic (``make_report``): per-example scores drawn with a fixed seed, summaries from
``graphtune.evals.stats.summarize`` as the runner computes them.
"""

from __future__ import annotations

import random

import pytest

from graphtune.evals.runner import EvalReport, ExampleResult
from graphtune.evals.stats import paired_mean_ci, paired_quantile_diff_ci, summarize
from graphtune.graphs.state import CandidateRecord
from graphtune.spec import Guardrail
from graphtune.tuning.config_paths import config_hash, set_path
from graphtune.tuning.decision import (
    Decision,
    guardrail_check,
    budget_left,
    budget_spent,
    compare,
    decide,
    feasible,
    guardrail_checks,
    objective_value,
    pareto_front,
)
from graphtune.tuning.mutations import Mutation
from graphtune.tuning.request import Budget, TuningGoal, TuningRequest

GOAL = TuningGoal(metric="contains", direction="maximize")
BASE_CONFIG = {"llm": {"temperature": 0.2}, "rag": {"top_k": 2}, "prompts": {"answer": "Answer briefly: {context}"}}


# --- builders (shared with test_report and test_decide) ---------------------------------------------


def make_report(scores: dict[str, list[float | None]], *, config: dict | None = None, answers: list[str] | None = None,
                stopped_early: bool = False, examples_total: int | None = None, cached: int = 0,
                errors: list[str | None] | None = None) -> EvalReport:
    """An EvalReport from per-example scores (example ids q000, q001, ...), summarized like the runner does."""
    n = len(next(iter(scores.values())))
    results = [
        ExampleResult(example_id=f"q{i:03d}", scores={m: v[i] for m, v in scores.items()},
                      answer=answers[i] if answers else f"answer {i}", error=errors[i] if errors else None,
                      cached=i < cached)
        for i in range(n)
    ]
    return EvalReport(
        workflow="support_qa", dataset="support_qa", dataset_hash="d" * 8,
        config_hash=config_hash(config if config is not None else {"n": n, "s": repr(scores)[:200]}),
        results=results, summary={m: summarize([x for x in v if x is not None]) for m, v in scores.items()},
        examples_total=examples_total or n, cached=cached, stopped_early=stopped_early,
        stop_reason="clearly worse than the baseline on contains" if stopped_early else "",
    )


def baseline_scores(n: int = 200, seed: int = 0) -> dict[str, list[float]]:
    rng = random.Random(seed)
    return {
        "contains": [1.0 if rng.random() < 0.6 else 0.0 for _ in range(n)],
        "token_f1": [min(1.0, max(0.0, rng.gauss(0.5, 0.2))) for _ in range(n)],
        "latency_ms": [max(50.0, rng.gauss(800, 150)) for _ in range(n)],
        "cost_usd": [0.0001 + rng.random() * 0.00002 for _ in range(n)],
        "total_tokens": [float(rng.randint(300, 500)) for _ in range(n)],
        "error": [0.0] * n,
    }


def variant(base: dict[str, list[float]], *, gain: float = 0.0, loss: float = 0.0, latency: float = 1.0,
            cost: float = 1.0, error_rate: float = 0.0, f1_shift: float = 0.0, f1_noise: float = 0.0,
            seed: int = 1) -> dict[str, list[float]]:
    """A candidate's scores: misses fixed with probability ``gain``, hits lost with ``loss``, latency/cost scaled."""
    rng = random.Random(seed)
    contains = [(1.0 if rng.random() < gain else 0.0) if v == 0 else (0.0 if rng.random() < loss else 1.0)
                for v in base["contains"]]
    return {
        "contains": contains,
        "token_f1": [min(1.0, max(0.0, v + f1_shift + rng.gauss(0, f1_noise))) for v in base["token_f1"]],
        "latency_ms": [v * latency for v in base["latency_ms"]],
        "cost_usd": [v * cost for v in base["cost_usd"]],
        "total_tokens": list(base["total_tokens"]),
        "error": [1.0 if rng.random() < error_rate else 0.0 for _ in base["error"]],
    }


def make_state(candidates: list[tuple[str, int, dict]], *, base: dict | None = None, round_: int = 1,
               budget: Budget | None = None, goal: TuningGoal = GOAL, guardrails: list[Guardrail] | None = None,
               started_at: float = 1000.0, proposer: str = "llm", stopped: set[str] = frozenset(),
               usage: list[dict] | None = None) -> dict:
    """A ControllerState (plain dicts) with the baseline and candidates ``(id, round, scores)`` evaluated.

    Candidate ``ck`` sets ``rag.top_k`` to k + 2 so every config (and hash) differs.
    """
    base = base or baseline_scores()
    base_report = make_report(base, config=BASE_CONFIG)
    baseline = CandidateRecord(id="baseline", round=0, proposer="baseline", config=BASE_CONFIG,
                               config_hash=base_report.config_hash).model_dump(mode="json")
    records, evals = [], {base_report.config_hash: base_report.model_dump(mode="json")}
    for cid, rnd, scores in candidates:
        top_k = 2 + int(cid.lstrip("ce"))
        config = set_path(BASE_CONFIG, "rag.top_k", top_k)
        record = CandidateRecord(id=cid, round=rnd, proposer=proposer, mutations=[Mutation(path="rag.top_k", value=top_k)],
                                 rationale=f"more context ({top_k})", config=config, config_hash=config_hash(config))
        records.append(record.model_dump(mode="json"))
        if scores is not None:
            report = make_report(scores, config=config, stopped_early=cid in stopped)
            evals[record.config_hash] = report.model_dump(mode="json")
    request = TuningRequest(workflow="support_qa", goal=goal, text="raise answer quality",
                            guardrails=guardrails if guardrails is not None else [
                                Guardrail(metric="latency_ms", statistic="p95", max_ratio=1.2),
                                Guardrail(metric="error", max_value=0.05)],
                            budget=budget or Budget(candidates=8, rounds=3, wall_time_s=900))
    return {"messages": [], "request": request.model_dump(mode="json"), "baseline": {**baseline, "version": 3},
            "round": round_, "candidates": records, "evals": evals, "started_at": started_at,
            "controller_usage": usage or []}


NOW = 1010.0  # ten seconds after make_state's started_at


# --- statistics ---------------------------------------------------------------------------------------


def test_paired_mean_ci_is_a_t_interval_and_degenerates_cleanly():
    mean, low, high = paired_mean_ci([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    assert mean == pytest.approx(4 / 6)
    assert low < mean < high and high - mean == pytest.approx(mean - low)
    assert paired_mean_ci([0.5]) == (0.5, None, None)
    assert paired_mean_ci([0.2, 0.2, 0.2]) == pytest.approx((0.2, 0.2, 0.2))


def test_quantile_bootstrap_is_deterministic_and_brackets_the_shift():
    base = baseline_scores()["latency_ms"]
    slower = [v * 1.3 for v in base]
    first = paired_quantile_diff_ci(base, slower, 0.95)
    assert first == paired_quantile_diff_ci(base, slower, 0.95)
    point, low, high = first
    assert 0 < low <= point <= high
    assert paired_quantile_diff_ci(base, base, 0.95) == (0.0, 0.0, 0.0)


# --- comparison -------------------------------------------------------------------------------------


def test_clear_improvement_is_significant_and_rows_are_ordered():
    base = baseline_scores()
    baseline, candidate = make_report(base), make_report(variant(base, gain=0.45, loss=0.02))
    guardrails = [Guardrail(metric="latency_ms", statistic="p95", max_ratio=1.2), Guardrail(metric="error", max_value=0.05)]
    comparison = compare("c1", candidate, baseline, GOAL, guardrails)
    goal = comparison.goal
    assert (goal.metric, goal.statistic, goal.n) == ("contains", "mean", 200)
    assert goal.delta == pytest.approx(goal.candidate - goal.baseline) and goal.delta > 0.1
    assert goal.ci_low > 0 and goal.better is True and comparison.improves
    assert goal.relative == pytest.approx(goal.delta / goal.baseline)
    assert comparison.feasible and comparison.objective == objective_value(candidate, GOAL)
    labels = [row.label() for row in comparison.rows]
    assert labels[:3] == ["mean contains", "p95 latency_ms", "mean error"]
    assert labels[3:] == ["mean token_f1", "mean cost_usd"]


def test_no_improvement_is_not_significant_and_a_regression_is_worse():
    base = baseline_scores()
    same = compare("c1", make_report(variant(base, gain=0.03, loss=0.02)), make_report(base), GOAL, [])
    assert same.goal.better is None and not same.improves
    assert same.goal.ci_low < 0 < same.goal.ci_high
    worse = compare("c2", make_report(variant(base, loss=0.3)), make_report(base), GOAL, [])
    assert worse.goal.better is False and worse.goal.ci_high < 0 and not worse.improves


def test_lower_is_better_goal_counts_a_cut_as_better():
    base = baseline_scores()
    goal = TuningGoal(metric="latency_ms", direction="minimize", statistic="p95", target_change=-0.2)
    comparison = compare("c1", make_report(variant(base, latency=0.7)), make_report(base), goal, [])
    assert comparison.goal.delta < 0 and comparison.goal.ci_high < 0
    assert comparison.improves and comparison.meets_target is True
    slower = compare("c2", make_report(variant(base, latency=0.9)), make_report(base), goal, [])
    assert slower.improves and slower.meets_target is False  # significant, but only -10%


def test_p95_latency_ratio_guardrail():
    base = baseline_scores()
    guardrail = [Guardrail(metric="latency_ms", statistic="p95", max_ratio=1.2)]
    baseline = make_report(base)
    slow = make_report(variant(base, latency=1.5))
    [check] = guardrail_checks(slow, baseline, guardrail)
    assert check.passed is False and check.limit == pytest.approx(1.2 * baseline.value("latency_ms", "p95"))
    assert "1.50x baseline" in check.detail
    assert not feasible(slow, baseline, guardrail)
    ok = make_report(variant(base, latency=1.1))
    [check] = guardrail_checks(ok, baseline, guardrail)
    assert check.passed is True and not check.near_limit() and check.headroom == pytest.approx(0.5)
    for factor in (1.19, 1.2):  # exactly at the limit passes despite float rounding, but is flagged
        [check] = guardrail_checks(make_report(variant(base, latency=factor)), baseline, guardrail)
        assert check.passed is True and check.near_limit()


def test_max_value_error_guardrail():
    base = baseline_scores()
    guardrail = [Guardrail(metric="error", max_value=0.05)]
    failing = make_report(variant(base, error_rate=0.2))
    [check] = guardrail_checks(failing, make_report(base), guardrail)
    assert check.passed is False and check.limit == 0.05 and check.candidate > 0.1
    assert feasible(make_report(variant(base)), make_report(base), guardrail)


def test_margin_guardrail_uses_the_pessimistic_interval_bound():
    base = baseline_scores()
    guardrail = [Guardrail(metric="token_f1", margin=0.02)]
    baseline = make_report(base)
    [same] = guardrail_checks(make_report(variant(base, f1_noise=0.01)), baseline, guardrail)
    assert same.passed is True
    [dropped] = guardrail_checks(make_report(variant(base, f1_shift=-0.05)), baseline, guardrail)
    assert dropped.passed is False
    # point estimate inside the margin, but the noisy pairs leave the worst case beyond it
    small = {m: v[:20] for m, v in base.items()}
    noisy = variant(small, f1_shift=-0.01, f1_noise=0.15, seed=7)
    [uncertain] = guardrail_checks(make_report(noisy), make_report(small), guardrail)
    assert uncertain.candidate - uncertain.baseline > -0.02
    assert uncertain.passed is False and "worst case (95% CI)" in uncertain.detail
    # lower-is-better metric: the upper bound is the pessimistic one
    latency_margin = [Guardrail(metric="latency_ms", margin=50)]
    [fine] = guardrail_checks(make_report(variant(base, latency=1.01)), baseline, latency_margin)
    [slow] = guardrail_checks(make_report(variant(base, latency=1.2)), baseline, latency_margin)
    assert fine.passed is True and fine.limit == pytest.approx(fine.baseline + 50)
    assert slow.passed is False


def test_unmeasurable_guardrail_does_not_block():
    base = baseline_scores()
    [check] = guardrail_checks(make_report(variant(base)), make_report(base), [Guardrail(metric="judge", margin=0.1)])
    assert check.passed is None and "not measurable" in check.detail
    assert feasible(make_report(variant(base)), make_report(base), [Guardrail(metric="judge", max_ratio=1.1)])


def test_stopped_early_candidate_is_infeasible_and_never_best():
    base = baseline_scores()
    state = make_state([("c1", 1, variant(base, gain=0.9)), ("c2", 1, variant(base, gain=0.3))], base=base, stopped={"c1"})
    decision = decide(state, now=NOW)
    c1 = decision.comparison("c1")
    assert c1.stopped_early and not c1.feasible and c1.objective > decision.comparison("c2").objective
    assert decision.best_candidate_id == "c2"
    assert "c1" not in decision.pareto


# --- Pareto front -----------------------------------------------------------------------------------


def test_pareto_front_removes_dominated_infeasible_and_incomplete_candidates():
    base = baseline_scores()
    baseline = make_report(base)
    candidates = {
        "c1": make_report(variant(base, gain=0.5, latency=1.1, cost=1.05)),  # better quality, slower, dearer
        "c2": make_report(variant(base, loss=0.05, latency=0.8, cost=0.9)),  # a bit worse, faster, cheaper
        "c3": make_report(variant(base, gain=0.05, loss=0.2, latency=1.15, cost=1.05, seed=3)),  # worse on all
        "c4": make_report(variant(base, gain=0.9, latency=0.5, cost=0.5, error_rate=0.3)),  # dominates, but breaks error
        "c5": make_report({m: v[:100] for m, v in variant(base, gain=0.9, latency=0.5, cost=0.5).items()},
                          examples_total=200),  # dominates, but only half evaluated
    }
    guardrails = [Guardrail(metric="error", max_value=0.05)]
    comparisons = [compare(cid, report, baseline, GOAL, guardrails) for cid, report in candidates.items()]
    baseline_self = compare("baseline", baseline, baseline, GOAL, guardrails)
    front = pareto_front(comparisons, GOAL, baseline_self)
    assert front == ["baseline", "c1", "c2"]
    assert pareto_front(comparisons, GOAL) == ["c1", "c2"]
    # a latency goal still trades off against quality: the first quality metric the reports have
    latency_goal = TuningGoal(metric="latency_ms", direction="minimize", statistic="p95")
    assert pareto_front(comparisons, latency_goal, baseline_self) == ["baseline", "c1", "c2"]
    # a candidate better on every axis removes the baseline and the others
    best = compare("c6", make_report(variant(base, gain=0.9, latency=0.5, cost=0.5)), baseline, GOAL, guardrails)
    assert pareto_front(comparisons + [best], GOAL, baseline_self) == ["c6"]


# --- budget -----------------------------------------------------------------------------------------


def test_budget_spent_counts_fresh_examples_tokens_cost_and_time():
    base = baseline_scores(n=50)
    state = make_state([("c1", 1, variant(base))], base=base,
                       usage=[{"step": "propose", "input_tokens": 1000, "output_tokens": 200, "cost_usd": 0.01}])
    cand_hash = state["candidates"][0]["config_hash"]
    state["evals"][cand_hash] = make_report(variant(base), config=state["candidates"][0]["config"], cached=20).model_dump(mode="json")
    spent = budget_spent(state, now=NOW)
    assert spent.examples == 50 + 30 and spent.candidates == 1 and spent.rounds == 1 and spent.wall_s == 10
    fresh_tokens = sum(base["total_tokens"]) + sum(base["total_tokens"][20:])
    assert spent.tokens == int(fresh_tokens) + 1200
    assert spent.cost_usd == pytest.approx(sum(base["cost_usd"]) + sum(base["cost_usd"][20:]) + 0.01)
    assert budget_left(TuningRequest.model_validate(state["request"]), spent) == []


@pytest.mark.parametrize("budget, now, expected", [
    (Budget(candidates=2), NOW, "candidate budget used: 2 of 2"),
    (Budget(examples=500), NOW, "example budget used: 600 of 500"),
    (Budget(cost_usd=0.01), NOW, "cost budget used: $0.0"),
    (Budget(tokens=1000), NOW, "token budget used:"),
    (Budget(wall_time_s=900), 1000.0 + 901, "wall time used: 901 s of 900 s"),
])
def test_exhausted_budget_approves_the_best_so_far(budget, now, expected):
    base = baseline_scores()
    state = make_state([("c1", 1, variant(base, gain=0.45)), ("c2", 1, variant(base, gain=0.1, seed=2))], base=base, budget=budget)
    decision = decide(state, now=now)
    assert decision.next == "approve" and decision.best_candidate_id == "c1" and decision.confident
    assert any(reason.startswith(expected) for reason in decision.exhausted)
    assert decision.reason.startswith("budget exhausted (")
    assert "best candidate so far is c1" in decision.reason


def test_round_one_keeps_proposing_while_the_budget_allows():
    base = baseline_scores()
    decision = decide(make_state([("c1", 1, variant(base, gain=0.45))], base=base), now=NOW)
    assert decision.next == "propose" and decision.best_candidate_id == "c1" and decision.exhausted == []
    # even when nothing beat the baseline yet: round 1 only explored
    decision = decide(make_state([("c1", 1, variant(base, loss=0.3))], base=base), now=NOW)
    assert decision.next == "propose" and decision.best_candidate_id is None


def test_rounds_limit_stops_the_search():
    base = baseline_scores()
    state = make_state([("c1", 1, variant(base, gain=0.2)), ("c2", 2, variant(base, gain=0.3, seed=2)),
                        ("c3", 3, variant(base, gain=0.45, seed=3))], base=base, round_=3, budget=Budget(rounds=3))
    decision = decide(state, now=NOW)
    assert decision.next == "approve" and decision.best_candidate_id == "c3"
    assert decision.exhausted == ["round budget used: 3 of 3"]


def test_a_round_that_improves_continues_and_two_that_do_not_stop():
    base = baseline_scores()
    first = ("c1", 1, variant(base, gain=0.2))
    budget = Budget(rounds=9, candidates=16, given=[])  # limits the person did not set: patience applies
    better = decide(make_state([first, ("c2", 2, variant(base, gain=0.45, seed=2))], base=base, round_=2, budget=budget), now=NOW)
    assert better.next == "propose" and better.best_candidate_id == "c2"

    def flat(round_: int, start: int) -> list:
        return [(f"c{start + i}", round_, variant(base, gain=0.05, seed=start + i)) for i in range(4)]

    once = decide(make_state([first, *flat(2, 2)], base=base, round_=2, budget=budget), now=NOW)
    assert once.next == "propose" and once.best_candidate_id == "c1"  # one flat round: patience
    twice = decide(make_state([first, *flat(2, 2), *flat(3, 6)], base=base, round_=3, budget=budget), now=NOW)
    assert twice.next == "approve" and twice.best_candidate_id == "c1"
    assert twice.reason.startswith("rounds 2-3 did not improve") and twice.ended_by == "patience"
    roomy = Budget(rounds=9, candidates=40, given=[])  # patience waits until half the candidate budget is spent
    early = decide(make_state([first, *flat(2, 2), *flat(3, 6)], base=base, round_=3, budget=roomy), now=NOW)
    assert early.next == "propose" and early.ended_by == ""
    asked = Budget(rounds=9, candidates=40)  # "try 40 candidates": spent in full
    assert asked.given == ["candidates", "rounds"]
    kept_on = decide(make_state([first, *flat(2, 2), *flat(3, 6)], base=base, round_=3, budget=asked), now=NOW)
    assert kept_on.next == "propose" and kept_on.ended_by == ""


def test_a_perfect_score_ends_the_search():
    base = baseline_scores()
    perfect = {**variant(base, gain=1.0), "contains": [1.0] * len(base["contains"])}
    decision = decide(make_state([("c1", 1, perfect)], base=base, round_=1, budget=Budget(rounds=9, candidates=40)), now=NOW)
    assert decision.next == "approve" and decision.ended_by == "ceiling" and decision.best_candidate_id == "c1"


def test_small_batches_get_as_many_tries_before_the_search_gives_up():
    base = baseline_scores()
    budget = Budget(rounds=9, candidates=40, given=[])
    rounds = [(f"c{r}", r, variant(base, gain=0.05, loss=0.05, seed=r)) for r in range(1, 4)]
    decision = decide(make_state(rounds, base=base, round_=3, budget=budget), now=NOW)
    assert decision.next == "propose"  # three flat rounds of one candidate: 3 tries < 8


def test_nothing_better_finishes_without_a_candidate():
    base = baseline_scores()
    state = make_state([("c1", 1, variant(base, loss=0.3)), ("c2", 2, variant(base, loss=0.1, seed=2))], base=base, round_=2,
                       budget=Budget(rounds=2))
    decision = decide(state, now=NOW)
    assert decision.next == "finish" and decision.best_candidate_id is None and not decision.confident
    assert "nothing worth approving" in decision.reason
    # a better candidate that breaks a guardrail is not worth approving either
    state = make_state([("c1", 1, variant(base, gain=0.5, latency=1.6))], base=base, budget=Budget(candidates=1))
    decision = decide(state, now=NOW)
    assert decision.next == "finish" and decision.comparison("c1").improves and not decision.comparison("c1").feasible


def test_point_estimate_winner_is_recommended_without_confidence():
    base = baseline_scores()
    state = make_state([("c1", 1, variant(base, gain=0.04, loss=0.02))], base=base, budget=Budget(candidates=1))
    decision = decide(state, now=NOW)
    assert decision.comparison("c1").ahead() and not decision.comparison("c1").improves
    assert decision.next == "approve" and decision.best_candidate_id == "c1" and decision.confident is False
    assert "not significant" in decision.reason


def test_significant_beats_a_larger_but_uncertain_point_estimate():
    base = baseline_scores()
    small = {m: v[:30] for m, v in base.items()}
    # c2 is only scored on 30 paired examples: a higher mean there is not significant
    c2_scores = variant(small, gain=0.5, loss=0.3, seed=6)
    state = make_state([("c1", 1, variant(base, gain=0.3)), ("c2", 1, c2_scores)], base=base)
    decision = decide(state, now=NOW)
    c1, c2 = decision.comparison("c1"), decision.comparison("c2")
    assert c1.improves and not c2.improves and c2.goal.n == 30
    assert c2.goal.delta > c1.goal.delta  # the larger gain, but within noise
    assert decision.best_candidate_id == "c1"


def test_a_met_target_lets_the_search_go_on_only_while_it_improves():
    base = baseline_scores()
    scores = variant(base, gain=0.45)
    goal = GOAL.model_copy(update={"target_change": 0.1})
    met = decide(make_state([("c1", 1, scores)], base=base, goal=goal, budget=Budget(candidates=16)), now=NOW)
    assert met.next == "propose"  # the target is the least the person wants: a better config may be near
    # two more rounds of four that did not beat c1: the rest of the given budget is optional once the target is met
    later = [("c1", 1, scores)] + [(f"c{i}", 2 + (i - 2) // 4, variant(base, gain=0.01, seed=i)) for i in range(2, 10)]
    done = decide(make_state(later, base=base, goal=goal, budget=Budget(candidates=16), round_=3), now=NOW)
    assert done.next == "approve" and done.ended_by == "target" and done.best_candidate_id == "c1"
    assert done.reason.startswith("target met, and rounds 2-3 did not improve on it")
    assert "the requested +10% was reached" in done.reason
    missed = decide(make_state([("c1", 1, scores)], base=base, goal=GOAL.model_copy(update={"target_change": 0.6})), now=NOW)
    assert missed.next == "propose"
    spent = decide(make_state([("c1", 1, scores)], base=base, goal=GOAL.model_copy(update={"target_change": 0.6}),
                              budget=Budget(candidates=1)), now=NOW)
    assert spent.next == "approve" and "the requested +60% was not reached (the best candidate's change is +" in spent.reason


def test_a_gain_within_noise_is_offered_only_with_a_warning():
    base = baseline_scores()
    decision = decide(make_state([("c1", 1, variant(base, gain=0.01, seed=9))], base=base, budget=Budget(candidates=1)), now=NOW)
    assert decision.best_candidate_id == "c1" and not decision.confident
    assert "not shown to help" in decision.reason


def test_candidate_without_report_is_skipped_and_noted():
    base = baseline_scores()
    decision = decide(make_state([("c1", 1, variant(base, gain=0.45)), ("c2", 1, None)], base=base), now=NOW)
    assert decision.skipped == ["c2"] and [c.candidate_id for c in decision.comparisons] == ["c1"]
    assert "no eval report for c2" in decision.reason


def test_missing_baseline_report_finishes():
    state = make_state([("c1", 1, variant(baseline_scores(), gain=0.45))])
    state["evals"].pop(state["baseline"]["config_hash"])
    decision = decide(state, now=NOW)
    assert decision.next == "finish" and "baseline has no eval report" in decision.reason


def test_decision_round_trips_as_json():
    base = baseline_scores()
    decision = decide(make_state([("c1", 1, variant(base, gain=0.45))], base=base), now=NOW)
    again = Decision.model_validate_json(decision.model_dump_json())
    assert again == decision and again.pareto == decision.pareto


def test_a_ratio_limit_broken_only_within_noise_passes_with_the_doubt_stated():
    """Latency measured under load jitters: over 1.2x in point estimate, but the paired interval reaches below it."""
    rng = random.Random(6)
    base = baseline_scores(n=60)
    noisy = dict(base, latency_ms=[v * rng.uniform(0.75, 1.5) for v in base["latency_ms"]])
    rail = Guardrail(metric="latency_ms", statistic="p95", max_ratio=1.2)
    check = guardrail_check(make_report(noisy), make_report(base), rail)
    assert check.candidate > check.limit  # broken in point estimate
    assert check.passed is True and check.uncertain and "within noise" in check.detail
    assert check.near_limit()

    clearly = guardrail_check(make_report(variant(base, latency=1.6)), make_report(base), rail)
    assert clearly.passed is False and "within noise" not in clearly.detail


def test_a_failed_baseline_evaluation_ends_the_run_saying_why():
    state = make_state([])
    base_hash = state["baseline"]["config_hash"]
    state["evals"][base_hash] = dict(state["evals"][base_hash], results=[], summary={}, stopped_early=True,
                                     stop_reason="evaluation failed: OperationalError: database is locked")
    decision = decide(state)
    assert decision.next == "finish" and "database is locked" in decision.reason
