"""Properties of the weighting kernels and of the weight estimators from K rollouts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad

from paced_theory.errors import InputError
from paced_theory.kernels import (
    KERNELS,
    beta_kernel,
    beta_kernel_peak,
    estimate_weight,
    gaussian_bump,
    hard_band,
    kumaraswamy_kernel,
    log_beta_kernel,
    make_kernel,
    plugin_weight,
    posterior_beta_weight,
    sqrt_variance_kernel,
    unbiased_beta_weight,
    uniform_kernel,
)

exponent = st.floats(min_value=0.05, max_value=10.0, allow_nan=False)
prob = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def _binom_pmf(K: int, p: float) -> np.ndarray:
    """Bin(c; K, p) for c = 0..K with exact binomial coefficients (numpy: 0.0**0 == 1)."""
    c = np.arange(K + 1)
    comb = np.array([math.comb(K, int(j)) for j in c], dtype=float)
    return comb * p**c * (1.0 - p) ** (K - c)


# ----------------------------------------------------------------------------- Beta kernel
@settings(deadline=None, max_examples=60)
@given(alpha=exponent, beta=exponent)
def test_beta_kernel_peak_is_the_argmax(alpha, beta):
    grid = np.linspace(0.0, 1.0, 100_001)
    peak = beta_kernel_peak(alpha, beta)
    assert peak == pytest.approx(alpha / (alpha + beta), abs=1e-15)
    # argmax of the log kernel on the grid is within one grid step of the analytic peak
    assert abs(grid[np.argmax(log_beta_kernel(grid, alpha, beta))] - peak) <= 1.0001e-5


@settings(deadline=None, max_examples=60)
@given(p=st.floats(min_value=1e-6, max_value=1 - 1e-6), alpha=exponent, beta=exponent)
def test_beta_kernel_matches_power_form_in_the_interior(p, alpha, beta):
    expected = p**alpha * (1 - p) ** beta
    assert float(beta_kernel(p, alpha, beta)) == pytest.approx(expected, rel=1e-11, abs=1e-300)


@settings(deadline=None, max_examples=60)
@given(alpha=exponent, beta=exponent, e=st.integers(min_value=-1074, max_value=-60))
def test_log_beta_kernel_is_finite_and_exact_near_the_boundaries(alpha, beta, e):
    tiny = math.ldexp(1.0, e)  # 2**e, down to the smallest subnormal double
    lo = float(log_beta_kernel(tiny, alpha, beta))
    assert math.isfinite(lo)
    # |beta*log1p(-tiny)| ~ beta*tiny <= 1e-17 |alpha*log(tiny)|: log kernel = alpha*log(tiny)
    assert lo == pytest.approx(alpha * math.log(tiny), rel=1e-13)
    # the point nearest 1 below it: 1 - p = 2**-53 exactly
    near_one = 1.0 - 2.0**-53
    hi = float(log_beta_kernel(near_one, alpha, beta))
    assert math.isfinite(hi)
    assert hi == pytest.approx(beta * math.log(2.0**-53) + alpha * math.log(near_one), rel=1e-13)


@pytest.mark.parametrize("p", [1e-20, 1e-10, 3e-9, 2.0**-30])
def test_log_beta_kernel_uses_log1p_near_zero(p):
    """beta*log1p(-p), not beta*log(1 - p): 1 - p rounds away the digits of a small p
    (log(1 - 1e-20) = 0 exactly, log1p(-1e-20) = -1e-20), so the test has zero absolute
    tolerance and a relative one of a few ulps."""
    exact = -p - p * p / 2 - p**3 / 3  # the series of log(1 - p); the rest is < 1e-27 p
    assert log_beta_kernel(p, 0.0, 1.0) == pytest.approx(exact, rel=4e-16, abs=0)
    assert log_beta_kernel(p, 0.0, 2.5) == pytest.approx(2.5 * exact, rel=4e-16, abs=0)
    # with alpha > 0 the log(p) term dominates; the (1-p) factor still shows at 1e-20 relative
    both = log_beta_kernel(p, 1.0, 1.0)
    assert both == pytest.approx(math.log(p) + exact, rel=4e-16, abs=0)


def test_log_beta_kernel_at_1e_300():
    val = log_beta_kernel(np.array([1e-300]), 3.0, 2.0)
    assert np.isfinite(val).all()
    np.testing.assert_allclose(val, 3.0 * np.log(1e-300), rtol=1e-14)
    # the naive power form underflows to 0 (log -inf): the log-space form must not
    with np.errstate(divide="ignore"):
        assert np.log(1e-300**3.0 * (1 - 1e-300) ** 2.0) == -np.inf


@settings(deadline=None, max_examples=40)
@given(alpha=exponent, beta=exponent)
def test_beta_kernel_vanishes_at_the_boundaries(alpha, beta):
    w = beta_kernel(np.array([0.0, 1.0]), alpha, beta)
    np.testing.assert_array_equal(w, [0.0, 0.0])
    lw = log_beta_kernel(np.array([0.0, 1.0]), alpha, beta)
    assert np.all(lw == -np.inf)


def test_zero_exponent_convention():
    # 0**0 == 1: alpha = 0 gives w(0) = 1, beta = 0 gives w(1) = 1
    np.testing.assert_array_equal(beta_kernel(np.array([0.0, 1.0]), 0.0, 2.0), [1.0, 0.0])
    np.testing.assert_array_equal(beta_kernel(np.array([0.0, 1.0]), 2.0, 0.0), [0.0, 1.0])
    np.testing.assert_array_equal(beta_kernel(np.array([0.0, 0.3, 1.0]), 0.0, 0.0), [1, 1, 1])


def test_default_kernel_is_p_times_one_minus_p():
    p = np.linspace(0, 1, 11)
    np.testing.assert_allclose(beta_kernel(p), p * (1 - p), rtol=1e-13, atol=1e-300)


# ----------------------------------------------------------------------------- other kernels
def test_hard_band_is_an_open_interval():
    np.testing.assert_array_equal(
        hard_band(np.array([0.2, 0.2000001, 0.5, 0.7999999, 0.8]), 0.2, 0.8), [0, 1, 1, 1, 0]
    )
    # default band (0, 1): drops exactly the always / never solved problems
    np.testing.assert_array_equal(hard_band(np.array([0.0, 1e-300, 0.5, 1.0])), [0, 1, 1, 0])


def test_uniform_sqrt_variance_gaussian():
    p = np.linspace(0, 1, 101)
    np.testing.assert_array_equal(uniform_kernel(p), np.ones_like(p))
    np.testing.assert_allclose(sqrt_variance_kernel(p), np.sqrt(p * (1 - p)), atol=1e-15)
    g = gaussian_bump(p, center=0.3, width=0.1)
    assert p[np.argmax(g)] == pytest.approx(0.3)
    assert g.max() == pytest.approx(1.0)
    np.testing.assert_allclose(g, np.exp(-((p - 0.3) ** 2) / 0.02), rtol=1e-13)


@settings(deadline=None, max_examples=40)
@given(a=st.floats(0.3, 6.0), b=st.floats(0.3, 6.0))
def test_kumaraswamy_form_and_peak(a, b):
    p = np.linspace(0, 1, 20_001)
    w = kumaraswamy_kernel(p, a, b)
    np.testing.assert_allclose(w, p**a * (1 - p**a) ** b, rtol=1e-9, atol=1e-300)
    assert w[0] == 0.0 and w[-1] == 0.0
    assert abs(p[np.argmax(w)] - (1 + b) ** (-1 / a)) <= 5.001e-5


def test_kernels_registry_and_make_kernel():
    assert set(KERNELS) == {"beta", "uniform", "hard", "gaussian", "kumaraswamy", "sqrt_variance"}
    p = np.linspace(0, 1, 7)
    np.testing.assert_array_equal(make_kernel("beta", alpha=2, beta=1)(p), beta_kernel(p, 2, 1))
    np.testing.assert_array_equal(make_kernel("hard", lo=0.1, hi=0.5)(p), hard_band(p, 0.1, 0.5))
    np.testing.assert_array_equal(make_kernel("uniform")(p), np.ones(7))


@pytest.mark.parametrize(
    "call, arg",
    [
        (lambda: make_kernel("triangle"), "triangle"),
        (lambda: make_kernel("beta", gamma=1.0), "gamma"),
        (lambda: make_kernel("beta", alpha=-1.0), "alpha"),
        (lambda: make_kernel("hard", lo=0.6, hi=0.4), "lo"),
        (lambda: make_kernel("gaussian", width=0.0), "width"),
        (lambda: beta_kernel(np.array([0.5, 1.5])), "'p'"),
        (lambda: beta_kernel(np.array([np.nan])), "'p'"),
        (lambda: beta_kernel(0.5, -0.1, 1.0), "alpha"),
        (lambda: log_beta_kernel(0.5, 1.0, -2.0), "beta"),
        (lambda: beta_kernel_peak(0.0, 0.0), "alpha"),
        (lambda: kumaraswamy_kernel(0.5, 0.0, 1.0), "'a'"),
    ],
)
def test_bad_kernel_inputs_raise_input_error(call, arg):
    with pytest.raises(InputError, match=arg):
        call()


# ----------------------------------------------------------------------------- estimators
@settings(deadline=None, max_examples=150)
@given(
    p=prob,
    K=st.integers(min_value=1, max_value=40),
    alpha=st.integers(min_value=0, max_value=6),
    beta=st.integers(min_value=0, max_value=6),
)
def test_unbiased_estimator_is_exactly_unbiased(p, K, alpha, beta):
    if alpha + beta > K:
        with pytest.raises(InputError, match="alpha \\+ beta <= K"):
            unbiased_beta_weight(np.arange(K + 1), K, alpha, beta)
        return
    c = np.arange(K + 1)
    mean = float(_binom_pmf(K, p) @ unbiased_beta_weight(c, K, alpha, beta))
    assert abs(mean - p**alpha * (1 - p) ** beta) <= 1e-12


def test_unbiased_estimator_closed_form_for_alpha_beta_one():
    for K in (2, 3, 8, 17):
        c = np.arange(K + 1)
        np.testing.assert_allclose(
            unbiased_beta_weight(c, K, 1, 1), c * (K - c) / (K * (K - 1)), rtol=1e-14
        )
    # integer-valued floats are accepted
    assert float(unbiased_beta_weight(3.0, 8.0, 1.0, 1.0)) == pytest.approx(15 / 56)


def test_plugin_is_biased_by_one_minus_one_over_K():
    K, p = 8, 0.3
    c = np.arange(K + 1)
    mean = float(_binom_pmf(K, p) @ plugin_weight(c, K))
    assert mean == pytest.approx((1 - 1 / K) * p * (1 - p), rel=1e-12)
    np.testing.assert_allclose(plugin_weight(c, K, 2, 1), (c / K) ** 2 * (1 - c / K))


@settings(deadline=None, max_examples=60)
@given(
    K=st.integers(min_value=1, max_value=30),
    frac=st.floats(0.0, 1.0),
    alpha=st.floats(0.0, 4.0),
    beta=st.floats(0.0, 4.0),
    a=st.floats(1.0, 5.0),
    b=st.floats(1.0, 5.0),
)
def test_posterior_mean_matches_numeric_integration(K, frac, alpha, beta, a, b):
    c = int(round(frac * K))
    A, B = a + c, b + K - c  # posterior Beta(A, B), both >= 1: bounded density

    def log_post(x):
        return (A - 1) * np.log(x) + (B - 1) * np.log1p(-x)

    mode = (A - 1) / (A + B - 2) if A + B > 2 else 0.5
    mode = min(max(mode, 1e-12), 1 - 1e-12)
    shift = log_post(mode)

    def dens(x):
        return np.exp(log_post(x) - shift) if 0 < x < 1 else 0.0

    opts = dict(points=[mode], limit=200, epsabs=0.0, epsrel=1e-11)
    z, _ = quad(dens, 0, 1, **opts)
    m, _ = quad(lambda x: x**alpha * (1 - x) ** beta * dens(x), 0, 1, **opts)
    got = float(posterior_beta_weight(c, K, alpha, beta, a, b))
    assert got == pytest.approx(m / z, rel=1e-7)


def test_estimate_weight_dispatches():
    c, K = np.arange(9), 8
    np.testing.assert_array_equal(estimate_weight(c, K), plugin_weight(c, K))
    np.testing.assert_array_equal(
        estimate_weight(c, K, 2, 1, "unbiased"), unbiased_beta_weight(c, K, 2, 1)
    )
    np.testing.assert_array_equal(
        estimate_weight(c, K, 1, 1, "posterior", prior=(2.0, 3.0)),
        posterior_beta_weight(c, K, 1, 1, 2.0, 3.0),
    )
    # uniform prior, alpha = beta = 1: (c+1)(K-c+1) / ((K+2)(K+3))
    np.testing.assert_allclose(
        estimate_weight(c, K, estimator="posterior"), (c + 1) * (K - c + 1) / (10 * 11)
    )


@pytest.mark.parametrize(
    "call, arg",
    [
        (lambda: plugin_weight(3, 8, alpha=-1.0), "alpha"),
        (lambda: plugin_weight(3, 8, beta=-0.5), "beta"),
        (lambda: plugin_weight(3, 0), "'K'"),
        (lambda: plugin_weight(9, 8), "'c'"),
        (lambda: plugin_weight(-1, 8), "'c'"),
        (lambda: plugin_weight(2.5, 8), "'c'"),
        (lambda: plugin_weight(2, 7.5), "'K'"),
        (lambda: unbiased_beta_weight(3, 8, 1.5, 1), "alpha"),
        (lambda: unbiased_beta_weight(3, 8, 1, 0.5), "beta"),
        (lambda: unbiased_beta_weight(1, 2, 2, 1), "alpha \\+ beta <= K"),
        (lambda: posterior_beta_weight(3, 8, 1, 1, a=0.0), "'a'"),
        (lambda: posterior_beta_weight(3, 8, 1, 1, b=-1.0), "'b'"),
        (lambda: estimate_weight(3, 8, estimator="mle"), "mle"),
        (lambda: estimate_weight(3, 8, estimator="posterior", prior=1.0), "prior"),
        (lambda: estimate_weight(3, 8, -1.0, 1.0, estimator="posterior"), "alpha"),
    ],
)
def test_bad_estimator_inputs_raise_input_error(call, arg):
    with pytest.raises(InputError, match=arg):
        call()
