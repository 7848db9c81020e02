"""Always-valid tests: the error rate holds under peeking, real effects are found, guardrails and SRM
behave as the issue's cases say, and bad input is refused with the reason."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from graphtune.spec import Guardrail
from graphtune.tuning.sequential import (
    ArmStats, Comparison, GuardrailResult, SrmResult, boundary_multiplier, compare, guardrail_test,
    mixture_rho2, non_inferiority, promotion_decision, quantile_guardrail, srm_check, value_limit,
)


def _peek_proportions(rng, runs, looks, per_look, share, p_base, p_cand):
    """Cumulative (ok_c, n_c, ok_b, n_b) arrays of shape (runs, looks)."""
    n = looks * per_look
    cand = rng.random((runs, n)) < share
    ok = rng.random((runs, n)) < np.where(cand, p_cand, p_base)

    def cum(x):
        return x.reshape(runs, looks, per_look).sum(axis=2).cumsum(axis=1)

    return cum(ok & cand), cum(cand), cum(ok & ~cand), cum(~cand)


# --- the boundary ---------------------------------------------------------------------------------


def test_boundary_is_wider_than_a_fixed_sample_interval_and_tightest_where_asked():
    t = np.array([10, 100, 1000, 10_000, 1_000_000])
    assert np.all(boundary_multiplier(t) > 1.96)
    # the rho tuned for t=1000 gives the smallest boundary at t=1000 among other tunings
    at_1000 = boundary_multiplier(1000, tightest_at=1000)
    assert all(at_1000 < boundary_multiplier(1000, tightest_at=other) for other in (100, 300, 3000, 10_000))
    assert 2.9 < at_1000 < 3.2
    assert mixture_rho2(1000) == pytest.approx((2 * math.log(20) + math.log(1 + 2 * math.log(20))) / 1000)


# --- validity under peeking -----------------------------------------------------------------------


def test_aa_proportions_are_rarely_called_different_however_often_one_looks():
    """400 A/A experiments looked at 25 times each: the interval ever excluding 0 stays within alpha."""
    rng = np.random.default_rng(1)
    ok_c, n_c, ok_b, n_b = _peek_proportions(rng, runs=400, looks=25, per_look=200, share=0.2, p_base=0.7, p_cand=0.7)
    ever = 0
    for i in range(400):
        previous = None
        for j in range(25):
            previous = compare(ArmStats.of_counts(int(ok_c[i, j]), int(n_c[i, j])),
                               ArmStats.of_counts(int(ok_b[i, j]), int(n_b[i, j])), previous=previous)
        ever += previous.decision != "inconclusive"
    assert ever / 400 <= 0.05


def test_naive_repeated_testing_on_the_same_data_is_far_less_safe():
    """The contrast that motivates the module: a fixed-sample z test at every look fails far more often."""
    rng = np.random.default_rng(1)
    ok_c, n_c, ok_b, n_b = _peek_proportions(rng, runs=400, looks=25, per_look=200, share=0.2, p_base=0.7, p_cand=0.7)
    p_c, p_b = ok_c / n_c, ok_b / n_b
    pooled = (ok_c + ok_b) / (n_c + n_b)
    z = (p_c - p_b) / np.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_b))
    assert (np.abs(z) > 1.96).any(axis=1).mean() > 0.15


def test_aa_means_on_skewed_latencies_keep_the_error_rate():
    rng = np.random.default_rng(2)
    runs, looks, per_look = 300, 20, 100
    errors = 0
    for _ in range(runs):
        cand, base = [], []
        previous = None
        for _ in range(looks):
            cand.extend(np.exp(rng.normal(6.7, 0.6, per_look // 2)))
            base.extend(np.exp(rng.normal(6.7, 0.6, per_look // 2)))
            previous = compare(ArmStats.of_values(cand), ArmStats.of_values(base), higher_is_better=False, previous=previous)
        errors += previous.decision != "inconclusive"
    assert errors / runs <= 0.05


def test_interval_covers_a_real_difference_at_every_look():
    rng = np.random.default_rng(3)
    ok_c, n_c, ok_b, n_b = _peek_proportions(rng, runs=300, looks=10, per_look=1000, share=0.2, p_base=0.7, p_cand=0.75)
    missed = 0
    for i in range(300):
        results = [compare(ArmStats.of_counts(int(ok_c[i, j]), int(n_c[i, j])), ArmStats.of_counts(int(ok_b[i, j]), int(n_b[i, j])))
                   for j in range(10)]
        missed += any(not (r.lower <= 0.05 <= r.upper) for r in results)
    assert missed / 300 <= 0.05


# --- power and direction --------------------------------------------------------------------------


def test_a_five_point_lift_at_20_percent_traffic_is_found_within_10k_requests():
    rng = np.random.default_rng(4)
    ok_c, n_c, ok_b, n_b = _peek_proportions(rng, runs=200, looks=10, per_look=1000, share=0.2, p_base=0.7, p_cand=0.75)
    found = 0
    for i in range(200):
        previous = None
        for j in range(10):
            previous = compare(ArmStats.of_counts(int(ok_c[i, j]), int(n_c[i, j])),
                               ArmStats.of_counts(int(ok_b[i, j]), int(n_b[i, j])), previous=previous)
            if previous.decision != "inconclusive":
                break
        found += previous.decision == "better"
    assert found / 200 >= 0.8


def test_direction_follows_higher_is_better():
    fast, slow = ArmStats.of_values([100.0, 110, 90, 105, 95] * 40), ArmStats.of_values([200.0, 220, 180, 210, 190] * 40)
    assert compare(fast, slow, higher_is_better=False).decision == "better"
    assert compare(fast, slow, higher_is_better=True).decision == "worse"
    assert compare(slow, fast, higher_is_better=False).decision == "worse"
    good, bad = ArmStats.of_counts(900, 1000), ArmStats.of_counts(600, 1000)
    result = compare(good, bad, metric="exact")
    assert result.decision == "better" and result.lower > 0 and result.estimate == pytest.approx(0.3)
    assert result.p_value <= result.alpha


def test_p_value_and_interval_agree():
    for ok_c in range(560, 660, 7):
        r = compare(ArmStats.of_counts(ok_c, 800), ArmStats.of_counts(2240, 3200))
        excludes_zero = r.lower > 0 or r.upper < 0
        assert excludes_zero == (r.p_value <= r.alpha)


def test_relative_comparison_has_a_fieller_interval_with_the_same_p():
    cand, base = ArmStats.of_values(np.linspace(90, 130, 400)), ArmStats.of_values(np.linspace(80, 120, 900))
    absolute, relative = compare(cand, base), compare(cand, base, relative=True)
    assert relative.estimate == pytest.approx(110 / 100 - 1)
    assert relative.lower < relative.estimate < relative.upper
    assert relative.p_value == pytest.approx(absolute.p_value)
    assert relative.decision == absolute.decision == "better"


def test_too_few_observations_are_inconclusive_however_large_the_gap():
    result = compare(ArmStats.of_counts(20, 20), ArmStats.of_counts(0, 20))
    assert result.decision == "inconclusive" and "waiting for data" in result.detail
    assert compare(ArmStats.of_counts(1, 1), ArmStats.of_counts(0, 50)).lower is None


def test_previous_look_narrows_the_interval_and_keeps_the_smallest_p():
    first = compare(ArmStats.of_counts(700, 1000), ArmStats.of_counts(2800, 4000))
    second = compare(ArmStats.of_counts(1390, 2000), ArmStats.of_counts(5620, 8000), previous=first)
    alone = compare(ArmStats.of_counts(1390, 2000), ArmStats.of_counts(5620, 8000))
    assert second.lower >= max(first.lower, alone.lower) - 1e-12 and second.upper <= min(first.upper, alone.upper) + 1e-12
    assert second.p_value == min(first.p_value, alone.p_value)
    with pytest.raises(ValueError, match="same comparison"):
        compare(ArmStats.of_counts(1, 10), ArmStats.of_counts(1, 10), alpha=0.1, previous=first)


# --- non-inferiority ------------------------------------------------------------------------------


def test_non_inferiority_higher_is_better_absolute_margin():
    base = ArmStats.of_counts(7000, 10_000)
    same = non_inferiority(ArmStats.of_counts(3500, 5000), base, margin=0.03, higher_is_better=True, metric="exact")
    assert same.decision == "non_inferior" and same.passed and same.limit == -0.03
    much_worse = non_inferiority(ArmStats.of_counts(3000, 5000), base, margin=0.03, higher_is_better=True)
    assert much_worse.decision == "inferior" and not much_worse.passed
    unclear = non_inferiority(ArmStats.of_counts(68, 100), base, margin=0.03, higher_is_better=True)
    assert unclear.decision == "inconclusive"


def test_non_inferiority_lower_is_better_relative_margin_for_latency():
    rng = np.random.default_rng(5)
    base = ArmStats.of_values(np.exp(rng.normal(6.7, 0.6, 8000)))
    similar = ArmStats.of_values(np.exp(rng.normal(6.7, 0.6, 2000)))
    slower = ArmStats.of_values(1.5 * np.exp(rng.normal(6.7, 0.6, 2000)))
    ok = non_inferiority(similar, base, margin=0.2, relative=True, higher_is_better=False, metric="latency_ms")
    assert ok.decision == "non_inferior" and ok.upper < 0.2 and ok.kind == "relative_margin"
    bad = non_inferiority(slower, base, margin=0.2, relative=True, higher_is_better=False)
    assert bad.decision == "inferior" and bad.lower > 0.2


def test_negative_margin_asks_for_an_improvement():
    base = ArmStats.of_counts(7000, 10_000)
    same = ArmStats.of_counts(3500, 5000)
    assert non_inferiority(same, base, margin=-0.05, higher_is_better=True).decision == "inferior"


def test_value_limit_and_quantile_guardrail():
    few_errors = ArmStats.of_counts(20, 2000)  # 1% errors, limit 5%
    assert value_limit(few_errors, max_value=0.05, metric="error").decision == "non_inferior"
    assert value_limit(ArmStats.of_counts(300, 2000), max_value=0.05).decision == "inferior"
    # 2% of candidate requests above 1.2x the baseline's p95: the candidate's p95 is within the limit
    assert quantile_guardrail(40, 2000, quantile=0.95).decision == "non_inferior"
    assert quantile_guardrail(300, 2000, quantile=0.95).decision == "inferior"
    with pytest.raises(ValueError, match="quantile"):
        quantile_guardrail(1, 10, quantile=95)


def test_spec_guardrails_map_to_the_right_test():
    cand, base = ArmStats.of_values(np.full(500, 1.0) + np.linspace(0, 0.1, 500)), ArmStats.of_values(np.full(4000, 1.0) + np.linspace(0, 0.1, 4000))
    ratio = guardrail_test(Guardrail(metric="cost_usd", statistic="mean", max_ratio=1.1), cand, base)
    assert ratio.kind == "relative_margin" and ratio.limit == pytest.approx(0.1) and ratio.passed
    value = guardrail_test(Guardrail(metric="error", statistic="mean", max_value=0.05), ArmStats.of_counts(5, 1000), ArmStats.of_counts(40, 9000))
    assert value.kind == "max_value" and value.passed
    margin = guardrail_test(Guardrail(metric="exact", statistic="mean", margin=0.02), ArmStats.of_counts(3000, 5000), ArmStats.of_counts(7000, 10_000))
    assert margin.kind == "margin" and margin.higher_is_better and margin.decision == "inferior"
    with pytest.raises(ValueError, match="p95.*quantile_guardrail"):
        guardrail_test(Guardrail(metric="latency_ms", statistic="p95", max_ratio=1.2), cand, base)


# --- sample-ratio mismatch ------------------------------------------------------------------------


def test_srm_flags_a_4_5_percent_share_of_5_over_100k_requests():
    result = srm_check({1: 95_500, 2: 4_500}, {1: 0.95, 2: 0.05})
    assert result.flagged and result.p_value < 1e-10
    expected = scipy_stats.chisquare([95_500, 4_500], [95_000, 5_000])
    assert result.p_value == pytest.approx(expected.pvalue)


def test_srm_does_not_flag_the_same_share_over_10k_requests():
    result = srm_check({1: 9_550, 2: 450}, {1: 0.95, 2: 0.05})
    assert not result.flagged and 0.015 < result.p_value < 0.03


def test_srm_edge_cases_and_bad_input():
    assert not srm_check({}, {1: 0.9, 2: 0.1}).flagged
    assert srm_check({1: 10, 2: 0}, {1: 0.9, 2: 0.1}).observed == {1: 10, 2: 0}
    assert srm_check({1: 50, 2: 3}, {1: 1.0, 2: 0.0}).flagged  # a paused version received requests
    with pytest.raises(ValueError, match=r"version\(s\) \[3\]"):
        srm_check({1: 10, 3: 1}, {1: 0.9, 2: 0.1})
    with pytest.raises(ValueError, match="integer >= 0"):
        srm_check({1: -1, 2: 1}, {1: 0.9, 2: 0.1})
    with pytest.raises(ValueError, match="sum to 1"):
        srm_check({1: 10, 2: 1}, {1: 90, 2: 10})
    with pytest.raises(ValueError, match="threshold"):
        srm_check({1: 10, 2: 1}, {1: 0.9, 2: 0.1}, threshold=0)


# --- the promotion rule ---------------------------------------------------------------------------


def _primary(decision: str) -> Comparison:
    return Comparison(alpha=0.05, decision=decision, metric="exact", detail=decision)


def _guard(decision: str) -> GuardrailResult:
    return GuardrailResult(kind="margin", higher_is_better=False, limit=0.2, alpha=0.05, decision=decision, metric="latency_ms")


def test_promotion_rule_order():
    srm_bad = SrmResult(flagged=True, p_value=1e-9, statistic=40.0, threshold=0.001, observed={}, expected={}, detail="x")
    srm_ok = SrmResult(flagged=False, p_value=0.5, statistic=0.4, threshold=0.001, observed={}, expected={})
    assert promotion_decision(_primary("better"), [_guard("non_inferior")], srm_bad).action == "halt"
    assert promotion_decision(_primary("better"), [_guard("non_inferior")], srm_ok).action == "promote"
    assert promotion_decision(_primary("better"), [_guard("inconclusive")], srm_ok).action == "continue"
    assert promotion_decision(_primary("better"), [_guard("inferior")], srm_ok).action == "stop"
    assert promotion_decision(_primary("worse")).action == "stop"
    assert promotion_decision(_primary("inconclusive"), [_guard("non_inferior")]).action == "continue"
    assert promotion_decision(_primary("better")).action == "promote"
    assert any("latency_ms" in r for r in promotion_decision(_primary("better"), [_guard("inconclusive")]).reasons)


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("call, message", [
    (lambda: ArmStats.of_counts(11, 10), "0 <= successes <= n"),
    (lambda: ArmStats.of_counts(-1, 10), "0 <= successes <= n"),
    (lambda: ArmStats.of_counts(1.5, 10), "integer counts"),
    (lambda: ArmStats.of_values([1.0, float("nan")]), "finite"),
    (lambda: ArmStats.of_values([[1.0, 2.0]]), "one number per request"),
    (lambda: ArmStats.of_sums(-3, 1.0, 1.0), "count >= 0"),
    (lambda: compare(ArmStats.of_counts(1, 10), ArmStats.of_values([1.0, 2.0])), "same kind"),
    (lambda: compare(ArmStats.of_counts(1, 10), ArmStats.of_counts(1, 10), alpha=1.5), "alpha"),
    (lambda: compare([1, 2], ArmStats.of_counts(1, 10)), "ArmStats"),
    (lambda: mixture_rho2(0), "tightest_at"),
    (lambda: non_inferiority(ArmStats.of_values([1.0, 2.0]), ArmStats.of_values([1.0, 2.0]), margin=math.inf, higher_is_better=True), "finite"),
    (lambda: compare(ArmStats.of_values([1.0, -1.0] * 20), ArmStats.of_values([1.0, -1.0] * 20), relative=True), "non-zero baseline"),
])
def test_bad_input_is_refused_with_the_reason(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_of_sums_matches_of_values():
    values = [120.0, 340.5, 98.25, 1200.0, 455.0]
    direct = ArmStats.of_values(values)
    summed = ArmStats.of_sums(len(values), sum(values), sum(v * v for v in values))
    assert summed.n == direct.n and summed.mean == pytest.approx(direct.mean) and summed.variance == pytest.approx(direct.variance)
    assert ArmStats.of_counts(0, 0).n == 0 and ArmStats.of_values([]).n == 0
