"""ab_stats: false promotions and power of graphtune's live-experiment rule beside two common rules, SRM, router cost.

Simulated experiments, fixed seeds, no I/O. Each experiment is ``--requests`` requests, each request a
new unit assigned to the candidate with probability equal to its share (what the router gives for
distinct unit keys; its uniformity is tested in tests/tuning/test_router.py). Every request has a 0/1
quality outcome (base rate 70%) and a latency (lognormal, median 800 ms, sigma 0.6, the same in both
arms). The controller looks every ``--look-every`` requests and the experiment ends at the first look
where its rule says promote (or, for graphtune, stop or halt).

Rules compared, each applied at every look:

- graphtune: ``graphtune.tuning.sequential.promotion_decision`` on the real API: SRM chi-square
  (p < 0.001 halts), always-valid comparison of quality (alpha 0.05, promote when the interval excludes
  zero on the good side), and the spec's latency guardrail (1.2x) as always-valid relative
  non-inferiority of mean latency (margin 0.2). ``*_primary_only`` keeps only the quality test.
- seed rule: promote if candidate quality >= baseline + 2 points and candidate p95 latency <= 1.2x
  the baseline's (point estimates, the spec's guardrail statistic).
- naive peeking: a one-sided two-proportion z-test (pooled) on quality at alpha 0.05 at every look.

Figures: ``aa_*`` share of A/A experiments (no real difference, 5% candidate traffic) promoted;
``power_*`` share of experiments with a real +5-point quality lift at 20% candidate traffic promoted
within the requests; SRM flags for a 4.5% observed share of 5% over 100k and 10k requests; router cost
per assignment (median of rounds) and the share of units that move when a candidate ramps 5% -> 20%.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, log, median, parse_args  # noqa: E402

from graphtune.tuning.router import Router  # noqa: E402
from graphtune.tuning.sequential import (  # noqa: E402
    ArmStats, compare, non_inferiority, promotion_decision, srm_check,
)

BASE_RATE = 0.70
LIFT = 0.05
AA_SHARE = 0.05
POWER_SHARE = 0.20
LATENCY_MEDIAN_MS = 800.0
LATENCY_SIGMA = 0.6
LATENCY_MARGIN = 0.2  # the spec's "latency_ms <= 1.2x baseline"
SEED_RULE_POINTS = 0.02
ALPHA = 0.05
NAIVE_Z = 1.6448536269514722  # one-sided 0.05
CHUNK = 100  # experiments simulated at once (memory: CHUNK x requests floats)


@dataclass
class Looks:
    """Cumulative per-arm statistics at every look, arrays of shape (experiments, looks)."""

    n_c: np.ndarray
    n_b: np.ndarray
    ok_c: np.ndarray
    ok_b: np.ndarray
    lat_sum_c: np.ndarray
    lat_sum_b: np.ndarray
    lat_sq_c: np.ndarray
    lat_sq_b: np.ndarray
    p95_c: np.ndarray
    p95_b: np.ndarray


def simulate(rng: np.random.Generator, experiments: int, requests: int, look_every: int, share: float,
             p_candidate: float) -> Looks:
    """Requests of every experiment, reduced to cumulative sums (and p95 latencies) at each look."""
    if requests % look_every:
        raise ValueError(f"requests ({requests}) must be a multiple of look_every ({look_every})")
    looks = requests // look_every
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, experiments, CHUNK):
        e = min(CHUNK, experiments - start)
        cand = rng.random((e, requests)) < share
        ok = rng.random((e, requests)) < np.where(cand, p_candidate, BASE_RATE)
        lat = LATENCY_MEDIAN_MS * np.exp(LATENCY_SIGMA * rng.standard_normal((e, requests)))

        def cumulative(x: np.ndarray) -> np.ndarray:
            return x.reshape(e, looks, look_every).sum(axis=2).cumsum(axis=1)

        base = ~cand
        part = dict(
            n_c=cumulative(cand), n_b=cumulative(base), ok_c=cumulative(ok & cand), ok_b=cumulative(ok & base),
            lat_sum_c=cumulative(lat * cand), lat_sum_b=cumulative(lat * base),
            lat_sq_c=cumulative(lat * lat * cand), lat_sq_b=cumulative(lat * lat * base),
            p95_c=np.full((e, looks), np.nan), p95_b=np.full((e, looks), np.nan),
        )
        for i in range(e):
            for j in range(looks):
                end = (j + 1) * look_every
                prefix, arm = lat[i, :end], cand[i, :end]
                if arm.any():
                    part["p95_c"][i, j] = np.quantile(prefix[arm], 0.95)
                if not arm.all():
                    part["p95_b"][i, j] = np.quantile(prefix[~arm], 0.95)
        parts.append(part)
    return Looks(**{k: np.concatenate([p[k] for p in parts]) for k in parts[0]})


def first_promotion(decisions: np.ndarray) -> np.ndarray:
    """Per experiment: did any look say promote (the rule promotes at its first such look)."""
    return decisions.any(axis=1)


def graphtune_rule(looks: Looks, share: float, tightest_at: float) -> tuple[np.ndarray, np.ndarray]:
    """(the full rule's final action, promoted by the quality test alone) per experiment; the real API at
    every look. The action is the first one other than ``continue``, or ``continue`` if none came."""
    experiments, n_looks = looks.n_c.shape
    full = np.full(experiments, "continue", dtype=object)
    primary_only = np.zeros(experiments, dtype=bool)
    weights = {1: 1.0 - share, 2: share}
    for i in range(experiments):
        previous = None
        full_done = primary_done = False
        for j in range(n_looks):
            n_c, n_b = int(looks.n_c[i, j]), int(looks.n_b[i, j])
            quality = compare(ArmStats.of_counts(int(looks.ok_c[i, j]), n_c), ArmStats.of_counts(int(looks.ok_b[i, j]), n_b),
                              metric="quality", alpha=ALPHA, tightest_at=tightest_at, previous=previous)
            previous = quality
            if not primary_done and quality.decision != "inconclusive":
                primary_only[i] = quality.decision == "better"
                primary_done = True
            if not full_done:
                latency = non_inferiority(
                    ArmStats.of_sums(n_c, float(looks.lat_sum_c[i, j]), float(looks.lat_sq_c[i, j])),
                    ArmStats.of_sums(n_b, float(looks.lat_sum_b[i, j]), float(looks.lat_sq_b[i, j])),
                    margin=LATENCY_MARGIN, relative=True, higher_is_better=False, metric="latency_ms",
                    alpha=ALPHA, tightest_at=tightest_at)
                verdict = promotion_decision(quality, [latency], srm_check({1: n_b, 2: n_c}, weights))
                if verdict.action != "continue":
                    full[i] = verdict.action
                    full_done = True
            if full_done and primary_done:
                break
    return full, primary_only


def seed_rule(looks: Looks) -> np.ndarray:
    """Promote at the first look where quality >= baseline + 2 points and p95 latency <= 1.2x baseline."""
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = looks.ok_c / looks.n_c - looks.ok_b / looks.n_b
        fast = looks.p95_c <= (1.0 + LATENCY_MARGIN) * looks.p95_b
    return first_promotion((gain >= SEED_RULE_POINTS - 1e-12) & fast & (looks.n_c > 0))


def naive_peeking(looks: Looks) -> np.ndarray:
    """Promote at the first look where a one-sided pooled two-proportion z-test rejects at 0.05."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p_c, p_b = looks.ok_c / looks.n_c, looks.ok_b / looks.n_b
        pooled = (looks.ok_c + looks.ok_b) / (looks.n_c + looks.n_b)
        se = np.sqrt(pooled * (1 - pooled) * (1 / looks.n_c + 1 / looks.n_b))
        z = (p_c - p_b) / se
    return first_promotion(np.nan_to_num(z, nan=0.0) > NAIVE_Z)


def router_figures(keys: int, rounds: int = 5) -> dict:
    """Cost of ``Router.assign`` (median over rounds of ``keys`` distinct keys) and the ramp check."""
    unit_keys = [f"user-{i}" for i in range(keys)]
    two = Router({1: 0.95, 2: 0.05}, 1, workflow="support_qa", salt="bench")
    three = Router({1: 0.90, 2: 0.05, 3: 0.05}, 1, workflow="support_qa", salt="bench")
    per_two, per_three = [], []
    for _ in range(rounds):  # interleaved, as the shared machine drifts
        for router, out in ((two, per_two), (three, per_three)):
            assign = router.assign
            t0 = time.perf_counter()
            for key in unit_keys:
                assign(key)
            out.append((time.perf_counter() - t0) / keys * 1e6)
    ramped = Router({1: 0.80, 2: 0.20}, 1, workflow="support_qa", salt="bench")
    before = [two.assign(k) for k in unit_keys]
    after = [ramped.assign(k) for k in unit_keys]
    on_candidate = sum(b == 2 for b in before)
    kept = sum(b == 2 and a == 2 for b, a in zip(before, after))
    moved = sum(b != a for b, a in zip(before, after))
    return {
        "router_us_per_assign": median(per_two),
        "router_us_per_assign_3_versions": median(per_three),
        "router_candidate_share": on_candidate / keys,
        "router_ramp_kept_on_candidate": kept / on_candidate if on_candidate else 1.0,
        "router_ramp_moved_share": moved / keys,
    }


def run(experiments: int = 2000, requests: int = 10_000, look_every: int = 1000, seed: int = 6,
        router_keys: int = 100_000, tightest_at: float = 1000.0) -> dict:
    started = time.perf_counter()
    aa = simulate(np.random.default_rng(seed), experiments, requests, look_every, AA_SHARE, BASE_RATE)
    log(f"A/A simulated ({time.perf_counter() - started:.1f} s)")
    aa_full, aa_primary = graphtune_rule(aa, AA_SHARE, tightest_at)
    log(f"A/A graphtune rule applied ({time.perf_counter() - started:.1f} s)")
    lift = simulate(np.random.default_rng(seed + 1), experiments, requests, look_every, POWER_SHARE, BASE_RATE + LIFT)
    lift_full, lift_primary = graphtune_rule(lift, POWER_SHARE, tightest_at)
    log(f"power simulated and applied ({time.perf_counter() - started:.1f} s)")
    srm_100k = srm_check({1: 95_500, 2: 4_500}, {1: 0.95, 2: 0.05})
    srm_10k = srm_check({1: 9_550, 2: 450}, {1: 0.95, 2: 0.05})
    aa_rate = float((aa_full == "promote").mean())
    result = {
        "aa_false_promotion_rate": aa_rate,
        "aa_false_promotion_rate_primary_only": float(aa_primary.mean()),
        "seed_rule_false_promotion_rate": float(seed_rule(aa).mean()),
        "naive_peeking_false_promotion_rate": float(naive_peeking(aa).mean()),
        "aa_rate_standard_error": math.sqrt(max(aa_rate * (1 - aa_rate), 1e-12) / experiments),
        "aa_false_stop_rate": float((aa_full == "stop").mean()),
        "aa_srm_halt_rate": float((aa_full == "halt").mean()),
        "power_5pt": float((lift_full == "promote").mean()),
        "power_5pt_primary_only": float(lift_primary.mean()),
        "seed_rule_power_5pt": float(seed_rule(lift).mean()),
        "naive_peeking_power_5pt": float(naive_peeking(lift).mean()),
        "srm_flagged_100k": srm_100k.flagged,
        "srm_p_100k": srm_100k.p_value,
        "srm_flagged_10k": srm_10k.flagged,
        "srm_p_10k": srm_10k.p_value,
        "experiments": experiments,
        "requests": requests,
        "look_every": look_every,
        "base_rate": BASE_RATE,
        "aa_candidate_share": AA_SHARE,
        "power_candidate_share": POWER_SHARE,
        "alpha": ALPHA,
        "tightest_at": tightest_at,
    }
    result.update(router_figures(router_keys))
    result["seconds"] = time.perf_counter() - started
    return result


def main() -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        experiments=(int, 2000, "simulated experiments per scenario"),
        requests=(int, 10_000, "requests per experiment"),
        look_every=(int, 1000, "requests between looks"),
        seed=(int, 6, "random seed (the power scenario uses seed + 1)"),
        router_keys=(int, 100_000, "distinct unit keys per router timing round"),
        tightest_at=(float, 1000.0, "effective sample size where the confidence sequence is tightest"),
    )
    result = run(args.experiments, args.requests, args.look_every, args.seed, args.router_keys, args.tightest_at)
    emit(result, args.json, "ab_stats (simulated experiments; rates are shares of experiments)")


if __name__ == "__main__":
    main()
