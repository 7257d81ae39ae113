"""Token-level distillation divergences. Every function returns one value per sequence (B,).

Shapes: student_logits and teacher_logits (B, T, V) at the SAME positions; mask (B, T)
with 1 where the position's next token is scored (completion tokens, see batching.pack).
Each loss is a true divergence between the tempered next-token distributions
    S = softmax(student / temperature),   T = softmax(teacher / temperature),
computed exactly over the vocabulary in float32 log space, per token, then averaged over
the masked tokens of each sequence (reduction="mean"; an all-masked row gives 0) or summed
(reduction="sum"). No T^2 gradient-scale factor is applied: the value is the divergence of
the tempered distributions. Work is chunked over the sequence so at most a (B, chunk, V)
float32 block exists at a time (matters for 50k-token vocabularies).

  token_kl(direction="forward")  KL(T || S): teacher forcing on teacher references
  token_kl(direction="reverse")  KL(S || T): on the student's own samples (on-policy)
  generalized_jsd(beta)          beta KL(T || M) + (1-beta) KL(S || M), M = beta T + (1-beta) S
                                 (the mixture convention of TRL's GKD; it vanishes as beta -> 0
                                 or 1, unlike TRL, which switches to plain KL at the ends)
  skew_kl(alpha)                 forward: KL(T || alpha T + (1-alpha) S); reverse:
                                 KL(S || alpha S + (1-alpha) T)   (DistiLLM's skew KL)
  akl(mu)                        Adaptive KL (Wu et al. 2024): head = the teacher's top tokens
                                 whose cumulative probability first reaches mu, tail = the rest,
                                 g_head = sum_head |T - S|, g_tail = sum_tail |T - S|,
                                 AKL = g_head/(g_head+g_tail) KL(T||S) + g_tail/(...) KL(S||T);
                                 the mixing weights are treated as constants (no gradient).
"""

from __future__ import annotations

import math

import torch

from paced_theory.errors import ConfigError

CHUNK = 64


def _check(student_logits, teacher_logits, mask):
    if student_logits.shape[-1] != teacher_logits.shape[-1]:
        raise ConfigError(f"student has {student_logits.shape[-1]} logits per token but teacher "
                          f"has {teacher_logits.shape[-1]}: they must share a vocabulary")
    same = student_logits.shape[:2] == teacher_logits.shape[:2] == mask.shape
    if not same:
        raise ValueError(f"shape mismatch: student {tuple(student_logits.shape)}, teacher "
                         f"{tuple(teacher_logits.shape)}, mask {tuple(mask.shape)}")


def _f32(x):
    """At least float32 (bf16/fp16 logits are upcast; float64 stays float64)."""
    return x if x.dtype == torch.float64 else x.float()


def _kl(logp, logq):
    """sum_v p (log p - log q) with 0 log 0 = 0 (p = 0 where logp = -inf)."""
    p = logp.exp()
    return torch.where(p > 0, p * (logp - logq), torch.zeros_like(p)).sum(-1)


def _per_token(student_logits, teacher_logits, mask, temperature, fn):
    """Apply fn(log S, log T) -> (B, chunk) chunk by chunk; return (B, T) masked values."""
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0 (got {temperature})")
    out = []
    for t0 in range(0, student_logits.shape[1], CHUNK):
        s = torch.log_softmax(_f32(student_logits[:, t0:t0 + CHUNK]) / temperature, dim=-1)
        t = torch.log_softmax(_f32(teacher_logits[:, t0:t0 + CHUNK]) / temperature, dim=-1)
        out.append(fn(s, t))
    per = torch.cat(out, dim=1)
    return torch.where(mask > 0, per, torch.zeros_like(per))


def _reduce(per, mask, reduction):
    if reduction == "sum":
        return per.sum(1)
    if reduction == "mean":
        return per.sum(1) / mask.float().sum(1).clamp(min=1.0)
    raise ConfigError(f"reduction must be 'mean' or 'sum' (got {reduction!r})")


def token_kl(student_logits, teacher_logits, mask, direction: str = "forward",
             temperature: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """Forward KL(T || S) or reverse KL(S || T) per sequence (see the module docstring)."""
    _check(student_logits, teacher_logits, mask)
    if direction == "forward":
        fn = lambda s, t: _kl(t, s)  # noqa: E731
    elif direction == "reverse":
        fn = lambda s, t: _kl(s, t)  # noqa: E731
    else:
        raise ConfigError(f"direction must be 'forward' or 'reverse' (got {direction!r})")
    return _reduce(_per_token(student_logits, teacher_logits, mask, temperature, fn), mask,
                   reduction)


def _mix(log_a, log_b, w):
    """log(w a + (1-w) b) in log space."""
    return torch.logaddexp(log_a + math.log(w), log_b + math.log1p(-w))


def generalized_jsd(student_logits, teacher_logits, mask, beta: float = 0.5,
                    temperature: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    _check(student_logits, teacher_logits, mask)
    if not 0.0 < beta < 1.0:
        raise ConfigError(f"jsd beta must be in (0, 1) (got {beta}); use token_kl at the ends")

    def fn(s, t):
        m = _mix(t, s, beta)
        return beta * _kl(t, m) + (1 - beta) * _kl(s, m)

    return _reduce(_per_token(student_logits, teacher_logits, mask, temperature, fn), mask,
                   reduction)


def skew_kl(student_logits, teacher_logits, mask, alpha: float = 0.1,
            direction: str = "forward", temperature: float = 1.0,
            reduction: str = "mean") -> torch.Tensor:
    _check(student_logits, teacher_logits, mask)
    if not 0.0 <= alpha < 1.0:
        raise ConfigError(f"skew alpha must be in [0, 1) (got {alpha})")
    if direction not in ("forward", "reverse"):
        raise ConfigError(f"direction must be 'forward' or 'reverse' (got {direction!r})")

    def fn(s, t):
        if direction == "forward":
            return _kl(t, _mix(t, s, alpha) if alpha > 0 else s)
        return _kl(s, _mix(s, t, alpha) if alpha > 0 else t)

    return _reduce(_per_token(student_logits, teacher_logits, mask, temperature, fn), mask,
                   reduction)


def akl(student_logits, teacher_logits, mask, mu: float = 0.5, temperature: float = 1.0,
        reduction: str = "mean") -> torch.Tensor:
    _check(student_logits, teacher_logits, mask)
    if not 0.0 < mu <= 1.0:
        raise ConfigError(f"akl mu must be in (0, 1] (got {mu})")

    def fn(s, t):
        with torch.no_grad():
            pt, ps = t.exp(), s.exp()
            sorted_t, order = pt.sort(dim=-1, descending=True)
            # head: tokens up to and including the one where the cumulative mass reaches mu
            head_sorted = (sorted_t.cumsum(-1) - sorted_t) < mu
            head = torch.zeros_like(head_sorted).scatter(-1, order, head_sorted)
            gap = (pt - ps).abs()
            g_head = (gap * head).sum(-1)
            g_tail = (gap * ~head).sum(-1)
            w_head = g_head / (g_head + g_tail).clamp(min=1e-12)
        return w_head * _kl(t, s) + (1 - w_head) * _kl(s, t)

    return _reduce(_per_token(student_logits, teacher_logits, mask, temperature, fn), mask,
                   reduction)


def weighted_loss(per_seq: torch.Tensor, weights: torch.Tensor, normaliser) -> torch.Tensor:
    """sum_i w_i L_i / normaliser: the per-problem PACED weight multiplies the sequence loss."""
    if per_seq.shape != weights.shape:
        raise ValueError(f"per-sequence losses {tuple(per_seq.shape)} and weights "
                         f"{tuple(weights.shape)} differ in shape")
    return (weights.to(per_seq.dtype) * per_seq).sum() / normaliser


LOSSES = {"forward", "reverse", "jsd", "skew", "akl"}
