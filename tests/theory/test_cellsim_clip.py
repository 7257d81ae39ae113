"""Mechanism (e) of the cell simulator (paced_theory/cellsim.py): clipped steps of a noisy,
weight-concentrated batch gradient, its moment shape and its calibration stage (ours)."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import ndtri

from paced_theory.cellsim import (
    Arm,
    Loop,
    Params,
    batch_grad_norm,
    calibrate_noise,
    expected_weight,
    fit_moment_shape,
    lr_factor,
    moment_shape,
    simulate_pool,
    weight_moments,
    window_grad_norms,
)
from paced_theory.errors import InputError

SHAPE = [20.0, 2.0, 1.5]
PARAMS = Params(dbar={"x1": 1.0, "x2": -1.0}, spread={"x1": 1.5, "x2": 1.0},
                kappa={"x1": 0.08, "x2": 0.04}, kappa_rev={"x1": 0.3, "x2": 0.2},
                phi=0.01, ret0=-2.0, gamma=1.5, lam=0.2, tau=0.3,
                sigma={"reverse": 30.0}, vshape={"reverse": SHAPE}, delta={"reverse": 0.003})
POOL = {"x1": 600.0, "x2": 300.0}
REV = Loop(mode="reverse", clip=True, rev_shared=True, chunk=10, quantiles=12)


@pytest.mark.parametrize("arm,rates", [(Arm("beta"), "exact"), (Arm("beta"), "K"),
                                       (Arm("beta", floor=0.02), "K"), (Arm("hard"), "K"),
                                       (Arm(), "K")])
def test_batch_grad_norm_matches_a_sampled_weighted_batch(arm, rates):
    """Monte Carlo of the loop's step: a table of pass rates (exact P, or k ~ Binomial(K, p)
    per problem), the kept sampler drawing B problems uniformly among those of weight > 0,
    each gradient N(0, v(p) I_d / d) (so E||g||^2 = v(p)), combined as sum w g / sum w. The
    mean squared norm matches batch_grad_norm^2 (a delta-method approximation of the ratio
    estimator, O(1/B)) within 4 standard errors plus 3 %."""
    rng = np.random.default_rng(0)
    p = np.array([0.02, 0.3, 0.6, 0.95])
    n = np.array([400, 200, 300, 100])
    cfg = Loop(rates=rates, K=4)
    sig, B, d = 5.0, 64, 32
    v = sig ** 2 * moment_shape(p, SHAPE)
    ptype = np.repeat(np.arange(len(p)), n)
    sq = []
    for _ in range(300):
        if rates == "exact":
            w = expected_weight(p, arm, cfg)[ptype]
        else:
            k = rng.binomial(cfg.K, p[ptype])
            w = expected_weight(k / cfg.K, arm, dataclasses.replace(cfg, rates="exact"))
            if arm.weighting == "beta":  # the plugin estimator is the kernel at k/K
                w = (k / cfg.K) * (1 - k / cfg.K)
                w = np.where(k == 0, np.maximum(w, arm.floor), w)
        kept = np.flatnonzero(w > 0)
        for _ in range(10):
            i = rng.choice(kept, size=B)
            g = rng.standard_normal((B, d)) * np.sqrt(v[ptype[i]] / d)[:, None]
            gb = (w[i][:, None] * g).sum(0) / w[i].sum()
            sq.append(float(gb @ gb))
    sq = np.array(sq)
    want = batch_grad_norm(p, n, weight_moments(p, arm, cfg), sig, SHAPE, B) ** 2
    assert abs(sq.mean() - want) < 4 * sq.std() / np.sqrt(len(sq)) + 0.03 * want


def test_damage_is_second_order_in_the_learning_rate():
    """No learning (kappa 0), no forgetting, every step clipped (huge sigma): a cell's skill
    falls by delta sum_t lr_factor(t)^2 over the run (the step's length squared)."""
    params = dataclasses.replace(PARAMS, kappa_rev={"x1": 0.0, "x2": 0.0}, phi=0.0,
                                 sigma={"reverse": 1e4}, delta={"reverse": 0.002})
    cfg = dataclasses.replace(REV, chunk=1, steps=200, warmup=20)
    sim = simulate_pool(POOL, params, Arm(), cfg)
    acc = sim["curve"][-1]["acc_x1"]
    theta = params.spread["x1"] * ndtri(acc) + params.dbar["x1"]
    frac = (np.arange(200) + 0.5) / 200
    want = -0.002 * float(np.sum(lr_factor(frac, cfg) ** 2))
    assert theta == pytest.approx(want, rel=1e-6)


@settings(deadline=None, max_examples=30)
@given(p=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=6),
       B=st.integers(1, 128), sig=st.floats(0.1, 100))
def test_uniform_batch_norm_is_the_mean_moment_over_B(p, B, sig):
    p = np.array(p)
    n = np.ones_like(p)
    mom = weight_moments(p, Arm(), Loop())
    want = np.sqrt(np.mean(sig ** 2 * moment_shape(p, SHAPE)) / B)
    assert batch_grad_norm(p, n, mom, sig, SHAPE, B) == pytest.approx(want, rel=1e-9)


def test_concentrated_weights_shrink_the_effective_batch():
    """Equal moments everywhere (A = 0 and p = 0 so h = 1): a weighting that puts all its mass
    on a share s of the problems raises the norm by 1/sqrt(s) (effective batch s B)."""
    p = np.zeros(10)
    n = np.ones(10)
    flat = (np.ones(10), np.ones(10), np.ones(10))
    w = np.r_[np.ones(2), np.full(8, 1e-9)]
    conc = (np.ones(10), w, w ** 2)
    g0 = batch_grad_norm(p, n, flat, 1.0, [0.0, 1.0, 1.0], 64)
    g1 = batch_grad_norm(p, n, conc, 1.0, [0.0, 1.0, 1.0], 64)
    assert g1 / g0 == pytest.approx(np.sqrt(5.0), rel=1e-6)


@given(p=st.floats(0.0, 1.0), K=st.integers(2, 16))
def test_weight_moments_first_moment_is_expected_weight(p, K):
    for arm in (Arm("beta"), Arm("hard"), Arm("hard", lo=1 / 16, hi=15 / 16),
                Arm("beta", floor=0.05)):
        for rates in ("K", "exact"):
            cfg = Loop(rates=rates, K=K)
            kept, m1, m2 = weight_moments(np.array([p]), arm, cfg)
            assert m1[0] == pytest.approx(expected_weight(np.array([p]), arm, cfg)[0],
                                          abs=1e-12)
            assert m2[0] >= m1[0] ** 2 - 1e-12 and -1e-12 <= kept[0] <= 1 + 1e-12


def test_hard_band_with_exact_rates_drops_the_ends():
    """The loop's weights.lo, hi: with exact P, 1/16 < P < 15/16 keeps neither P = 0.03 nor
    P = 0.97; the band (0, 1) keeps both (every exact P is strictly inside)."""
    p = np.array([0.03, 0.5, 0.97])
    cfg = Loop(rates="exact")
    assert expected_weight(p, Arm("hard", lo=1 / 16, hi=15 / 16), cfg).tolist() == [0, 1, 0]
    assert expected_weight(p, Arm("hard"), cfg).tolist() == [1, 1, 1]


def test_fit_moment_shape_recovers_its_own_shape():
    p = np.linspace(0, 1, 9)
    v = 1300.0 * moment_shape(p, [150.0, 3.0, 1.6])
    s2, shape = fit_moment_shape(p, v, np.full(9, 40.0))
    assert s2 == pytest.approx(1300.0, rel=1e-4)
    assert shape == pytest.approx([150.0, 3.0, 1.6], rel=1e-3)


def test_clip_off_and_unclipped_limits_are_the_old_model():
    """clip = True with a threshold no gradient reaches and no damage is clip = False."""
    off = simulate_pool(POOL, PARAMS, Arm("beta"), dataclasses.replace(REV, clip=False))
    big = simulate_pool(POOL, dataclasses.replace(PARAMS, delta={"reverse": 0.0}), Arm("beta"),
                        dataclasses.replace(REV, grad_clip=1e9))
    assert big["auc"] == pytest.approx(off["auc"], rel=1e-12)


def test_clipping_costs_the_concentrated_weighting_more():
    """With the clip on, Paced's ratio to uniform falls (its batch gradient is the noisier),
    and a larger noise scale makes it fall further."""
    def ratio(params, cfg):
        u = simulate_pool(POOL, params, Arm(), cfg)
        return simulate_pool(POOL, params, Arm("beta"),
                             dataclasses.replace(cfg, rates="exact"))["auc"] / u["auc"]
    p0 = dataclasses.replace(PARAMS, delta={"reverse": 0.0})
    r_off = ratio(p0, dataclasses.replace(REV, clip=False))
    r_on = ratio(p0, REV)
    r_noisier = ratio(dataclasses.replace(p0, sigma={"reverse": 90.0}), REV)
    assert r_on < r_off - 0.02
    assert r_noisier < r_on


def test_clip_needs_calibrated_noise():
    with pytest.raises(InputError, match="sigma and vshape"):
        simulate_pool(POOL, dataclasses.replace(PARAMS, vshape={}), Arm(), REV)


def test_calibrate_noise_recovers_its_own_parameters():
    """Uniform reverse curves and window gradient norms simulated by the model give back
    kappa_rev, sigma and delta (every other parameter fixed, as in the real stage)."""
    pools = {"p1": POOL, "p2": {"x1": 200.0, "x2": 900.0}}
    runs = []
    for name, counts in pools.items():
        sim = simulate_pool(counts, PARAMS, Arm(), REV)
        runs.append({"pool": name, "loss": "reverse", "counts": counts,
                     "frac": [r["frac"] for r in sim["curve"]],
                     "acc": {c: [[r[f"acc_{c}"]] for r in sim["curve"]] for c in counts},
                     "retention": [[r["retention"]] for r in sim["curve"]],
                     "grad_norm": [[g] for g in window_grad_norms(sim, 10)]})
    start = dataclasses.replace(PARAMS, kappa_rev={"x1": 0.1, "x2": 0.1},
                                sigma={"reverse": 10.0}, delta={"reverse": 0.02})
    fit, info = calibrate_noise(runs, start, REV)
    assert info["rmse"] < 1e-5
    assert fit.kappa_rev == pytest.approx(PARAMS.kappa_rev, rel=1e-3)
    assert fit.sigma["reverse"] == pytest.approx(30.0, rel=1e-3)
    assert fit.delta["reverse"] == pytest.approx(0.003, rel=1e-2)
