"""paced_theory.stats: summaries over seeds, paired t-intervals, sign-flip p-values and the
percentile bootstrap (only from 10 seeds up)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from paced_theory.stats import (
    BOOT_MIN_SEEDS,
    bootstrap_ci,
    curve_auc,
    mean_sd,
    paired,
    sign_flip_p,
    t_interval,
)


def test_mean_sd_drops_missing_values():
    assert mean_sd([1.0, None, 3.0, float("nan")]) == pytest.approx([2.0, np.sqrt(2.0)])
    assert mean_sd([4.0]) == [4.0, 0.0] and mean_sd([None]) is None


def test_bootstrap_replays_exactly():
    # the interval is the percentiles of means of resamples drawn with replacement from ALL
    # n values (integers(0, n)), at levels (1 - level)/2 and (1 + level)/2
    x = np.array([0.1, 0.5, 0.2, 0.9, 0.4])
    point, lo, hi = bootstrap_ci(x, level=0.9, n_boot=500, seed=3)
    idx = np.random.default_rng(3).integers(0, 5, size=(500, 5))
    means = x[idx].mean(1)
    assert point == pytest.approx(x.mean())
    assert (lo, hi) == pytest.approx(tuple(np.quantile(means, [0.05, 0.95])), abs=0, rel=1e-12)


def test_bootstrap_covers_the_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(300):
        x = rng.normal(1.0, 1.0, 30)
        _, lo, hi = bootstrap_ci(x, n_boot=1000, seed=int(rng.integers(1 << 30)))
        hits += lo <= 1.0 <= hi
    assert 0.88 <= hits / 300 <= 0.99  # percentile bootstrap: slightly under 0.95 at n = 30


def test_paired_differences_and_verdicts():
    better = paired([0.6, 0.7, 0.65, 0.72], [0.5, 0.55, 0.52, 0.6])
    assert better["per_seed"] == pytest.approx([0.1, 0.15, 0.13, 0.12])
    assert better["verdict"] == "better" and better["wins"] == 4 and better["lo"] > 0
    assert better["p"] == pytest.approx(2 / 16)  # all positive: only +e and -e reach |mean|
    assert better["boot"] is None  # 4 seeds: no bootstrap
    mixed = paired([0.6, 0.4, 0.55], [0.5, 0.5, 0.5])
    assert mixed["verdict"] == "not significant" and mixed["lo"] <= 0 <= mixed["hi"]
    worse = paired([1.0, 1.0, 1.0], [2.0, 2.1, 1.9], kind="ratio")
    assert worse["verdict"] == "worse" and worse["hi"] < 1
    assert paired([1.0, None], [0.5, 0.5])["n"] == 1
    with pytest.raises(ValueError):
        paired([1.0], [1.0, 2.0])


def test_paired_t_interval_is_the_textbook_one():
    d = np.array([0.3, -0.1, 0.2, 0.5, 0.1])
    r = paired(d, np.zeros(5))
    half = 2.7764451051977987 * d.std(ddof=1) / np.sqrt(5)  # t_{4, 0.975}
    assert (r["mean"], r["lo"], r["hi"]) == pytest.approx((d.mean(), d.mean() - half,
                                                           d.mean() + half))
    assert t_interval([2.0])[0] == 2.0 and np.isnan(t_interval([2.0])[1])


def test_one_seed_and_no_spread_are_labelled_not_by_a_point_interval():
    one = paired([0.2], [0.559])
    assert one["n"] == 1 and one["verdict"] == "not significant" and one["lo"] is None
    # the same difference on every seed: the t-interval is a point, the sign flips decide
    same3 = paired([0.5] * 3, [0.4] * 3)
    assert not same3["spread"] and same3["p"] == pytest.approx(2 / 8)
    assert same3["verdict"] == "not significant"
    same6 = paired([0.5] * 6, [0.4] * 6)
    assert same6["p"] == pytest.approx(2 / 64) and same6["verdict"] == "better"
    tie = paired([0.5] * 6, [0.5] * 6)
    assert tie["verdict"] == "not significant" and tie["p"] == 1.0


def test_sign_flip_p_exact_and_sampled():
    # exact: d = (1, 2, 3): sign patterns with |sum| >= 6 are +++ and ---
    assert sign_flip_p([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)
    # (1, -1, 3): |sum| = 3; signed sums of the 8 patterns: 3, -3, 5, -1, 1, -5, 3, -3 -> 6/8
    assert sign_flip_p([1.0, -1.0, 3.0]) == pytest.approx(6 / 8)
    # sampled above 16 seeds: all-positive differences give p near 2 / 2^20, i.e. tiny
    assert sign_flip_p(np.linspace(0.1, 1, 20)) < 1e-3
    assert sign_flip_p([3.0, 3.0], null=3.0) == 1.0


def _coverage(interval, n_seeds: int, reps: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    d = rng.normal(0.0, 0.03, size=(reps, n_seeds))  # paired differences under no effect
    return float(np.mean([interval(row)[1] <= 0.0 <= interval(row)[2] for row in d]))


@pytest.mark.parametrize("n_seeds", [3, 5, 10])
def test_t_interval_covers_at_the_nominal_rate_under_no_effect(n_seeds):
    # 4000 replications: binomial sd of the coverage 0.0034, so [0.93, 0.97] is +-6 sd
    # around 0.95. A normal (z) interval fails this at 3 and 5 seeds (0.80 and 0.88).
    cov = _coverage(t_interval, n_seeds, 4000, seed=n_seeds)
    assert 0.93 <= cov <= 0.97


def test_percentile_bootstrap_over_few_seeds_undercovers():
    # why the bootstrap is only reported from BOOT_MIN_SEEDS seeds up: with 3 seeds its
    # 95 % interval covers ~0.75, with 5 ~0.83 (1500 replications, sd 0.011)
    boot = lambda x: bootstrap_ci(x, n_boot=400, seed=1)  # noqa: E731
    assert 0.70 <= _coverage(boot, 3, 1500, seed=1) <= 0.80
    assert 0.78 <= _coverage(boot, 5, 1500, seed=2) <= 0.88
    assert paired(np.arange(BOOT_MIN_SEEDS) * 0.1, np.zeros(BOOT_MIN_SEEDS))["boot"] is not None


def test_sign_flip_false_positive_rate_is_at_most_nominal():
    rng = np.random.default_rng(7)
    ps = [sign_flip_p(rng.normal(0, 1, 10)) for _ in range(1000)]
    # exact test: P(p <= 0.05) <= 0.05 under a symmetric null; sd of the rate 0.007
    assert np.mean(np.array(ps) <= 0.05) <= 0.07


@given(st.lists(st.floats(0, 1), min_size=2, max_size=8), st.floats(0.5, 3.0))
def test_auc_of_a_step_free_curve_is_its_mean(ys, x_max):
    # a constant curve has AUC equal to its value, whatever the grid
    x = np.linspace(0, x_max, len(ys))
    assert curve_auc(x, np.full(len(ys), ys[0]), x_max) == pytest.approx(ys[0])
    # the AUC of any curve lies between its min and max
    a = curve_auc(x, ys, x_max)
    assert min(ys) - 1e-12 <= a <= max(ys) + 1e-12


def test_auc_closed_form_cut_and_held():
    # y = x on [0, 1] then held at 1 up to 2: area 0.5 + 1 = 1.5 over 2
    assert curve_auc([0.0, 1.0], [0.0, 1.0], 2.0) == pytest.approx(0.75)
    # cut at 0.5: area 0.125 over 0.5
    assert curve_auc([0.0, 1.0], [0.0, 1.0], 0.5) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        curve_auc([0.1, 1.0], [0.0, 1.0], 1.0)
