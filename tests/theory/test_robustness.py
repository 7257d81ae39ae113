"""robustness.py: the Kantorovich worst case as hypothesis properties, its exact attainment
by the two-point witness, the symbolic derivation, and the --delta errors.

Ours: the exact constants delta^2 and tanh^2(delta) and the witness (docs/theory.md §3);
the paper only claims O(delta^2).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from paced_theory import robustness as rb
from paced_theory.efficiency import PassRateMeasure, efficiency
from paced_theory.errors import InputError

SET = settings(max_examples=100, deadline=None)
unit = st.floats(-1.0, 1.0)
masses = st.floats(0.0, 1.0)


@st.composite
def band_problem(draw, max_delta):
    """delta, u in [-1, 1]^n (positions inside the band) and nu-masses (not all 0)."""
    delta = draw(st.floats(0.0, max_delta))
    n = draw(st.integers(1, 20))
    u = np.array(draw(st.lists(unit, min_size=n, max_size=n)))
    nu = np.array(draw(st.lists(masses, min_size=n, max_size=n)))
    if nu.sum() == 0:
        nu[0] = 1.0
    return delta, u, nu


@SET
@given(band_problem(0.999))
def test_kantorovich_linear_band(prob):
    delta, u, nu = prob
    m = 1.0 + delta * u  # values in [1-delta, 1+delta]
    loss = 1.0 - rb.misspecified_efficiency(m, nu)
    assert loss <= delta**2 + 1e-12
    assert loss <= 1.0 - rb.kantorovich_bound(1 - delta, 1 + delta) + 1e-12
    assert rb.worst_case_loss(delta) == pytest.approx(delta**2, abs=1e-15)
    w = rb.witness(delta)
    assert w["values"] == pytest.approx([1 - delta, 1 + delta])
    assert w["loss"] == pytest.approx(delta**2, abs=1e-12)
    assert sum(w["masses"]) == pytest.approx(1.0)
    assert w["tilted_masses"] == pytest.approx([0.5, 0.5])


@SET
@given(band_problem(6.0))
def test_kantorovich_log_band(prob):
    delta, u, nu = prob
    m = np.exp(delta * u)  # values in [e^-delta, e^delta]
    loss = 1.0 - rb.misspecified_efficiency(m, nu)
    assert loss <= math.tanh(delta) ** 2 + 1e-12
    assert rb.worst_case_loss(delta, log=True) == pytest.approx(math.tanh(delta) ** 2)
    w = rb.witness(delta, log=True)
    assert w["values"] == pytest.approx([math.exp(-delta), math.exp(delta)])
    assert w["loss"] == pytest.approx(math.tanh(delta) ** 2, abs=1e-12)
    assert 1 - rb.kantorovich_bound(*w["values"]) == pytest.approx(w["loss"], abs=1e-12)


@SET
@given(st.floats(0.001, 0.99), st.floats(0.0, 1.0))
def test_witness_is_the_worst_split(delta, q):
    """No other split of nu-mass between the band ends loses more than the witness; the
    1/2-1/2 split of the earlier reference text (docs/theory.md §9) loses
    delta^2/(1+delta^2) < delta^2."""
    other = 1.0 - rb.misspecified_efficiency([1 - delta, 1 + delta], [q, 1 - q])
    assert other <= rb.witness(delta)["loss"] + 1e-12
    half = 1.0 - rb.misspecified_efficiency([1 - delta, 1 + delta], [0.5, 0.5])
    assert half == pytest.approx(delta**2 / (1 + delta**2), rel=1e-9)
    assert half < delta**2


def test_symbolic_derivation():
    r = rb.kantorovich_symbolic()
    a, b, q, d = r["symbols"]
    assert sp.simplify(r["q_star"] - b / (a + b)) == 0
    assert sp.simplify(r["min_efficiency"] - 4 * a * b / (a + b) ** 2) == 0
    assert sp.simplify(r["linear_loss"] - d**2) == 0
    assert sp.simplify((r["log_loss"] - sp.tanh(d) ** 2).rewrite(sp.exp)) == 0
    assert sp.simplify(r["half_loss"] - d**2 / (1 + d**2)) == 0
    # and the numeric witness agrees with the symbolic minimiser
    lo, hi = rb.band(0.3)
    assert rb.witness(0.3)["masses"][0] == pytest.approx(float(r["q_star"].subs({a: lo, b: hi})))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 0.95), st.sampled_from(["allocation",
                                                                           "progress"]))
def test_bound_applies_to_kernels_under_both_criteria(seed, delta, criterion):
    """w = w* m with m in [1-delta, 1+delta]: kernel_loss <= delta^2 through efficiency()."""
    rng = np.random.default_rng(seed)
    n = 40
    mu = PassRateMeasure(rng.uniform(0.01, 0.99, n), rng.dirichlet(np.ones(n)))
    s = rng.uniform(0.01, 2.0, n)
    v = rng.uniform(0.1, 3.0, n)
    m = rng.uniform(1 - delta, 1 + delta, n)
    if criterion == "allocation":
        loss = rb.kernel_loss(s**2 / v * m, s**2 / v, mu)
        nu = mu.mass * (s**2 / v) ** 2
    else:
        loss = rb.kernel_loss(s / v * m, None, mu, criterion="progress", s=s, v=v)
        nu = mu.mass * s**2 / v
    assert loss <= rb.worst_case_loss(delta) + 1e-12
    assert loss == pytest.approx(1 - rb.misspecified_efficiency(m, nu), abs=1e-12)


def test_witness_realised_as_a_kernel():
    """The worst case is attained by an actual kernel on an actual measure: two atoms with
    rho-weighted masses in the witness ratio, w = rho * m."""
    delta = 0.3
    wit = rb.witness(delta)
    p = np.array([0.3, 0.6])
    rho = p * (1 - p)
    mass = np.array(wit["masses"]) / rho**2  # nu ∝ rho^2 mu has the witness masses
    mu = PassRateMeasure(p, mass)
    loss = rb.kernel_loss(rho * np.array(wit["values"]), rho, mu)
    assert loss == pytest.approx(delta**2, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 4.0))
def test_oscillation_guarantee(seed, osc):
    """log(w/rho) with oscillation <= osc: loss <= tanh^2(osc/2); equality for the witness."""
    rng = np.random.default_rng(seed)
    mu = PassRateMeasure(rng.uniform(0.01, 0.99, 50), rng.dirichlet(np.ones(50)))
    rho = mu.p * (1 - mu.p)
    w = rho * np.exp(rng.uniform(0.0, osc, 50) - 7.0)  # any scale
    floor = rb.guaranteed_efficiency_from_oscillation(osc)
    assert rb.kernel_loss(w, rho, mu) <= 1 - floor + 1e-12
    assert floor == pytest.approx(1 - rb.worst_case_loss(osc / 2, log=True), abs=1e-14)
    assert floor == pytest.approx(rb.witness(osc / 2, log=True)["efficiency"], abs=1e-12)


def test_oscillation_edge_cases():
    assert rb.guaranteed_efficiency_from_oscillation(0.0) == 1.0
    assert rb.guaranteed_efficiency_from_oscillation(math.inf) == 0.0
    for bad in (-0.1, float("nan")):
        with pytest.raises(InputError, match="oscillation"):
            rb.guaranteed_efficiency_from_oscillation(bad)


def test_kantorovich_bound_values_and_errors():
    assert rb.kantorovich_bound(1.0, 1.0) == 1.0
    assert rb.kantorovich_bound(1.0, 3.0) == pytest.approx(12 / 16)
    assert rb.kantorovich_bound(2.0, 6.0) == pytest.approx(12 / 16)  # scale-free
    for lo, hi in [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0), (1.0, math.inf)]:
        with pytest.raises(InputError, match="m_min"):
            rb.kantorovich_bound(lo, hi)


@pytest.mark.parametrize("delta,log", [(1.0, False), (1.5, False), (-0.1, False),
                                       (-0.1, True), (float("nan"), True),
                                       (float("inf"), True), ("abc", False)])
def test_bad_delta_names_the_flag(delta, log):
    with pytest.raises(InputError, match="--delta"):
        rb.worst_case_loss(delta, log=log)
    with pytest.raises(InputError, match="--delta"):
        rb.witness(delta, log=log)


def test_large_delta_is_fine_on_the_log_band():
    assert rb.worst_case_loss(3.0, log=True) == pytest.approx(math.tanh(3.0) ** 2)


def test_misspecified_efficiency_errors_and_values():
    assert rb.misspecified_efficiency([2.0, 2.0], [0.3, 0.7]) == pytest.approx(1.0)
    assert rb.misspecified_efficiency([1.0, 0.0], [1.0, 1.0]) == pytest.approx(0.5)
    assert rb.misspecified_efficiency([0.0], [1.0]) == 0.0
    with pytest.raises(InputError, match="'nu_mass'"):
        rb.misspecified_efficiency([1.0, 2.0], [1.0])
    with pytest.raises(InputError, match="'nu_mass'"):
        rb.misspecified_efficiency([1.0, 2.0], [1.0, -1.0])
    with pytest.raises(InputError, match="finite"):
        rb.misspecified_efficiency([1.0, np.nan], [1.0, 1.0])


def test_kernel_loss_matches_efficiency():
    mu = PassRateMeasure.beta(2, 2, n=201)
    rho = lambda p: p * (1 - p) / ((1 - 2 * p) ** 2 + 1)  # noqa: E731
    w = lambda p: p * (1 - p)  # noqa: E731
    assert rb.kernel_loss(w, rho, mu) == pytest.approx(
        1 - efficiency(w, mu, rho=rho, criterion="allocation"), abs=1e-15)
    assert 0 < rb.kernel_loss(w, rho, mu) < 0.02
