"""Distillation losses tested for their mathematical properties (the TRL habit): zero on
identical inputs, non-negativity, the forward/reverse relation, a slow reference, temperature,
masking, reductions, extreme logits, bf16, chunking and gradients."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import paced_train.losses as L
from paced_theory.errors import ConfigError

SET = settings(max_examples=30, deadline=None)
seeds = st.integers(0, 2**31 - 1)


def rand(seed, B=3, T=5, V=7, scale=3.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(B, T, V, generator=g) * scale
    t = torch.randn(B, T, V, generator=g) * scale
    m = (torch.rand(B, T, generator=g) > 0.3).float()
    m[:, 0] = 1.0
    return s.to(dtype), t.to(dtype), m


def slow_kl(p_logits, q_logits, mask, temperature=1.0):
    """Reference KL(P || Q) per sequence, mean over masked tokens, explicit loops."""
    B, T, V = p_logits.shape
    out = []
    for b in range(B):
        tot, n = 0.0, 0
        for t in range(T):
            if mask[b, t] == 0:
                continue
            # logits, not probs: Categorical(probs=...) clamps tiny probabilities to eps
            p = torch.distributions.Categorical(logits=p_logits[b, t].double() / temperature)
            q = torch.distributions.Categorical(logits=q_logits[b, t].double() / temperature)
            tot += float(torch.distributions.kl_divergence(p, q))
            n += 1
        out.append(tot / max(n, 1))
    return torch.tensor(out, dtype=torch.float64)


ALL = [
    lambda s, t, m, **k: L.token_kl(s, t, m, "forward", **k),
    lambda s, t, m, **k: L.token_kl(s, t, m, "reverse", **k),
    lambda s, t, m, **k: L.generalized_jsd(s, t, m, beta=0.3, **k),
    lambda s, t, m, **k: L.skew_kl(s, t, m, alpha=0.2, **k),
    lambda s, t, m, **k: L.skew_kl(s, t, m, alpha=0.2, direction="reverse", **k),
    lambda s, t, m, **k: L.akl(s, t, m, **k),
]


@SET
@given(seeds)
def test_zero_on_identical_and_nonnegative(seed):
    s, t, m = rand(seed)
    for f in ALL:
        assert torch.allclose(f(s, s.clone(), m), torch.zeros(3), atol=1e-6)
        assert (f(s, t, m) >= -1e-6).all()
        assert (f(s, t, m) > 1e-4).all()  # distinct random distributions: strictly positive


@SET
@given(seeds)
def test_matches_slow_reference_and_direction_relation(seed):
    s, t, m = rand(seed)
    fwd, rev = L.token_kl(s, t, m, "forward"), L.token_kl(s, t, m, "reverse")
    assert torch.allclose(fwd.double(), slow_kl(t, s, m), atol=1e-5)
    assert torch.allclose(rev.double(), slow_kl(s, t, m), atol=1e-5)
    assert torch.allclose(L.token_kl(t, s, m, "reverse"), fwd, atol=1e-6)
    assert not torch.allclose(fwd, rev, atol=1e-3)  # KL is asymmetric


@SET
@given(seeds, st.floats(0.25, 4.0))
def test_temperature(seed, T):
    s, t, m = rand(seed)
    assert torch.allclose(L.token_kl(s, t, m, "forward", temperature=T).double(),
                          slow_kl(t, s, m, temperature=T), atol=1e-5)
    hot = L.token_kl(s, t, m, "forward", temperature=1e4)
    assert (hot < 1e-6).all()


def test_masking_ignores_garbage_and_gets_no_gradient():
    s, t, m = rand(0)
    s.requires_grad_(True)
    t2 = t.clone()
    t2[m == 0] = torch.randn_like(t2[m == 0]) * 100
    for f in ALL:
        a, b = f(s, t, m), f(s, t2, m)
        assert torch.allclose(a, b, atol=1e-6)
        (g,) = torch.autograd.grad(a.sum(), s)
        assert (g[m == 0] == 0).all()
        assert (g[m == 1].abs().sum() > 0)


def test_sum_vs_mean_and_empty_rows():
    s, t, m = rand(1)
    m[1] = 0.0
    mean = L.token_kl(s, t, m, reduction="mean")
    summ = L.token_kl(s, t, m, reduction="sum")
    n = m.sum(1)
    assert torch.allclose(summ[n > 0], mean[n > 0] * n[n > 0])
    assert mean[1] == 0 and summ[1] == 0 and torch.isfinite(mean).all()


def test_extreme_logits_are_finite():
    s, t, m = rand(2, scale=1.0)
    s[0, 0, 0], t[0, 0, 1] = 1e4, -1e4
    t[1, 1] = -1e4
    t[1, 1, 3] = 1e4
    s.requires_grad_(True)
    for f in ALL:
        v = f(s, t, m)
        (g,) = torch.autograd.grad(v.sum(), s)
        assert torch.isfinite(v).all() and torch.isfinite(g).all()
    # a teacher with -inf on tokens the student also ignores: forward KL stays finite
    t3 = t.detach().clone()
    t3[..., -1] = -float("inf")
    assert torch.isfinite(L.token_kl(s, t3, m, "forward")).all()


def test_bf16_close_to_float32_and_chunking_invariant(monkeypatch):
    s, t, m = rand(3, T=70)
    full = L.token_kl(s, t, m)
    bf = L.token_kl(s.bfloat16(), t.bfloat16(), m)
    assert bf.dtype == torch.float32
    assert torch.allclose(bf, full, rtol=0.05, atol=0.02)
    monkeypatch.setattr(L, "CHUNK", 7)
    assert torch.allclose(L.token_kl(s, t, m), full, atol=1e-6)


@SET
@given(seeds)
def test_jsd_bounded_and_akl_between_fkl_rkl(seed):
    s, t, m = rand(seed, T=1)
    m[:] = 1.0
    jsd = L.generalized_jsd(s, t, m, beta=0.5)
    assert (jsd <= math.log(2) + 1e-6).all()
    fkl, rkl = L.token_kl(s, t, m, "forward"), L.token_kl(s, t, m, "reverse")
    a = L.akl(s, t, m)
    assert (a >= torch.minimum(fkl, rkl) - 1e-6).all()
    assert (a <= torch.maximum(fkl, rkl) + 1e-6).all()
    # JSD vanishes at the ends of beta, skew KL at alpha -> 1
    assert (L.generalized_jsd(s, t, m, beta=1e-6) < 1e-4).all()
    assert torch.allclose(L.skew_kl(s, t, m, alpha=0.0), fkl, atol=1e-6)


def test_gradcheck():
    s, t, m = rand(4, B=2, T=3, V=4)
    s = s.double().requires_grad_(True)
    for direction in ("forward", "reverse"):
        assert torch.autograd.gradcheck(
            lambda x, d=direction: L.token_kl(x, t.double(), m, d), (s,))
    assert torch.autograd.gradcheck(lambda x: L.generalized_jsd(x, t.double(), m), (s,))


def test_errors_and_weighted_loss():
    s, t, m = rand(5)
    with pytest.raises(ConfigError, match="vocabulary"):
        L.token_kl(s, t[..., :5], m)
    with pytest.raises(ConfigError):
        L.token_kl(s, t, m, direction="sideways")
    per = torch.tensor([1.0, 2.0, 3.0])
    w = torch.tensor([0.5, 0.0, 1.0])
    assert L.weighted_loss(per, w, w.sum()) == pytest.approx((0.5 + 3.0) / 1.5)
    with pytest.raises(ValueError):
        L.weighted_loss(per, w[:2], 1.0)
