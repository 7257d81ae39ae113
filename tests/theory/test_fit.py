"""Kernel fitting: recovery of known exponents within a derived tolerance, the Kantorovich
guarantee never above the achieved efficiency, the Chebyshev fit's optimality, CSV errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from paced_theory.errors import InputError
from paced_theory.fit import (
    FAMILIES,
    SNRCurve,
    fit_beta_linf,
    fit_beta_ls,
    fit_families,
    read_snr_csv,
)

P = np.linspace(0.05, 0.95, 19)


def _design(p):
    return np.column_stack([np.log(p), np.log1p(-p), np.ones_like(p)])


def linf_tolerance(p, eps, k):
    """Largest |d theta_k| with |A d theta|_inf <= 2 eps: any two parameter sets whose
    log-residuals are both within eps of the data differ by at most this (an LP)."""
    A = _design(p)
    A_ub = np.vstack([A, -A])
    b_ub = np.full(2 * len(p), 2 * eps)
    c = np.zeros(3)
    c[k] = -1.0
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, bounds=[(None, None)] * 3, method="highs")
    return -res.fun


def ls_tolerance(p, eps, k):
    """|d theta_k| <= eps * ||row k of the (equal-weight) pseudo-inverse||_1 for noise <= eps."""
    return eps * np.abs(np.linalg.pinv(_design(p))[k]).sum()


@settings(max_examples=30, deadline=None)
@given(st.floats(0.5, 3.0), st.floats(0.5, 3.0), st.floats(0.0, 0.1), st.integers(0, 2**31))
def test_recovers_known_exponents_under_bounded_noise(alpha, beta, eps, seed):
    rng = np.random.default_rng(seed)
    noise = rng.uniform(-eps, eps, P.size)
    curve = SNRCurve(P, P**alpha * (1 - P) ** beta * np.exp(noise))
    linf, ls = fit_beta_linf(curve), fit_beta_ls(curve)
    for k, (name, true) in enumerate([("alpha", alpha), ("beta", beta)]):
        assert abs(linf[name] - true) <= linf_tolerance(P, eps, k) + 1e-7
        assert abs(ls[name] - true) <= ls_tolerance(P, eps, k) + 1e-7


def test_exact_curve_is_recovered_exactly():
    curve = SNRCurve(P, P**1.7 * (1 - P) ** 0.6, np.full(P.size, 50.0))
    r = fit_families(curve, families=("beta_ls", "beta_linf"), n_boot=0)
    for f in r.values():
        assert f.params["alpha"] == pytest.approx(1.7, abs=1e-6)
        assert f.params["beta"] == pytest.approx(0.6, abs=1e-6)
        assert f.efficiency == pytest.approx(1.0, abs=1e-10)
        assert f.guaranteed_efficiency == pytest.approx(1.0, abs=1e-8)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31))
def test_guarantee_never_exceeds_achieved(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(6, 25))
    p = np.sort(rng.uniform(0.01, 0.99, n))
    snr = rng.gamma(2.0, 1.0, n) * (rng.random(n) > 0.15)  # some bins measure zero SNR
    snr[0] = max(snr[0], 0.1)
    snr[1] = max(snr[1], 0.1)
    snr[2] = max(snr[2], 0.1)
    curve = SNRCurve(p, snr, rng.integers(1, 100, n).astype(float))
    for name, r in fit_families(curve, n_boot=0).items():
        assert r.guaranteed_efficiency <= r.efficiency + 1e-12, name
        assert 0.0 <= r.efficiency <= 1.0


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31))
def test_chebyshev_fit_has_the_smallest_oscillation(seed):
    rng = np.random.default_rng(seed)
    curve = SNRCurve(P, P * (1 - P) * np.exp(rng.normal(0, 0.3, P.size)))
    r = fit_families(curve, families=("beta_ls", "beta_linf"), n_boot=0)
    assert r["beta_linf"].residual_oscillation <= r["beta_ls"].residual_oscillation + 1e-9
    assert r["beta_linf"].guaranteed_efficiency >= r["beta_ls"].guaranteed_efficiency - 1e-12


def test_bootstrap_intervals_cover_truth_and_shrink_with_noise():
    rng = np.random.default_rng(3)
    curve = SNRCurve(P, P**2 * (1 - P) ** 2 * np.exp(rng.normal(0, 0.05, P.size)))
    r = fit_families(curve, families=("beta_ls",), n_boot=200, seed=1)["beta_ls"]
    lo, hi = r.intervals["alpha"]
    assert lo <= 2.0 <= hi and hi - lo < 0.5
    noisy = SNRCurve(P, P**2 * (1 - P) ** 2 * np.exp(rng.normal(0, 0.5, P.size)))
    r2 = fit_families(noisy, families=("beta_ls",), n_boot=200, seed=1)["beta_ls"]
    assert r2.intervals["alpha"][1] - r2.intervals["alpha"][0] > hi - lo


def test_hard_band_and_other_families_run():
    curve = SNRCurve(P, np.where((P > 0.3) & (P < 0.7), 1.0, 1e-3))
    r = fit_families(curve, n_boot=0)
    assert set(r) == set(FAMILIES)
    assert 0.25 < r["hard"].params["lo"] < 0.35 and 0.65 < r["hard"].params["hi"] < 0.75
    assert r["hard"].efficiency > r["uniform"].efficiency


@pytest.mark.parametrize("body,needle", [
    ("p,count\n0.5,3\n", "missing column 'snr'"),
    ("p,snr\n0.1,1\n0.5,1\n1.5,2\n", "line 4"),
    ("p,snr\n0.1,1\n0.5,-1\n0.7,1\n", "line 3"),
    ("p,snr\n0.1,1\n0.5,abc\n0.7,1\n", "line 3: column 'snr'"),
])
def test_csv_errors_name_file_and_line(tmp_path, body, needle):
    f = tmp_path / "curve.csv"
    f.write_text(body)
    with pytest.raises(InputError, match="curve.csv") as exc:
        read_snr_csv(f)
    assert needle in str(exc.value)


def test_csv_roundtrip(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("p,snr,se\n0.1,0.5,0.1\n0.5,1.0,0.1\n0.9,0.4,0.05\n")
    c = read_snr_csv(f)
    assert c.se is not None and c.count is None and c.p.tolist() == [0.1, 0.5, 0.9]
