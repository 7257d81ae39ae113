"""The cell simulator's mechanisms (paced_theory/cellsim.py) and its calibration."""

import dataclasses

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit, ndtr, ndtri

from paced_theory.cellsim import (
    Arm,
    Loop,
    Params,
    calibrate,
    expected_weight,
    initial_rates,
    signal,
    simulate_pool,
)
from paced_theory.errors import InputError
from paced_theory.kernels import plugin_weight
from paced_theory.models import DELTA, K_SYM, P, m1_symbolic
from paced_theory.population import PopulationConfig, forward_moments

PARAMS = Params(dbar={"x1": 1.0, "x2": -1.0}, spread={"x1": 1.5, "x2": 1.0},
                kappa={"x1": 0.08, "x2": 0.04}, kappa_rev={"x1": 0.05, "x2": 0.02},
                phi=0.01, ret0=-2.0, gamma=1.5, lam=0.2, tau=0.3)
POOL = {"x1": 600.0, "x2": 300.0}


M1_GROUP_S = sp.lambdify((K_SYM, DELTA, P), m1_symbolic(baseline="group_mean")[0])


@settings(deadline=None)
@given(K=st.integers(2, 64), Delta=st.floats(0.1, 10), p=st.floats(0, 1))
def test_rl_mode_is_m1_with_group_mean_baseline(K, Delta, p):
    """rl mode's signal is M1's mean gradient s(p) with the group-mean baseline, exactly."""
    want = float(M1_GROUP_S(K, Delta, p))
    got = float(signal(np.array([p]), Loop(mode="rl", K=K, Delta=Delta))[0])
    assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


@given(K=st.integers(2, 64))
def test_rl_mode_learns_nothing_at_p_0_and_1(K):
    cfg = Loop(mode="rl", K=K)
    assert signal(np.array([0.0, 1.0]), cfg).tolist() == [0.0, 0.0]


def test_rl_mode_leaves_a_hopeless_cell_where_it_is():
    """A cell at p ~ 0 (logit -40) does not move in rl mode; forward KL moves it."""
    params = dataclasses.replace(PARAMS, dbar={"x1": 40.0, "x2": -1.0}, phi=0.0, tau=0.0)
    rl = simulate_pool(POOL, params, Arm(), Loop(mode="rl"))
    fwd = simulate_pool(POOL, dataclasses.replace(params, kappa_rev=params.kappa),
                        Arm(), Loop(mode="forward"))
    assert rl["curve"][-1]["acc_x1"] == rl["curve"][0]["acc_x1"]
    assert fwd["curve"][-1]["acc_x1"] > fwd["curve"][0]["acc_x1"]


@given(p=st.floats(0, 1), gamma=st.floats(0.2, 3))
def test_shared_off_with_lambda_0_is_the_old_forward_model(p, gamma):
    """Mechanism (c) off and lam = 0: the signal is population.forward_moments' s(p)."""
    old = PopulationConfig(gradient="forward", fwd_lambda=0.0, fwd_gamma=gamma)
    s, _ = forward_moments(np.array([p]), old)
    got = signal(np.array([p]), Loop(shared=False), gamma=gamma, lam=0.0)
    assert got[0] == pytest.approx(s[0], rel=1e-12, abs=1e-15)


def test_shared_skill_learns_problems_the_student_cannot_solve():
    """At p = 0 the shared-skill signal is the cell's readiness (the reference teaches a
    ready skill), the old one is the floor lam (0 here)."""
    assert signal(np.array([0.0]), Loop(shared=True), 1.0, 0.0, readiness=0.4)[0] == 0.4
    assert signal(np.array([0.0]), Loop(shared=False), 1.0, 0.0)[0] == 0.0


@settings(max_examples=20, deadline=None)
@given(p=st.floats(0.01, 0.99), K=st.integers(2, 16))
def test_expected_weight_from_K_samples_matches_sampling(p, K):
    """E[w(c/K)], c ~ Binomial(K, p): the closed form against 20000 draws (5 standard errors)."""
    rng = np.random.default_rng(0)
    c = rng.binomial(K, p, 20000)
    w = plugin_weight(c, K, 1.0, 1.0)
    got = expected_weight(np.array([p]), Arm("beta"), Loop(K=K))[0]
    assert abs(got - w.mean()) <= 5 * w.std() / np.sqrt(len(w)) + 1e-12


def _reference_exact(counts, params, arm, steps, M):
    """An independent step-by-step loop: exact pass rates read every step (age 0), one cell
    skill per cell with transfer tau inside the family, weights normalised to sum 1, no
    forgetting, constant lr 1."""
    z = ndtri((np.arange(M) + 0.5) / M)
    cells = list(counts)
    theta = {c: 0.0 for c in cells}
    for _ in range(steps):
        mass, gain = {}, {}
        for c in cells:
            d = params.dbar[c] + params.spread[c] * z
            p = expit(theta[c] - d)
            w = p ** arm.alpha * (1 - p) ** arm.beta
            mass[c] = counts[c] / M * w
            gain[c] = mass[c] * (1 - p) * (p.mean() ** params.gamma + params.lam)
        tot = sum(m.sum() for m in mass.values())
        G = {c: params.kappa[c] * gain[c].sum() / tot for c in cells}
        for c in cells:  # every cell of the test pool is of one skill family ("x")
            theta[c] += G[c] + params.tau * sum(G[o] for o in cells if o != c)
    return theta


def test_age_0_equals_exact_pass_rates():
    """refresh_every = 1 with exact rates (age 0) is the exact-p weighting, step by step; a
    table read only at step 0 (stale) is not."""
    params = dataclasses.replace(PARAMS, phi=0.0)
    cfg = Loop(rates="exact", refresh_every=1, chunk=1, steps=40, warmup=0, min_lr_frac=1.0,
               evals=1, quantiles=8)
    arm = Arm("beta", 1.0, 1.0)
    sim = simulate_pool(POOL, params, arm, cfg)
    theta = _reference_exact(POOL, params, arm, 40, 8)
    for c in POOL:
        want = float(ndtr((theta[c] - params.dbar[c]) / params.spread[c]))
        assert sim["curve"][-1][f"acc_{c}"] == pytest.approx(want, rel=1e-10)
    stale = simulate_pool(POOL, params, arm, dataclasses.replace(cfg, refresh_every=0))
    assert abs(stale["curve"][-1]["acc_x1"] - sim["curve"][-1]["acc_x1"]) > 1e-4


def test_uniform_reads_no_pass_rates():
    """Uniform is the same run whatever the pass-rate schedule and source."""
    a = simulate_pool(POOL, PARAMS, Arm(), Loop())
    b = simulate_pool(POOL, PARAMS, Arm(), Loop(rates="exact", refresh_fracs=(0.0, 0.5),
                                                 rollout_share=0.3))
    assert a["auc"] == b["auc"] and a["steps"] == 600


def test_forgetting_switch_and_unknown_cell():
    on = simulate_pool(POOL, PARAMS, Arm(), Loop())
    off = simulate_pool(POOL, PARAMS, Arm(), Loop(forgetting=False))
    assert on["curve"][-1]["retention"] < off["curve"][-1]["retention"]
    assert off["curve"][-1]["retention"] == off["curve"][0]["retention"]
    with pytest.raises(InputError, match="'c'"):
        simulate_pool({"c": 10.0}, PARAMS)


def test_calibration_recovers_the_parameters_of_its_own_curves():
    """Curves simulated by the model (two pools, forward and reverse uniform runs) give back
    the parameters that made them. Coarse integration (chunk 20) keeps it to seconds."""
    cfg = Loop(chunk=20, quantiles=12)
    pools = {"p1": {"x1": 600.0, "x2": 300.0}, "p2": {"x1": 200.0, "x2": 900.0}}
    runs = []
    for loss in ("forward", "reverse"):
        for name, counts in pools.items():
            sim = simulate_pool(counts, PARAMS, Arm(), dataclasses.replace(cfg, mode=loss))
            runs.append({"pool": name, "loss": loss, "counts": counts,
                         "frac": [r["frac"] for r in sim["curve"]],
                         "acc": {c: [[r[f"acc_{c}"]] for r in sim["curve"]] for c in counts},
                         "retention": [[r["retention"]] for r in sim["curve"]]})
    initial = {c: {**initial_rates(PARAMS, c, 8, cfg.quantiles), "K": 8} for c in PARAMS.dbar}
    fit, info = calibrate(runs, cfg, initial=initial)
    assert info["rmse"] < 1e-6
    for key in ("dbar", "spread", "kappa", "kappa_rev"):
        for c, v in getattr(PARAMS, key).items():
            assert getattr(fit, key)[c] == pytest.approx(v, rel=1e-3), (key, c)
    for key in ("phi", "gamma", "lam"):
        assert getattr(fit, key) == pytest.approx(getattr(PARAMS, key), rel=1e-3), key
