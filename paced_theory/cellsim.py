"""The loop's mechanisms in a cell-level, mean-field simulator, calibrated on uniform runs only
(docs/theory.md §10; the model, its mechanisms and the calibration are ours).

Why a second simulator. population.py's item-response model has random loadings and no cells,
so it cannot be fitted to the per-cell learning curves a run records (add2, add3, mul2, ...).
This one has one shared skill per cell, follows the expected (mean-field) update, and runs a
600-step pool in milliseconds, so it can be fitted and then asked about every arm.

State. Cell c has a shared skill theta_c (start 0). Its problems have difficulties
d ~ Normal(dbar_c, s_c^2), represented by M quantile types d_cj = dbar_c + s_c z_j
(z_j = Phi^-1((j - 1/2)/M)), each holding n_c / M of the cell's training problems, and a
problem-specific memorisation u_cj (start 0; it moves only the training problems, never the
held-out ones). A training problem's pass rate (temperature 1) is p = sigmoid(theta_c + u - d).
Greedy held-out accuracy of the cell (ASSUMPTION: greedy decoding is right iff the sampled
pass rate exceeds 1/2) is P(theta_c - d > 0) = Phi((theta_c - dbar_c) / s_c). The pool's
held-out accuracy is the mean over its cells (n_eval_per_cell problems each, as the loop).

One step t of learning rate eta_t (the loop's warmup + cosine schedule in compute):
  weights     c_j = n_j E[w_j] / sum_k n_k E[w_k]  (normalise = "sum": the step's total weight
              is 1 whatever the weighting, so a weighting only moves it between problems;
              the "kept" sampler draws among w > 0 and changes nothing in expectation).
              E[w_j] reads the pass-rate TABLE, not the current p (mechanism a):
                rates = "exact": w(p_ref), p_ref = p at the last refresh;
                rates = "K":     E over k ~ Binomial(K, p_ref) of the estimator's w(k, K)
                                 (paced_theory.kernels.estimate_weight; hard: 1 if 0 < k < K).
              The table is refreshed at step 0 and then every refresh_every steps
              (refresh_every = 1 with exact rates is "exact pass rates"), or at the given
              fractions of the run (refresh_fracs: the recorded study's stale schedule).
  signal      e_j, the expected gain of problem j's step along its cell's skill, per unit
              weight:
                mode "forward", shared = True (mechanism c): e = (1 - p)(r_c^gamma + lam), r_c
                  the cell's mean training pass rate (its readiness). The teacher's reference
                  is a target whatever the student's p, so a problem moves the shared skill by
                  its gap 1 - p times how ready the SKILL is, not the problem: a p = 0 problem
                  of a cell that is clicking teaches as much as any (more: its gap is
                  larger), and held-out problems of the cell improve with it. The readiness
                  factor makes a cell's learning self-accelerating (the measured "click").
                mode "forward", shared = False: e = (1 - p)(p^gamma + lam), M2's mean with the
                  constant floor lam (population.forward_moments' s(p), the old model): the
                  engagement is the problem's own.
                mode "reverse": e = (1 - p)(p^gamma + lam): learning from the student's own
                  samples needs the student to sample near the answer (ASSUMPTION);
                  rev_shared = True: the shared-skill form of (c) (the teacher's logits on a
                  wrong sample still teach the cell's skill: uniform reverse KL learns add4
                  from p ~ 0 to 0.90 in the verdict's runs).
                mode "rl": e = Delta (K - 1)/K p (1 - p): M1 exactly (binary reward, group-
                  mean baseline of K rollouts; models.m1_symbolic with baseline="group_mean":
                  s = Delta E[X]/K, E[X] = (K - 1) p (1 - p)). Zero at p = 0 and p = 1.
  update      theta_c += eta_t (G_c + tau sum_{c' != c, same skill family} G_c'),
              G_c = kappa_c sum_{j in c} c_j e_j (tau: transfer between the cells of one skill,
              add2/add3/add4 or mul2/mul3 -- a shared skill across cells, fitted)
              u_j     += eta_t mu c_j e_j N / n_j      (memorisation: a problem's own share)
              forgetting (mechanism d, an ASSUMPTION as in population.py): every cell and the
              retention skill lose eta_t phi sum_{j not in that cell} c_j (1 - p_j): training
              far from solved on other cells disturbs a skill.
  clip        mechanism (e), ours (clip = True; docs/theory.md §10.6): the loop clips every
              step to grad_clip. The step's batch gradient is the sum-normalised weighted mean
              of B problems drawn from the kept ones; noise-dominated, its norm is
              ||g|| = sqrt(E_pi[w^2 v(p)] / (B wbar^2)) (batch_grad_norm), one problem's
              second moment v(p) = sigma^2 h(p) measured on the initial student
              (moment_shape). The mean part of the step shrinks by f = 1 / max(1, ||g||) (the
              update above and the forgetting are multiplied by f), and the noise part, of
              length min(||g||, 1), costs every skill and the retention skill
              delta lr_factor^2 min(1, ||g||)^2 per step (the descent lemma's second-order
              term). A Beta kernel whose weight sits on few problems has a small effective
              batch B wbar^2 / E[w^2] and, under reverse KL, on the problems with the largest
              v: its steps are mostly noise.
Compute. A weighted arm spends rollout_share of the uniform run's compute on pass rates
(charged; measured ~0.09 in the recorded study), so it gets round(steps (1 - rollout_share))
update steps; its evaluations sit at the same fractions of the compute budget.

Parameters. Per cell: dbar_c, s_c (difficulty; initial accuracy Phi(-dbar_c / s_c)), kappa_c
(learnability of the shared skill, one per loss). Global: phi (forgetting), the retention
skill's start ret0 (Phi(-ret0) = retention accuracy), gamma and lam (engagement), tau
(transfer within a skill family), mu
(memorisation; 0 by default: not identifiable from held-out curves). calibrate() fits dbar,
s, kappa, phi, ret0, gamma, lam, tau to uniform
runs' per-cell curves (least squares over every evaluation of every run), and nothing else.
Mechanism (e) adds per mode sigma (scale of v), vshape (its shape, fit_moment_shape of the
initial student's per-bin moments) and delta; calibrate_noise fits sigma, delta and that
mode's kappa to uniform runs' curves and logged gradient norms, the rest fixed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit, ndtr, ndtri
from scipy.stats import binom

from paced_theory.errors import InputError
from paced_theory.kernels import estimate_weight

MODES = ("forward", "reverse", "rl")
RATES = ("exact", "K")
WEIGHTINGS = ("uniform", "hard", "beta")


@dataclass(frozen=True)
class Arm:
    """A weighting as the loop's weights section: method uniform | hard | beta (Paced's Beta
    kernel p^alpha (1-p)^beta), estimator plugin | posterior | unbiased, floor (weight of a
    p_hat = 0 problem, beta only), lo, hi (hard: keep lo < p_hat < hi, the loop's weights.lo,
    weights.hi; the demo config's 1/16, 15/16 matter only for exact pass rates)."""
    weighting: str = "uniform"
    alpha: float = 1.0
    beta: float = 1.0
    estimator: str = "plugin"
    floor: float = 0.0
    lo: float = 0.0
    hi: float = 1.0

    def __post_init__(self):
        if self.weighting not in WEIGHTINGS:
            raise InputError(f"arm: weighting must be one of {WEIGHTINGS} (got "
                             f"{self.weighting!r})")


@dataclass(frozen=True)
class Loop:
    """The loop's schedule and the switches of the mechanisms (module docstring)."""
    mode: str = "forward"
    shared: bool = True              # mechanism (c); False: the problem's own engagement
    Delta: float = 1.0               # rl mode: reward scale
    rates: str = "K"                 # mechanism (a): "exact" or "K" samples
    K: int = 8
    refresh_every: int = 50          # steps between refreshes (0: only at step 0)
    refresh_fracs: tuple[float, ...] | None = None  # or at these fractions of the run
    forgetting: bool = True          # mechanism (d)
    clip: bool = False               # mechanism (e): clipped steps of a noisy, weighted batch
    grad_clip: float = 1.0           # the loop's optim.grad_clip
    batch: int = 64                  # the loop's optim.batch_size
    rev_shared: bool = False         # reverse mode: the shared-skill signal of (c) instead
    steps: int = 600
    warmup: int = 30
    min_lr_frac: float = 0.1
    rollout_share: float = 0.0       # weighted arms: share of compute spent on pass rates
    evals: int = 10                  # evaluations at every 1/evals of the compute
    chunk: int = 5                   # steps integrated together (mean field; speed)
    quantiles: int = 24

    def __post_init__(self):
        if self.mode not in MODES:
            raise InputError(f"loop: mode must be one of {MODES} (got {self.mode!r})")
        if self.rates not in RATES:
            raise InputError(f"loop: rates must be one of {RATES} (got {self.rates!r})")
        if self.K < 1 or self.steps < 1 or self.chunk < 1 or self.quantiles < 2:
            raise InputError("loop: K, steps, chunk must be >= 1 and quantiles >= 2")
        if not 0 <= self.rollout_share < 1:
            raise InputError("loop: rollout_share must be in [0, 1)")


@dataclass(frozen=True)
class Params:
    """Calibrated parameters: per cell {name: value} and the global ones."""
    dbar: dict = field(default_factory=dict)
    spread: dict = field(default_factory=dict)
    kappa: dict = field(default_factory=dict)        # forward KL
    kappa_rev: dict = field(default_factory=dict)    # reverse KL (and rl, uncalibrated)
    phi: float = 0.0
    ret0: float = -1.0
    tau: float = 0.0                                 # transfer within a skill family
    gamma: float = 1.0                               # engagement exponent
    lam: float = 0.5                                 # engagement floor
    mu: float = 0.0
    # mechanism (e), per mode ("forward", "reverse"): sigma, the rms norm of one problem's
    # gradient at p = 0 in units of grad_clip; vshape [A, a, b], its second moment's shape
    # h(p) = (1 - p) + A p^a (1 - p)^b (moment_shape; measured on the initial student,
    # bench/grad_moments.py); delta, the skill a full clipped step destroys at the peak
    # learning rate (per step, times lr_factor^2)
    sigma: dict = field(default_factory=dict)
    vshape: dict = field(default_factory=dict)
    delta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict) -> Params:
        known = {f.name for f in dataclasses.fields(Params)}
        bad = [k for k in d if k not in known]
        if bad:
            raise InputError(f"calibration: unknown key(s) {bad}; known: {sorted(known)}")
        return Params(**d)


def weighting_value(w, a, m, mu, B: int = 1, L: float = 1.0) -> float:
    """docs/theory.md §10.1 (ours): the expected held-out decrease of one step at the best step
    size, V(w) = B (E_mu[w a])^2 / (2 L E_mu[w^2 m]), for problems of alignment a, second
    moment m and probabilities mu (noise-dominated regime). Maximised by w = a/m (for a >= 0),
    where it equals B E_mu[a^2/m] / (2L)."""
    w, a, m, mu = (np.asarray(x, float) for x in (w, a, m, mu))
    den = float(np.sum(mu * w**2 * m))
    return 0.0 if den == 0 else B * float(np.sum(mu * w * a)) ** 2 / (2 * L * den)


def lr_factor(frac: np.ndarray, cfg: Loop) -> np.ndarray:
    """The loop's schedule in compute fraction: linear warmup over warmup/steps, then cosine
    from 1 to min_lr_frac (paced_train's optim.schedule = "cosine")."""
    w = cfg.warmup / cfg.steps
    frac = np.asarray(frac, float)
    cos = cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (
        1 + np.cos(np.pi * np.clip((frac - w) / max(1 - w, 1e-12), 0, 1)))
    return np.where(frac < w, (frac + 1e-12) / max(w, 1e-12), cos)


def _pmf(p: np.ndarray, K: int) -> np.ndarray:
    """Binomial(K, p) probabilities of k = 0..K, shape (n, K+1); p within 1e-12 of 0 or 1 is
    taken as 0 or 1 (scipy's binom.pmf overflows at subnormal p)."""
    p = np.where(p < 1e-12, 0.0, np.where(p > 1 - 1e-12, 1.0, p))
    return binom.pmf(np.arange(K + 1)[None, :], K, p[:, None])


def expected_weight(p: np.ndarray, arm: Arm, cfg: Loop) -> np.ndarray:
    """E[w] of problems of pass rate p read from the table (module docstring)."""
    p = np.clip(np.asarray(p, float), 0.0, 1.0)
    if arm.weighting == "uniform":
        return np.ones_like(p)
    if cfg.rates == "exact":
        if arm.weighting == "hard":
            return ((p > arm.lo) & (p < arm.hi)).astype(float)
        w = p ** arm.alpha * (1 - p) ** arm.beta
        return np.where(p == 0, np.maximum(w, arm.floor), w)
    k = np.arange(cfg.K + 1)
    pmf = _pmf(p, cfg.K)                                     # (n, K+1)
    if arm.weighting == "hard":
        wk = ((k / cfg.K > arm.lo) & (k / cfg.K < arm.hi)).astype(float)
    else:
        wk = np.asarray(estimate_weight(k, cfg.K, arm.alpha, arm.beta,
                                        estimator=arm.estimator), float)
        if arm.floor > 0:
            wk = wk.copy()
            wk[0] = max(wk[0], arm.floor)
    return pmf @ wk


def weight_moments(p: np.ndarray, arm: Arm, cfg: Loop) -> tuple[np.ndarray, ...]:
    """(P(w > 0), E[w], E[w^2]) of problems of pass rate p read from the table: the kept
    sampler's inclusion, and the first two moments of the weight (mechanism e)."""
    p = np.clip(np.asarray(p, float), 0.0, 1.0)
    if arm.weighting == "uniform":
        one = np.ones_like(p)
        return one, one, one
    if cfg.rates == "exact":
        w = expected_weight(p, arm, cfg)
        return (w > 0).astype(float), w, w ** 2
    k = np.arange(cfg.K + 1)
    pmf = _pmf(p, cfg.K)
    if arm.weighting == "hard":
        wk = ((k / cfg.K > arm.lo) & (k / cfg.K < arm.hi)).astype(float)
    else:
        wk = np.asarray(estimate_weight(k, cfg.K, arm.alpha, arm.beta,
                                        estimator=arm.estimator), float).copy()
        if arm.floor > 0:
            wk[0] = max(wk[0], arm.floor)
    return pmf @ (wk > 0).astype(float), pmf @ wk, pmf @ wk ** 2


def moment_shape(p, vshape) -> np.ndarray:
    """h(p) = (1 - p) + A p^a (1 - p)^b: one problem's gradient second moment over its value
    at p = 0 (mechanism e; the form is ours, its parameters fitted to the initial student's
    per-bin moments by fit_moment_shape). The measured reverse-KL moment is hump-shaped:
    ~5 times larger at p ~ 0.6 than at p = 0, and ~40 times smaller at p = 1."""
    A, a, b = vshape
    p = np.clip(np.asarray(p, float), 0.0, 1.0)
    return (1 - p) + A * p ** a * (1 - p) ** b


def fit_moment_shape(p, v, n) -> tuple[float, list[float]]:
    """(sigma^2, [A, a, b]): moment_shape fitted to per-bin second moments v at pass rates p
    (bins of n problems), least squares on log v weighted by sqrt(n)."""
    from scipy.optimize import least_squares

    p, v, n = (np.asarray(x, float) for x in (p, v, n))
    ok = v > 0
    p, v, n = p[ok], v[ok], n[ok]

    def res(x):
        s2, A, a, b = np.exp(x)
        return np.sqrt(n) * (np.log(s2 * moment_shape(p, (A, a, b)) + 1e-12) - np.log(v))

    sol = least_squares(res, np.log([v[0], 5.0, 1.0, 1.0]))
    s2, A, a, b = (float(x) for x in np.exp(sol.x))
    return s2, [A, a, b]


def batch_grad_norm(p, n, moments, sigma: float, vshape, B: int) -> float:
    """Mechanism (e), ours: the expected norm (root mean square) of a step's gradient, the
    sum-normalised weighted mean over a batch of B problems drawn uniformly from the kept
    ones, noise-dominated (the mean gradient's own norm is left out: the recorded reverse-KL
    batch gradients are 3-30 times the clip threshold). One problem's gradient has second
    moment v(p) = sigma^2 h(p) (moment_shape). With pi_j the kept problems'
    shares, omega_j = E[w_j | kept] and wbar = sum pi_j omega_j, the ratio estimator
    sum_i w_i g_i / sum_i w_i has E||g||^2 ~ (1/B) sum_j pi_j E[w_j^2 | kept] v_j / wbar^2,
    i.e. sigma^2-scale noise over an effective batch B wbar^2 / E[w^2]: uniform weights keep
    all B problems, a Beta kernel that gives most problems w ~ 0 leaves a few."""
    kept, m1, m2 = (np.asarray(x, float) for x in moments)
    pi = np.asarray(n, float) * kept
    if pi.sum() <= 0:
        return 0.0
    pi = pi / pi.sum()
    safe = np.where(kept > 0, kept, 1.0)
    wbar = float(np.sum(pi * m1 / safe))
    if wbar <= 0:
        return 0.0
    v = sigma ** 2 * moment_shape(p, vshape)
    return math.sqrt(float(np.sum(pi * (m2 / safe) * v)) / (B * wbar ** 2))


def signal(p: np.ndarray, cfg: Loop, gamma: float = 1.0, lam: float = 0.5,
           readiness=None) -> np.ndarray:
    """e(p): expected skill gain per unit weight of a problem of pass rate p (docstring);
    readiness: the cell's mean training pass rate (forward, shared = True; broadcast)."""
    p = np.asarray(p, float)
    if cfg.mode == "rl":
        return cfg.Delta * (cfg.K - 1) / cfg.K * p * (1 - p)
    if (cfg.mode == "forward" and cfg.shared) or (cfg.mode == "reverse" and cfg.rev_shared):
        if readiness is None:
            raise InputError("signal: forward mode with shared skills needs the cell's readiness")
        return (1 - p) * (np.asarray(readiness, float) ** gamma + lam)
    return (1 - p) * (p ** gamma + lam)


def _refresh_steps(cfg: Loop, n_steps: int) -> set[int]:
    if cfg.refresh_fracs is not None:
        return {int(round(f * n_steps)) for f in cfg.refresh_fracs} | {0}
    if cfg.refresh_every <= 0:
        return {0}
    return set(range(0, n_steps, cfg.refresh_every))


def simulate_pool(counts: dict[str, float], params: Params, arm: Arm = Arm(),
                  cfg: Loop = Loop()) -> dict:
    """One run of a pool {cell: training problems} under an arm: the held-out accuracy per
    cell at every evaluation (compute fractions 0, 1/evals, ..., 1), the pool's accuracy
    (mean over cells), the retention accuracy, and the AUC (mean accuracy over the budget,
    trapezoids between evaluations, as paced_train's curve_auc)."""
    cells = list(counts)
    missing = [c for c in cells if c not in params.dbar or c not in params.spread
               or c not in _kappas(params, cfg)]
    if missing:
        raise InputError(f"simulate_pool: no calibrated parameters for cell(s) {missing} "
                         f"(calibrated: {sorted(params.dbar)}); calibrate on uniform runs "
                         "that contain them")
    M = cfg.quantiles
    z = ndtri((np.arange(M) + 0.5) / M)
    C = len(cells)
    dbar = np.array([params.dbar[c] for c in cells])
    spread = np.array([params.spread[c] for c in cells])
    kappa = np.array([_kappas(params, cfg)[c] for c in cells])
    d = dbar[:, None] + spread[:, None] * z[None, :]            # (C, M)
    n = np.array([float(counts[c]) for c in cells])[:, None] / M * np.ones((1, M))
    N = n.sum()
    theta = np.zeros(C)
    fam = [c.rstrip("0123456789") for c in cells]
    family = np.array([[float(a == b) for b in fam] for a in fam])
    u = np.zeros((C, M))
    ret = 0.0
    weighted = arm.weighting != "uniform"
    n_steps = max(1, int(round(cfg.steps * (1 - (cfg.rollout_share if weighted else 0.0)))))
    refresh = _refresh_steps(cfg, n_steps) if weighted else {0}
    evals = {int(round(k * n_steps / cfg.evals)): k for k in range(1, cfg.evals + 1)}
    rows = [_eval(0.0, theta, d, ret, params, cells)]
    Ew = np.ones((C, M))
    mom = (Ew, Ew, Ew)
    if cfg.clip:
        if cfg.mode not in params.sigma or cfg.mode not in params.vshape:
            raise InputError(f"simulate_pool: mechanism (e) (clip) needs sigma and vshape for "
                             f"mode {cfg.mode!r}; calibrate them (calibrate_noise)")
        sig, vsh = params.sigma[cfg.mode], params.vshape[cfg.mode]
        delta = params.delta.get(cfg.mode, 0.0)
    gnorms = []
    step = 0
    while step < n_steps:
        h = min(cfg.chunk, n_steps - step)
        nxt = [s for s in list(refresh) + list(evals) if step < s < step + h]
        if nxt:
            h = min(nxt) - step
        p = expit(theta[:, None] + u - d)
        if step in refresh and weighted:
            mom = tuple(m.reshape(C, M) for m in weight_moments(p.ravel(), arm, cfg))
            Ew = mom[1]
        mass = n * Ew
        tot = mass.sum()
        if tot > 0:
            cw = mass / tot
            # frac of the update steps at the chunk's midpoint; the lr schedule is in compute,
            # and a weighted arm's steps span the compute left after its pass rates
            frac = (step + h / 2) / n_steps
            lrf = float(lr_factor(frac, cfg))
            eta = lrf * h
            if cfg.clip:
                # (e): the step is clipped to grad_clip; its mean part shrinks by f, and the
                # noise part of length min(||g||, clip) damages every skill at second order
                gn = batch_grad_norm(p, n, mom, sig, vsh, cfg.batch) / cfg.grad_clip
                gnorms.append((step, h, gn))
                f = 1.0 / max(1.0, gn)
                dmg = delta * lrf * eta * min(1.0, gn) ** 2
                theta = theta - dmg
                ret = ret - dmg
                eta = eta * f
            e = signal(p, cfg, params.gamma, params.lam, p.mean(1, keepdims=True))
            gain = kappa * (cw * e).sum(1)
            theta = theta + eta * (gain + params.tau * (family @ gain - gain))
            if params.mu > 0:
                u = u + eta * params.mu * cw * e * N / n
            if cfg.forgetting and params.phi > 0:
                gap = (cw * (1 - p)).sum(1)
                theta = theta - eta * params.phi * (gap.sum() - gap)
                ret = ret - eta * params.phi * gap.sum()
        step += h
        if step in evals:
            rows.append(_eval(evals[step] / cfg.evals, theta, d, ret, params, cells))
    x = np.array([r["frac"] for r in rows])
    y = np.array([r["acc"] for r in rows])
    auc = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))
    return {"cells": cells, "curve": rows, "auc": auc, "final_acc": float(y[-1]),
            "steps": n_steps, "grad_norms": gnorms}


def _kappas(params: Params, cfg: Loop) -> dict:
    return params.kappa if cfg.mode == "forward" else params.kappa_rev


def _eval(frac, theta, d, ret, params, cells) -> dict:
    """Greedy accuracy per cell (the quantile types' share with theta - d > 0, smoothed: the
    exact normal probability), the pool's, and the mean sampled pass rate of the held-out
    problems (paced_train's mean@k at temperature 1)."""
    M = d.shape[1]
    z = ndtri((np.arange(M) + 0.5) / M)
    dbar, spread = d.mean(1), (d[:, -1] - d[:, 0]) / (z[-1] - z[0])
    acc = ndtr((theta - dbar) / spread)
    return {"frac": float(frac), "acc": float(acc.mean()),
            "pass_rate": float(expit(theta[:, None] - d).mean()),
            "retention": float(ndtr(ret - params.ret0)),
            **{f"acc_{c}": float(a) for c, a in zip(cells, acc)}}


# ------------------------------------------------------------------------------- calibration
# parameter: (starting value when none is given, lower bound, upper bound) of the fit;
# dbar and ret0 start from the runs' first evaluation instead (calibrate)
FIT_BOUNDS = {"dbar": (None, -12, 12), "spread": (1.0, 0.2, 8), "kappa": (0.01, 0.0, 1.0),
              "kappa_rev": (0.01, 0.0, 1.0), "phi": (0.001, 0.0, 0.2), "gamma": (1.0, 0.0, 4.0),
              "tau": (0.2, 0.0, 2.0), "lam": (0.3, 0.0, 3.0), "ret0": (None, -6, 6)}


def _pack(cells, loss_cells):
    names = [("dbar", c) for c in cells] + [("spread", c) for c in cells]
    names += [("kappa", c) for c in loss_cells["forward"]]
    names += [("kappa_rev", c) for c in loss_cells["reverse"]]
    names += [("phi", None), ("ret0", None), ("gamma", None), ("lam", None), ("tau", None)]
    return names


def _params_from(x, names, mu: float) -> Params:
    d: dict = {"dbar": {}, "spread": {}, "kappa": {}, "kappa_rev": {}}
    glob = {}
    for (k, c), v in zip(names, x):
        if c is None:
            glob[k] = float(v)
        else:
            d[k][c] = float(v)
    return Params(**d, mu=mu, **glob)


def initial_rates(params: Params, cell: str, K: int = 8, M: int = 24) -> dict:
    """The model's pass rates of a cell at the start (theta = 0): mean p, and the expected
    shares of p_hat = 0 and p_hat = 1 at K rollouts, mean (1-p)^K and mean p^K."""
    z = ndtri((np.arange(M) + 0.5) / M)
    p = expit(-(params.dbar[cell] + params.spread[cell] * z))
    return {"mean_p_hat": float(p.mean()), "share_0": float(np.mean((1 - p) ** K)),
            "share_1": float(np.mean(p ** K))}



def _curve_residuals(sim: dict, run: dict) -> list[float]:
    """Simulated minus measured, at every evaluation of a uniform run: per-cell accuracy,
    retention and (where measured) mean@k: the residuals the calibration fits minimise."""
    res: list[float] = []
    for i, row in enumerate(sim["curve"]):
        for c in run["counts"]:
            res.extend(row[f"acc_{c}"] - np.asarray(run["acc"][c][i], float))
        res.extend(row["retention"] - np.asarray(run["retention"][i], float))
        if run.get("mean_at_k") is not None:
            res.extend(row["pass_rate"] - np.asarray(run["mean_at_k"][i], float))
    return res

def calibrate(runs: list[dict], cfg: Loop = Loop(), mu: float = 0.0,
              init: Params | None = None, max_nfev: int = 60,
              initial: dict | None = None, initial_weight: float = 3.0) -> tuple[Params, dict]:
    """Least-squares fit of Params to uniform runs' per-cell curves (ours).

    runs: one dict per (pool, loss) group of uniform runs: {"counts": {cell: n},
    "loss": "forward" | "reverse", "frac": [...], "acc": {cell: [[seed values per eval]...]},
    "retention": [[...]], "mean_at_k": [[...]] (optional)} -- measured held-out greedy
    accuracy per cell at the compute fractions `frac` (one list per evaluation: every seed's
    value), retention accuracy, and the mean sampled pass rate of the held-out set (it pins
    the pass-rate scale that the weights read; greedy accuracy alone does not). The residuals
    are model minus every seed's value; the fit uses only uniform runs (that is the point:
    weighted arms are then predictions). initial: {cell: {"mean_p_hat", "share_0", "share_1",
    "K"}}, the student's pass rates per cell at the start (bench/initial_passrates.py: no run
    of any arm), fitted by initial_rates with weight initial_weight. Returns (params, info):
    info has the rmse and the number of residuals."""
    from scipy.optimize import least_squares

    cells = sorted({c for r in runs for c in r["counts"]})
    loss_cells = {ls: sorted({c for r in runs if r["loss"] == ls for c in r["counts"]})
                  for ls in ("forward", "reverse")}
    names = _pack(cells, loss_cells)
    # starting point: each cell's initial accuracy gives dbar / spread
    x0, lo, hi = [], [], []
    for k, c in names:
        if init is not None:
            v = getattr(init, k) if c is None else getattr(init, k).get(c)
        else:
            v = None
        if v is None and k in ("dbar", "ret0"):  # from the first evaluation: acc = Phi(-d)
            first = ([np.mean(r["acc"][c][0]) for r in runs if c in r["acc"]] if k == "dbar"
                     else [np.mean(r["retention"][0]) for r in runs])
            v = -ndtri(np.clip(np.mean(first), 0.02, 0.98))
        default, low, high = FIT_BOUNDS[k]
        v = default if v is None else v
        lo.append(low), hi.append(high)
        x0.append(float(np.clip(v, lo[-1], hi[-1])))

    def residuals(x):
        params = _params_from(x, names, mu)
        res = []
        for r in runs:
            c2 = dataclasses.replace(cfg, mode=r["loss"] if r["loss"] != "forward" else "forward")
            sim = simulate_pool(r["counts"], params, Arm(), dataclasses.replace(
                c2, evals=len(r["frac"]) - 1))
            res.extend(_curve_residuals(sim, r))
        for c, m in (initial or {}).items():
            if c in cells:
                got = initial_rates(params, c, int(m.get("K", 8)), cfg.quantiles)
                res.extend(initial_weight * (got[k] - float(m[k]))
                           for k in ("mean_p_hat", "share_0", "share_1"))
        return np.array(res)

    sol = least_squares(residuals, np.array(x0), bounds=(lo, hi), max_nfev=max_nfev,
                        diff_step=1e-3, x_scale="jac")
    params = _params_from(sol.x, names, mu)
    return params, {"rmse": float(math.sqrt(np.mean(sol.fun ** 2))), "residuals": len(sol.fun),
                    "nfev": int(sol.nfev)}


def window_grad_norms(sim: dict, windows: int) -> np.ndarray:
    """The simulated gradient norm averaged over each 1/windows of the run's update steps
    (mechanism e; the loop logs the pre-clip norm of every step)."""
    n = sim["steps"]
    out = np.zeros(windows)
    wt = np.zeros(windows)
    for step, h, gn in sim["grad_norms"]:
        k = min(windows - 1, int((step + h / 2) / n * windows))
        out[k] += h * gn
        wt[k] += h
    return out / np.maximum(wt, 1e-12)


def calibrate_noise(runs: list[dict], base: Params, cfg: Loop, mode: str = "reverse",
                    max_nfev: int = 60, gn_weight: float = 0.5) -> tuple[Params, dict]:
    """Second calibration stage for mechanism (e) (ours): with every parameter of `base`
    fixed but the mode's learnabilities (kappa_rev for reverse, kappa for forward), fit those
    and the mode's sigma (the moment's scale; its shape base.vshape is fixed) and delta to
    UNIFORM runs of that loss: their per-cell curves,
    retention and mean@k as calibrate(), plus gn_weight x the log of each 10 % window's mean
    gradient norm (run dicts as calibration_runs() gives, with "grad_norm": one list of every
    seed's value per window). No weighted run enters: the weights' effect on the batch
    gradient (the effective batch) is then a prediction."""
    from scipy.optimize import least_squares

    kkey = "kappa" if mode == "forward" else "kappa_rev"
    cells = sorted({c for r in runs for c in r["counts"]})
    start = getattr(base, kkey)
    if mode not in base.vshape:
        raise InputError(f"calibrate_noise: give base.vshape[{mode!r}] (fit_moment_shape of "
                         "the initial student's per-bin gradient moments)")
    x0 = [float(np.clip(start.get(c, 0.05), 1e-4, 5.0)) for c in cells]
    x0 += [float(base.sigma.get(mode, 40.0)), float(base.delta.get(mode, 0.01))]
    lo = [0.0] * len(cells) + [0.1, 0.0]
    hi = [5.0] * len(cells) + [1000.0, 1.0]
    c2 = dataclasses.replace(cfg, mode=mode, clip=True)

    def params_of(x) -> Params:
        k = dict(start)
        k.update({c: float(v) for c, v in zip(cells, x[:len(cells)])})
        s, dl = x[len(cells):]
        return dataclasses.replace(base, **{kkey: k}, sigma={**base.sigma, mode: float(s)},
                                   delta={**base.delta, mode: float(dl)})

    def residuals(x):
        params = params_of(x)
        res = []
        for r in runs:
            sim = simulate_pool(r["counts"], params, Arm(),
                                dataclasses.replace(c2, evals=len(r["frac"]) - 1))
            res.extend(_curve_residuals(sim, r))
            if r.get("grad_norm") is not None:
                g = window_grad_norms(sim, len(r["grad_norm"]))
                for k, meas in enumerate(r["grad_norm"]):
                    res.extend(gn_weight * (math.log(max(g[k], 1e-9))
                                            - np.log(np.asarray(meas, float))))
        return np.array(res)

    sol = least_squares(residuals, np.array(x0), bounds=(lo, hi), max_nfev=max_nfev,
                        diff_step=1e-3, x_scale="jac")
    return params_of(sol.x), {"rmse": float(math.sqrt(np.mean(sol.fun ** 2))),
                              "residuals": len(sol.fun), "nfev": int(sol.nfev)}
