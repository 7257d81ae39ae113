"""Distillation losses tested for their mathematical properties (the TRL habit): zero on
identical inputs, non-negativity, the forward/reverse relation and asymmetry, agreement with
slow obviously-correct references, temperature, masking, reductions, extreme logits, bf16,
chunking (values, gradients and memory), the JSD/skew/AKL bounds and limits, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import paced_train.loop.losses as L
from paced_theory.errors import ConfigError, InputError

SET = settings(max_examples=25, deadline=None)


# name -> callable(s, t, m, **kw); every loss in the module, in both directions where it has one
LOSSES = {
    "fkl": lambda s, t, m, **k: L.token_kl(s, t, m, "forward", **k),
    "rkl": lambda s, t, m, **k: L.token_kl(s, t, m, "reverse", **k),
    "jsd": lambda s, t, m, **k: L.generalized_jsd(s, t, m, beta=0.3, **k),
    "jsd_half": lambda s, t, m, **k: L.generalized_jsd(s, t, m, beta=0.5, **k),
    "skl": lambda s, t, m, **k: L.skew_kl(s, t, m, alpha=0.2, **k),
    "srkl": lambda s, t, m, **k: L.skew_kl(s, t, m, alpha=0.2, direction="reverse", **k),
    "akl": lambda s, t, m, **k: L.akl(s, t, m, mu=0.5, **k),
    "akl_mu": lambda s, t, m, **k: L.akl(s, t, m, mu=0.8, **k),
}
ALL = sorted(LOSSES)


@st.composite
def batches(draw, max_b=3, max_t=5, max_v=8):
    """(student, teacher, mask) float32 logits of random shape, scale and mask density."""
    b, t, v = draw(st.integers(1, max_b)), draw(st.integers(1, max_t)), draw(st.integers(2, max_v))
    scale = draw(st.floats(0.1, 8.0))
    drop = draw(st.floats(0.0, 0.7))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    s = torch.randn(b, t, v, generator=g) * scale
    te = torch.randn(b, t, v, generator=g) * scale
    m = (torch.rand(b, t, generator=g) >= drop).float()
    return s, te, m


def rand(seed, B=3, T=5, V=7, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(B, T, V, generator=g) * scale
    t = torch.randn(B, T, V, generator=g) * scale
    m = (torch.rand(B, T, generator=g) > 0.3).float()
    m[:, 0] = 1.0
    return s, t, m


# --------------------------------------------------------- slow, obviously-correct references
def softmax_row(logits, T=1.0):
    x = [v / T for v in logits.double().tolist()]
    top = max(x)
    e = [math.exp(v - top) for v in x]
    z = sum(e)
    return [v / z for v in e]


def kl_lists(p, q):
    """sum p log(p/q) over p > 0, in plain python floats."""
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def mix(a, b, w):
    return [w * x + (1 - w) * y for x, y in zip(a, b)]


def akl_token(P, S, mu):
    order = sorted(range(len(P)), key=lambda v: -P[v])
    head, cum = set(), 0.0
    for v in order:  # the top tokens up to and including the one where the mass reaches mu
        head.add(v)
        cum += P[v]
        if cum >= mu:
            break
    g_head = sum(abs(P[v] - S[v]) for v in head)
    g_tail = sum(abs(P[v] - S[v]) for v in range(len(P)) if v not in head)
    w = g_head / (g_head + g_tail) if g_head + g_tail > 0 else 0.5
    return w * kl_lists(P, S) + (1 - w) * kl_lists(S, P)


def ref_token(name, P, S):
    """Per-token divergence from explicit formulas; P = teacher, S = student."""
    return {
        "jsd": lambda: 0.3 * kl_lists(P, mix(P, S, 0.3)) + 0.7 * kl_lists(S, mix(P, S, 0.3)),
        "jsd_half": lambda: 0.5 * kl_lists(P, mix(P, S, 0.5)) + 0.5 * kl_lists(S, mix(P, S, 0.5)),
        "skl": lambda: kl_lists(P, mix(P, S, 0.2)),
        "srkl": lambda: kl_lists(S, mix(S, P, 0.2)),
        "akl": lambda: akl_token(P, S, 0.5),
        "akl_mu": lambda: akl_token(P, S, 0.8),
    }[name]()


def reference(name, s, t, m, T=1.0, reduction="mean"):
    """Loops over (b, t); forward/reverse KL via torch.distributions.kl_divergence."""
    out = []
    for b in range(s.shape[0]):
        vals = []
        for j in range(s.shape[1]):
            if m[b, j] == 0:
                continue
            if name in ("fkl", "rkl"):
                cs = torch.distributions.Categorical(logits=s[b, j].double() / T)
                ct = torch.distributions.Categorical(logits=t[b, j].double() / T)
                pair = (ct, cs) if name == "fkl" else (cs, ct)
                vals.append(float(torch.distributions.kl_divergence(*pair)))
            else:
                vals.append(ref_token(name, softmax_row(t[b, j], T), softmax_row(s[b, j], T)))
        total = sum(vals)
        out.append(total if reduction == "sum" else total / max(len(vals), 1))
    return torch.tensor(out, dtype=torch.float64)


# ------------------------------------------------------------------------------- properties
@SET
@given(batches(), st.floats(-50, 50))
def test_zero_on_identical_and_on_shifted_logits(batch, c):
    s, t, m = batch
    shift = torch.randn(s.shape[:2]).unsqueeze(-1) * c  # softmax ignores a per-position shift
    for name in ALL:
        f = LOSSES[name]
        assert torch.allclose(f(s, s.clone(), m), torch.zeros(len(s)), atol=1e-6), name
        assert torch.allclose(f(s + shift, s, m), torch.zeros(len(s)), atol=1e-4), name
        assert torch.allclose(f(s + shift, t - shift, m), f(s, t, m), rtol=1e-4, atol=1e-4), name


@SET
@given(batches())
def test_nonnegative_and_positive_when_distributions_differ(batch):
    s, t, m = batch
    for name in ALL:
        v = LOSSES[name](s, t, m)
        assert (v >= -1e-7).all(), name
        ref = reference(name, s, t, m)
        assert (v[ref > 1e-5] > 0).all(), name  # zero only where the distributions agree


@SET
@given(batches(), st.floats(0.01, 0.99))
def test_swapping_roles_swaps_direction(batch, w):
    s, t, m = batch
    assert torch.allclose(L.token_kl(s, t, m, "forward"), L.token_kl(t, s, m, "reverse"),
                          rtol=1e-6, atol=1e-6)
    assert torch.allclose(L.skew_kl(s, t, m, alpha=w, direction="forward"),
                          L.skew_kl(t, s, m, alpha=w, direction="reverse"), rtol=1e-5, atol=1e-6)
    assert torch.allclose(L.generalized_jsd(s, t, m, beta=w),
                          L.generalized_jsd(t, s, m, beta=1 - w), rtol=1e-5, atol=1e-6)


def test_forward_and_reverse_differ_in_general():
    # a worked example: P = (0.9, 0.1) teacher, S = (0.5, 0.5) student
    P, S = torch.tensor([0.9, 0.1]), torch.tensor([0.5, 0.5])
    t, s, m = P.log().view(1, 1, 2), S.log().view(1, 1, 2), torch.ones(1, 1)
    fwd = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    rev = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert L.token_kl(s, t, m, "forward").item() == pytest.approx(fwd, rel=1e-5)
    assert L.token_kl(s, t, m, "reverse").item() == pytest.approx(rev, rel=1e-5)
    assert abs(fwd - rev) > 0.1
    for seed in range(5):  # and for generic random logits
        s, t, m = rand(seed)
        assert not torch.allclose(L.token_kl(s, t, m, "forward"), L.token_kl(s, t, m, "reverse"),
                                  atol=1e-3)
        assert not torch.allclose(L.skew_kl(s, t, m), L.skew_kl(s, t, m, direction="reverse"),
                                  atol=1e-3)


@SET
@given(batches(), st.floats(0.25, 4.0), st.sampled_from(["mean", "sum"]))
def test_matches_slow_reference(batch, T, reduction):
    s, t, m = batch
    for name in ALL:
        got = LOSSES[name](s, t, m, temperature=T, reduction=reduction).double()
        want = reference(name, s, t, m, T=T, reduction=reduction)
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), (name, got, want)


@SET
@given(batches(), st.floats(0.1, 10.0))
def test_temperature_is_the_divergence_of_tempered_softmaxes(batch, T):
    s, t, m = batch
    for name in ALL:
        f = LOSSES[name]
        # no hidden T^2 factor: the value is the divergence of softmax(x / T)
        assert torch.allclose(f(s, t, m, temperature=T), f(s / T, t / T, m),
                              rtol=1e-5, atol=1e-6), name


def test_high_temperature_sends_every_divergence_to_zero():
    s, t, m = rand(0, scale=5.0)
    for name in ALL:
        f = LOSSES[name]
        vals = [f(s, t, m, temperature=T).max().item() for T in (1.0, 10.0, 100.0, 1e3, 1e4)]
        assert vals[0] > 0.05, name
        assert all(b < a for a, b in zip(vals, vals[1:])), (name, vals)
        assert vals[-1] < 1e-6, (name, vals)


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_masked_positions_are_ignored_and_get_zero_gradient(chunk_size):
    s, t, m = rand(1, T=6)
    s2, t2 = s.clone(), t.clone()
    junk = torch.tensor([float("nan"), float("inf"), -float("inf"), 1e30, -1e30, 7.0, 0.0])
    hidden = m == 0
    s2[hidden] = junk[torch.randint(0, 7, s2[hidden].shape)]
    t2[hidden] = junk[torch.randint(0, 7, t2[hidden].shape)]
    for name in ALL:
        f = LOSSES[name]
        s2g = s2.clone().requires_grad_(True)
        t2g = t2.clone().requires_grad_(True)
        clean, dirty = f(s, t, m, chunk_size=chunk_size), f(s2g, t2g, m, chunk_size=chunk_size)
        assert torch.allclose(clean, dirty, atol=1e-6), name
        gs, gt = torch.autograd.grad(dirty.sum(), (s2g, t2g))
        for g in (gs, gt):
            assert (g[hidden] == 0).all() and torch.isfinite(g).all(), name
        assert gs[~hidden].abs().sum() > 0, name


def test_sum_vs_mean_and_all_masked_rows():
    s, t, m = rand(2)
    m[1] = 0.0
    n = m.sum(1)
    for name in ALL:
        f = LOSSES[name]
        sg = s.clone().requires_grad_(True)
        mean, total = f(sg, t, m, reduction="mean"), f(sg, t, m, reduction="sum")
        assert torch.allclose(total, mean * n, rtol=1e-6, atol=1e-6), name
        assert mean[1] == 0 and total[1] == 0, name
        (g,) = torch.autograd.grad(mean.sum(), sg)
        assert torch.isfinite(g).all() and (g[1] == 0).all(), name


def test_extreme_logits_give_finite_values_and_gradients():
    s, t, m = rand(3, scale=1.0)
    s[0, 0, 0], s[0, 0, 1], t[0, 0, 1], t[0, 0, 2] = 1e4, -1e4, -1e4, 1e4
    t[1, 1] = -1e4
    t[1, 1, 3] = 1e4
    s[2, 0] = 1e4  # all-equal huge logits: uniform, must not overflow
    for name in ALL:
        sg, tg = s.clone().requires_grad_(True), t.clone().requires_grad_(True)
        v = LOSSES[name](sg, tg, m)
        grads = torch.autograd.grad(v.sum(), (sg, tg))
        assert torch.isfinite(v).all() and all(torch.isfinite(g).all() for g in grads), name
    # -inf in the teacher (banned tokens) where a divergence allows it: the teacher puts no
    # mass there, and every mixture keeps the student's support
    t3 = t.clone()
    t3[..., -2:] = -float("inf")
    allowed = [lambda s_, t_: L.token_kl(s_, t_, m, "forward"),
               lambda s_, t_: L.generalized_jsd(s_, t_, m, beta=0.0),
               lambda s_, t_: L.generalized_jsd(s_, t_, m, beta=0.5),
               lambda s_, t_: L.skew_kl(s_, t_, m, alpha=0.1),
               lambda s_, t_: L.skew_kl(s_, t_, m, alpha=0.1, direction="reverse")]
    for f in allowed:
        sg, tg = s.clone().requires_grad_(True), t3.clone().requires_grad_(True)
        v = f(sg, tg)
        grads = torch.autograd.grad(v.sum(), (sg, tg))
        assert torch.isfinite(v).all() and all(torch.isfinite(g).all() for g in grads)
    # the reverse KL is honestly infinite where the student has mass the teacher forbids
    assert torch.isinf(L.token_kl(s, t3, m, "reverse")).all()
    # a banned token in BOTH models costs nothing in either direction
    s3 = s.clone()
    s3[..., -2:] = -float("inf")
    for d in ("forward", "reverse"):
        v = L.token_kl(s3, t3, m, d)
        assert torch.isfinite(v).all()
        assert torch.allclose(v, L.token_kl(s[..., :-2], t[..., :-2], m, d), atol=1e-5)


def test_bf16_inputs_are_computed_in_float32():
    s, t, m = rand(4, T=9, V=50)
    for name in ALL:
        f = LOSSES[name]
        full = f(s, t, m)
        bf = f(s.bfloat16(), t.bfloat16(), m)
        assert bf.dtype == torch.float32, name
        # exactly the float32 result on the bf16-rounded logits: nothing computed in bf16
        assert torch.allclose(bf, f(s.bfloat16().float(), t.bfloat16().float(), m),
                              rtol=1e-6, atol=1e-6), name
        # and close to the float32 logits (bf16 keeps 8 bits of mantissa)
        assert torch.allclose(bf, full, rtol=0.03, atol=0.01), name
    sg = s.bfloat16().requires_grad_(True)
    (g,) = torch.autograd.grad(L.token_kl(sg, t.bfloat16(), m, chunk_size=2).sum(), sg)
    assert g.dtype == torch.bfloat16 and torch.isfinite(g.float()).all()


@SET
@given(batches(max_t=9), st.integers(1, 10))
def test_chunking_gives_the_same_values_and_gradients(batch, chunk):
    s, t, m = batch
    for name in ALL:
        f = LOSSES[name]
        outs = []
        for c in (None, chunk):
            sg, tg = s.clone().requires_grad_(True), t.clone().requires_grad_(True)
            v = f(sg, tg, m, chunk_size=c)
            outs.append((v, *torch.autograd.grad((v * torch.arange(1.0, len(v) + 1)).sum(),
                                                 (sg, tg))))
        for a, b in zip(*outs):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-7), name


def test_chunking_bounds_the_memory_kept_for_backward():
    """Tensors saved for backward, other than views of the inputs, stay O(B * chunk * V);
    the unchunked computation keeps several (B, T, V) float32 blocks."""
    B, T, V, chunk = 2, 48, 300, 4
    s = torch.randn(B, T, V, requires_grad=True)
    t = torch.randn(B, T, V, requires_grad=True)
    m = torch.ones(B, T)
    inputs = {s.untyped_storage().data_ptr(), t.untyped_storage().data_ptr()}
    block = B * chunk * V * 4  # bytes of one float32 chunk

    def saved_bytes(f, chunk_size):
        total = [0]

        def pack(x):
            if x.untyped_storage().data_ptr() not in inputs:
                total[0] += x.numel() * x.element_size()
            return x

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            v = f(s, t, m, chunk_size=chunk_size)
        v.sum().backward()
        return total[0]

    for name in ALL:
        assert saved_bytes(LOSSES[name], chunk) < block, name
        assert saved_bytes(LOSSES[name], T) > 2 * B * T * V * 4, name  # what chunking avoids
    # the working set of each forward/backward step is a chunk, not the sequence
    seen = []
    real = torch.log_softmax

    def spy(x, *a, **k):
        seen.append(x.shape)
        return real(x, *a, **k)

    torch.log_softmax = spy
    try:
        L.token_kl(s, t, m, chunk_size=chunk).sum().backward()
    finally:
        torch.log_softmax = real
    # (scored positions of one chunk, V): at most B * chunk rows at a time
    assert seen and all(len(sh) == 2 and sh[0] <= B * chunk and sh[1] == V for sh in seen)


def test_default_chunk_follows_the_element_budget(monkeypatch):
    seen = []
    real = L._chunk_values
    monkeypatch.setattr(L, "_chunk_values", lambda *a: seen.append(a[2].shape) or real(*a))
    monkeypatch.setattr(L, "CHUNK_ELEMENTS", 2 * 3 * 10)  # B * V = 20 -> chunks of 3 positions
    s, t, m = rand(5, B=2, T=8, V=10)
    L.token_kl(s, t, m)
    assert [sh[1] for sh in seen] == [3, 3, 2]


# ------------------------------------------------------------------ JSD, skew KL and AKL
def h(b):
    return -b * math.log(b) - (1 - b) * math.log(1 - b)


@SET
@given(batches(), st.floats(0.001, 0.999))
def test_jsd_bounded_by_the_entropy_of_beta(batch, beta):
    s, t, m = batch
    v = L.generalized_jsd(s, t, m, beta=beta)
    assert (v >= 0).all() and (v <= h(beta) + 1e-6).all()


def test_jsd_reaches_log2_on_disjoint_supports_and_has_the_kl_limits():
    s = torch.full((1, 1, 4), -1e4)
    t = s.clone()
    s[0, 0, 0], t[0, 0, 1] = 0.0, 0.0
    m = torch.ones(1, 1)
    assert L.generalized_jsd(s, t, m, beta=0.5).item() == pytest.approx(math.log(2), abs=1e-6)
    s, t, m = rand(6, scale=2.0)
    s, t = s.double(), t.double()  # the limits are tested, not float32 cancellation
    fkl, rkl = L.token_kl(s, t, m, "forward"), L.token_kl(s, t, m, "reverse")
    # JSD_beta / beta -> KL(teacher || student) as beta -> 0, and / (1-beta) -> reverse KL at 1
    # (the O(beta) correction involves a chi-square, so convergence is checked by rate)
    err_f = [(L.generalized_jsd(s, t, m, beta=e) / e - fkl).abs().max() for e in (1e-3, 1e-6)]
    err_r = [(L.generalized_jsd(s, t, m, beta=1 - e) / e - rkl).abs().max()
             for e in (1e-3, 1e-6)]
    for err in (err_f, err_r):
        assert err[1] < 1e-3 and err[1] < 1e-2 * err[0]
    # the JSD itself vanishes at the ends; TRL's convention defines the endpoints as the limits
    assert (L.generalized_jsd(s, t, m, beta=1e-7) < 1e-5).all()
    assert torch.equal(L.generalized_jsd(s, t, m, beta=0.0), fkl)
    assert torch.equal(L.generalized_jsd(s, t, m, beta=1.0), rkl)


@SET
@given(batches(), st.floats(0.001, 0.99), st.sampled_from(["forward", "reverse"]))
def test_skew_kl_bounds_and_limits(batch, alpha, direction):
    s, t, m = batch
    v = L.skew_kl(s, t, m, alpha=alpha, direction=direction)
    assert (v >= 0).all() and (v <= math.log(1 / alpha) + 1e-5).all()
    assert torch.equal(L.skew_kl(s, t, m, alpha=0.0, direction=direction),
                       L.token_kl(s, t, m, direction))
    assert (L.skew_kl(s, t, m, alpha=1 - 1e-6, direction=direction) < 1e-4).all()


@SET
@given(batches(max_b=4, max_t=1), st.floats(0.05, 1.0))
def test_akl_lies_between_forward_and_reverse_kl_per_token(batch, mu):
    s, t, _ = batch
    m = torch.ones(s.shape[:2])  # one token per row: per-sequence values are per-token values
    fkl, rkl = L.token_kl(s, t, m, "forward"), L.token_kl(s, t, m, "reverse")
    a = L.akl(s, t, m, mu=mu)
    assert (a >= torch.minimum(fkl, rkl) - 1e-6).all()
    assert (a <= torch.maximum(fkl, rkl) + 1e-6).all()
    w = L.akl_head_weight(s, t, m, mu=mu)[:, 0]
    assert ((w >= 0) & (w <= 1)).all()
    assert torch.allclose(a, w * fkl + (1 - w) * rkl, rtol=1e-5, atol=1e-6)
    assert torch.allclose(L.akl(s, t, m, mu=1.0), fkl, rtol=1e-5, atol=1e-6)


def test_akl_head_is_the_teacher_top_mass_mu():
    # teacher P = (0.5, 0.3, 0.2): head {0} for mu <= 0.5, {0, 1} for 0.5 < mu <= 0.8, all after
    P = torch.tensor([0.5, 0.3, 0.2])
    S = torch.tensor([0.1, 0.6, 0.3])  # gaps 0.4, 0.3, 0.1
    t, s, m = P.log().view(1, 1, 3), S.log().view(1, 1, 3), torch.ones(1, 1)
    for mu, head_gap in ((0.05, 0.4), (0.45, 0.4), (0.55, 0.7), (0.75, 0.7), (0.85, 0.8),
                         (1.0, 0.8)):
        w = L.akl_head_weight(s, t, m, mu=mu).item()
        assert w == pytest.approx(head_gap / 0.8, rel=1e-5), mu
    # a peaked teacher: at mu = 1 every token is head, so AKL is the forward KL even where the
    # teacher's probability is ~1e-7 and the student's is large
    t2 = torch.tensor([[[-1.45, 15.46, 1.15, 5.51]]])
    s2 = torch.tensor([[[2.16, -8.14, 3.33, 3.92]]])
    assert L.akl_head_weight(s2, t2, m, mu=1.0).item() == 1.0
    assert L.akl(s2, t2, m, mu=1.0).item() == pytest.approx(L.token_kl(s2, t2, m).item(),
                                                            rel=1e-6)


# ---------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_gradcheck_on_small_double_inputs(chunk_size):
    s, t, m = rand(7, B=2, T=3, V=4)
    s, t = s.double().requires_grad_(True), t.double().requires_grad_(True)
    fns = [lambda a, b: L.token_kl(a, b, m, "forward", chunk_size=chunk_size),
           lambda a, b: L.token_kl(a, b, m, "reverse", temperature=1.7, chunk_size=chunk_size),
           lambda a, b: L.generalized_jsd(a, b, m, beta=0.3, chunk_size=chunk_size),
           lambda a, b: L.skew_kl(a, b, m, alpha=0.1, reduction="sum", chunk_size=chunk_size),
           lambda a, b: L.skew_kl(a, b, m, alpha=0.4, direction="reverse",
                                  chunk_size=chunk_size)]
    for f in fns:
        assert torch.autograd.gradcheck(f, (s, t))


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_gradients_match_closed_forms_and_akl_weights_are_constants(chunk_size):
    """d KL(P||S)/dz = (S - P)/T and d KL(S||P)/dz = S (log S - log P - KL(S||P))/T per token;
    AKL's gradient is w dFKL + (1-w) dRKL with w = g_head/(g_head+g_tail) held fixed."""
    s, t, m = rand(8, B=2, T=5, V=6)
    T = 1.5
    n = m.sum(1).clamp(min=1).view(-1, 1, 1)
    ls, lt = torch.log_softmax(s.double() / T, -1), torch.log_softmax(t.double() / T, -1)
    S, P = ls.exp(), lt.exp()
    rkl = (S * (ls - lt)).sum(-1, keepdim=True)
    d_f = (S - P) / T * m.unsqueeze(-1) / n
    d_r = S * (ls - lt - rkl) / T * m.unsqueeze(-1) / n
    w = L.akl_head_weight(s, t, m, mu=0.5, temperature=T).double().unsqueeze(-1)
    for f, want in ((lambda x: L.token_kl(x, t, m, "forward", T, chunk_size=chunk_size), d_f),
                    (lambda x: L.token_kl(x, t, m, "reverse", T, chunk_size=chunk_size), d_r),
                    (lambda x: L.akl(x, t, m, 0.5, T, chunk_size=chunk_size),
                     w * d_f + (1 - w) * d_r)):
        x = s.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(f(x).sum(), x)
        assert torch.allclose(g.double(), want, atol=1e-6)


# ------------------------------------------------------------------------- errors, weights
def test_argument_errors_name_the_problem():
    s, t, m = rand(9)
    with pytest.raises(ConfigError, match=r"V=7.*V=5"):
        L.token_kl(s, t[..., :5], m)
    for f in (L.generalized_jsd, L.skew_kl, L.akl, L.akl_head_weight):
        with pytest.raises(ConfigError, match="vocabulary"):
            f(s[..., :3], t, m)
    with pytest.raises(ConfigError, match="direction"):
        L.token_kl(s, t, m, direction="sideways")
    with pytest.raises(ConfigError, match="reduction"):
        L.token_kl(s, t, m, reduction="batchmean")
    for T in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="temperature"):
            L.token_kl(s, t, m, temperature=T)
    with pytest.raises(ConfigError, match="beta"):
        L.generalized_jsd(s, t, m, beta=1.5)
    with pytest.raises(ConfigError, match="alpha"):
        L.skew_kl(s, t, m, alpha=1.0)
    with pytest.raises(ConfigError, match="mu"):
        L.akl(s, t, m, mu=0.0)
    with pytest.raises(ConfigError, match="chunk_size"):
        L.token_kl(s, t, m, chunk_size=0)
    with pytest.raises(InputError, match="mask"):
        L.token_kl(s, t, m[:, :3])
    with pytest.raises(InputError, match="same"):
        L.token_kl(s, t[:, :3], m)
    with pytest.raises(InputError, match="student_logits"):
        L.token_kl(s[0], t, m)


def test_weighted_loss():
    per = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w = torch.tensor([0.5, 0.0, 1.0])
    loss = L.weighted_loss(per, w, w.sum())
    assert loss.item() == pytest.approx((0.5 * 1 + 3.0) / 1.5)
    (g,) = torch.autograd.grad(loss, per)
    assert torch.allclose(g, w / 1.5)  # a zero-weight problem gets no gradient
    assert L.weighted_loss(per, np.array([1.0, 1.0, 1.0]), 3).item() == pytest.approx(2.0)
    with pytest.raises(InputError, match=r"\(2,\).*\(3,\)"):
        L.weighted_loss(per, w[:2], 1.0)
    with pytest.raises(InputError, match="1-D"):
        L.weighted_loss(per.view(3, 1), w.view(3, 1), 1.0)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(InputError, match="normaliser"):
            L.weighted_loss(per, w, bad)
    with pytest.raises(InputError, match=">= 0"):
        L.weighted_loss(per, torch.tensor([1.0, -0.5, 1.0]), 1.0)


def test_end_to_end_with_a_model_shaped_batch():
    """A tiny embedding 'model' trained for a few steps on the forward KL moves towards the
    teacher: the loss decreases and ends well below where it started."""
    g = torch.Generator().manual_seed(0)
    V, B, T = 11, 4, 6
    teacher = torch.randn(B, T, V, generator=g) * 2
    student = torch.zeros(B, T, V, requires_grad=True)
    m = torch.ones(B, T)
    opt = torch.optim.SGD([student], lr=5.0)
    first = None
    for _ in range(50):
        loss = L.weighted_loss(L.token_kl(student, teacher, m, chunk_size=4), torch.ones(B), B)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first


def test_divergence_dispatches_every_kind_with_the_configs_parameters():
    """losses.divergence is what the loop calls: each kind equals its function called with
    the [loss] section's parameters; a kind it does not know is refused by name."""
    from paced_train.config import LossSection

    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 3, 5, generator=g), torch.randn(2, 3, 5, generator=g)
    m = torch.ones(2, 3)
    c = LossSection(temperature=1.5, jsd_beta=0.3, skew_alpha=0.2, akl_mu=0.7)
    direct = {
        "forward": L.token_kl(s, t, m, "forward", temperature=1.5),
        "reverse": L.token_kl(s, t, m, "reverse", temperature=1.5),
        "jsd": L.generalized_jsd(s, t, m, beta=0.3, temperature=1.5),
        "skew": L.skew_kl(s, t, m, alpha=0.2, temperature=1.5),
        "akl": L.akl(s, t, m, mu=0.7, temperature=1.5),
    }
    assert set(direct) == set(L.LOSSES)
    values = {k: L.divergence(k, s, t, m, c) for k in L.LOSSES}
    for k in L.LOSSES:
        assert torch.equal(values[k], direct[k]), k
    assert len({tuple(v.tolist()) for v in values.values()}) == len(L.LOSSES)  # all differ
    for bad in ("two-stage", "kl", ""):
        with pytest.raises(ConfigError, match="loss.schedule"):
            L.divergence(bad, s, t, m, c)
