"""fit.py: recovery of known exponents within a derived tolerance, the Kantorovich guarantee
never above the achieved efficiency, the Chebyshev fit's optimality, the other families,
bootstrap intervals, and CSV errors naming file, line and column.

Recovery tolerances (ours). Data log rho_i = alpha log p_i + beta log(1-p_i) + c + r_i with
|r_i| <= eps (i.e. rho = p^alpha (1-p)^beta m(p), m in [e^-eps, e^eps]); A = [log p,
log(1-p), 1].
* L-infinity fit: the truth is feasible with max residual <= eps, so the LP optimum t* <= eps
  and the fit's residuals are <= eps too; their difference d = theta_hat - theta satisfies
  |A d|_inf <= 2 eps, hence |d_k| <= 2 eps max{|d_k| : |A d|_inf <= 1} (an LP, solved below).
  Also osc(fit) <= osc(truth) <= 2 eps, so its guarantee is >= 1 - tanh^2(eps).
* Weighted least squares: d = H r with H = (A^T W A)^-1 A^T W, so |d_k| <= eps ||H_k||_1
  (attained by r = eps sign(H_k)). The bounds alpha, beta >= 0 are inactive when the truth
  exceeds that tolerance, which the strategy below ensures (alpha, beta >= 0.5 > 1.61 * 0.1).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from paced_theory.errors import InputError
from paced_theory.fit import (
    FAMILIES,
    FITTERS,
    SNRCurve,
    family_kernel,
    fit_beta_eff,
    fit_beta_linf,
    fit_beta_ls,
    fit_families,
    fit_family,
    fit_gaussian,
    fit_hard,
    fit_kumaraswamy,
    log_family_kernel,
    read_snr_csv,
    residual_oscillation,
)
from paced_theory.kernels import beta_kernel

P = np.linspace(0.05, 0.95, 19)
A = np.column_stack([np.log(P), np.log1p(-P), np.ones_like(P)])


def linf_tolerance(eps: float, k: int) -> float:
    """2 eps max{|d_k| : |A d|_inf <= 1}."""
    c = np.zeros(3)
    c[k] = -1.0
    res = linprog(c, A_ub=np.vstack([A, -A]), b_ub=np.ones(2 * len(P)),
                  bounds=[(None, None)] * 3, method="highs")
    return 2 * eps * -res.fun


def ls_tolerance(eps: float, k: int, weights: np.ndarray) -> float:
    """eps ||row k of (A^T W A)^-1 A^T W||_1."""
    H = np.linalg.solve(A.T @ (weights[:, None] * A), A.T * weights[None, :])
    return eps * np.abs(H[k]).sum()


# ----------------------------------------------------------------------------- recovery
@settings(max_examples=100, deadline=None)
@given(st.floats(0.5, 3.0), st.floats(0.5, 3.0), st.floats(0.0, 0.1),
       st.lists(st.floats(-1.0, 1.0), min_size=19, max_size=19),
       st.lists(st.integers(1, 200), min_size=19, max_size=19), st.booleans())
def test_recovers_known_exponents_under_bounded_noise(alpha, beta, eps, u, counts, use_counts):
    m = np.exp(eps * np.array(u))  # m in [e^-eps, e^eps]
    count = np.array(counts, float) if use_counts else None
    curve = SNRCurve(P, beta_kernel(P, alpha, beta) * 3.7 * m, count)
    linf, ls = fit_beta_linf(curve), fit_beta_ls(curve)
    W = count / count.mean() if use_counts else np.ones_like(P)
    for k, (name, true) in enumerate([("alpha", alpha), ("beta", beta)]):
        assert abs(linf[name] - true) <= linf_tolerance(eps, k) + 1e-7
        assert abs(ls[name] - true) <= ls_tolerance(eps, k, W) + 1e-7
    res = fit_family(curve, "beta_linf")
    assert res.residual_oscillation <= 2 * eps + 1e-7
    assert res.guaranteed_efficiency >= 1 - math.tanh(eps) ** 2 - 1e-7


def test_exact_curves_are_recovered_exactly():
    curve = SNRCurve(P, 5.0 * P**1.7 * (1 - P) ** 0.6, np.full(P.size, 50.0))
    for fam in ("beta_ls", "beta_linf"):
        r = fit_family(curve, fam)
        assert r.params["alpha"] == pytest.approx(1.7, abs=1e-6)
        assert r.params["beta"] == pytest.approx(0.6, abs=1e-6)
        assert r.efficiency == pytest.approx(1.0, abs=1e-10)
        assert r.guaranteed_efficiency == pytest.approx(1.0, abs=1e-6)
        assert r.residual_oscillation == pytest.approx(0.0, abs=1e-6)
    g = fit_gaussian(SNRCurve(P, 2.0 * np.exp(-0.5 * ((P - 0.37) / 0.21) ** 2)))
    assert g["center"] == pytest.approx(0.37, abs=1e-8)
    assert g["width"] == pytest.approx(0.21, abs=1e-8)
    ku = fit_kumaraswamy(SNRCurve(P, 0.3 * P**1.8 * (1 - P**1.8) ** 2.5))
    assert ku["a"] == pytest.approx(1.8, abs=1e-5)
    assert ku["b"] == pytest.approx(2.5, abs=1e-5)


def test_exponents_are_constrained_nonnegative():
    """rho rising towards p = 0 (log-slope -0.5 there): the best Beta kernel has alpha = 0."""
    curve = SNRCurve(P, P**-0.5 * (1 - P))
    for fit in (fit_beta_ls, fit_beta_linf):
        par = fit(curve)
        assert par["alpha"] == pytest.approx(0.0, abs=1e-9)
        assert par["beta"] > 0.5


def test_hard_band_recovers_a_plateau():
    snr = np.where((P > 0.32) & (P < 0.68), 1.0, 0.0)  # bins 0.35 .. 0.65
    band = fit_hard(SNRCurve(P, snr))
    assert 0.3 < band["lo"] < 0.35 and 0.65 < band["hi"] < 0.7
    r = fit_families(SNRCurve(P, snr), n_boot=0)
    assert r["hard"].efficiency == pytest.approx(1.0)
    assert r["hard"].efficiency > r["uniform"].efficiency


# ----------------------------------------------------------------------------- guarantees
@st.composite
def random_curves(draw):
    n = draw(st.integers(3, 20))
    p = draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n))
    snr = draw(st.lists(st.one_of(st.just(0.0), st.floats(1e-4, 1e3)), min_size=n, max_size=n))
    kind = draw(st.sampled_from(["none", "count", "se"]))
    p, snr = np.array(p), np.array(snr)
    ok = (snr > 0) & (p > 0) & (p < 1)
    assume(np.unique(p[ok]).size >= 3)
    count = se = None
    if kind == "count":
        count = np.array(draw(st.lists(st.integers(1, 100), min_size=n, max_size=n)), float)
    elif kind == "se":
        rel = np.array(draw(st.lists(st.floats(0.01, 2.0), min_size=n, max_size=n)))
        se = np.maximum(snr, 1e-3) * rel
    return SNRCurve(p, snr, count, se)


@settings(max_examples=100, deadline=None)
@given(random_curves())
def test_guarantee_never_exceeds_achieved(curve):
    for name, r in fit_families(curve, n_boot=0).items():
        assert 0.0 <= r.guaranteed_efficiency <= r.efficiency + 1e-12, name
        assert r.efficiency <= 1.0
        assert 0.0 <= r.signal_share <= 1.0
        # the Kantorovich factor itself is a floor on the efficiency restricted to signal
        if r.signal_share > 0:
            assert 1 - math.tanh(r.residual_oscillation / 2) ** 2 <= (
                r.efficiency / r.signal_share + 1e-9)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.01, 1.5),
       st.lists(st.tuples(st.floats(0.0, 4.0), st.floats(0.0, 4.0)), min_size=1, max_size=5))
def test_chebyshev_fit_has_the_smallest_oscillation(seed, sigma, others):
    """beta_linf maximises the Kantorovich guarantee among Beta kernels: its osc is <= that
    of beta_ls and of any other (alpha, beta) >= 0."""
    rng = np.random.default_rng(seed)
    p = np.sort(rng.uniform(0.01, 0.99, int(rng.integers(3, 30))))
    assume(np.unique(p).size >= 3)
    curve = SNRCurve(p, p * (1 - p) * np.exp(rng.normal(0, sigma, p.size)),
                     rng.integers(1, 100, p.size).astype(float))
    r = fit_families(curve, families=("beta_ls", "beta_linf"), n_boot=0)
    osc = r["beta_linf"].residual_oscillation
    tol = 1e-7 * (1 + osc)
    assert osc <= r["beta_ls"].residual_oscillation + tol
    assert r["beta_linf"].guaranteed_efficiency >= r["beta_ls"].guaranteed_efficiency - 1e-9
    for a, b in others:
        assert osc <= residual_oscillation(beta_kernel(p, a, b), curve) + tol


# ----------------------------------------------------------------------------- weights
def test_standard_errors_downweight_an_outlier():
    """Delta-method weights rho^2/se^2: a point known to be noisy barely moves the fit."""
    snr = P**2 * (1 - P)
    snr_bad = snr.copy()
    snr_bad[9] *= 20.0
    se = 0.01 * snr_bad
    se[9] = 100.0 * snr_bad[9]
    with_se = fit_beta_ls(SNRCurve(P, snr_bad, se=se))
    without = fit_beta_ls(SNRCurve(P, snr_bad))
    assert with_se["alpha"] == pytest.approx(2.0, abs=1e-3)
    assert with_se["beta"] == pytest.approx(1.0, abs=1e-3)
    assert abs(without["alpha"] - 2.0) > 0.05
    counts = np.full(P.size, 1000.0)
    counts[9] = 1e-3
    by_count = fit_beta_ls(SNRCurve(P, snr_bad, counts))
    assert by_count["alpha"] == pytest.approx(2.0, abs=1e-3)


def test_zero_snr_points_are_dropped_with_a_note():
    snr = P * (1 - P)
    snr[[0, -1]] = 0.0
    r = fit_family(SNRCurve(P, snr), "beta_ls")
    assert r.params["alpha"] == pytest.approx(1.0, abs=1e-8)
    assert any("2 point(s) with snr = 0" in n for n in r.notes)
    # the efficiency still counts them: the uniform kernel wastes budget there
    u = fit_family(SNRCurve(P, snr), "uniform")
    assert u.signal_share == pytest.approx(17 / 19)


def test_aic_prefers_the_true_family():
    rng = np.random.default_rng(0)
    curve = SNRCurve(P, P**2 * (1 - P) ** 2 * np.exp(rng.normal(0, 0.05, P.size)))
    r = fit_families(curve, n_boot=0)
    assert r["beta_ls"].aic < r["gaussian"].aic < r["uniform"].aic
    assert math.isinf(r["hard"].aic)


def test_log_kernels_match_kernels():
    params = {"beta_ls": {"alpha": 1.3, "beta": 0.0}, "gaussian": {"center": 0.4, "width": 0.2},
              "kumaraswamy": {"a": 1.5, "b": 2.0}, "hard": {"lo": 0.2, "hi": 0.8},
              "sqrt_variance": {}, "uniform": {}}
    p = np.linspace(0.0, 1.0, 41)
    for fam, par in params.items():
        with np.errstate(divide="ignore"):
            np.testing.assert_allclose(log_family_kernel(fam, par, p),
                                       np.log(family_kernel(fam, par, p)), rtol=1e-12)


# ----------------------------------------------------------------------------- bootstrap
def test_bootstrap_intervals():
    rng = np.random.default_rng(3)
    curve = SNRCurve(P, P**2 * (1 - P) ** 2 * np.exp(rng.normal(0, 0.05, P.size)))
    r = fit_families(curve, families=("beta_ls", "hard"), n_boot=200, seed=1)
    lo, hi = r["beta_ls"].intervals["alpha"]
    assert lo <= r["beta_ls"].params["alpha"] <= hi
    assert lo <= 2.0 <= hi and hi - lo < 0.3
    assert r["beta_ls"].n_boot == 200 and set(r["hard"].intervals) == {"lo", "hi"}
    again = fit_families(curve, families=("beta_ls",), n_boot=200, seed=1)
    assert again["beta_ls"].intervals == r["beta_ls"].intervals  # seeded
    other = fit_families(curve, families=("beta_ls",), n_boot=200, seed=2)
    assert other["beta_ls"].intervals != r["beta_ls"].intervals
    noisy = SNRCurve(P, P**2 * (1 - P) ** 2 * np.exp(rng.normal(0, 0.5, P.size)))
    r2 = fit_families(noisy, families=("beta_ls",), n_boot=200, seed=1)["beta_ls"]
    assert r2.intervals["alpha"][1] - r2.intervals["alpha"][0] > hi - lo


@pytest.mark.parametrize("level", [0.95, 0.8])
def test_bootstrap_is_exactly_the_documented_resampling(level):
    """An exact replay of fit_families' bootstrap as its docstring states it: n_boot draws of
    n indices from rng.integers(0, n, n) (every point can be drawn, the last one too), a
    refit per draw, and the (1-level)/2 and (1+level)/2 percentiles. A resampling that
    never draws the last point (integers(0, n - 1, n)) or other percentile levels give
    different intervals. Ours."""
    rng = np.random.default_rng(11)
    p = np.linspace(0.04, 0.96, 12)
    curve = SNRCurve(p, p**1.5 * (1 - p) ** 2.5 * np.exp(rng.normal(0, 0.3, p.size)),
                     count=rng.integers(1, 20, p.size).astype(float))
    fams = ("beta_ls", "gaussian", "hard")
    got = fit_families(curve, families=fams, n_boot=40, seed=7, level=level)
    replay = np.random.default_rng(7)
    draws = {f: [] for f in fams}
    for _ in range(40):
        sub = curve.subset(replay.integers(0, p.size, p.size))
        for f in fams:
            try:
                draws[f].append(FITTERS[f](sub))
            except InputError:
                continue
    q = (100 * (1 - level) / 2, 100 * (1 + level) / 2)
    for f in fams:
        assert got[f].n_boot == len(draws[f]) > 0
        want = {k: tuple(float(x) for x in np.percentile([d[k] for d in draws[f]], q))
                for k in draws[f][0]}
        assert got[f].intervals == want, f  # exact: same draws, same fits, same levels


def test_fit_families_argument_errors():
    curve = SNRCurve(P, P * (1 - P))
    with pytest.raises(InputError, match="--families"):
        fit_families(curve, families=("beta", "spline"))
    with pytest.raises(InputError, match="--n-boot"):
        fit_families(curve, n_boot=-1)
    with pytest.raises(InputError, match="fewer than 3"):
        fit_beta_ls(SNRCurve(np.array([0.2, 0.5, 0.9]), np.array([1.0, 1.0, 0.0])))
    assert set(fit_families(curve, n_boot=0)) == set(FAMILIES)


# ----------------------------------------------------------------------------- CSV
@pytest.mark.parametrize("body,needle", [
    ("p,count\n0.5,3\n", "line 1: missing column 'snr'"),
    ("snr\n0.5\n", "line 1: missing column 'p'"),
    ("p,snr\n0.1,1\n0.5,1\n1.5,2\n", "line 4, column 'p': 1.5 is outside [0, 1]"),
    ("p,snr\n0.1,1\n0.5,-1\n0.7,1\n", "line 3, column 'snr': -1 is negative"),
    ("p,snr\n0.1,1\n0.5,abc\n0.7,1\n", "line 3, column 'snr': 'abc' is not a number"),
    ("# probe output\np,snr\n\n0.1,1\n0.5,\n", "line 5, column 'snr': missing value"),
    ("p,snr,count\n0.1,1,2\n0.5,1,-3\n", "line 3, column 'count': -3 is negative"),
    ("p,snr,se\n0.1,1,0.1\n0.5,1,0\n", "line 3, column 'se'"),
    ("p,snr\n0.1,nan\n", "line 2, column 'snr'"),
    ("p,snr\n0.1,1,7\n", "line 2: 3 fields"),
    ("p,snr\n", "no data rows"),
    ("", "empty file"),
    ("p,snr\n0.1,0\n0.5,0\n", "every value is 0"),
    ("p,snr,p\n0.1,1,2\n", "appears twice"),
])
def test_csv_errors_name_file_and_line(tmp_path, body, needle):
    f = tmp_path / "curve.csv"
    f.write_text(body)
    with pytest.raises(InputError, match="curve.csv") as exc:
        read_snr_csv(f)
    assert needle in str(exc.value)


def test_csv_missing_file(tmp_path):
    with pytest.raises(InputError, match="nope.csv: no such file"):
        read_snr_csv(tmp_path / "nope.csv")


def test_csv_roundtrip(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("# measured\nP, SNR ,se,signal\n0.1,0.5,0.1,3\n\n0.5,1.0,0.1,4\n0.9,0.4,0.05,1,\n")
    c = read_snr_csv(f)
    assert c.se is not None and c.count is None and c.p.tolist() == [0.1, 0.5, 0.9]
    assert c.snr.tolist() == [0.5, 1.0, 0.4] and c.source == str(f)
    g = tmp_path / "g.csv"
    g.write_text("p,snr,count\n" + "".join(f"{x},{x * (1 - x)},10\n" for x in P))
    r = fit_families(read_snr_csv(g), n_boot=20, seed=0)
    assert r["beta_linf"].params["alpha"] == pytest.approx(1.0, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(random_curves())
def test_efficiency_fit_beats_the_log_space_beta_fits(curve):
    """beta_eff maximises eta over the Beta family, so it can never do worse than the
    log-space Beta fits (inside its search box), and its own closed-form eta is eta."""
    res = fit_families(curve, families=("beta_ls", "beta_linf", "beta_eff"), n_boot=0)
    for name in ("beta_ls", "beta_linf"):
        prm = res[name].params
        if max(prm["alpha"], prm["beta"]) <= 20.0:
            assert res["beta_eff"].efficiency >= res[name].efficiency - 1e-6, name


def test_efficiency_fit_uses_the_end_points():
    """Log-space fits cannot see bins at p = 0 or 1; beta_eff must. Flat signal everywhere:
    the uniform kernel (alpha = beta = 0) is optimal. Flat inside but none at the heavy end
    bins: any alpha, beta > 0 switches the ends off, so the optimum is strictly positive
    (it tends to 0+, the interior indicator) and beats uniform by the ends' mass."""
    p = np.linspace(0.0, 1.0, 9)
    count = np.where((p == 0) | (p == 1), 200.0, 10.0)
    flat = fit_family(SNRCurve(p, np.ones(9), count), "beta_eff")
    assert flat.params == pytest.approx({"alpha": 0.0, "beta": 0.0}) and flat.efficiency == 1.0
    inner = SNRCurve(p, np.where((p > 0) & (p < 1), 1.0, 0.0), count)
    res = fit_family(inner, "beta_eff")
    assert res.params["alpha"] > 0 and res.params["beta"] > 0
    assert res.efficiency > 0.999 > 0.5 > fit_family(inner, "uniform").efficiency
    exact = SNRCurve(p, p**2 * (1 - p) ** 3, np.full(9, 10.0))
    assert fit_beta_eff(exact) == pytest.approx({"alpha": 2.0, "beta": 3.0}, abs=1e-3)


def test_efficiency_fit_on_its_search_cap_says_so():
    """A spike narrower than any Beta kernel in [0, 20]^2 pushes beta_eff onto the cap
    (BETA_EFF_MAX); the result must say so, and an interior optimum must not."""
    from paced_theory.fit import BETA_EFF_MAX

    p = np.linspace(0.0, 1.0, 9)
    spike = fit_family(SNRCurve(p, np.where(p == 0.75, 1.0, 1e-3), np.full(9, 10.0)),
                       "beta_eff")
    assert spike.params["alpha"] == BETA_EFF_MAX
    assert any("search cap" in n for n in spike.notes)
    bell = fit_family(SNRCurve(p, p**2 * (1 - p) ** 3, np.full(9, 10.0)), "beta_eff")
    assert not any("search cap" in n for n in bell.notes)
