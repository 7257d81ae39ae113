"""docs/theory.md §10: the value of a problem (descent lemma, value criterion, RL reduction)."""

import numpy as np
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from paced_theory.cellsim import weighting_value


def test_descent_lemma_is_exact_in_expectation_for_a_quadratic():
    """L_val = (L/2)||x - x*||^2: E[L_val(x) - L_val(x - eta g)] = eta <gbar, grad> -
    (eta^2 L / 2) E||g||^2 exactly; Monte Carlo within 5 standard errors."""
    rng = np.random.default_rng(0)
    L, eta, dim, n = 2.0, 0.1, 5, 200_000
    x, xs = rng.normal(size=dim), rng.normal(size=dim)
    grad = L * (x - xs)
    gbar = rng.normal(size=dim)
    g = gbar + rng.normal(scale=0.7, size=(n, dim))

    def loss(z):
        return 0.5 * L * np.sum((z - xs) ** 2, axis=-1)

    dec = loss(x) - loss(x - eta * g)
    want = eta * gbar @ grad - eta**2 * L / 2 * (gbar @ gbar + dim * 0.49)
    assert abs(dec.mean() - want) < 5 * dec.std() / np.sqrt(n)


def test_best_step_size_gives_the_value_formula():
    eta, A, M, L, B = sp.symbols("eta A M L B", positive=True)
    V = eta * A - eta**2 * L * M / (2 * B)
    best = sp.solve(sp.diff(V, eta), eta)[0]
    assert sp.simplify(V.subs(eta, best) - B * A**2 / (2 * L * M)) == 0


pos = st.floats(0.01, 10)


@settings(max_examples=60, deadline=None)
@given(a=arrays(float, 6, elements=pos), m=arrays(float, 6, elements=pos),
       mu=arrays(float, 6, elements=pos), w=arrays(float, 6, elements=st.floats(0, 10)))
def test_value_criterion_weight_is_optimal(a, m, mu, w):
    """w = a/m attains B E[a^2/m]/(2L) and no weight does better (Cauchy-Schwarz)."""
    mu = mu / mu.sum()
    best = weighting_value(a / m, a, m, mu, B=4, L=2.0)
    assert np.isclose(best, 4 * np.sum(mu * a**2 / m) / 4.0, rtol=1e-9)
    assert weighting_value(w, a, m, mu, B=4, L=2.0) <= best * (1 + 1e-9)


def test_rl_mean_gradient_is_a_multiple_of_the_pass_rate_gradient():
    """Binary reward, logit l: E[(r_j - rbar)(r_j - p)] = (K-1)/K p(1-p) = (K-1)/K dp/dl, the
    reduction of §10.2 (exact for every K, by expanding over two Bernoulli draws)."""
    l, K = sp.symbols("l K", positive=True)
    p = 1 / (1 + sp.exp(-l))
    q = p * (1 - p)
    # E[(r_j - rbar)(r_j - p)] = E[(r_j - p)^2] (1 - 1/K) (cross terms have mean 0)
    expect = q * (1 - 1 / K)
    assert sp.simplify(expect - (K - 1) / K * sp.diff(p, l)) == 0
