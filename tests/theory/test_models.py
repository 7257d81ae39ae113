"""Gradient-statistics models M1 and M2 (paced_theory/models.py): sympy identities, boundary
exponents, exhaustive enumeration and Monte Carlo agreement of the samplers.

docs/theory.md §4.1: the true-mean M1 forms and the (1, 1) / (2, 2) exponents; the finite-K
baselines, the sigma2 = 0 cases, the progress-criterion exponents and M2. All Ours (the
paper states no gradient model).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import sympy as sp
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from paced_theory.errors import InputError
from paced_theory.models import (
    BASELINE_SOURCES,
    BASELINES,
    DELTA,
    GAMMA,
    K_SYM,
    M1_CLOSED_FORMS,
    MODELS,
    NU,
    SIGMA2,
    TAU2,
    P,
    boundary_exponents,
    m1,
    m1_symbolic,
    m2,
    m2_symbolic,
)

Q = P * (1 - P)
# Each example of the exponent properties runs sympy limits (~0.1-0.3 s): shrinking a failure
# could take minutes, so those tests report the first failing example unshrunk.
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)
COMBOS = [("true_mean", "reward"), ("leave_one_out", "reward"), ("leave_one_out", "advantage"),
          ("group_mean", "reward"), ("group_mean", "advantage")]


def _zero(expr: sp.Expr) -> bool:
    return sp.simplify(sp.expand(expr)) == 0


# ------------------------------------------------------------------ sympy identities (M1)
def test_m1_true_mean_matches_theory():
    """docs/theory.md §4.1: b = Delta p, tau2 = 0 -> s = Delta q, per-rollout variance
    Delta^2 q((1-2p)^2 + sigma2), rho = K q/((1-2p)^2 + sigma2). Ours: the tau2 term."""
    s, v = m1_symbolic("true_mean")
    assert _zero(s - DELTA * Q)
    per_rollout = DELTA**2 * Q * ((1 - 2 * P) ** 2 + SIGMA2) + TAU2 * (Q + SIGMA2)
    assert _zero(v - per_rollout / K_SYM)
    assert _zero(v.subs(K_SYM, 1).subs(TAU2, 0) - DELTA**2 * Q * ((1 - 2 * P) ** 2 + SIGMA2))
    rho = sp.cancel((s**2 / v).subs(TAU2, 0))
    assert _zero(rho - K_SYM * Q / ((1 - 2 * P) ** 2 + SIGMA2))
    # the boundary floor of the variance with tau2 > 0: sigma2 tau2 / K (docs/theory.md §4.1)
    assert sp.limit(v * K_SYM, P, 0, "+") == SIGMA2 * TAU2


@pytest.mark.parametrize("baseline,source", COMBOS)
def test_m1_closed_form_text_equals_derivation(baseline, source):
    """The readable forms in M1_CLOSED_FORMS (and the module docstring) are the derivation."""
    s, v = m1_symbolic(baseline, source)
    s_text, v_text = M1_CLOSED_FORMS[(baseline, source)]
    names = {"p": P, "q": Q, "K": K_SYM, "sigma2": SIGMA2, "tau2": TAU2, "Delta": DELTA}
    assert _zero(s - sp.sympify(s_text, locals=names))
    assert _zero(v - sp.sympify(v_text, locals=names))


def _enumerate_m1(K, p, sigma2, tau2, Delta, baseline, source):
    """(s, v) of M1 by summing over all 2^K reward vectors, straight from the definitions;
    eps and zeta are integrated analytically given the rewards (G is linear in eps, zeta)."""
    R = np.array(list(itertools.product([0.0, 1.0], repeat=K)))
    prob = p ** R.sum(1) * (1 - p) ** (K - R.sum(1))
    ell = R - p
    eye, ones = np.eye(K), np.ones((K, K))
    B = {"true_mean": 0 * eye, "leave_one_out": (ones - eye) / (K - 1),
         "group_mean": ones / K}[baseline]  # baseline = B @ source
    d = Delta * R - (Delta * p if baseline == "true_mean" else Delta * R @ B.T)  # E[c | r]
    N = eye - B if source == "advantage" else eye  # c - E[c | r] = N @ eps
    C = tau2 * N @ N.T  # Cov(c | r)
    gu = (d * ell).sum(1) / K
    gu2 = ((d * ell).sum(1) ** 2 + np.einsum("rj,jk,rk->r", ell, C, ell)) / K**2
    gz2 = sigma2 * ((d**2).sum(1) + np.trace(C)) / K**2
    s = prob @ gu
    return s, prob @ (gu2 + gz2) - s**2


NOISE = st.one_of(st.just(0.0), st.floats(1e-3, 2.0))


@settings(max_examples=20, deadline=None)
@given(K=st.integers(2, 7), p=st.floats(0.01, 0.99), sigma2=NOISE, tau2=NOISE,
       Delta=st.floats(0.2, 3.0), combo=st.sampled_from(COMBOS))
def test_m1_matches_exhaustive_enumeration(K, p, sigma2, tau2, Delta, combo):
    """Exact finite-K check of every baseline against a 2^K-outcome enumeration."""
    baseline, source = combo
    model = m1(K=K, sigma2=sigma2, tau2=tau2, Delta=Delta, baseline=baseline, baseline_of=source)
    s, v = _enumerate_m1(K, p, sigma2, tau2, Delta, baseline, source)
    np.testing.assert_allclose(model.s(p), s, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(model.v(p), v, rtol=1e-9, atol=1e-14)


def test_group_mean_versus_leave_one_out():
    """Advantage source: group-mean advantage = (K-1)/K x leave-one-out, same rho. Reward
    source: true only for tau2 = 0 (eps_j is not shrunk by (K-1)/K)."""
    p = np.linspace(0.01, 0.99, 41)
    f = 5 / 6
    a = m1(K=6, tau2=0.3, baseline="leave_one_out", baseline_of="advantage")
    b = m1(K=6, tau2=0.3, baseline="group_mean", baseline_of="advantage")
    np.testing.assert_allclose(b.s(p), f * a.s(p), rtol=1e-12)
    np.testing.assert_allclose(b.v(p), f**2 * a.v(p), rtol=1e-12)
    np.testing.assert_allclose(b.rho(p), a.rho(p), rtol=1e-12)
    a = m1(K=6, tau2=0.3, baseline="leave_one_out")
    b = m1(K=6, tau2=0.3, baseline="group_mean")
    assert np.all(b.rho(p) < a.rho(p))  # the unshrunk eps noise costs group mean SNR
    a0 = m1(K=6, tau2=0.0, baseline="leave_one_out")
    b0 = m1(K=6, tau2=0.0, baseline="group_mean")
    np.testing.assert_allclose(b0.rho(p), a0.rho(p), rtol=1e-12)


def test_random_baselines_approach_true_mean_as_K_grows():
    p = np.linspace(0.02, 0.98, 25)
    exact = m1(K=4000, tau2=0.2)
    for baseline in ("leave_one_out", "group_mean"):
        np.testing.assert_allclose(m1(K=4000, tau2=0.2, baseline=baseline).rho(p),
                                   exact.rho(p), rtol=2e-3)


# ------------------------------------------------------------------ boundary exponents
@settings(max_examples=10, deadline=None, phases=NO_SHRINK)
@given(sigma2=st.floats(0.01, 5.0), tau2=st.floats(0.01, 5.0), K=st.integers(2, 64),
       Delta=st.floats(0.1, 5.0), combo=st.sampled_from(COMBOS))
def test_m1_exponents_with_noise(sigma2, tau2, K, Delta, combo):
    """tau2 > 0, sigma2 > 0: allocation (2, 2), progress (1, 1); and the same
    model with tau2 = 0: allocation (1, 1), progress (0, 0) (docs/theory.md §4.1)."""
    baseline, source = combo
    model = m1(K=K, sigma2=sigma2, tau2=tau2, Delta=Delta, baseline=baseline, baseline_of=source)
    assert model.exponents() == (2.0, 2.0)
    assert model.exponents("progress") == (1.0, 1.0)
    assert model.implied_beta() == (2.0, 2.0)
    model = m1(K=K, sigma2=sigma2, tau2=0.0, Delta=Delta, baseline=baseline, baseline_of=source)
    assert model.exponents() == (1.0, 1.0)
    assert model.exponents("progress") == (0.0, 0.0)


@pytest.mark.parametrize("baseline,source", COMBOS)
def test_m1_exponents_sigma_zero(baseline, source):
    """sigma2 = 0 (Ours): (1, 1) allocation and (0, 0) progress, with or without tau2."""
    for tau2 in (0.0, 0.7):
        model = m1(K=5, sigma2=0.0, tau2=tau2, baseline=baseline, baseline_of=source)
        assert model.exponents() == (1.0, 1.0)
        assert model.exponents("progress") == (0.0, 0.0)


def test_m1_symbolic_exponents_in_all_parameters():
    """Exponents of the true-mean form with K, sigma2, tau2, Delta left symbolic."""
    s, v = m1_symbolic("true_mean")
    assert boundary_exponents(s, v) == (2, 2)
    assert boundary_exponents(s, v, "progress") == (1, 1)
    assert boundary_exponents(s, v.subs(TAU2, 0)) == (1, 1)
    assert boundary_exponents(s, v.subs(SIGMA2, 0)) == (1, 1)
    assert boundary_exponents(s, v.subs(TAU2, 0), "progress") == (0, 0)


def test_m1_degenerate_point_without_noise():
    """true_mean, sigma2 = tau2 = 0: every rollout gives Delta/4 u at p = 1/2, so v = 0 and rho
    has a pole; a random baseline removes it: v(1/2) = Delta^2 / (8 K (K-1))."""
    model = m1(K=8, sigma2=0.0, tau2=0.0)
    assert model.v(0.5) == 0.0 and model.s(0.5) == 0.25
    assert np.isinf(model.rho(0.5))
    g = model.sample_gradients(0.5, 100, np.random.default_rng(0), dim=3)
    np.testing.assert_allclose(g, np.tile([0.25, 0, 0], (100, 1)), atol=1e-15)
    loo = m1(K=8, sigma2=0.0, tau2=0.0, Delta=2.0, baseline="leave_one_out")
    assert loo.v(0.5) == pytest.approx(4.0 / (8 * 8 * 7), rel=1e-12)


@settings(max_examples=8, deadline=None, phases=NO_SHRINK)
@given(gamma=st.floats(0.0, 4.0).map(lambda g: round(g, 3)), nu=st.floats(0.001, 2.0),
       sigma2=st.floats(0.05, 3.0))
def test_m2_exponents(gamma, nu, sigma2):
    """M2 (Ours): allocation (2 gamma, 2) / (2 gamma, 0), progress (gamma, 1) / (gamma, -1)
    for nu > 0 / nu = 0; the implied Beta kernel clips the negative exponent to 0."""
    model = m2(gamma=gamma, noise_floor=nu, sigma2=sigma2)
    assert model.exponents() == pytest.approx((2 * gamma, 2.0), abs=1e-12)
    assert model.exponents("progress") == pytest.approx((gamma, 1.0), abs=1e-12)
    model = m2(gamma=gamma, noise_floor=0.0, sigma2=sigma2)
    assert model.exponents() == pytest.approx((2 * gamma, 0.0), abs=1e-12)
    assert model.exponents("progress") == pytest.approx((gamma, -1.0), abs=1e-12)
    assert model.implied_beta("progress") == pytest.approx((gamma, 0.0), abs=1e-12)


def test_m2_symbolic_exponents_in_gamma():
    s, v = m2_symbolic()
    assert boundary_exponents(s, v) == (2 * GAMMA, 2)
    assert boundary_exponents(s, v, "progress") == (GAMMA, 1)
    assert boundary_exponents(s, v.subs(NU, 0)) == (2 * GAMMA, 0)
    assert boundary_exponents(s, v.subs(NU, 0), "progress") == (GAMMA, -1)


def test_logarithmic_derivative_equals_the_defining_limit():
    """exponents() uses lim p d/dp log w (L'Hopital); check it against the defining limits
    lim log w / log p and lim log w / log(1-p) on a few models."""
    for model in (m1(tau2=0.5, sigma2=0.7), m1(baseline="leave_one_out"),
                  m2(gamma=1.5), m2(gamma=0.37, noise_floor=0.0)):
        for criterion in ("allocation", "progress"):
            w = model.optimal_weight_expr(criterion)
            a = sp.limit(sp.log(w) / sp.log(P), P, 0, "+")
            b = sp.limit(sp.log(w) / sp.log(1 - P), P, 1, "-")
            assert model.exponents_exact(criterion) == (a, b)


def test_exponents_describe_the_numeric_rho():
    """rho(p) / (p^a (1-p)^b) tends to a finite positive constant at both ends."""
    for model in (m1(tau2=0.5), m1(baseline="group_mean"), m2(gamma=1.3)):
        a, b = model.exponents()
        for eps in (1e-4, 1e-6):
            lo = model.rho(eps) / eps**a
            hi = model.rho(1 - eps) / eps**b
            e2 = eps / 10
            lo2, hi2 = model.rho(e2) / e2**a, model.rho(1 - e2) / e2**b
            assert 0 < lo < np.inf and lo2 == pytest.approx(lo, rel=1e-3)
            assert 0 < hi < np.inf and hi2 == pytest.approx(hi, rel=1e-3)


# ------------------------------------------------------------------ numeric twins and text
def test_numeric_twins_are_vectorised_and_consistent():
    p = np.linspace(0.0, 1.0, 12).reshape(3, 4)
    for model in (m1(tau2=0.5), m1(baseline="leave_one_out"), m2()):
        s, v, rho = model.s(p), model.v(p), model.rho(p)
        assert s.shape == v.shape == rho.shape == p.shape
        inner = (p > 0) & (p < 1)
        np.testing.assert_allclose(rho[inner], s[inner] ** 2 / v[inner], rtol=1e-12)
        np.testing.assert_allclose(model.optimal_weight(p[inner], "progress"),
                                   s[inner] / v[inner], rtol=1e-12)
        assert np.all(np.isfinite(rho)) and np.all(rho >= 0)
    assert m1().rho(0.0) == 0.0 and m1().rho(1.0) == 0.0  # 0/0 cancelled symbolically
    assert m1().s(0.3).shape == ()


def test_rho_text_is_the_closed_form():
    q = sp.Symbol("q", positive=True)
    for model in (m1(), m1(tau2=0.5, baseline="group_mean"), m2(gamma=1.5)):
        expr_text = model.rho_text().split(", q =")[0]
        expr = sp.sympify(expr_text, locals={"p": P, "q": q}).subs(q, Q)
        assert _zero(expr - model.rho_expr)
    assert m1().rho_text() == "4*q/(1 - 2*q), q = p*(1 - p)"
    assert "tau2*(q + sigma2)" in m1().rho_text(symbolic=True)
    assert "gamma" in m2().rho_text(symbolic=True)


# ------------------------------------------------------------------ Monte Carlo agreement
def _se_trace_cov(g: np.ndarray) -> float:
    """Standard error of V = tr of the sample covariance (ddof=1) of the n rows of g.

    V is a U-statistic with kernel ||x - y||^2 / 2, whose exact variance is
    Var||a||^2 / n + 2 tr(Sigma^2) / (n (n-1)),  a = g - E g;  plug-in estimates of both."""
    n = g.shape[0]
    dev = g - g.mean(0)
    sq = (dev**2).sum(1)
    cov = dev.T @ dev / (n - 1)
    return float(np.sqrt(sq.var(ddof=1) / n + 2 * np.sum(cov * cov) / (n * (n - 1))))


def _mc_check(model, p: float, n: int = 40000, seed: int = 0, dim: int = 4, z: float = 4.0):
    g = model.sample_gradients(p, n, np.random.default_rng(seed), dim=dim)
    assert g.shape == (n, dim)
    mean = g.mean(0)
    se_mean = g.std(0, ddof=1) / np.sqrt(n)
    trace = float(g.var(0, ddof=1).sum())
    s, v = float(model.s(p)), float(model.v(p))
    assert abs(mean[0] - s) < z * se_mean[0], ("s", p, mean[0], s, se_mean[0])
    assert abs(trace - v) < z * _se_trace_cov(g), ("v", p, trace, v, _se_trace_cov(g))
    assert np.all(np.abs(mean[1:]) < z * se_mean[1:])  # off-skill components have mean 0


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.95])
@pytest.mark.parametrize("baseline,source", COMBOS)
def test_m1_sampler_matches_closed_form(baseline, source, p):
    # small K so that the finite-K baseline terms are large; sigma2 small so the reward terms
    # dominate v
    model = m1(K=4, sigma2=0.3, tau2=0.5, Delta=1.5, baseline=baseline, baseline_of=source)
    _mc_check(model, p, seed=1000 * COMBOS.index((baseline, source)) + int(100 * p))


@pytest.mark.parametrize("p", [0.05, 0.5, 0.95])
@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_m2_sampler_matches_closed_form(gamma, p):
    _mc_check(m2(gamma=gamma, noise_floor=0.05, kappa=2.0, sigma2=0.7), p, seed=int(100 * p))


def test_sampler_is_reproducible_and_dim_one_works():
    model = m1(tau2=0.5, baseline="leave_one_out")
    a = model.sample_gradients(0.4, 50, np.random.default_rng(3), dim=1)
    b = model.sample_gradients(0.4, 50, np.random.default_rng(3), dim=1)
    assert a.shape == (50, 1) and np.array_equal(a, b)


# ------------------------------------------------------------------ errors and registry
def test_registry_and_bad_parameters():
    assert set(MODELS) == {"m1", "m2"} and MODELS["m1"] is m1 and MODELS["m2"] is m2
    assert set(BASELINES) == {"true_mean", "leave_one_out", "group_mean"}
    assert set(BASELINE_SOURCES) == {"reward", "advantage"}
    for kw in [dict(K=0), dict(K=2.5), dict(K=10**7), dict(sigma2=-1), dict(tau2=float("nan")),
               dict(sigma2=1e-12), dict(tau2=1e9), dict(Delta="1"),
               dict(Delta=0.0), dict(baseline="median"), dict(baseline_of="logits"),
               dict(K=1, baseline="leave_one_out"), dict(K=1, baseline="group_mean")]:
        with pytest.raises(InputError):
            m1(**kw)
    for kw in [dict(gamma=-1), dict(gamma=51), dict(kappa=0), dict(noise_floor=-0.1),
               dict(sigma2=0.0, noise_floor=0.0)]:
        with pytest.raises(InputError):
            m2(**kw)
    model = m1()
    with pytest.raises(InputError):
        model.exponents("snr")
    rng = np.random.default_rng(0)
    for args in [(1.5, 10, rng), (0.5, 0, rng), (0.5, 10, 0)]:
        with pytest.raises(InputError):
            model.sample_gradients(*args)
    with pytest.raises(InputError):
        model.sample_gradients(0.5, 10, rng, dim=0)
