"""Gradient models: sympy identities, boundary exponents, Monte Carlo agreement.

The exponent properties are the paper's "boundary collapse"; the finite-K baselines and M2
are our derivations (see paced_theory/models.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from paced_theory.errors import InputError
from paced_theory.models import P, m1, m1_symbolic, m2

K_, S2, T2, D = sp.symbols("K sigma2 tau2 Delta", positive=True)


def test_m1_true_mean_variance_identity():
    """v = [Delta^2 q((1-2p)^2 + sigma2) + tau2 (q + sigma2)] / K (THEORY.md, tau2 = 0 case)."""
    s, v = m1_symbolic("true_mean")
    q = P * (1 - P)
    assert sp.simplify(s - D * q) == 0
    expected = (D**2 * q * ((1 - 2 * P) ** 2 + S2) + T2 * (q + S2)) / K_
    assert sp.simplify(v - expected) == 0
    rho = sp.simplify((s**2 / v).subs(T2, 0))
    assert sp.simplify(rho - K_ * q / ((1 - 2 * P) ** 2 + S2)) == 0


def test_m1_loo_variance_matches_exact_enumeration():
    """The symbolic-K leave-one-out (s, v) equal a brute-force sum over all 2^K outcomes.

    Advantage noise eps is integrated analytically given the rewards:
    E[adv_j adv_k | r] = (K/(K-1))^2 [Delta^2 (l_j - lbar)(l_k - lbar) + tau2 (1{j=k} - 1/K)].
    """
    import itertools

    s, v = m1_symbolic("leave_one_out")
    K, p = 4, sp.Rational(3, 10)
    sigma2, tau2, Delta = sp.Rational(1, 2), sp.Rational(2, 3), sp.Integer(2)
    f = sp.Rational(K, K - 1)
    mean_u = second = 0
    for rs in itertools.product([0, 1], repeat=K):
        prob = sp.Mul(*[p if r else 1 - p for r in rs])
        ls = [r - p for r in rs]
        lbar = sum(ls) / K
        m = [f * Delta * (lj - lbar) for lj in ls]  # E[adv_j | r]

        def cov(j, k, ls=ls, lbar=lbar):  # E[adv_j adv_k | r]
            return f**2 * (Delta**2 * (ls[j] - lbar) * (ls[k] - lbar)
                           + tau2 * ((1 if j == k else 0) - sp.Rational(1, K)))

        gu = sum(mj * lj for mj, lj in zip(m, ls)) / K
        gu2 = sum(cov(j, k) * ls[j] * ls[k] for j in range(K) for k in range(K)) / K**2
        gz2 = sigma2 * sum(cov(j, j) for j in range(K)) / K**2
        mean_u += prob * gu
        second += prob * (gu2 + gz2)
    subs = {K_: K, P: p, S2: sigma2, T2: tau2, D: Delta}
    assert sp.simplify(s.subs(subs) - mean_u) == 0
    assert sp.simplify(v.subs(subs) - (second - mean_u**2)) == 0


def test_group_mean_has_the_same_snr_as_leave_one_out():
    a = m1(K=6, tau2=0.3, baseline="leave_one_out")
    b = m1(K=6, tau2=0.3, baseline="group_mean")
    p = np.linspace(0.01, 0.99, 50)
    np.testing.assert_allclose(a.rho(p), b.rho(p), rtol=1e-12)
    np.testing.assert_allclose(b.s(p), a.s(p) * 5 / 6, rtol=1e-12)


@settings(max_examples=8, deadline=None)
@given(st.sampled_from([0.25, 0.5, 1.0, 2.0]), st.integers(2, 16),
       st.sampled_from([0.5, 1.0, 3.0]), st.sampled_from(["true_mean", "leave_one_out"]))
def test_m1_exponents(sigma2, K, Delta, baseline):
    assert m1(K=K, sigma2=sigma2, tau2=0.0, Delta=Delta, baseline=baseline).exponents() == (1, 1)
    model = m1(K=K, sigma2=sigma2, tau2=0.5, Delta=Delta, baseline=baseline)
    assert model.exponents() == (2, 2)
    assert model.exponents("progress") == (1, 1)


def test_m1_sigma_zero_cases():
    assert m1(sigma2=0.0, tau2=0.5).exponents() == (1, 1)
    # sigma2 = tau2 = 0: a pole at p = 1/2 (v vanishes there), exponents still (1, 1)
    model = m1(sigma2=0.0, tau2=0.0)
    assert model.exponents() == (1, 1)
    assert model.v(np.array([0.5]))[0] == 0.0


@settings(max_examples=6, deadline=None)
@given(st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0]))
def test_m2_exponents(gamma):
    assert m2(gamma=gamma, noise_floor=0.1).exponents() == (2 * gamma, 2)
    assert m2(gamma=gamma, noise_floor=0.0).exponents() == (2 * gamma, 0)
    assert m2(gamma=gamma, noise_floor=0.1).exponents("progress") == (gamma, 1)


def _mc_check(model, p, n=20000, seed=0):
    rng = np.random.default_rng(seed)
    g = model.sample_gradients(p, n, rng, dim=4)
    gu = g[:, 0]
    se_s = gu.std(ddof=1) / np.sqrt(n)
    dev = g - g.mean(0)
    sq = (dev**2).sum(1) * n / (n - 1)
    se_v = sq.std(ddof=1) / np.sqrt(n)
    s_true, v_true = float(model.s(p)), float(model.v(p))
    assert abs(gu.mean() - s_true) < 4.5 * se_s, (p, gu.mean(), s_true, se_s)
    assert abs(sq.mean() - v_true) < 4.5 * se_v, (p, sq.mean(), v_true, se_v)
    # the off-skill components have zero mean
    assert np.all(np.abs(g[:, 1:].mean(0)) < 4.5 * g[:, 1:].std(0) / np.sqrt(n))


@pytest.mark.parametrize("baseline", ["true_mean", "leave_one_out", "group_mean"])
@pytest.mark.parametrize("p", [0.05, 0.3, 0.95])
def test_m1_monte_carlo_matches_closed_form(baseline, p):
    _mc_check(m1(K=8, sigma2=1.0, tau2=0.5, Delta=1.5, baseline=baseline), p)


@pytest.mark.parametrize("p", [0.05, 0.5, 0.95])
def test_m2_monte_carlo_matches_closed_form(p):
    _mc_check(m2(gamma=1.5, noise_floor=0.2, kappa=2.0, sigma2=0.7), p)


def test_bad_parameters():
    for kw in [dict(K=0), dict(sigma2=-1), dict(tau2=-0.1), dict(baseline="median"),
               dict(K=1, baseline="leave_one_out")]:
        with pytest.raises(InputError):
            m1(**kw)
    with pytest.raises(InputError):
        m2(gamma=-1)
