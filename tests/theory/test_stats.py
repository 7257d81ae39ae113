"""paced_theory.stats: summaries over seeds and paired bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from paced_theory.stats import bootstrap_ci, curve_auc, mean_sd, paired


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
    mixed = paired([0.6, 0.4, 0.55], [0.5, 0.5, 0.5])
    assert mixed["verdict"] == "not significant" and mixed["lo"] <= 0 <= mixed["hi"]
    worse = paired([1.0, 1.0, 1.0], [2.0, 2.1, 1.9], kind="ratio")
    assert worse["verdict"] == "worse" and worse["hi"] < 1
    assert paired([1.0, None], [0.5, 0.5])["n"] == 1
    with pytest.raises(ValueError):
        paired([1.0], [1.0, 2.0])


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
