"""Fast run of the ab_stats benchmark on small sizes, so the script and its keys cannot rot.

The real figures (2,000 experiments of 10k requests) come from ``make bench``; here 60 experiments of
2,000 requests with a look every 500 check that every required key is there, that the rates are rates,
and that the deterministic parts (SRM cases, ramp stability) come out as the issue states.
"""

from __future__ import annotations

import os
import sys

import numpy as np

BENCHMARKS = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
sys.path.insert(0, BENCHMARKS)

import ab_stats  # noqa: E402

REQUIRED = ("aa_false_promotion_rate", "seed_rule_false_promotion_rate", "naive_peeking_false_promotion_rate",
            "power_5pt", "srm_flagged_100k", "srm_flagged_10k", "router_us_per_assign")


def test_small_run_reports_every_figure():
    result = ab_stats.run(experiments=60, requests=2000, look_every=500, seed=3, router_keys=3000)
    assert set(REQUIRED) <= set(result)
    for key in ("aa_false_promotion_rate", "seed_rule_false_promotion_rate", "naive_peeking_false_promotion_rate", "power_5pt"):
        assert 0.0 <= result[key] <= 1.0, key
    assert result["srm_flagged_100k"] is True and result["srm_flagged_10k"] is False
    assert result["srm_p_100k"] < 1e-6 and 0.01 < result["srm_p_10k"] < 0.05
    assert result["router_ramp_kept_on_candidate"] == 1.0 and result["router_us_per_assign"] > 0
    # the seed rule promotes far more A/A candidates than the always-valid rule even at this size
    assert result["seed_rule_false_promotion_rate"] > result["aa_false_promotion_rate"]


def test_simulation_is_seeded_and_counts_add_up():
    a = ab_stats.simulate(np.random.default_rng(9), 5, 1000, 250, 0.2, 0.7)
    b = ab_stats.simulate(np.random.default_rng(9), 5, 1000, 250, 0.2, 0.7)
    assert np.array_equal(a.ok_c, b.ok_c) and np.array_equal(a.lat_sum_b, b.lat_sum_b)
    assert np.all(a.n_c + a.n_b == np.arange(1, 5) * 250)
    assert np.all(np.diff(a.n_c, axis=1) >= 0) and np.all(a.ok_c <= a.n_c)
