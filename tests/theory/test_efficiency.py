"""efficiency.py: Cauchy-Schwarz for both criteria as hypothesis properties, the equality and
strict cases, the measure's quadrature, and the input errors.

The strict case is checked against an independent formula: if w = w* m then
eta = (E_nu m)^2 / E_nu m^2 with nu ∝ (s^2/v) mu ("progress") or nu ∝ rho^2 mu
("allocation"), which is < 1 exactly when m is not nu-a.e. constant.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from paced_theory.efficiency import (
    PassRateMeasure,
    efficiency,
    optimal_progress,
    optimal_weight,
    progress,
)
from paced_theory.errors import InputError

SET = settings(max_examples=80, deadline=None)


@st.composite
def problems(draw):
    """A random measure mu (some atoms may carry no mass), signal s, noise v, weight w and a
    multiplicative misspecification m."""
    n = draw(st.integers(1, 25))
    vec = st.lists
    p = draw(vec(st.floats(0.0, 1.0), min_size=n, max_size=n))
    mass = draw(vec(st.one_of(st.just(0.0), st.floats(1e-3, 1.0)), min_size=n, max_size=n))
    assume(sum(mass) > 0)
    s = draw(vec(st.floats(1e-3, 10.0), min_size=n, max_size=n))
    v = draw(vec(st.floats(1e-3, 10.0), min_size=n, max_size=n))
    w = draw(vec(st.floats(0.0, 10.0), min_size=n, max_size=n))
    m = draw(vec(st.floats(0.1, 10.0), min_size=n, max_size=n))
    mu = PassRateMeasure(np.array(p), np.array(mass))
    return mu, np.array(s), np.array(v), np.array(w), np.array(m)


def nu_ratio(m, nu):
    nu = nu / nu.sum()
    return float(nu @ m) ** 2 / float(nu @ (m * m))


# ----------------------------------------------------------------------------- progress
@SET
@given(problems(), st.floats(1e-3, 1e3))
def test_cauchy_schwarz_progress(prob, scale):
    mu, s, v, w, m = prob
    q, q_star = progress(w, s, v, mu), optimal_progress(s, v, mu)
    assert q <= q_star * (1 + 1e-12)
    eta = efficiency(w, mu, s=s, v=v)
    assert 0.0 <= eta <= 1.0
    if np.dot(mu.mass, w) > 0:
        assert eta == pytest.approx(q / q_star, rel=1e-9, abs=1e-15)
    # equality: any positive multiple of s/v
    assert efficiency(scale * s / v, mu, s=s, v=v) == pytest.approx(1.0, abs=1e-10)
    assert progress(scale * s / v, s, v, mu) == pytest.approx(q_star, rel=1e-10)
    # w = w* m: eta = (E_nu m)^2 / E_nu m^2 with nu ∝ s^2/v mu, strictly < 1 unless m const
    nu = mu.mass * s**2 / v
    expected = nu_ratio(m, nu)
    eta_m = efficiency(s / v * m, mu, s=s, v=v)
    assert eta_m == pytest.approx(expected, rel=1e-9)
    nun = nu / nu.sum()
    if float(nun @ (m - nun @ m) ** 2) > 1e-6 * float(nun @ m) ** 2:
        assert eta_m < 1.0 - 1e-8


def test_progress_hand_computation():
    mu = PassRateMeasure(np.array([0.25, 0.75]), np.array([0.5, 0.5]))
    s, v, w = np.array([1.0, 2.0]), np.array([1.0, 4.0]), np.array([1.0, 1.0])
    # Q = (0.5*1 + 0.5*2)^2 / (0.5*1 + 0.5*4) = 2.25 / 2.5 = 0.9 ; Q* = 0.5*1 + 0.5*1 = 1
    assert progress(w, s, v, mu) == pytest.approx(0.9)
    assert optimal_progress(s, v, mu) == pytest.approx(1.0)
    assert efficiency(w, mu, s=s, v=v) == pytest.approx(0.9)
    # allocation: rho = (1, 1): w = 1 is optimal
    assert efficiency(w, mu, s=s, v=v, criterion="allocation") == pytest.approx(1.0)
    assert efficiency(np.array([1.0, 0.0]), mu, s=s, v=v, criterion="allocation") == (
        pytest.approx(0.5))


# ----------------------------------------------------------------------------- allocation
@SET
@given(problems(), st.floats(1e-3, 1e3))
def test_cauchy_schwarz_allocation(prob, scale):
    mu, s, v, w, m = prob
    rho = s**2 / v
    eta = efficiency(w, mu, rho=rho, criterion="allocation")
    assert 0.0 <= eta <= 1.0
    # independent: (E[w rho])^2 <= E[w^2] E[rho^2]
    lhs = float(mu.mass @ (w * rho)) ** 2
    rhs = float(mu.mass @ w**2) * float(mu.mass @ rho**2)
    assert lhs <= rhs * (1 + 1e-12)
    assert efficiency(scale * rho, mu, rho=rho, criterion="allocation") == pytest.approx(
        1.0, abs=1e-10)
    # same value through s and v
    assert efficiency(w, mu, s=s, v=v, criterion="allocation") == pytest.approx(
        eta, rel=1e-9, abs=1e-15)
    nu = mu.mass * rho**2
    eta_m = efficiency(rho * m, mu, rho=rho, criterion="allocation")
    assert eta_m == pytest.approx(nu_ratio(m, nu), rel=1e-9)
    nun = nu / nu.sum()
    if float(nun @ (m - nun @ m) ** 2) > 1e-6 * float(nun @ m) ** 2:
        assert eta_m < 1.0 - 1e-8


def test_criteria_differ_and_optimal_weights():
    """s/v and s^2/v are each optimal for their own criterion only (M1-like model)."""
    mu = PassRateMeasure.uniform(401)
    s = lambda p: p * (1 - p)  # noqa: E731
    v = lambda p: p * (1 - p) * ((1 - 2 * p) ** 2 + 0.5)  # noqa: E731
    w_prog = optimal_weight(s, v, "progress")
    w_alloc = optimal_weight(s, v, "allocation")
    assert efficiency(w_prog, mu, s=s, v=v) == pytest.approx(1.0, abs=1e-12)
    assert efficiency(w_alloc, mu, s=s, v=v, criterion="allocation") == pytest.approx(
        1.0, abs=1e-12)
    assert efficiency(w_alloc, mu, s=s, v=v) < 0.99
    assert efficiency(w_prog, mu, s=s, v=v, criterion="allocation") < 0.99
    # arrays in, array out, same values
    arr = optimal_weight(s(mu.p), v(mu.p), "allocation")
    np.testing.assert_allclose(arr, w_alloc(mu.p), rtol=1e-14)
    # callables and arrays give the same efficiency
    assert efficiency(w_prog(mu.p), mu, s=s(mu.p), v=v(mu.p)) == pytest.approx(1.0, abs=1e-12)


def test_no_underflow_for_tiny_kernels():
    """p^300 (1-p)^300 is ~2e-181 at its peak: its square underflows unless w is rescaled."""
    mu = PassRateMeasure.uniform(801)
    w = mu.p**300 * (1 - mu.p) ** 300
    big = np.exp(300 * (np.log(mu.p) + np.log1p(-mu.p)) + 300 * np.log(4.0))  # peak 1
    assert efficiency(w, mu, rho=big, criterion="allocation") == pytest.approx(1.0, abs=1e-12)
    assert efficiency(big, mu, rho=w, criterion="allocation") == pytest.approx(1.0, abs=1e-12)
    assert efficiency(w, mu, s=big, v=np.ones_like(w)) == pytest.approx(1.0, abs=1e-12)


def test_zero_weight_and_zero_signal():
    mu = PassRateMeasure.uniform(11)
    assert efficiency(np.zeros(11), mu, rho=mu.p, criterion="allocation") == 0.0
    assert efficiency(np.ones(11), mu, rho=np.zeros(11), criterion="allocation") == 0.0
    assert progress(np.zeros(11), np.ones(11), np.ones(11), mu) == 0.0
    # v = 0 is fine where s = 0 too (0/0 := 0 in s/v and s^2/v)
    s = np.where(mu.p < 0.5, 0.0, 1.0)
    v = np.where(mu.p < 0.5, 0.0, 2.0)
    assert optimal_progress(s, v, mu) == pytest.approx(0.5 * float(mu.mass[mu.p >= 0.5].sum()))
    assert efficiency(optimal_weight(s, v), mu, s=s, v=v) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- the measure
def test_measure_quadrature():
    mu = PassRateMeasure.beta(2.0, 3.0)
    assert mu.mass.sum() == pytest.approx(1.0)
    assert mu.expect(mu.p) == pytest.approx(2 / 5, abs=1e-12)
    assert mu.expect(lambda p: p**2) == pytest.approx(2 * 3 / (5 * 5 * 6) + 0.16, abs=1e-12)
    u = PassRateMeasure.uniform(50)
    assert u.expect(lambda p: p**7) == pytest.approx(1 / 8, abs=1e-13)  # Gauss: exact
    assert 0 < u.p.min() and u.p.max() < 1  # boundaries never evaluated
    mid = PassRateMeasure.on_grid(lambda p: 2 * p, n=1000, rule="midpoint")
    assert mid.expect(mid.p) == pytest.approx(2 / 3, abs=1e-6)
    assert 0 < mid.p.min() and mid.p.max() < 1
    emp = PassRateMeasure.from_samples([0.0, 0.5, 0.5, 1.0])
    assert emp.expect(emp.p) == pytest.approx(0.5)
    np.testing.assert_allclose(emp.mass, 0.25)


def test_zero_mass_atoms_are_ignored():
    """A callable may be undefined (NaN) at an atom that carries no mass."""
    mu = PassRateMeasure(np.array([0.0, 0.3, 0.6]), np.array([0.0, 1.0, 1.0]))
    rho = lambda p: p * (1 - p) / p  # noqa: E731  (0/0 = NaN at p = 0)
    with np.errstate(invalid="ignore"):
        e = efficiency(lambda p: 1 - p, mu, rho=rho, criterion="allocation")
    assert e == pytest.approx(1.0)


@pytest.mark.parametrize("p,mass,needle", [
    ([0.2, 0.5], [1.0, -0.1], "negative"),
    ([0.2, 0.5], [1.0], "one mass per"),
    ([0.2, 1.5], [1.0, 1.0], "outside [0, 1]"),
    ([0.2, float("nan")], [1.0, 1.0], "outside [0, 1]"),
    ([0.2, 0.5], [0.0, 0.0], "sums to 0"),
    ([0.2, 0.5], [1.0, float("inf")], "not finite"),
    ([], [], "empty"),
])
def test_measure_errors(p, mass, needle):
    with pytest.raises(InputError, match="PassRateMeasure") as exc:
        PassRateMeasure(np.array(p, dtype=float), np.array(mass, dtype=float))
    assert needle in str(exc.value)


def test_grid_errors():
    with pytest.raises(InputError, match="'n'"):
        PassRateMeasure.on_grid(None, n=0)
    with pytest.raises(InputError, match="'rule'"):
        PassRateMeasure.on_grid(None, rule="simpson")
    with pytest.raises(InputError, match="density"):
        PassRateMeasure.on_grid(lambda p: -p)
    with pytest.raises(InputError, match="'a' and 'b'"):
        PassRateMeasure.beta(0.0, 1.0)


def test_function_errors():
    mu = PassRateMeasure.uniform(5)
    ones = np.ones(5)
    with pytest.raises(InputError, match="'v' is negative"):
        efficiency(ones, mu, s=ones, v=-ones)
    with pytest.raises(InputError, match="'v' is negative"):
        progress(ones, ones, -ones, mu)
    with pytest.raises(InputError, match="'w' has shape"):
        efficiency(np.ones(4), mu, rho=ones, criterion="allocation")
    with pytest.raises(InputError, match="'w' is negative"):
        efficiency(-ones, mu, rho=ones, criterion="allocation")
    with pytest.raises(InputError, match="'rho' is negative"):
        efficiency(ones, mu, rho=-ones, criterion="allocation")
    with pytest.raises(InputError, match="finite"):
        efficiency(np.full(5, np.nan), mu, rho=ones, criterion="allocation")
    with pytest.raises(InputError, match="needs 's' and 'v'"):
        efficiency(ones, mu, rho=ones, criterion="progress")
    with pytest.raises(InputError, match="criterion"):
        efficiency(ones, mu, rho=ones, criterion="snr")
    with pytest.raises(InputError, match="Q\\* infinite"):
        optimal_progress(ones, np.zeros(5), mu)
    with pytest.raises(InputError, match="both as callables"):
        optimal_weight(lambda p: p, np.ones(3))
    with pytest.raises(InputError, match="shape"):
        optimal_weight(np.ones(3), np.ones(4))
    assert math.isinf(progress(ones, ones, np.zeros(5), mu))
