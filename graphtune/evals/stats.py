"""Summaries of per-example scores: means with 95% intervals, quantiles, and the paired early-stop test."""

from __future__ import annotations

import math
import statistics

from pydantic import BaseModel
from scipy import stats as scipy_stats


class MetricSummary(BaseModel):
    n: int
    mean: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p50: float | None = None
    p95: float | None = None

    def statistic(self, name: str) -> float | None:
        return {"mean": self.mean, "p50": self.p50, "p95": self.p95}[name]


def summarize(values: list[float], confidence: float = 0.95) -> MetricSummary:
    """Mean with a Wilson interval for 0/1 scores and a t interval otherwise; p50 and p95 (linear)."""
    n = len(values)
    if n == 0:
        return MetricSummary(n=0)
    mean = sum(values) / n
    if all(v in (0.0, 1.0) for v in values):
        low, high = wilson(mean, n, confidence)
    elif n > 1:
        half = scipy_stats.t.ppf((1 + confidence) / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
        low, high = mean - half, mean + half
    else:
        low = high = mean
    return MetricSummary(n=n, mean=mean, ci_low=low, ci_high=high, p50=quantile(values, 0.5), p95=quantile(values, 0.95))


def wilson(p: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    z = scipy_stats.norm.ppf((1 + confidence) / 2)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def clearly_worse(differences: list[float], *, alpha: float = 0.01, min_pairs: int = 30) -> bool:
    """Is the mean paired difference (candidate - baseline, higher is better) surely below zero?

    A one-sided t bound at a strict ``alpha``: looks are repeated, so the bar is high, and a candidate
    is only stopped when it is clearly behind, never when it is merely not yet ahead.
    """
    n = len(differences)
    if n < min_pairs:
        return False
    mean = sum(differences) / n
    spread = statistics.stdev(differences)
    if spread == 0:
        return mean < 0
    upper = mean + scipy_stats.t.ppf(1 - alpha, n - 1) * spread / math.sqrt(n)
    return upper < 0


def paired_mean_ci(differences: list[float], confidence: float = 0.95) -> tuple[float, float | None, float | None]:
    """Mean of paired differences with a t interval; ``(mean, None, None)`` below two pairs.

    Pairing (same example, two configs) removes the example-to-example spread, so a small change
    shows up on a dataset where two unpaired means would overlap.
    """
    n = len(differences)
    if n == 0:
        raise ValueError("paired_mean_ci needs at least one difference")
    mean = sum(differences) / n
    if n < 2:
        return mean, None, None
    spread = statistics.stdev(differences)
    half = float(scipy_stats.t.ppf((1 + confidence) / 2, n - 1)) * spread / math.sqrt(n)
    return mean, mean - half, mean + half


def paired_quantile_diff_ci(
    baseline: list[float], candidate: list[float], q: float, confidence: float = 0.95,
    n_resamples: int = 1000, seed: int = 0,
) -> tuple[float, float | None, float | None]:
    """Difference of a quantile (candidate - baseline) over paired examples, with a percentile bootstrap CI.

    Quantiles have no simple standard error, so examples are resampled in pairs; the seed is fixed
    so the same reports always give the same interval (decisions and reports must be reproducible).
    """
    import numpy as np

    if len(baseline) != len(candidate) or not baseline:
        raise ValueError("paired_quantile_diff_ci needs two equally long, non-empty lists")
    base, cand = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    point = float(np.quantile(cand, q) - np.quantile(base, q))
    if len(base) < 2:
        return point, None, None
    result = scipy_stats.bootstrap(
        (base, cand), lambda b, c, axis: np.quantile(c, q, axis=axis) - np.quantile(b, q, axis=axis),
        paired=True, vectorized=True, confidence_level=confidence, n_resamples=n_resamples,
        method="percentile", rng=np.random.default_rng(seed),
    )
    return point, float(result.confidence_interval.low), float(result.confidence_interval.high)
