"""Always-valid statistics for live experiments: compare a candidate with the baseline on live traffic,
look as often as you like, and keep the false-promotion rate at the level you asked for.

Why not a t-test at every look: a fixed-sample test checked after every batch of requests gets ten
chances to cross its line, so an A/A experiment "wins" far more often than alpha (with 10 looks at
one-sided 0.05, about 17% of the time, ``benchmarks/ab_stats.py``). The intervals here are confidence
*sequences*: with probability at least ``1 - alpha`` they hold the true effect at every look at once,
so the controller may stop the moment one excludes zero.

The method is the normal-mixture boundary (Robbins; Howard, Ramdas, McAuliffe & Sekhon 2021,
"Time-uniform, nonparametric, nonasymptotic confidence sequences"; in its asymptotic, plug-in-variance
form, Waudby-Smith et al. 2021, "Time-uniform central limit theory and asymptotic confidence
sequences"). In the Gaussian case it is the mixture SPRT of Johari et al. used by Optimizely, and the
construction Eppo and GrowthBook use for their sequential mode. For an estimate ``d`` with plug-in
variance ``V`` at effective sample size ``t`` the interval is ``d +- sqrt(V) * q(t)`` with

    q(t)^2 = (1 + a) / a * 2 * log(sqrt(1 + a) / alpha),   a = rho^2 * t,

and ``rho`` is chosen so the sequence is tightest at ``tightest_at`` effective samples (Howard et al.'s
approximation ``rho^2 = (2 log(1/alpha) + log(1 + 2 log(1/alpha))) / tightest_at``). Set
``tightest_at`` near the effective sample size at which you expect to decide; any value keeps the
guarantee, a poor one only costs power. The mixture likelihood ratio ``L`` against "no effect" gives
the always-valid p-value ``min(1, 1/L)``: ``p <= alpha`` exactly when the interval excludes zero.

Validity is asymptotic (plug-in variances, the CLT), as on those platforms: each arm needs some tens
of observations before a decision is allowed (``min_samples``). Passing the previous look's result as
``previous`` intersects the intervals and keeps the smallest p, which the guarantee allows and which
makes decisions monotone across looks.

Everything here is pure: counts and sums in, pydantic records out. The trace store supplies the
sums (count, sum, sum of squares per arm), the controller calls :func:`compare`,
:func:`non_inferiority` / :func:`guardrail_test`, :func:`srm_check`, then :func:`promotion_decision`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats as scipy_stats

from graphtune.tuning.units import format_metric, format_share

__all__ = [
    "DEFAULT_ALPHA", "DEFAULT_MIN_SAMPLES", "DEFAULT_TIGHTEST_AT", "SRM_THRESHOLD",
    "ArmStats", "Comparison", "GuardrailResult", "SrmResult", "Verdict",
    "boundary_multiplier", "compare", "guardrail_test", "mixture_rho2", "non_inferiority",
    "promotion_decision", "quantile_guardrail", "srm_check", "value_limit",
]

DEFAULT_ALPHA = 0.05
DEFAULT_TIGHTEST_AT = 1000.0  # effective samples; ~the candidate arm at 5-20% of 10k requests
DEFAULT_MIN_SAMPLES = 30
SRM_THRESHOLD = 0.001

Direction = Literal["better", "worse", "inconclusive"]


# --- the boundary ---------------------------------------------------------------------------------


def mixture_rho2(tightest_at: float, alpha: float = DEFAULT_ALPHA) -> float:
    """The mixture's ``rho^2`` that makes the confidence sequence tightest at ``tightest_at`` samples."""
    _check_alpha(alpha)
    if not (math.isfinite(tightest_at) and tightest_at > 0):
        raise ValueError(f"tightest_at is a positive effective sample size; got {tightest_at!r}")
    log_term = 2.0 * math.log(1.0 / alpha)
    return (log_term + math.log(1.0 + log_term)) / tightest_at


def boundary_multiplier(t, alpha: float = DEFAULT_ALPHA, tightest_at: float = DEFAULT_TIGHTEST_AT):
    """``q(t)``: the always-valid half-width in standard errors at effective sample size ``t``.

    Works on floats and numpy arrays. For comparison, a fixed-sample two-sided 95% interval uses 1.96;
    ``q`` is about 3.0 at ``t = tightest_at`` and grows slowly (like sqrt(log t)) beyond it.
    """
    a = mixture_rho2(tightest_at, alpha) * np.asarray(t, dtype=float)
    q = np.sqrt((1.0 + a) / a * 2.0 * np.log(np.sqrt(1.0 + a) / alpha))
    return float(q) if q.ndim == 0 else q


def _log_mixture_lr(z: float, t: float, alpha: float, tightest_at: float) -> float:
    """log of the normal-mixture likelihood ratio against "no effect" for the standardised estimate ``z``."""
    a = mixture_rho2(tightest_at, alpha) * t
    return -0.5 * math.log1p(a) + a * z * z / (2.0 * (1.0 + a))


def _check_alpha(alpha: float) -> None:
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"alpha is a probability in (0, 1); got {alpha!r}")


# --- arms -----------------------------------------------------------------------------------------


class ArmStats(BaseModel):
    """What a test needs from one arm: count, mean and (sample) variance of a per-request metric.

    Build it with :meth:`of_counts` (proportions: successes, positive feedback, errors), :meth:`of_sums`
    (means from a store's ``count, sum, sum of squares``) or :meth:`of_values`.
    """

    model_config = ConfigDict(frozen=True)

    n: int = Field(ge=0)
    mean: float = 0.0
    variance: float = Field(0.0, ge=0.0, description="Sample variance (n - 1 denominator); for proportions a smoothed p(1-p)")
    binary: bool = Field(False, description="0/1 metric (a proportion)")

    @classmethod
    def of_counts(cls, successes: int, n: int) -> ArmStats:
        """A proportion. The variance uses ``(successes + 0.5) / (n + 1)`` so an arm at 0% or 100% does not
        claim zero noise after a handful of requests."""
        if isinstance(successes, bool) or isinstance(n, bool) or int(successes) != successes or int(n) != n:
            raise ValueError(f"a proportion needs integer counts; got successes={successes!r}, n={n!r}")
        successes, n = int(successes), int(n)
        if n < 0 or not (0 <= successes <= n):
            raise ValueError(f"a proportion needs 0 <= successes <= n; got successes={successes}, n={n}")
        if n == 0:
            return cls(n=0, binary=True)
        smoothed = (successes + 0.5) / (n + 1)
        return cls(n=n, mean=successes / n, variance=smoothed * (1 - smoothed), binary=True)

    @classmethod
    def of_sums(cls, n: int, total: float, total_of_squares: float) -> ArmStats:
        """A mean from ``n``, the sum and the sum of squares (what one SQL aggregate returns)."""
        if isinstance(n, bool) or int(n) != n or n < 0:
            raise ValueError(f"n is a count >= 0; got {n!r}")
        n = int(n)
        if not (math.isfinite(total) and math.isfinite(total_of_squares)):
            raise ValueError(f"sums must be finite; got total={total!r}, total_of_squares={total_of_squares!r}")
        if n == 0:
            return cls(n=0)
        mean = total / n
        variance = max(0.0, (total_of_squares - n * mean * mean) / (n - 1)) if n > 1 else 0.0
        return cls(n=n, mean=mean, variance=variance)

    @classmethod
    def of_values(cls, values: Sequence[float]) -> ArmStats:
        """A mean of raw per-request values."""
        array = np.asarray(values, dtype=float)
        if array.ndim != 1:
            raise ValueError(f"values are one number per request; got an array of shape {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError("values must be finite numbers (drop requests without the metric instead of passing NaN)")
        n = int(array.size)
        if n == 0:
            return cls(n=0)
        return cls(n=n, mean=float(array.mean()), variance=float(array.var(ddof=1)) if n > 1 else 0.0)

    @property
    def standard_error_squared(self) -> float:
        return self.variance / self.n if self.n else math.inf


def _effective_n(n_candidate: int, n_baseline: int) -> float:
    """``1 / (1/n_c + 1/n_b)``: the two-sample analogue of n (equal arms of size m give m/2)."""
    return n_candidate * n_baseline / (n_candidate + n_baseline)


# --- comparisons ----------------------------------------------------------------------------------


class Comparison(BaseModel):
    """Candidate vs baseline on one metric: the effect (candidate - baseline, or candidate / baseline - 1
    when ``relative``) with its always-valid interval, p-value and a direction-aware decision."""

    model_config = ConfigDict(frozen=True)

    metric: str = ""
    relative: bool = False
    higher_is_better: bool = True
    alpha: float
    estimate: float | None = None
    lower: float | None = Field(None, description="Always-valid lower bound of the effect")
    upper: float | None = Field(None, description="Always-valid upper bound of the effect; a ratio's bounds are infinite (null in JSON) while the baseline mean is not clearly away from 0")
    p_value: float = Field(1.0, description="Always-valid p-value for 'no effect' (smallest over looks with `previous`)")
    decision: Direction = "inconclusive"
    n_candidate: int = 0
    n_baseline: int = 0
    candidate_mean: float | None = None
    baseline_mean: float | None = None
    detail: str = ""


def _contrast(candidate: ArmStats, baseline: ArmStats, k: float) -> tuple[float, float, float]:
    """(estimate, standard error, effective n) of ``mean_c - k * mean_b``."""
    estimate = candidate.mean - k * baseline.mean
    se = math.sqrt(candidate.variance / candidate.n + k * k * baseline.variance / baseline.n)
    return estimate, se, _effective_n(candidate.n, baseline.n)


def _ratio_interval(candidate: ArmStats, baseline: ArmStats, q: float) -> tuple[float, float]:
    """Fieller's interval for ``mean_c / mean_b`` at ``q`` standard errors: the ratios ``r`` for which
    ``mean_c - r * mean_b`` is within its own bound of zero. Unbounded while the baseline mean is not
    clearly away from zero."""
    c, b = candidate.mean, baseline.mean
    vc, vb = candidate.variance / candidate.n, baseline.variance / baseline.n
    qq = q * q
    a2 = b * b - qq * vb
    a1 = -2.0 * c * b
    a0 = c * c - qq * vc
    if a2 <= 0:
        return -math.inf, math.inf
    disc = max(0.0, a1 * a1 - 4.0 * a2 * a0)
    root = math.sqrt(disc)
    return (-a1 - root) / (2.0 * a2), (-a1 + root) / (2.0 * a2)


def _check_arms(candidate: ArmStats, baseline: ArmStats) -> None:
    for name, arm in (("candidate", candidate), ("baseline", baseline)):
        if not isinstance(arm, ArmStats):
            raise TypeError(f"{name} is an ArmStats (ArmStats.of_counts / of_sums / of_values); got {type(arm).__name__}")
    if candidate.binary != baseline.binary:
        raise ValueError("candidate and baseline must be the same kind of metric (both proportions or both means)")


def _too_few(candidate: ArmStats, baseline: ArmStats, min_samples: int) -> str | None:
    short = [f"{name} has {arm.n}" for name, arm in (("candidate", candidate), ("baseline", baseline)) if arm.n < min_samples]
    return f"waiting for data: {' and '.join(short)} of the {min_samples} observations each arm needs" if short else None


def compare(
    candidate: ArmStats, baseline: ArmStats, *, metric: str = "", higher_is_better: bool = True,
    relative: bool = False, alpha: float = DEFAULT_ALPHA, tightest_at: float = DEFAULT_TIGHTEST_AT,
    min_samples: int = DEFAULT_MIN_SAMPLES, previous: Comparison | None = None,
) -> Comparison:
    """Always-valid comparison of a candidate with the baseline on one metric.

    ``decision`` is ``better`` when the whole interval lies on the good side of "no effect", ``worse``
    when it lies on the bad side, else ``inconclusive`` (always inconclusive below ``min_samples`` in
    either arm). The chance that an experiment with no real effect is *ever* called better (or worse)
    at any look is at most ``alpha`` (about ``alpha / 2`` each way, as the mixture is symmetric).

    ``relative`` reports ``candidate / baseline - 1`` with Fieller's interval (same test, same p).
    ``previous``, the result of the previous look of the same comparison, narrows the interval to the
    intersection of the two and keeps the smaller p-value.
    """
    _check_arms(candidate, baseline)
    _check_alpha(alpha)
    if previous is not None and (previous.alpha != alpha or previous.relative != relative or previous.higher_is_better != higher_is_better):
        raise ValueError("previous must come from the same comparison (same alpha, relative and higher_is_better)")
    result = dict(metric=metric, relative=relative, higher_is_better=higher_is_better, alpha=alpha,
                  n_candidate=candidate.n, n_baseline=baseline.n,
                  candidate_mean=candidate.mean if candidate.n else None, baseline_mean=baseline.mean if baseline.n else None)
    if candidate.n < 2 or baseline.n < 2:
        kept = dict(lower=previous.lower, upper=previous.upper, p_value=previous.p_value) if previous else {}
        return Comparison(**result, **kept, detail="waiting for data: each arm needs at least 2 observations")
    estimate, se, t = _contrast(candidate, baseline, 1.0)
    q = boundary_multiplier(t, alpha, tightest_at)
    if se == 0:  # identical constant values in both arms: the data show no spread at all
        p_value = 1.0 if estimate == 0 else 0.0
    else:
        p_value = min(1.0, math.exp(-_log_mixture_lr(estimate / se, t, alpha, tightest_at)))
    if relative:
        if baseline.mean == 0:
            raise ValueError(f"{metric or 'metric'}: a relative comparison needs a non-zero baseline mean")
        low, high = _ratio_interval(candidate, baseline, q)
        point, lower, upper = candidate.mean / baseline.mean - 1.0, low - 1.0, high - 1.0
    else:
        point, lower, upper = estimate, estimate - q * se, estimate + q * se
    if previous is not None and previous.lower is not None and previous.upper is not None:
        lower_i, upper_i = max(lower, previous.lower), min(upper, previous.upper)
        if lower_i <= upper_i:  # an empty intersection means the effect moved: trust the current look
            lower, upper = lower_i, upper_i
        p_value = min(p_value, previous.p_value)
    waiting = _too_few(candidate, baseline, min_samples)
    decision: Direction = "inconclusive"
    if waiting is None:
        if lower > 0:
            decision = "better" if higher_is_better else "worse"
        elif upper < 0:
            decision = "worse" if higher_is_better else "better"
    what, unit = _change_unit(metric, relative)
    detail = waiting or (f"{what} {unit(point)}, always-valid {1 - alpha:.0%} interval [{unit(lower)}, {unit(upper)}], "
                         f"p={p_value:.3g}: {decision}")
    return Comparison(**result, estimate=point, lower=lower, upper=upper, p_value=p_value, decision=decision, detail=detail)


# --- guardrails -----------------------------------------------------------------------------------


class GuardrailResult(BaseModel):
    """A guardrail checked with an always-valid interval.

    ``non_inferior``: the pessimistic end of the interval is within the limit (pass). ``inferior``: even
    the optimistic end is past the limit (surely broken; stop). ``inconclusive``: not yet either.
    """

    model_config = ConfigDict(frozen=True)

    metric: str = ""
    kind: Literal["margin", "relative_margin", "max_value"]
    higher_is_better: bool
    limit: float = Field(description="Worst acceptable effect: a difference, a relative change, or a value")
    alpha: float
    estimate: float | None = None
    lower: float | None = None
    upper: float | None = None
    decision: Literal["non_inferior", "inferior", "inconclusive"] = "inconclusive"
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.decision == "non_inferior"


def _guard_decision(lower: float, upper: float, limit: float, higher_is_better: bool) -> str:
    if higher_is_better:
        return "non_inferior" if lower > limit else "inferior" if upper < limit else "inconclusive"
    return "non_inferior" if upper < limit else "inferior" if lower > limit else "inconclusive"


def _change_unit(metric: str, relative: bool):
    """How a change of ``metric`` reads: a relative change in %, a difference in the metric's unit."""
    if relative:
        return "relative change", lambda v: format_share(v, signed=True)
    return "difference", lambda v: format_metric(metric, v, signed=True)


def non_inferiority(
    candidate: ArmStats, baseline: ArmStats, *, margin: float, relative: bool = False, higher_is_better: bool,
    metric: str = "", alpha: float = DEFAULT_ALPHA, tightest_at: float = DEFAULT_TIGHTEST_AT,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> GuardrailResult:
    """Is the candidate at most ``margin`` worse than the baseline, at every look?

    ``margin`` is in the metric's units (``relative=False``: accuracy may drop by at most 0.02) or a
    share of the baseline (``relative=True``: latency may grow by at most 0.2, i.e. 1.2x). With
    ``higher_is_better`` the candidate may fall by the margin, otherwise rise by it. A negative margin
    asks for an improvement of at least that size. The interval is the one :func:`compare` gives, so
    peeking is as safe here; "non_inferior" wrongly at any look has probability at most ``alpha``.
    """
    if not math.isfinite(margin):
        raise ValueError(f"margin must be a finite number; got {margin!r}")
    if relative and margin <= -1:
        raise ValueError(f"a relative margin must be > -1 (a share of the baseline); got {margin!r}")
    comparison = compare(candidate, baseline, metric=metric, higher_is_better=higher_is_better, relative=relative,
                         alpha=alpha, tightest_at=tightest_at, min_samples=min_samples)
    limit = -margin if higher_is_better else margin
    kind = "relative_margin" if relative else "margin"
    base = dict(metric=metric, kind=kind, higher_is_better=higher_is_better, limit=limit, alpha=alpha)
    if comparison.lower is None:
        return GuardrailResult(**base, detail=comparison.detail)
    what, unit = _change_unit(metric, relative)
    waiting = _too_few(candidate, baseline, min_samples)
    decision = "inconclusive" if waiting else _guard_decision(comparison.lower, comparison.upper, limit, higher_is_better)
    detail = waiting or (f"{what} {unit(comparison.estimate)}, always-valid interval [{unit(comparison.lower)}, "
                         f"{unit(comparison.upper)}], limit {unit(limit)}: {decision.replace('_', '-')}")
    return GuardrailResult(**base, estimate=comparison.estimate, lower=comparison.lower, upper=comparison.upper,
                           decision=decision, detail=detail)


def value_limit(
    candidate: ArmStats, *, max_value: float, higher_is_better: bool = False, metric: str = "",
    alpha: float = DEFAULT_ALPHA, tightest_at: float = DEFAULT_TIGHTEST_AT, min_samples: int = DEFAULT_MIN_SAMPLES,
    what: str = "value", share: bool = False,
) -> GuardrailResult:
    """An absolute limit on the candidate alone (error rate <= 0.05), with a one-sample always-valid interval.

    With ``higher_is_better`` the value is a floor instead of a ceiling. The detail names ``what`` is
    measured, in the metric's unit (a percentage when ``share``).
    """
    if not isinstance(candidate, ArmStats):
        raise TypeError(f"candidate is an ArmStats; got {type(candidate).__name__}")
    _check_alpha(alpha)
    if not math.isfinite(max_value):
        raise ValueError(f"max_value must be a finite number; got {max_value!r}")
    base = dict(metric=metric, kind="max_value", higher_is_better=higher_is_better, limit=max_value, alpha=alpha)
    if candidate.n < 2:
        return GuardrailResult(**base, detail="waiting for data: the candidate needs at least 2 observations")
    half = boundary_multiplier(candidate.n, alpha, tightest_at) * math.sqrt(candidate.variance / candidate.n)
    lower, upper = candidate.mean - half, candidate.mean + half
    waiting = None if candidate.n >= min_samples else f"waiting for data: the candidate has {candidate.n} of {min_samples} observations"
    decision = "inconclusive" if waiting else _guard_decision(lower, upper, max_value, higher_is_better)
    unit = format_share if share else (lambda v: format_metric(metric, v))
    detail = waiting or (f"{what} {unit(candidate.mean)}, always-valid interval [{unit(lower)}, {unit(upper)}], "
                         f"limit {unit(max_value)}: {decision.replace('_', '-')}")
    return GuardrailResult(**base, estimate=candidate.mean, lower=lower, upper=upper, decision=decision, detail=detail)


def quantile_guardrail(
    exceeding: int, n: int, *, quantile: float, metric: str = "", alpha: float = DEFAULT_ALPHA,
    tightest_at: float = DEFAULT_TIGHTEST_AT, min_samples: int = DEFAULT_MIN_SAMPLES,
) -> GuardrailResult:
    """A quantile limit ("p95 latency <= 1.2x baseline") as a proportion: the candidate's ``quantile`` is
    below a threshold exactly when at most ``1 - quantile`` of its requests exceed it.

    The caller fixes the threshold (``max_ratio`` times the baseline's quantile; the baseline arm is the
    large one, so its quantile is taken as known) and counts the candidate requests above it.
    """
    if not (0.0 < quantile < 1.0):
        raise ValueError(f"quantile is in (0, 1), e.g. 0.95 for p95; got {quantile!r}")
    return value_limit(ArmStats.of_counts(exceeding, n), max_value=1.0 - quantile, higher_is_better=False,
                       metric=metric, alpha=alpha, tightest_at=tightest_at, min_samples=min_samples,
                       what="share of the candidate's requests over the threshold", share=True)


def guardrail_test(
    guardrail, candidate: ArmStats, baseline: ArmStats, *, alpha: float = DEFAULT_ALPHA,
    tightest_at: float = DEFAULT_TIGHTEST_AT, min_samples: int = DEFAULT_MIN_SAMPLES,
) -> GuardrailResult:
    """A spec guardrail (``graphtune.spec.Guardrail``) on live data.

    ``margin`` -> :func:`non_inferiority` in the metric's units, in the metric's own direction;
    ``max_ratio`` -> relative non-inferiority with margin ``max_ratio - 1``, lower is better;
    ``max_value`` -> :func:`value_limit` on the candidate. Only ``mean`` guardrails fit these tests;
    for p50/p95 use :func:`quantile_guardrail` (or guard the mean).
    """
    label = guardrail.describe() if hasattr(guardrail, "describe") else repr(guardrail)
    if guardrail.statistic != "mean":
        raise ValueError(f"guardrail {label!r}: sequential tests cover means and proportions, not {guardrail.statistic}; "
                         "use quantile_guardrail for a quantile limit, or guard the mean")
    common = dict(metric=guardrail.metric, alpha=alpha, tightest_at=tightest_at, min_samples=min_samples)
    if guardrail.margin is not None:
        return non_inferiority(candidate, baseline, margin=guardrail.margin, higher_is_better=guardrail.higher_is_better, **common)
    if guardrail.max_ratio is not None:
        return non_inferiority(candidate, baseline, margin=guardrail.max_ratio - 1.0, relative=True, higher_is_better=False, **common)
    if guardrail.max_value is not None:
        return value_limit(candidate, max_value=guardrail.max_value, higher_is_better=False, **common)
    raise ValueError(f"guardrail {label!r} has none of margin, max_ratio, max_value")


# --- sample-ratio mismatch ------------------------------------------------------------------------


class SrmResult(BaseModel):
    """Do the arms' request counts match the split? A mismatch means assignment or logging is broken
    (a variant crashing before it logs, bots, a cache), and then no comparison can be trusted."""

    model_config = ConfigDict(frozen=True)

    flagged: bool
    p_value: float
    statistic: float
    threshold: float
    observed: dict[int, int]
    expected: dict[int, float]
    detail: str = ""


def srm_check(counts: Mapping[int, int], weights: Mapping[int, float], *, threshold: float = SRM_THRESHOLD) -> SrmResult:
    """Pearson's chi-square test (``scipy.stats.chisquare``) of observed counts per version against the split.

    Flagged when ``p < threshold`` (0.001: strict, because the check runs at every look and a flag halts
    the experiment). Count only requests the split assigned: requests without a unit key go to the
    baseline regardless of the split and would look like a mismatch. ``weights`` is a ``{version:
    weight}`` mapping or a ``TrafficSplit``.
    """
    from graphtune.tuning.router import validate_weights

    if not (0.0 < threshold < 1.0):
        raise ValueError(f"threshold is a p-value in (0, 1); got {threshold!r}")
    shares = validate_weights(weights)
    unknown = sorted(set(counts) - set(shares))
    if unknown:
        raise ValueError(f"counts name version(s) {unknown} that are not in the split {sorted(shares)}")
    observed: dict[int, int] = {}
    for version in shares:
        count = counts.get(version, 0)
        if isinstance(count, bool) or int(count) != count or count < 0:
            raise ValueError(f"count of version {version} must be an integer >= 0; got {count!r}")
        observed[version] = int(count)
    total = sum(observed.values())
    expected = {v: total * w for v, w in shares.items()}
    if total == 0:
        return SrmResult(flagged=False, p_value=1.0, statistic=0.0, threshold=threshold, observed=observed,
                         expected=expected, detail="no requests yet")
    impossible = [v for v, w in shares.items() if w == 0 and observed[v] > 0]
    if impossible:
        return SrmResult(flagged=True, p_value=0.0, statistic=math.inf, threshold=threshold, observed=observed, expected=expected,
                         detail=f"version(s) {impossible} have weight 0 but received requests")
    live = [v for v, w in shares.items() if w > 0]
    if len(live) < 2:
        return SrmResult(flagged=False, p_value=1.0, statistic=0.0, threshold=threshold, observed=observed, expected=expected,
                         detail="a single live version: nothing to compare")
    statistic, p_value = scipy_stats.chisquare([observed[v] for v in live], [expected[v] for v in live])
    statistic, p_value = float(statistic), float(p_value)
    flagged = p_value < threshold
    shares_seen = ", ".join(f"v{v} {observed[v] / total:.2%} (expected {shares[v]:.2%})" for v in live)
    detail = f"{shares_seen} over {total} requests: chi2={statistic:.3g}, p={p_value:.3g}" + \
        (f" < {threshold:g}: sample-ratio mismatch, halt the experiment" if flagged else "")
    return SrmResult(flagged=flagged, p_value=p_value, statistic=statistic, threshold=threshold, observed=observed,
                     expected=expected, detail=detail)


# --- the decision ---------------------------------------------------------------------------------


class Verdict(BaseModel):
    """What the controller does after a look. ``promote`` is a recommendation: a person still approves."""

    model_config = ConfigDict(frozen=True)

    action: Literal["promote", "stop", "halt", "continue"]
    reasons: list[str] = Field(default_factory=list)


def promotion_decision(primary: Comparison, guardrails: Sequence[GuardrailResult] = (), srm: SrmResult | None = None) -> Verdict:
    """The experiment rule, in order:

    1. ``halt`` on a sample-ratio mismatch: the data cannot be trusted, whatever they say.
    2. ``stop`` when the primary metric is surely worse, or a guardrail is surely broken (``inferior``).
    3. ``promote`` when the primary metric is surely better (its always-valid interval excludes zero on
       the good side) and every guardrail is ``non_inferior``.
    4. ``continue`` otherwise.

    With no real difference, rule 3 fires at any look with probability at most ``primary.alpha``
    (about half of it in practice): that is the A/A false-promotion rate ``benchmarks/ab_stats.py`` measures.
    """
    if srm is not None and srm.flagged:
        return Verdict(action="halt", reasons=[f"sample-ratio mismatch: {srm.detail}"])
    label = primary.metric or "primary metric"
    broken = [g for g in guardrails if g.decision == "inferior"]
    if primary.decision == "worse" or broken:
        reasons = [f"{label} is worse: {primary.detail}"] if primary.decision == "worse" else []
        reasons += [f"guardrail {g.metric or g.kind} broken: {g.detail}" for g in broken]
        return Verdict(action="stop", reasons=reasons)
    pending = [g for g in guardrails if g.decision != "non_inferior"]
    if primary.decision == "better" and not pending:
        return Verdict(action="promote", reasons=[f"{label} is better: {primary.detail}",
                                                  *(f"guardrail {g.metric or g.kind} holds: {g.detail}" for g in guardrails)])
    reasons = [f"{label}: {primary.detail}"] + [f"guardrail {g.metric or g.kind} not yet shown: {g.detail}" for g in pending]
    return Verdict(action="continue", reasons=reasons)
