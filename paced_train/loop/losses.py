"""Token-level distillation divergences, one value per sequence (B,).

Inputs: student_logits and teacher_logits of shape (B, T, V) at the SAME positions (logits
at t predict token t+1), and mask (B, T), nonzero where that prediction is scored (the
completion tokens, see batching.pack). Every loss here is a true divergence between the
tempered next-token distributions

    S = softmax(student_logits / temperature),   P = softmax(teacher_logits / temperature)

(>= 0, and 0 iff S == P at every scored position), computed exactly over the vocabulary,
per token, then reduced over each sequence's scored tokens:
    reduction="mean": sum over scored tokens / number of scored tokens (0 for a row with
                      none -- never NaN);
    reduction="sum":  sum over scored tokens.

Numerics ("a KL is a KL"; DESIGN.md):
- every distribution is a log_softmax of the logits upcast to float32 (float64 stays
  float64), so bf16/fp16 logits lose nothing beyond their own rounding; mixtures are formed
  in log space with logaddexp; KL(A || B) = sum_v a_v (log a_v - log b_v) with 0 log 0 = 0,
  so a teacher logit of -inf (a banned token) costs nothing where it is allowed to.
- only the scored positions are gathered and computed: garbage at masked positions (NaN,
  inf) cannot reach the value or the gradient, their gradient is exactly 0, and the work
  is proportional to the scored tokens, not to B * T.
- the sequence is processed in chunks of positions so that only O(B * chunk * V) float32
  working memory exists at a time (CHUNK_ELEMENTS, about 16 MiB per block). When a gradient
  is needed and there is more than one chunk, each chunk runs under activation
  checkpointing, so the backward pass also recomputes one chunk at a time instead of
  holding every chunk's softmax (what matters for 50k-token vocabularies).

Temperature: both logits are divided by `temperature` and NO T^2 factor is applied, so the
value is exactly the divergence of the tempered distributions. (Hinton et al. multiply the
loss by T^2 to keep gradient magnitudes comparable across temperatures; a caller who wants
that multiplies the result by temperature**2.)

Directions (teacher = P, student = S):
  token_kl(direction="forward")  KL(P || S): teacher forcing on teacher references.
  token_kl(direction="reverse")  KL(S || P): on the student's own samples (on-policy).
  generalized_jsd(beta)          beta KL(P || M) + (1-beta) KL(S || M), M = beta P + (1-beta) S
                                 (Agarwal et al. 2024, GKD, eq. 1; TRL's GKDTrainer convention).
  skew_kl(alpha, direction)      forward: KL(P || alpha P + (1-alpha) S);
                                 reverse: KL(S || alpha S + (1-alpha) P)   (Ko et al. 2024).
  akl(mu)                        Adaptive KL (Wu et al. 2024): per-token mix of forward and
                                 reverse KL weighted by the teacher head / tail gaps.

Not a divergence: loss.schedule = "rl" trains on the verifier's reward instead of a teacher
(policy_gradient and its parts, at the end of this file; the step is trainer.rl_step).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from paced_theory.errors import ConfigError, InputError

CHUNK_ELEMENTS = 1 << 22
"""Target size of one (B, chunk, V) working block, in elements (2^22 float32 = 16 MiB)."""

LOSSES = ("forward", "reverse", "jsd", "skew", "akl")
"""The divergences a run can train with: loss.schedule names one of them (or "two-stage",
forward then reverse, or RL; config.CHOICES is built from this tuple)."""

RL = "rl"
"""loss.schedule = "rl": the policy gradient of the verifier's reward (policy_gradient), no
teacher. A schedule, not a divergence: `divergence` refuses it."""

PerToken = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""fn(log S, log P) -> per-token divergence, (B, chunk, V) x 2 -> (B, chunk)."""


# ----------------------------------------------------------------------------- helpers
def _kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """sum_v p_v (log p_v - log q_v) over the last axis, with 0 log 0 = 0.

    The difference is zeroed where p = 0 BEFORE the product, so a -inf in log p (a banned
    token) gives neither a NaN value nor a NaN gradient. Where p > 0 and q = 0 the KL is
    honestly +inf.
    """
    p = logp.exp()
    diff = torch.where(p > 0, logp - logq, torch.zeros((), dtype=p.dtype, device=p.device))
    return (p * diff).sum(-1)


def _log_mix(log_a: torch.Tensor, log_b: torch.Tensor, w: float) -> torch.Tensor:
    """log(w a + (1 - w) b) for 0 < w < 1, in log space (no exp/log round trip)."""
    return torch.logaddexp(log_a + math.log(w), log_b + math.log1p(-w))


def _work_dtype(*xs: torch.Tensor) -> torch.dtype:
    """float32 for bf16/fp16/float32 inputs, float64 if any input is float64."""
    dtype = torch.float32
    for x in xs:
        dtype = torch.promote_types(dtype, x.dtype)
    return dtype


def _chunk_values(fn: PerToken, temperature: float, s_logits: torch.Tensor,
                  t_logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Per-token values (B, chunk) of fn on one chunk; 0 where keep is False. Only the kept
    positions are gathered and computed (work in proportion to the scored tokens), so
    whatever sits at the others never reaches the value or the gradient."""
    dtype = _work_dtype(s_logits, t_logits)
    B, C, V = s_logits.shape
    idx = keep.reshape(-1).nonzero().squeeze(1)
    s = s_logits.reshape(B * C, V).index_select(0, idx).to(dtype)
    t = t_logits.reshape(B * C, V).index_select(0, idx).to(dtype)
    if temperature != 1.0:
        s, t = s / temperature, t / temperature
    per = fn(torch.log_softmax(s, dim=-1), torch.log_softmax(t, dim=-1))
    out = torch.zeros(B * C, dtype=dtype, device=s_logits.device)
    return out.index_put((idx,), per).view(B, C)


def _check(student_logits, teacher_logits, mask, temperature, reduction) -> torch.Tensor:
    """Validate the common arguments; return the mask as a bool tensor on the logits' device."""
    for name, x in (("student_logits", student_logits), ("teacher_logits", teacher_logits)):
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"{name} must be a floating tensor of shape (B, T, V); got {shape}")
    vs, vt = student_logits.shape[-1], teacher_logits.shape[-1]
    if vs != vt:
        raise ConfigError(f"vocabulary sizes differ: student_logits has V={vs} but "
                          f"teacher_logits has V={vt}; distil only between models that share "
                          "a tokenizer (tokenizer.check_same_vocab)")
    if student_logits.shape[:2] != teacher_logits.shape[:2]:
        raise InputError(f"student_logits {tuple(student_logits.shape)} and teacher_logits "
                         f"{tuple(teacher_logits.shape)} must cover the same (B, T) positions")
    if not isinstance(mask, torch.Tensor) or mask.shape != student_logits.shape[:2]:
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise InputError(f"mask must have shape (B, T) = {tuple(student_logits.shape[:2])}; "
                         f"got {shape}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)
            and temperature > 0):
        raise ConfigError(f"temperature must be a finite number > 0 (got {temperature!r}); "
                          "set loss.temperature")
    if reduction not in ("mean", "sum"):
        raise ConfigError(f"reduction must be 'mean' or 'sum' (got {reduction!r})")
    return (mask != 0).to(student_logits.device)


class _Chunked(torch.autograd.Function):
    """Per-token values (B, T) computed chunk by chunk, with a chunked backward.

    Forward runs without a graph. Backward recomputes one chunk at a time with autograd and
    writes that chunk's gradient straight into a preallocated (B, T, V) buffer, so at any
    moment only one chunk's softmax intermediates exist (plus the gradient buffer, which the
    model's backward needs anyway). First-order only (no double backward).
    """

    @staticmethod
    def forward(ctx, s_logits, t_logits, keep, fn, temperature, chunk):
        ctx.fn, ctx.temperature, ctx.chunk = fn, temperature, chunk
        ctx.save_for_backward(s_logits, t_logits, keep)
        T = s_logits.shape[1]
        return torch.cat([_chunk_values(fn, temperature, s_logits[:, i:i + chunk],
                                        t_logits[:, i:i + chunk], keep[:, i:i + chunk])
                          for i in range(0, T, chunk)], dim=1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_per):
        s_logits, t_logits, keep = ctx.saved_tensors
        need_s, need_t = ctx.needs_input_grad[:2]
        gs = torch.zeros_like(s_logits) if need_s else None
        gt = torch.zeros_like(t_logits) if need_t else None
        chunk = ctx.chunk
        for i in range(0, s_logits.shape[1], chunk):
            with torch.enable_grad():
                sc = s_logits[:, i:i + chunk].detach().requires_grad_(need_s)
                tc = t_logits[:, i:i + chunk].detach().requires_grad_(need_t)
                per = _chunk_values(ctx.fn, ctx.temperature, sc, tc, keep[:, i:i + chunk])
                wrt = [x for x, need in ((sc, need_s), (tc, need_t)) if need]
                grads = list(torch.autograd.grad(per, wrt, grad_per[:, i:i + chunk]))
            if need_s:
                gs[:, i:i + chunk] = grads.pop(0)
            if need_t:
                gt[:, i:i + chunk] = grads.pop(0)
        return gs, gt, None, None, None, None


def _per_sequence(fn: PerToken, student_logits, teacher_logits, mask, temperature: float,
                  reduction: str, chunk_size: int | None) -> torch.Tensor:
    """Apply fn chunk by chunk over the sequence and reduce each row over its scored tokens."""
    keep = _check(student_logits, teacher_logits, mask, temperature, reduction)
    B, T, V = student_logits.shape
    if chunk_size is None:
        chunk_size = max(1, CHUNK_ELEMENTS // max(B * V, 1))
    elif isinstance(chunk_size, bool) or not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ConfigError(f"chunk_size must be a positive int or None (got {chunk_size!r})")
    temperature = float(temperature)
    if T == 0:
        per = student_logits.new_zeros(B, 0, dtype=_work_dtype(student_logits, teacher_logits))
    elif T <= chunk_size:
        # one chunk: plain autograd holds no more than the chunked path would
        per = _chunk_values(fn, temperature, student_logits, teacher_logits, keep)
    else:
        per = _Chunked.apply(student_logits, teacher_logits, keep, fn, temperature, chunk_size)
    total = per.sum(dim=1)
    if reduction == "sum":
        return total
    return total / keep.sum(dim=1).clamp(min=1).to(total.dtype)


# ---------------------------------------------------------------------------- divergences
def token_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
             direction: str = "forward", temperature: float = 1.0, reduction: str = "mean",
             *, chunk_size: int | None = None) -> torch.Tensor:
    """Exact per-token KL between teacher P and student S, reduced per sequence -> (B,).

    forward: KL(P || S) = sum_v P_v (log P_v - log S_v)   (teacher forcing on references)
    reverse: KL(S || P) = sum_v S_v (log S_v - log P_v)   (on the student's own samples;
             exact over the vocabulary at each visited prefix, not a sampled estimate)
    with S = softmax(student / temperature), P = softmax(teacher / temperature), no T^2
    factor. Hence token_kl(s, t, m, "forward") == token_kl(t, s, m, "reverse").
    A teacher logit of -inf is fine for forward KL; for reverse KL it gives +inf wherever
    the student puts mass on that token (that is the reverse KL's value).

    Paper: forward KL on teacher references and reverse KL on student samples are the two
    losses PACED weights (docs/theory.md §1). Ours: exact computation in chunks.
    """
    if direction == "forward":
        def fn(s, t):
            return _kl(t, s)
    elif direction == "reverse":
        def fn(s, t):
            return _kl(s, t)
    else:
        raise ConfigError(f"direction must be 'forward' or 'reverse' (got {direction!r})")
    return _per_sequence(fn, student_logits, teacher_logits, mask, temperature, reduction,
                         chunk_size)


def generalized_jsd(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                    mask: torch.Tensor, beta: float = 0.5, temperature: float = 1.0,
                    reduction: str = "mean", *, chunk_size: int | None = None) -> torch.Tensor:
    """Generalized Jensen-Shannon divergence of Agarwal et al. (GKD), per sequence -> (B,).

    JSD_beta = beta KL(P || M) + (1 - beta) KL(S || M),   M = beta P + (1 - beta) S,
    P = teacher, S = student (tempered), log M = logaddexp(log beta + log P,
    log(1-beta) + log S). This is TRL's GKDTrainer.generalized_jsd_loss convention.
    Properties: 0 <= JSD_beta <= h(beta) = -beta log beta - (1-beta) log(1-beta)
    (log 2 at beta = 1/2); JSD_beta(s, t) = JSD_{1-beta}(t, s); symmetric at beta = 1/2.
    Limits: JSD_beta -> 0 as beta -> 0 or 1 at fixed P, S, but
    JSD_beta / beta -> KL(P || S) (forward) as beta -> 0 and JSD_beta / (1-beta) -> KL(S || P)
    (reverse) as beta -> 1. Following TRL, the endpoints are defined as those limits:
    beta = 0 returns the forward KL and beta = 1 the reverse KL (so the value jumps at the
    ends, but it is a true divergence for every beta in [0, 1]).

    Paper: GKD, arXiv 2306.13649, eq. (1). Ours: the endpoint convention follows TRL.
    """
    if not (isinstance(beta, (int, float)) and 0.0 <= beta <= 1.0):
        raise ConfigError(f"jsd beta must be in [0, 1] (got {beta!r}); set loss.jsd_beta")
    beta = float(beta)
    if beta == 0.0:
        def fn(s, t):
            return _kl(t, s)
    elif beta == 1.0:
        def fn(s, t):
            return _kl(s, t)
    else:
        def fn(s, t):
            m = _log_mix(t, s, beta)
            return beta * _kl(t, m) + (1.0 - beta) * _kl(s, m)
    return _per_sequence(fn, student_logits, teacher_logits, mask, temperature, reduction,
                         chunk_size)


def skew_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
            alpha: float = 0.1, direction: str = "forward", temperature: float = 1.0,
            reduction: str = "mean", *, chunk_size: int | None = None) -> torch.Tensor:
    """Skew KL of Ko et al. (DistiLLM, 2024), per sequence -> (B,).

    forward (SKL):  KL(P || alpha P + (1 - alpha) S)
    reverse (SRKL): KL(S || alpha S + (1 - alpha) P)
    with P = teacher, S = student (tempered); the mixture is formed in log space.
    alpha = 0 gives the plain forward / reverse KL; for alpha in (0, 1) the value is finite
    even where the other distribution is 0, and bounded by log(1/alpha) since
    a / (alpha a + (1-alpha) b) <= 1/alpha. skew_kl(s, t, forward) == skew_kl(t, s, reverse).

    Paper: DistiLLM (Ko et al., ICML 2024), alpha = 0.1 by default there.
    """
    if not (isinstance(alpha, (int, float)) and 0.0 <= alpha < 1.0):
        raise ConfigError(f"skew alpha must be in [0, 1) (got {alpha!r}); set loss.skew_alpha")
    alpha = float(alpha)
    if direction not in ("forward", "reverse"):
        raise ConfigError(f"direction must be 'forward' or 'reverse' (got {direction!r})")

    def fn(s, t):
        a, b = (t, s) if direction == "forward" else (s, t)
        return _kl(a, _log_mix(a, b, alpha) if alpha > 0 else b)

    return _per_sequence(fn, student_logits, teacher_logits, mask, temperature, reduction,
                         chunk_size)


@torch.no_grad()
def _akl_weight(s: torch.Tensor, t: torch.Tensor, mu: float) -> torch.Tensor:
    """Per-token weight on the forward KL, g_head / (g_head + g_tail), no gradient."""
    pt, ps = t.exp(), s.exp()
    pt_sorted, order = pt.sort(dim=-1)  # ascending
    # head: the teacher's top tokens up to and including the one where the cumulative mass
    # first reaches mu, i.e. the tokens with mass strictly above them < mu, i.e. with mass at
    # or below them > 1 - mu. The last form sums the small probabilities first, so it stays
    # accurate for a peaked teacher (a top-down float32 cumsum saturates at 1 and would
    # drop the teacher's tiny-probability tokens from the head when mu is close to 1).
    head = pt_sorted.cumsum(dim=-1) > 1.0 - mu
    gap = (pt_sorted - ps.gather(-1, order)).abs()
    g_head = (gap * head).sum(dim=-1)
    g_all = gap.sum(dim=-1)
    # g_all = 0 only when S == P, where both KLs vanish: any weight will do
    return torch.where(g_all > 0, g_head / g_all.clamp(min=torch.finfo(g_all.dtype).tiny),
                       torch.full_like(g_all, 0.5))


def akl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
        mu: float = 0.5, temperature: float = 1.0, reduction: str = "mean", *,
        chunk_size: int | None = None) -> torch.Tensor:
    """Adaptive KL of Wu et al. (2024), per token, reduced per sequence -> (B,).

    Per token, with teacher P and student S (tempered): sort the vocabulary by P
    (descending); head H = the top tokens up to and including the first one at which the
    cumulative teacher probability reaches mu; tail = the rest.
        g_head = sum_{v in H} |P_v - S_v|,   g_tail = sum_{v not in H} |P_v - S_v|
        AKL = g_head / (g_head + g_tail) * KL(P || S) + g_tail / (g_head + g_tail) * KL(S || P)
    The weights are constants for the gradient (detached), as in the authors' reference code
    (g_head and g_tail are computed with .detach()). AKL lies between min and max of the
    forward and reverse KL at every token; mu = 1 gives the forward KL.
    Ties in P at the head boundary are broken by torch.sort's order.
    Note: the reference code sorts P ascending and calls the tail the low tokens whose
    cumulative mass is < mu, so its head covers mass > 1 - mu; at the default mu = 0.5 the
    two definitions agree (up to an exact tie at 0.5). We follow the paper's wording
    (head covers mu).

    Paper: Wu et al., "Rethinking Kullback-Leibler Divergence in Knowledge Distillation for
    Large Language Models" (arXiv 2404.02657, COLING 2025); PACED uses AKL as a baseline.
    """
    if not (isinstance(mu, (int, float)) and 0.0 < mu <= 1.0):
        raise ConfigError(f"akl mu must be in (0, 1] (got {mu!r}); set loss.akl_mu")
    mu = float(mu)

    def fn(s, t):
        w = _akl_weight(s, t, mu)
        return w * _kl(t, s) + (1.0 - w) * _kl(s, t)

    return _per_sequence(fn, student_logits, teacher_logits, mask, temperature, reduction,
                         chunk_size)


def akl_head_weight(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                    mask: torch.Tensor, mu: float = 0.5, temperature: float = 1.0
                    ) -> torch.Tensor:
    """The AKL weight on the forward KL at every position, (B, T), 0 where masked.

    g_head / (g_head + g_tail) as in `akl` (0.5 where S == P). For diagnostics (how much of
    the AKL loss is forward KL) and for testing akl's gradient with the weight held fixed.
    Paper: Wu et al. 2024 (see akl).
    """
    if not (isinstance(mu, (int, float)) and 0.0 < mu <= 1.0):
        raise ConfigError(f"akl mu must be in (0, 1] (got {mu!r}); set loss.akl_mu")
    keep = _check(student_logits, teacher_logits, mask, temperature, "mean")
    B, T, V = student_logits.shape
    step = max(1, CHUNK_ELEMENTS // max(B * V, 1))
    with torch.no_grad():
        parts = [_chunk_values(lambda s, t: _akl_weight(s, t, float(mu)), float(temperature),
                               student_logits[:, i:i + step], teacher_logits[:, i:i + step],
                               keep[:, i:i + step]) for i in range(0, T, step)]
    return torch.cat(parts, dim=1)


# ---------------------------------------------------------------------------- dispatcher
def divergence(kind: str, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
               mask: torch.Tensor, loss_cfg) -> torch.Tensor:
    """Per-sequence loss (B,) of divergence `kind` (one of LOSSES; "two-stage" is a schedule,
    resolved per step by schedule.loss_kind) with the parameters of the config's [loss]
    section (temperature, jsd_beta, skew_alpha, akl_mu). An unknown kind is a ConfigError."""
    T = loss_cfg.temperature
    if kind in ("forward", "reverse"):
        return token_kl(student_logits, teacher_logits, mask, kind, temperature=T)
    if kind == "akl":
        return akl(student_logits, teacher_logits, mask, mu=loss_cfg.akl_mu, temperature=T)
    if kind == "jsd":
        return generalized_jsd(student_logits, teacher_logits, mask, beta=loss_cfg.jsd_beta,
                               temperature=T)
    if kind == "skew":
        return skew_kl(student_logits, teacher_logits, mask, alpha=loss_cfg.skew_alpha,
                       temperature=T)
    if kind == RL:
        raise ConfigError("loss.schedule = 'rl' is not a divergence: its step is "
                          "trainer.rl_step (losses.policy_gradient)")
    raise ConfigError(f"loss.schedule: unknown divergence {kind!r}; one of "
                      f"{', '.join(LOSSES)} (or two-stage: forward, then reverse)")


# ------------------------------------------------------------------------------ weighting
def weighted_loss(per_seq: torch.Tensor, weights: torch.Tensor,
                  normaliser: float | torch.Tensor) -> torch.Tensor:
    """Scalar sum_i w_i L_i / normaliser: the PACED problem weight multiplies its loss.

    per_seq (B,) from one of the divergences above; weights (B,) >= 0, e.g.
    w(p) = p^alpha (1-p)^beta from paced_theory.kernels; normaliser > 0 (sum of the weights
    for a weighted mean, the batch size for a mean, or 1). The weights carry no gradient.
    Paper: the weighting w(p) = p^alpha (1-p)^beta of each problem's loss (docs/theory.md §1).
    """
    if not isinstance(per_seq, torch.Tensor) or per_seq.dim() != 1:
        shape = tuple(per_seq.shape) if isinstance(per_seq, torch.Tensor) else type(per_seq)
        raise InputError(f"per_seq must be a 1-D tensor (one loss per sequence); got {shape}")
    weights = torch.as_tensor(weights)
    if weights.shape != per_seq.shape:
        raise InputError(f"weights has shape {tuple(weights.shape)} but per_seq has shape "
                         f"{tuple(per_seq.shape)}: give exactly one weight per sequence")
    weights = weights.detach().to(device=per_seq.device, dtype=per_seq.dtype)
    if bool((~torch.isfinite(weights) | (weights < 0)).any()):
        raise InputError(f"weights must be finite and >= 0; got {weights.tolist()}")
    norm = float(normaliser)
    if not (math.isfinite(norm) and norm > 0):
        raise InputError(f"normaliser must be a finite number > 0 (got {normaliser!r})")
    return (weights * per_seq).sum() / norm


# ------------------------------------------------------------------ policy gradient (rl)
# loss.schedule = "rl". The student draws K samples of each kept problem (one group per
# problem: rollouts.group_samples), the verifier gives each a reward r in {0, 1}, and the
# group's own c / K is the problem's fresh pass rate p_hat (its PACED weight w(p_hat) comes
# from it). The choices, and why:
#   baseline      the group mean: A_j = r_j - p_hat. Its expected gradient is (K - 1) / K
#                 times the true policy gradient (the sample's own reward is in its
#                 baseline; docs/theory.md §4.1, "group mean, reward"): a constant factor.
#   no std        A_j is NOT divided by the group's standard deviation by default (as in
#                 Dr. GRPO, Liu et al. 2025; GRPO divides). For binary rewards that std is
#                 sqrt(p_hat (1 - p_hat)), so dividing multiplies a group's gradient by
#                 1 / sqrt(p_hat (1 - p_hat)): a hidden weighting that up-weights groups near
#                 0 and 1 and would confound the comparison of weightings w(p) this loop is
#                 for. loss.rl_std = true divides (GRPO), for comparison.
#   sum of tokens log pi(y) = sum_t log pi(y_t | prefix): the REINFORCE score of the whole
#                 sequence. A mean over tokens (GRPO's 1/|y|) would weight a sample by
#                 1 / its length, a bias Dr. GRPO also removes.
#   group mean    a group's loss is the mean over its K samples, so a problem counts once
#                 whatever K; the problems are then weighted and normalised exactly as the
#                 divergences are (weighted_loss: sum_g w_g L_g / normaliser).
# A group whose rewards are all equal (p_hat in {0, 1}) has A = 0 exactly, hence exactly zero
# policy gradient under ANY weighting: what a frontier weighting can add under RL is the
# relative weight of the frontier groups, and not paying to sample groups that the pass-rate
# table predicts are degenerate. Ours: this arrangement (the estimator is REINFORCE with a
# group baseline, Williams 1992; Shao et al. 2024; Liu et al. 2025).
def sequence_logp(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                  temperature: float = 1.0) -> torch.Tensor:
    """log pi_T(y) per row -> (B,): sum over the scored positions t (mask != 0) of
    log softmax(logits[b, t] / temperature)[targets[b, t]], in float32 (float64 stays
    float64). Only the scored positions are gathered: what sits elsewhere cannot reach the
    value or the gradient. logits (B, T, V) at the completion-predicting positions
    (distill.student_logits), targets (B, T) the completion tokens."""
    keep = _check(logits, logits, mask, temperature, "sum")
    if targets.shape != logits.shape[:2]:
        raise InputError(f"targets must have shape (B, T) = {tuple(logits.shape[:2])}; got "
                         f"{tuple(targets.shape)}")
    B, T, V = logits.shape
    idx = keep.reshape(-1).nonzero().squeeze(1)
    x = logits.reshape(B * T, V).index_select(0, idx).to(_work_dtype(logits)) / temperature
    y = targets.reshape(-1).to(logits.device).index_select(0, idx)
    picked = torch.log_softmax(x, dim=-1).gather(1, y[:, None])[:, 0]
    return torch.zeros(B * T, dtype=x.dtype, device=logits.device).index_put(
        (idx,), picked).view(B, T).sum(1)


def group_advantages(rewards: torch.Tensor, groups: torch.Tensor, n_groups: int,
                     scale_std: bool = False) -> torch.Tensor:
    """A_j = r_j - mean of the rewards of j's group (groups: (N,) ids in [0, n_groups));
    with scale_std, divided by the group's population standard deviation (sqrt(p_hat
    (1 - p_hat)) for binary rewards; GRPO), A = 0 where that is 0. No gradient. A group whose
    rewards are all equal gets A = 0 exactly."""
    r = rewards.detach().to(torch.float64)
    g = groups.to(device=r.device, dtype=torch.long)
    if r.dim() != 1 or g.shape != r.shape:
        raise InputError(f"rewards and groups must be 1-D of one length; got "
                         f"{tuple(r.shape)} and {tuple(g.shape)}")
    if len(g) and (int(g.min()) < 0 or int(g.max()) >= n_groups):
        raise InputError(f"groups must be ids in [0, {n_groups}) (one per weight)")
    n = torch.bincount(g, minlength=n_groups).to(r.dtype)
    if bool((n == 0).any()):
        raise InputError(f"groups: every one of the {n_groups} groups (one per weight) needs "
                         "at least one sample")
    mean = torch.zeros(n_groups, dtype=r.dtype, device=r.device).index_add(0, g, r) / n
    adv = r - mean[g]
    if scale_std:
        var = torch.zeros_like(mean).index_add(0, g, adv * adv) / n
        std = var.sqrt()[g]
        adv = torch.where(std > 0, adv / std.clamp(min=1e-300), torch.zeros_like(adv))
    return adv


def rl_group_loss(seq_logp: torch.Tensor, rewards: torch.Tensor, groups: torch.Tensor,
                  n_groups: int, scale_std: bool = False, kl: torch.Tensor | None = None,
                  kl_coef: float = 0.0) -> torch.Tensor:
    """Each group's surrogate loss -> (n_groups,), whose gradient is its REINFORCE estimate:

        L_g = (1 / K_g) sum_{j in g} [ -A_j log pi(y_j) + kl_coef KL_j ]

    with A = group_advantages (a constant for the gradient), K_g the group's size, and KL_j
    the sample's KL to a reference policy (e.g. token_kl(student, reference, "reverse",
    reduction="sum"): exact over the vocabulary at each visited prefix; only with kl_coef
    > 0). The value of L_g is not a quantity to read (its expectation is 0 without KL); its
    gradient is -(1 / K_g) sum_j A_j grad log pi(y_j) (+ the KL's)."""
    if seq_logp.dim() != 1 or seq_logp.shape != rewards.shape:
        raise InputError(f"seq_logp and rewards must be 1-D of one length; got "
                         f"{tuple(seq_logp.shape)} and {tuple(rewards.shape)}")
    if not (isinstance(kl_coef, (int, float)) and math.isfinite(kl_coef) and kl_coef >= 0):
        raise ConfigError(f"kl_coef must be a finite number >= 0 (got {kl_coef!r}); set "
                          "loss.rl_kl")
    adv = group_advantages(rewards, groups, n_groups, scale_std).to(seq_logp)
    per = -adv * seq_logp
    if kl_coef > 0:
        if kl is None or kl.shape != seq_logp.shape:
            raise InputError("kl_coef > 0 needs kl, one value per sample")
        per = per + kl_coef * kl.to(per.dtype)
    g = groups.to(device=per.device, dtype=torch.long)
    n = torch.bincount(g, minlength=n_groups).to(per.dtype).clamp(min=1)
    return torch.zeros(n_groups, dtype=per.dtype, device=per.device).index_add(0, g, per) / n


def policy_gradient(seq_logp: torch.Tensor, rewards: torch.Tensor, groups: torch.Tensor,
                    weights: torch.Tensor, normaliser: float | torch.Tensor, *,
                    scale_std: bool = False, kl: torch.Tensor | None = None,
                    kl_coef: float = 0.0) -> torch.Tensor:
    """Scalar sum_g w_g L_g / normaliser with L_g = rl_group_loss: the weighted, normalised
    policy-gradient surrogate of loss.schedule = "rl" (one weight per group, weights (G,);
    the normaliser as for the divergences: passrates.normaliser). Its gradient is

        -(1 / normaliser) sum_g (w_g / K_g) sum_{j in g} A_j grad log pi(y_j)

    (plus kl_coef times the weighted KL's gradient), so a group with p_hat in {0, 1}
    contributes exactly 0 without KL, and weighting scales each group's gradient by w_g.
    Ours (see the comment above sequence_logp for the choices)."""
    weights = torch.as_tensor(weights)
    if weights.dim() != 1:
        raise InputError(f"weights must be 1-D, one per group; got {tuple(weights.shape)}")
    per_group = rl_group_loss(seq_logp, rewards, groups, weights.shape[0], scale_std, kl,
                              kl_coef)
    return weighted_loss(per_group, weights, normaliser)
