"""The value probe's statistics (docs/theory.md §10.7): a bin's value (alignment.py), the
value curve whose fit efficiency is the value criterion, and the kernel-map ranking with its
paired seed bootstrap (kernel_rank.py)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from scipy.stats import spearmanr

from paced_theory.alignment import bin_value, value_curve
from paced_theory.efficiency import PassRateMeasure, efficiency
from paced_theory.errors import InputError
from paced_theory.fit import achieved_efficiency
from paced_theory.kernel_rank import (
    GRID,
    compare_predictions,
    kernel_scores,
    rank_agreement,
    read_kernel_map,
    spearman,
)
from paced_theory.kernels import beta_kernel


def test_bin_value_point_estimates_by_hand():
    """A = mean over problems of the group-size-weighted alignment; the value at eta_balance
    is 0 and eta_best maximises it."""
    rng = np.random.default_rng(0)
    a = rng.normal(0.5, 1.0, size=(9, 4))
    sizes = np.array([3.0, 1.0, 2.0, 5.0])
    sq = rng.uniform(1, 3, 9)
    flops = rng.uniform(100, 200, 9)
    r = bin_value(a, sq, flops, eta=0.1, L=2.0, group_sizes=sizes, n_boot=0)
    A = np.mean([sum(a[i, j] * sizes[j] for j in range(4)) / sizes.sum() for i in range(9)])
    M, F = sq.mean(), flops.mean()
    assert r["align"] == pytest.approx(A) and r["sq"] == pytest.approx(M)
    assert r["value"] == pytest.approx((0.1 * A - 0.01 * 2.0 * M / 2) / F)
    assert r["weight"] == pytest.approx(A / M)
    assert r["sq_max_share"] == pytest.approx(sq.max() / sq.sum())
    assert np.isnan(r["align_lo"]) and np.isnan(r["weight_se"])
    at = bin_value(a, sq, flops, eta=r["eta_balance"], L=2.0, group_sizes=sizes, n_boot=0)
    assert at["value"] == pytest.approx(0.0, abs=1e-12)
    best = bin_value(a, sq, flops, eta=r["eta_best"], L=2.0, group_sizes=sizes, n_boot=0)
    for e in (0.9 * r["eta_best"], 1.1 * r["eta_best"]):
        assert bin_value(a, sq, flops, eta=e, L=2.0, group_sizes=sizes,
                         n_boot=0)["value"] < best["value"]


def test_bin_value_interval_covers_the_alignment():
    """The bootstrap interval (over problems and held-out groups) covers the true alignment
    <E g, E h> in simulated bins where the held-out set's noise dominates (30 problems, 10
    groups, as the probe splits the held-out set). Measured: 0.89 of 300 bins (nominal 95 %:
    a percentile bootstrap over 10 groups under-covers, as one over 10 seeds does); an
    interval that resamples only the problems covers 0.51. Bound 0.80: 5 binomial standard
    errors below 0.89."""
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(300):
        # a_ij = <g_i, h_j> with g_i = gbar + noise, h_j = hbar + noise in 3 dimensions
        g = np.array([1.0, 0.5, 0.0]) + 0.3 * rng.normal(size=(30, 3))
        h = np.array([0.5, -1.0, 2.0]) + rng.normal(size=(10, 3))
        r = bin_value(g @ h.T, (g * g).sum(1), np.ones(30), 0.1, 1.0, n_boot=200, rng=rng)
        hits += r["align_lo"] <= 0.0 <= r["align_hi"]  # <gbar, hbar> = 0.5 - 0.5 + 0 = 0
    assert hits / 300 >= 0.80


def test_bin_value_rejects_bad_input():
    with pytest.raises(InputError, match="eta and L"):
        bin_value(np.ones(3), np.ones(3), np.ones(3), 0.0, 1.0)
    with pytest.raises(InputError, match="group_sizes"):
        bin_value(np.ones((3, 2)), np.ones(3), np.ones(3), 0.1, 1.0, group_sizes=[1.0])


def test_value_curve_efficiency_is_the_value_criterion():
    """fit.py's achieved efficiency on the value curve equals §2's progress efficiency with
    s = A, v = M under mu ∝ n: the value criterion of §10.1 (w ∝ A/M is optimal)."""
    rng = np.random.default_rng(2)
    p = np.arange(1, 8) / 8
    n = rng.integers(5, 50, 7)
    A, M = rng.uniform(0.1, 2, 7), rng.uniform(1, 40, 7)
    bins = [{"p": float(pi), "n": int(ni), "sq": float(m), "weight": float(a / m),
             "weight_se": 0.1} for pi, ni, a, m in zip(p, n, A, M)]
    curve = value_curve(bins)
    mu = PassRateMeasure(p, n.astype(float))
    for a, b in ((0.5, 2.0), (1.0, 1.0), (3.0, 0.2)):
        w = beta_kernel(p, a, b)
        want = efficiency(w, mu, s=A, v=M, criterion="progress")
        assert achieved_efficiency(w, curve) == pytest.approx(want, rel=1e-10)
    assert achieved_efficiency(A / M, curve) == pytest.approx(1.0)


def test_value_curve_clips_negative_alignment_and_drops_undefined_bins():
    bins = [{"p": 0.0, "n": 5, "sq": 2.0, "weight": -0.3, "weight_se": 0.1},
            {"p": 0.5, "n": 5, "sq": 2.0, "weight": 0.2, "weight_se": 0.1},
            {"p": 1.0, "n": 1, "sq": 2.0, "weight": float("nan"), "weight_se": float("nan")}]
    curve = value_curve(bins)
    assert curve.p.tolist() == [0.0, 0.5] and curve.snr.tolist() == [0.0, 0.2]


# ------------------------------------------------------------------------- kernel ranking
def test_spearman_equals_scipy_with_ties():
    rng = np.random.default_rng(3)
    for _ in range(50):
        x = rng.integers(0, 4, 9).astype(float)  # ties on both sides
        y = rng.integers(0, 5, (6, 9)).astype(float)
        got = spearman(x, y)
        for row, g in zip(y, got):
            want = spearmanr(x, row).statistic
            assert (np.isnan(g) and np.isnan(want)) or g == pytest.approx(want)


def test_rank_agreement_interval_is_the_paired_seed_bootstrap():
    """rho equals scipy's on the seed means; the interval equals a slow reference: for each
    replicate the same seeds drawn for every kernel, their means, scipy's spearmanr,
    percentiles."""
    rng = np.random.default_rng(4)
    pred = rng.normal(size=9)
    ratios = 1 + 0.05 * pred[:, None] + 0.05 * rng.normal(size=(9, 5))
    r = rank_agreement(pred, ratios, n_boot=500, seed=7)
    assert r["rho"] == pytest.approx(spearmanr(pred, ratios.mean(1)).statistic)
    draws = np.random.default_rng(7).integers(0, 5, (500, 5))
    reps = [spearmanr(pred, [np.mean([ratios[k, s] for s in d]) for k in range(9)]).statistic
            for d in draws]
    lo, hi = np.percentile(reps, [2.5, 97.5])
    assert (r["lo"], r["hi"]) == pytest.approx((lo, hi))
    assert r["n_boot"] == 500 and r["n_seeds"] == 5


def test_compare_predictions_differences_are_paired():
    """Two predictions on the same resamples: a prediction against itself differs by exactly
    0 on every replicate; the reported rhos are rank_agreement's."""
    rng = np.random.default_rng(5)
    ratios = 1 + 0.05 * rng.normal(size=(9, 4))
    a, b = rng.normal(size=9), rng.normal(size=9)
    res = compare_predictions({"a": a, "a again": a, "b": b}, ratios, n_boot=300, seed=1)
    d = res["differences"]["a - a again"]
    assert (d["diff"], d["lo"], d["hi"]) == (0.0, 0.0, 0.0)
    assert res["predictions"]["b"] == rank_agreement(b, ratios, n_boot=300, seed=1)
    assert res["differences"]["a - b"]["diff"] == pytest.approx(
        res["predictions"]["a"]["rho"] - res["predictions"]["b"]["rho"])


def test_kernel_scores_rank_the_target_kernel_first():
    """With a grid kernel as the target, that kernel scores 1 and every other below 1."""
    p = np.arange(9) / 8
    mass = np.array([20, 10, 5, 5, 5, 5, 5, 10, 30], dtype=float)
    for k, (a, b) in enumerate(GRID):
        s = kernel_scores(p, mass, beta_kernel(p, a, b))
        assert s[k] == pytest.approx(1.0) and np.all(np.delete(s, k) < 1 - 1e-6)


def _write_study(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["pool", "loss", "arm", "seed", "auc_ratio"])
        w.writerows(rows)


def test_read_kernel_map(tmp_path):
    rows = []
    for s in (0, 1, 2):
        for a, b in GRID:
            arm = "paced" if (a, b) == (1.0, 1.0) else f"beta{a:g},{b:g}"
            if not (arm == "beta2,2" and s == 1):  # seed 1 lacks one kernel: dropped
                rows.append(["demo", "forward", arm, s, 1 + a - b + s / 10])
        rows.append(["demo", "forward", "uniform", s, 1.0])
        rows.append(["other", "forward", "paced", s, 5.0])
    _write_study(tmp_path / "s.csv", rows)
    seeds, ratios = read_kernel_map(tmp_path / "s.csv")
    assert seeds == [0, 2]
    assert ratios[GRID.index((1.0, 1.0))].tolist() == pytest.approx([1.0, 1.2])
    assert ratios[GRID.index((2.0, 0.5))].tolist() == pytest.approx([2.5, 2.7])
    _write_study(tmp_path / "t.csv", [r for r in rows if r[2] != "beta0.5,2"])
    with pytest.raises(InputError, match=r"t\.csv.*\(0\.5, 2\.0\)"):
        read_kernel_map(tmp_path / "t.csv")
    with pytest.raises(InputError, match="missing.csv"):
        read_kernel_map(tmp_path / "missing.csv")
