"""Efficiency lost to estimating the pass rate from K rollouts (docs/theory.md §5; ours)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from paced_theory.errors import InputError
from paced_theory.estimation import (
    best_K,
    efficiency_table,
    estimator_efficiency,
    estimator_moments,
    prove_unbiased,
    symbolic_expectation,
)
from paced_theory.kernels import beta_kernel, estimate_weight


def gauss_legendre_uniform(n: int = 64) -> SimpleNamespace:
    """Uniform measure on (0, 1) by n-point Gauss-Legendre: exact for polynomials of degree
    < 2n, so every eta below with alpha, beta integer and K small is computed exactly."""
    x, wts = np.polynomial.legendre.leggauss(n)
    return SimpleNamespace(p=(x + 1) / 2, mass=wts / 2)


GL = gauss_legendre_uniform()


def closed_form_unbiased(K: int) -> float:
    """alpha = beta = 1, uniform mu, rho = w: c is uniform on {0..K} and
    eta = E w^2 / E w_hat^2 = (1/30) / ((K^2+1) / (30 K (K-1))) = K (K-1) / (K^2 + 1)."""
    return K * (K - 1) / (K**2 + 1)


# ----------------------------------------------------------------------------- exact values
@pytest.mark.parametrize("K", [2, 3, 4, 8, 16, 40])
def test_unbiased_efficiency_closed_form(K):
    assert estimator_efficiency(K, 1, 1, "unbiased", mu=GL) == pytest.approx(
        closed_form_unbiased(K), rel=1e-12
    )
    # the default mu (uniform on a grid) agrees to quadrature accuracy
    assert estimator_efficiency(K, 1, 1, "unbiased") == pytest.approx(
        closed_form_unbiased(K), rel=1e-5
    )


@pytest.mark.parametrize("K", [2, 5, 8, 13])
def test_plugin_equals_unbiased_at_alpha_beta_one_but_not_at_two(K):
    # plug-in c(K-c)/K^2 = (K-1)/K * unbiased c(K-c)/(K(K-1)), and eta is scale-invariant
    e_plug = estimator_efficiency(K, 1, 1, "plugin", mu=GL)
    e_unb = estimator_efficiency(K, 1, 1, "unbiased", mu=GL)
    assert e_plug == pytest.approx(e_unb, rel=1e-12)
    if K >= 4:
        assert estimator_efficiency(K, 2, 2, "plugin", mu=GL) != pytest.approx(
            estimator_efficiency(K, 2, 2, "unbiased", mu=GL), rel=1e-3
        )


def test_moments_of_the_estimators():
    p = np.linspace(0, 1, 9)
    K = 8
    m = estimator_moments(K, p, 2, 1, "unbiased")
    np.testing.assert_allclose(m["mean"], p**2 * (1 - p), atol=1e-15)
    assert np.all(m["second"] >= m["mean"] ** 2 - 1e-15)  # Jensen
    m = estimator_moments(K, p, 1, 1, "plugin")
    np.testing.assert_allclose(m["mean"], (1 - 1 / K) * p * (1 - p), atol=1e-15)
    # plug-in drops c in {0, K}: P(kept | p) = 1 - p^K - (1-p)^K
    np.testing.assert_allclose(m["p_nonzero"], 1 - p**K - (1 - p) ** K, atol=1e-15)
    np.testing.assert_allclose(estimator_moments(K, p, 1, 1, "posterior")["p_nonzero"], 1.0)


# ----------------------------------------------------------------------------- bounds, limits
@settings(deadline=None, max_examples=60)
@given(
    K=st.integers(min_value=1, max_value=40),
    alpha=st.integers(0, 3),
    beta=st.integers(0, 3),
    estimator=st.sampled_from(["plugin", "unbiased", "posterior"]),
    rho_exps=st.tuples(st.floats(0.1, 4.0), st.floats(0.1, 4.0)),
    seed=st.integers(0, 2**32 - 1),
)
def test_efficiency_is_at_most_one(K, alpha, beta, estimator, rho_exps, seed):
    if estimator == "unbiased" and alpha + beta > K:
        with pytest.raises(InputError):
            estimator_efficiency(K, alpha, beta, estimator)
        return
    rng = np.random.default_rng(seed)
    mu = SimpleNamespace(p=rng.uniform(0, 1, 50), mass=rng.dirichlet(np.ones(50)))
    # default rho (the true kernel): both absolute and relative efficiency are in [0, 1]
    e = estimator_efficiency(K, alpha, beta, estimator, mu=mu)
    assert -1e-12 <= e <= 1 + 1e-12
    rel = estimator_efficiency(K, alpha, beta, estimator, mu=mu, relative=True)
    assert rel == pytest.approx(e, rel=1e-9)  # eta(w_true) = 1 when rho = w
    # any other SNR: absolute eta still <= 1 (Cauchy-Schwarz + Jensen)
    rho = beta_kernel(mu.p, *rho_exps)
    e_other = estimator_efficiency(K, alpha, beta, estimator, mu=mu, rho=rho)
    assert -1e-12 <= e_other <= 1 + 1e-12


def test_unbiased_efficiency_increases_to_one():
    Ks = list(range(2, 41))
    effs = [estimator_efficiency(K, 1, 1, "unbiased", mu=GL) for K in Ks]
    assert np.all(np.diff(effs) > 0)
    assert effs[0] < 0.5 and estimator_efficiency(400, 1, 1, "unbiased", mu=GL) > 0.99
    effs22 = [estimator_efficiency(K, 2, 2, "unbiased", mu=GL) for K in range(4, 41)]
    assert np.all(np.diff(effs22) > 0) and effs22[-1] > 0.9


def test_plugin_below_one_at_small_K_and_improving():
    for alpha, beta in [(1, 1), (2, 2), (2, 1), (0.5, 1.5)]:
        small = [estimator_efficiency(K, alpha, beta, "plugin", mu=GL) for K in (2, 4, 8)]
        assert max(small) < 0.9
        assert estimator_efficiency(200, alpha, beta, "plugin", mu=GL) > max(small)
    # posterior: better than plug-in at tiny K (shrinks to ~uniform), also -> 1
    assert estimator_efficiency(2, 1, 1, "posterior", mu=GL) > 0.8
    assert estimator_efficiency(200, 1, 1, "posterior", mu=GL) > 0.99


def test_relative_efficiency_against_a_different_snr():
    rho = beta_kernel(GL.p, 2.0, 2.0)
    w = beta_kernel(GL.p, 1, 1)
    eta_true = (GL.mass @ (w * rho)) ** 2 / ((GL.mass @ w**2) * (GL.mass @ rho**2))
    absolute = estimator_efficiency(8, 1, 1, "unbiased", mu=GL, rho=rho)
    relative = estimator_efficiency(8, 1, 1, "unbiased", mu=GL, rho=rho, relative=True)
    assert relative == pytest.approx(absolute / eta_true, rel=1e-12)
    # rho given as a callable or as values at mu.p: same result
    assert estimator_efficiency(
        8, 1, 1, "unbiased", mu=GL, rho=lambda p: beta_kernel(p, 2.0, 2.0)
    ) == pytest.approx(absolute, rel=1e-14)


def test_true_kernel_efficiency_agrees_with_efficiency_module():
    eff = pytest.importorskip("paced_theory.efficiency")
    mu = eff.PassRateMeasure.uniform()
    rho = beta_kernel(mu.p, 2.0, 1.0)
    row = efficiency_table([8], 1, 1, ["unbiased"], mu=mu, rho=rho)[0]
    expected = eff.efficiency(beta_kernel(mu.p, 1, 1), mu, rho=rho, criterion="allocation")
    assert row["true_efficiency"] == pytest.approx(expected, rel=1e-9)


# ----------------------------------------------------------------------------- Monte Carlo
@pytest.mark.parametrize(
    "K, alpha, beta, estimator",
    [(4, 1, 1, "plugin"), (8, 2, 1, "unbiased"), (6, 1.5, 0.5, "posterior"), (3, 2, 2, "plugin")],
)
def test_efficiency_matches_monte_carlo(K, alpha, beta, estimator):
    rng = np.random.default_rng(12345)
    mu = gauss_legendre_uniform(40)
    rho_fn = lambda p: beta_kernel(p, 1.0, 2.0)  # noqa: E731  (a true SNR unlike w)
    n = 200_000
    idx = rng.choice(mu.p.size, size=n, p=mu.mass)
    p = mu.p[idx]
    c = rng.binomial(K, p)
    w_hat = estimate_weight(c, K, alpha, beta, estimator)
    x, y = w_hat * rho_fn(p), w_hat**2
    mx, my = x.mean(), y.mean()
    e_rho2 = mu.mass @ rho_fn(mu.p) ** 2
    eta_mc = mx**2 / (my * e_rho2)
    # delta-method standard error of mx^2 / my
    grad = np.array([2 * mx / my, -(mx**2) / my**2]) / e_rho2
    se = np.sqrt(grad @ np.cov(np.vstack([x, y])) @ grad / n)
    eta = estimator_efficiency(K, alpha, beta, estimator, mu=mu, rho=rho_fn)
    assert abs(eta_mc - eta) < 5 * se, (eta_mc, eta, se)
    assert se < 0.01  # the check is sharp enough to mean something


# ----------------------------------------------------------------------------- best K
def test_best_K_is_an_argmax_of_the_curve_and_matches_the_cost_model():
    R, cr, cu = 4.0, 0.3, 1.0
    for estimator in ("plugin", "unbiased", "posterior"):
        out = best_K(cr, cu, R, 1, 1, estimator, K_max=32, mu=GL)
        curve = np.array(out["progress_per_compute"])
        i = out["Ks"].index(out["K"])
        assert curve[i] >= curve.max() * (1 - 1e-12)
        assert out["progress"] == curve[i]
        for K, eff, keep, prog in zip(out["Ks"], out["efficiency"], out["p_nonzero"], curve):
            assert eff == pytest.approx(estimator_efficiency(K, 1, 1, estimator, mu=GL))
            assert prog == pytest.approx(R * eff / (K * cr + R * cu * keep), rel=1e-12)
            if estimator == "plugin":  # c uniform on {0..K} under uniform mu
                assert keep == pytest.approx((K - 1) / (K + 1), rel=1e-12)
            if estimator == "posterior":
                assert keep == pytest.approx(1.0)


def test_best_K_breaks_exact_ties_towards_fewer_rollouts():
    # plug-in, alpha = beta = 1, uniform mu: K = 2 (eta 2/5, keep 1/3) and K = 3 (eta 3/5,
    # keep 1/2) have proportional value and cost, so they tie at every cost ratio
    for cr in (0.01, 0.1, 1.0, 3.0):
        out = best_K(cr, 1.0, 4, 1, 1, "plugin", K_max=16, mu=GL)
        assert out["K"] == 2
        assert out["progress_per_compute"][1] == pytest.approx(out["progress_per_compute"][2])


def test_best_K_shrinks_as_rollouts_get_dearer():
    costs = [0.0, 1e-3, 1e-2, 0.1, 1.0, 10.0]
    Ks = [best_K(cr, 1.0, 4, 1, 1, "posterior", K_max=64)["K"] for cr in costs]
    assert all(a >= b for a, b in zip(Ks, Ks[1:])), Ks
    assert Ks[0] == 64  # free rollouts: eta increases with K, so take the most
    assert Ks[-1] < Ks[1]
    # more updates per refresh amortise the rollouts: K does not shrink
    few = best_K(0.01, 1.0, 1, 1, 1, "posterior")["K"]
    many = best_K(0.01, 1.0, 16, 1, 1, "posterior")["K"]
    assert many >= few and many > few


def test_best_K_unbiased_starts_at_alpha_plus_beta():
    out = best_K(0.1, 1.0, 4, 2, 2, "unbiased", K_max=20)
    assert out["Ks"][0] == 4 and out["K"] >= 4


# ----------------------------------------------------------------------------- table
def test_efficiency_table_shape_and_infeasible_cells():
    rows = efficiency_table([2, 4, 8], 2, 2, ["plugin", "unbiased", "posterior"], mu=GL)
    assert len(rows) == 9
    cell = {(r["K"], r["estimator"]): r for r in rows}
    assert (
        cell[(2, "unbiased")]["efficiency"] is None
        and "alpha + beta" in cell[(2, "unbiased")]["note"]
    )
    for r in rows:
        if r["efficiency"] is not None:
            assert r["relative_efficiency"] == pytest.approx(r["efficiency"], rel=1e-9)
            assert set(r) >= {"K", "estimator", "efficiency", "relative_efficiency", "p_nonzero"}
    assert cell[(8, "unbiased")]["efficiency"] == pytest.approx(
        estimator_efficiency(8, 2, 2, "unbiased", mu=GL), rel=1e-14
    )


# ----------------------------------------------------------------------------- symbolic
@pytest.mark.parametrize("K, alpha, beta", [(2, 1, 1), (5, 2, 1), (8, 1, 3), (6, 0, 2), (4, 4, 0)])
def test_symbolic_unbiasedness(K, alpha, beta):
    assert prove_unbiased(K, alpha, beta)


def test_symbolic_expectations_of_the_other_estimators():
    p = sp.Symbol("p")
    # the plug-in is biased: E w(c/K) = (1 - 1/K) p (1-p), so the same check must fail for it
    e_plug = symbolic_expectation(8, 1, 1, "plugin")
    assert sp.expand(e_plug - sp.Rational(7, 8) * p * (1 - p)) == 0
    assert sp.expand(e_plug - p * (1 - p)) != 0
    # symbolic posterior agrees with the numeric estimator's exact mean
    e_post = symbolic_expectation(6, 2, 1, "posterior", prior=(2, 3))
    num = estimator_moments(6, np.array([0.37]), 2, 1, "posterior", prior=(2.0, 3.0))["mean"]
    assert float(e_post.subs(p, sp.Rational(37, 100))) == pytest.approx(float(num[0]), rel=1e-12)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "call, arg",
    [
        (lambda: estimator_efficiency(0), "'K'"),
        (lambda: estimator_efficiency(2.5), "'K'"),
        (lambda: estimator_efficiency(8, estimator="mle"), "mle"),
        (lambda: estimator_efficiency(8, alpha=-1), "alpha"),
        (lambda: estimator_efficiency(1, 1, 1, "unbiased"), "alpha \\+ beta <= K"),
        (lambda: estimator_efficiency(8, mu=object()), "'mu'"),
        (lambda: estimator_efficiency(8, mu=SimpleNamespace(p=[0.5, 2.0], mass=[1, 1])), "'mu'"),
        (lambda: estimator_efficiency(8, mu=SimpleNamespace(p=[0.5], mass=[-1.0])), "'mu'"),
        (lambda: estimator_efficiency(8, mu=GL, rho=np.ones(3)), "'rho'"),
        (lambda: estimator_efficiency(8, mu=GL, rho=-np.ones(GL.p.size)), "'rho'"),
        (lambda: estimator_efficiency(8, mu=GL, rho=np.zeros(GL.p.size)), "rho"),
        (lambda: best_K(-1.0, 1.0, 4), "cost_rollout"),
        (lambda: best_K(1.0, -1.0, 4), "cost_update"),
        (lambda: best_K(1.0, 1.0, 0), "updates_per_refresh"),
        (lambda: best_K(0.0, 0.0, 4), "cost_rollout"),
        (lambda: best_K(1.0, 1.0, 4, 2, 2, "unbiased", K_max=3), "K_max"),
        (lambda: best_K(1.0, 1.0, 4, 1.5, 1, "unbiased"), "alpha"),
        (lambda: efficiency_table([0], 1, 1, ["plugin"]), "'K'"),
        (lambda: efficiency_table([4], 1, 1, ["nope"]), "nope"),
        (lambda: symbolic_expectation(4, 0.5, 1), "alpha"),
        (lambda: symbolic_expectation(2, 2, 1), "alpha \\+ beta <= K"),
    ],
)
def test_bad_inputs_raise_input_error(call, arg):
    with pytest.raises(InputError, match=arg):
        call()
