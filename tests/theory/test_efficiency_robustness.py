"""Cauchy-Schwarz (efficiency.py) and Kantorovich (robustness.py) as hypothesis properties.

Each property is checked on random measures, signals and weights; the equality cases are
checked to 1e-10 and the strict cases by a margin, so a wrong formula fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paced_theory import robustness as rb
from paced_theory.efficiency import PassRateMeasure, efficiency, optimal_progress, progress
from paced_theory.errors import InputError

SET = settings(max_examples=60, deadline=None)
seeds = st.integers(0, 2**32 - 1)


def random_problem(seed, n=40):
    rng = np.random.default_rng(seed)
    mu = PassRateMeasure(rng.uniform(0.01, 0.99, n), rng.dirichlet(np.ones(n)))
    s = rng.uniform(0.0, 2.0, n)
    v = rng.uniform(0.1, 3.0, n)
    w = rng.uniform(0.0, 2.0, n)
    return rng, mu, s, v, w


@SET
@given(seeds)
def test_cauchy_schwarz_progress(seed):
    _, mu, s, v, w = random_problem(seed)
    q, qs = progress(w, s, v, mu), optimal_progress(s, v, mu)
    assert q <= qs * (1 + 1e-12)
    assert efficiency(s / v * 3.7, mu, s=s, v=v) == pytest.approx(1.0, abs=1e-10)
    # a weight not proportional to s/v is strictly below 1 (generic random w)
    assert efficiency(w, mu, s=s, v=v) < 1 - 1e-6


@SET
@given(seeds)
def test_cauchy_schwarz_allocation(seed):
    _, mu, s, v, w = random_problem(seed)
    rho = s**2 / v
    assert efficiency(0.2 * rho, mu, rho=rho, criterion="allocation") == pytest.approx(1, abs=1e-10)
    e = efficiency(w, mu, rho=rho, criterion="allocation")
    assert 0.0 <= e < 1 - 1e-6
    # same value through s and v
    assert efficiency(w, mu, s=s, v=v, criterion="allocation") == pytest.approx(e, rel=1e-12)


def test_efficiency_matches_hand_computation():
    mu = PassRateMeasure(np.array([0.25, 0.75]), np.array([0.5, 0.5]))
    s, v, w = np.array([1.0, 2.0]), np.array([1.0, 4.0]), np.array([1.0, 1.0])
    # Q = (0.5*1 + 0.5*2)^2 / (0.5*1 + 0.5*4) = 2.25/2.5; Q* = 0.5*1 + 0.5*1 = 1
    assert progress(w, s, v, mu) == pytest.approx(0.9)
    assert efficiency(w, mu, s=s, v=v) == pytest.approx(0.9)


def test_measure_on_grid_integrates():
    mu = PassRateMeasure.beta(2.0, 3.0)
    assert mu.expect(mu.p) == pytest.approx(2 / 5, abs=1e-9)
    assert PassRateMeasure.uniform().expect(mu.p * 0 + 1) == pytest.approx(1)
    with pytest.raises(InputError):
        PassRateMeasure(np.array([0.5, 1.5]), np.array([1.0, 1.0]))


@SET
@given(seeds, st.floats(0.0, 0.95))
def test_kantorovich_linear_band(seed, delta):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 30))
    m = rng.uniform(1 - delta, 1 + delta, n)
    nu = rng.dirichlet(np.ones(n))
    loss = 1 - rb.misspecified_efficiency(m, nu)
    assert loss <= delta**2 + 1e-12
    assert loss <= 1 - rb.kantorovich_bound(1 - delta, 1 + delta) + 1e-12 if delta < 1 else True
    w = rb.witness(delta)
    assert w["loss"] == pytest.approx(delta**2, abs=1e-12)
    assert rb.worst_case_loss(delta) == pytest.approx(delta**2)


@SET
@given(seeds, st.floats(0.0, 4.0))
def test_kantorovich_log_band(seed, delta):
    rng = np.random.default_rng(seed)
    m = np.exp(rng.uniform(-delta, delta, 25))
    loss = 1 - rb.misspecified_efficiency(m, rng.dirichlet(np.ones(25)))
    assert loss <= math.tanh(delta) ** 2 + 1e-12
    assert rb.witness(delta, log=True)["loss"] == pytest.approx(math.tanh(delta) ** 2, abs=1e-12)


@SET
@given(seeds, st.floats(0.01, 0.9))
def test_witness_is_the_worst_two_point_mass(seed, delta):
    """No other split of nu-mass between the band ends loses more than the witness."""
    q = np.random.default_rng(seed).uniform(0, 1)
    other = 1 - rb.misspecified_efficiency([1 - delta, 1 + delta], [q, 1 - q])
    assert other <= rb.witness(delta)["loss"] + 1e-12
    # and the 1/2-1/2 split is strictly worse at being worst (THEORY.md's statement)
    half = 1 - rb.misspecified_efficiency([1 - delta, 1 + delta], [0.5, 0.5])
    assert half == pytest.approx(delta**2 / (1 + delta**2))


@SET
@given(seeds, st.floats(0.0, 3.0))
def test_oscillation_guarantee_holds_for_kernels(seed, osc):
    """A kernel w = rho * exp(r) with osc(r) <= osc loses at most tanh^2(osc/2)."""
    rng = np.random.default_rng(seed)
    mu = PassRateMeasure(rng.uniform(0.01, 0.99, 50), rng.dirichlet(np.ones(50)))
    rho = mu.p * (1 - mu.p)
    r = rng.uniform(0, osc, 50)
    w = rho * np.exp(r)
    loss = rb.kernel_loss(w, rho, mu)
    assert loss <= 1 - rb.guaranteed_efficiency_from_oscillation(osc) + 1e-12


@pytest.mark.parametrize("delta,log", [(1.0, False), (-0.1, False), (float("nan"), True)])
def test_bad_delta(delta, log):
    with pytest.raises(InputError, match="--delta"):
        rb.worst_case_loss(delta, log=log)
