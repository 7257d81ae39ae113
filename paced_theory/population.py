"""Item-response population simulator (docs/theory.md §4.3, M3; the model is ours).

The loop's mechanisms -- pass rates of a given age from K samples or exact, the RL signal
(M1 with the group baseline), forward KL through shared skills, forgetting as an assumption --
and the calibration on uniform runs live in the cell-level simulator, cellsim.py (§10): it has
cells, so it can be fitted to a run's per-cell curves, which this model cannot.

Problems i have unit loadings a_i in R^dim and difficulties d_i; the student has ability
theta, and its pass rate is p_i = sigmoid(<theta, a_i> - d_i). Three problem sets:
  train   (the distillation pool) -- loadings on the first dim-1 coordinates;
  heldout (same distribution)     -- measures accuracy = mean p_i;
  known   (retention)             -- loadings on the last coordinate only, d = 0, already
                                     solved (p ≈ sigmoid(known_theta)); never trained on.

One step (on-policy, M1-like, vectorised over the batch):
  1. draw B problems from the pool; the student makes K rollouts each: r_ij ~ Bernoulli(p_i)
     (cost B K rollout units);
  2. weights from c_i = sum_j r_ij through paced_theory.kernels (plug-in / unbiased /
     posterior Beta weight, hard band on c/K, uniform), or from the true p_i (oracle:
     w* = rho_M1(p_i), the model's SNR); zero-weight problems are dropped here, before any
     update compute (cost cost_update units per kept problem);
  3. the per-problem gradient is M1's: advantages A_ij = Delta r_ij + eps_ij (Var tau2)
     minus their group mean, times the rollout's direction (r_ij - p_i) a_i + zeta_ij
     (zeta isotropic, E||zeta||^2 = sigma2), averaged over j;
  4. theta += lr * sum_i w_i g_i / sum_i w_i   (normalise="sum"; "mean" divides by B).
Forgetting mechanism -- an ASSUMPTION of the simulator, not a result: each update on problem i
also pushes the known set's coordinate by -interference * (1 - p_i): distilling a problem
the student is far from solving (large teacher-student gap) disturbs unrelated skills most.
The isotropic noise zeta also diffuses that coordinate, but with batch averaging that
effect is second order (about 1e-4 in the default config; measured with interference=0).
So the forgetting column compares how much update mass each method puts on far-from-solved
problems; it cannot show an effect the assumption does not contain.
Reported per method: steps, rollouts, updates and compute (rollout_cost * rollouts +
cost_update * updates; rollout_cost = 1 by default) to reach `target` held-out accuracy (first
evaluation at or above it; None if never), final held-out accuracy, forgetting = known
accuracy at start - at end, and the learning curve.

gradient = "forward": teacher-forced forward KL on teacher references (ours: the model, its
parameters and its results; derived from M2 of docs/theory.md §4.2 plus a learnability floor).
The update reads a teacher reference, not student samples. Problem i's gradient is
    G_i = (1 - p_i) [ kappa (p_i^gamma + lambda) a_i + xi_i ] + e_i,
    xi_i ~ N(0, fwd_sigma2/dim I)  (E||xi||^2 = fwd_sigma2: problem-specific incoherent part of
                                    the remaining gap, shrinking with it),
    e_i  ~ N(0, fwd_noise/dim I)   (E||e||^2 = fwd_noise = nu: token-level sampling floor of the
                                    reference; the score of y ~ teacher keeps covariance ~ the
                                    Fisher information as the student matches the teacher),
kappa = 1 (absorbed into lr), gamma = fwd_gamma (engagement p^gamma, M2), lambda = fwd_lambda
(learnability floor: the reference answer teaches even a problem the student never solves).
Derivation (ours). a_i is a unit vector and xi_i, e_i are independent with mean 0, so
    s(p)   = E[G . a]   = (p^gamma + lambda) (1 - p),
    v(p)   = tr Cov G   = (1 - p)^2 fwd_sigma2 + nu,
    rho(p) = s^2 / v    = (p^gamma + lambda)^2 (1 - p)^2 / ((1 - p)^2 fwd_sigma2 + nu).
Boundary exponents (allocation criterion, w* = rho; a = lim log rho / log p at 0+,
b = lim log rho / log(1-p) at 1-):
    p -> 0: lambda > 0: log rho -> log(lambda^2 / (fwd_sigma2 + nu)), finite, so a = 0:
            no collapse; rho(0) = lambda^2 / (fwd_sigma2 + nu) > 0.
            lambda = 0: rho ~ p^(2 gamma) / (fwd_sigma2 + nu), a = 2 gamma (M2).
    p -> 1: nu > 0: rho ~ (1 + lambda)^2 (1-p)^2 / nu, b = 2;
            nu = 0: rho -> (1 + lambda)^2 / fwd_sigma2, b = 0.
Progress criterion (w* = s/v): (a, b) = (0 if lambda > 0 else gamma, 1 if nu > 0 else -1).
So with lambda > 0 the implied Beta kernel is p^0 (1-p)^2: the model's optimal forward-KL
weight does NOT vanish at p = 0, unlike M1's p(1-p); Paced's p(1-p) is then misspecified at
p -> 0 by an unbounded factor (it drops problems the model says carry rho(0) > 0).
Closed forms: forward_moments / forward_rho; the tests check them against the simulator's own
per-problem gradients (forward_gradients) by Monte Carlo and the exponents by sympy limits.
Defaults fwd_gamma = 1, fwd_sigma2 = 1, fwd_noise = 0.1 (M2's defaults) and fwd_lambda
(FORWARD_LAMBDA below) are ASSUMPTIONS, not fits to any measurement.
Rollouts in forward mode: methods that read pass rates (hard, beta, beta+floor, and the
oracle, which stands for knowing p and is charged as if it were estimated) pay K rollouts per
drawn problem, as on-policy; uniform reads none and pays no rollouts (the paced_train loop
does the same: uniform never refreshes its pass-rate table). The forgetting assumption
(interference) applies to every update in both modes.

Pool composition (hopeless_share h, solved_share s; default 0, 0 = the pool above). The
train pool and the held-out set are drawn from the same mixture: round(h n) problems whose
initial logit <theta0, a_i> - d_i is uniform in [-extreme_hi, -extreme_lo] ("hopeless":
p0 <= sigmoid(-extreme_lo) = 0.018 at the default extreme_lo = 4, below 1/16, and
P(p_hat = 0 at K = 8) >= (1 - 0.018)^8 = 0.87), round(s n) with initial logit uniform in
[extreme_lo, extreme_hi] ("solved", symmetric), the rest with d uniform in
[difficulty_lo, difficulty_hi] as above. The base range itself already holds problems at
either end, so the initial share of the pool with p0 < 1/16 is
    h + (1 - h - s) pi_lo,   and with p0 > 15/16:   s + (1 - h - s) pi_hi,
where pi_lo, pi_hi are the base range's shares (about 0.28 and 0.12 at the defaults:
initial_shares(PopulationConfig()) measures them). hopeless_skill = c in (0, 1] (default 0:
hopeless problems share the skill of the rest) gives hopeless problems a skill of their own:
coordinate 0 then carries loading sqrt(c) for hopeless problems and 0 for all others (their
loadings renormalised on coordinates 1..dim-2), so only training on hopeless problems teaches
held-out hopeless ones (an assumption for asking whether "p_hat = 0 problems are learnable"
needs a problem-specific skill; it did not change the predicted ordering, see predict_phase).
initial_shares also reports the expected
shares of p_hat = 0 and p_hat = 1 at K rollouts (mean of (1-p)^K and p^K), the quantities a
neural pool's "hopeless share" is measured by.

predict_phase runs every method at equal compute (each method of a seed runs until its compute
reaches the uniform run's) over pools of different hopeless shares and reports final accuracy,
the normalised area under accuracy vs compute, and the compute needed to match uniform's final
accuracy; phase_summary reduces its rows to per-seed ratios against uniform.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass

import numpy as np

from paced_theory.errors import InputError
from paced_theory.kernels import ESTIMATORS, estimate_weight, hard_band
from paced_theory.models import m1
from paced_theory.stats import mean_sd

NORMALISE = ("sum", "mean")
MAX_ELEMENTS = 50_000_000  # largest array the simulator allocates (400 MB of float64)
MAX_STEPS = 10_000_000     # 10^4 times the default: beyond it a run would not finish
GRADIENTS = ("onpolicy", "forward")
# The forward model's default learnability floor lambda: an assumption, not a fit (no value
# reproduced the neural ordering; see predict_phase's docstring).
FORWARD_LAMBDA = 0.5


@dataclass(frozen=True)
class PopulationConfig:
    n_problems: int = 10_000
    n_heldout: int = 2_000
    n_known: int = 500
    dim: int = 8
    steps: int = 1_000
    batch_size: int = 256
    K: int = 8
    lr: float = 0.005
    sigma2: float = 1.0
    tau2: float = 0.25
    Delta: float = 1.0
    difficulty_lo: float = -3.0
    difficulty_hi: float = 6.0
    theta0: float = 1.0
    known_theta: float = 2.0
    target: float = 0.45
    eval_every: int = 10
    alpha: float = 1.0
    beta: float = 1.0
    estimator: str = "plugin"
    hard_lo: float = 0.0
    hard_hi: float = 1.0
    cost_update: float = 3.0
    normalise: str = "sum"
    interference: float = 0.05
    rollout_cost: float = 1.0        # compute units per rollout (update: cost_update)
    gradient: str = "onpolicy"       # "onpolicy" (M1-like) | "forward" (module docstring)
    fwd_gamma: float = 1.0           # forward: engagement exponent gamma
    fwd_lambda: float = FORWARD_LAMBDA  # forward: learnability floor lambda
    fwd_sigma2: float = 1.0          # forward: E||xi||^2, incoherent part scaled by (1-p)
    fwd_noise: float = 0.1           # forward: E||e||^2 = nu, token-level sampling floor
    hopeless_share: float = 0.0      # share of problems starting at p ~ 0
    solved_share: float = 0.0        # share of problems starting at p ~ 1
    extreme_lo: float = 4.0          # |initial logit| of hopeless/solved problems is uniform
    extreme_hi: float = 6.0          #   in [extreme_lo, extreme_hi]
    hopeless_skill: float = 0.0      # share of hopeless loadings on a skill of their own

    def __post_init__(self):
        ints = ("n_problems", "n_heldout", "n_known", "dim", "steps", "batch_size", "K",
                "eval_every")
        for k in ints:
            if int(getattr(self, k)) < 1:
                raise InputError(f"population config: '{k}' must be >= 1 (got {getattr(self, k)})")
        if self.dim < 2:
            raise InputError("population config: 'dim' must be >= 2 "
                             "(the last coordinate is the known set's)")
        if self.steps > MAX_STEPS:
            raise InputError(f"population config: 'steps' must be <= {MAX_STEPS:.0e} "
                             f"(got {self.steps})")
        # the population (n x dim loadings) and one step's noise (batch x K x dim) are dense
        # float64 arrays: keep each below MAX_ELEMENTS (8 bytes each) rather than fail later
        sizes = {"(n_problems + n_heldout + n_known) * dim":
                 (self.n_problems + self.n_heldout + self.n_known) * self.dim,
                 "batch_size * K * dim": min(self.batch_size, self.n_problems) * self.K * self.dim}
        for what, n in sizes.items():
            if n > MAX_ELEMENTS:
                raise InputError(f"population config: {what} = {n:.3g} floats "
                                 f"({8 * n / 2**30:.3g} GiB) is over the {MAX_ELEMENTS:.0e} "
                                 "this simulator allows; use fewer problems (--problems), "
                                 "rollouts (--K) or a smaller batch")
        for k in ("lr", "cost_update"):
            if not getattr(self, k) > 0:
                raise InputError(f"population config: '{k}' must be > 0")
        for k in ("sigma2", "tau2", "alpha", "beta", "interference", "rollout_cost",
                  "fwd_gamma", "fwd_lambda", "fwd_sigma2", "fwd_noise"):
            if not getattr(self, k) >= 0:
                raise InputError(f"population config: '{k}' must be >= 0 (got {getattr(self, k)})")
        if not 0 < self.target < 1:
            raise InputError(f"population config: 'target' must be in (0, 1) (got {self.target})")
        if not 0 <= self.hard_lo < self.hard_hi <= 1:
            raise InputError("population config: need 0 <= 'hard_lo' < 'hard_hi' <= 1")
        if self.difficulty_lo >= self.difficulty_hi:
            raise InputError("population config: need 'difficulty_lo' < 'difficulty_hi'")
        if self.estimator not in ESTIMATORS:
            raise InputError(f"population config: 'estimator' must be one of {ESTIMATORS}")
        if self.normalise not in NORMALISE:
            raise InputError(f"population config: 'normalise' must be one of {NORMALISE}")
        if self.gradient not in GRADIENTS:
            raise InputError(f"population config: 'gradient' must be one of {GRADIENTS} "
                             f"(got {self.gradient!r})")
        if self.gradient == "forward" and self.fwd_sigma2 + self.fwd_noise == 0:
            raise InputError("population config: 'fwd_sigma2' and 'fwd_noise' are both 0, so "
                             "the forward model's rho is undefined; give one a positive value")
        for k in ("hopeless_share", "solved_share"):
            if not 0 <= getattr(self, k) <= 1:
                raise InputError(f"population config: '{k}' must be in [0, 1] "
                                 f"(got {getattr(self, k)})")
        if self.hopeless_share + self.solved_share > 1:
            raise InputError("population config: 'hopeless_share' + 'solved_share' must be <= 1")
        if not 0 <= self.hopeless_skill <= 1:
            raise InputError("population config: 'hopeless_skill' must be in [0, 1]")
        if self.hopeless_skill > 0 and self.dim < 3:
            raise InputError("population config: 'hopeless_skill' > 0 needs dim >= 3")
        if not 0 <= self.extreme_lo <= self.extreme_hi:
            raise InputError("population config: need 0 <= 'extreme_lo' <= 'extreme_hi'")


def from_overrides(overrides: dict) -> PopulationConfig:
    """A config from defaults plus {key: value}; unknown keys raise InputError naming them."""
    names = {f.name: f.type for f in dataclasses.fields(PopulationConfig)}
    bad = [k for k in overrides if k not in names]
    if bad:
        raise InputError(f"population config: unknown key(s) {bad}; known: {sorted(names)}")
    return PopulationConfig(**overrides)


def config_dict(config: PopulationConfig) -> dict:
    return dataclasses.asdict(config)


@dataclass
class Population:
    train_a: np.ndarray
    train_d: np.ndarray
    held_a: np.ndarray
    held_d: np.ndarray
    known_a: np.ndarray
    known_d: np.ndarray
    theta0: np.ndarray


def make_population(cfg: PopulationConfig, rng: np.random.Generator) -> Population:
    def loadings(n):
        g = np.abs(rng.normal(size=(n, cfg.dim - 1)))
        a = np.zeros((n, cfg.dim))
        a[:, :-1] = g / np.linalg.norm(g, axis=1, keepdims=True)
        return a

    known_a = np.zeros((cfg.n_known, cfg.dim))
    known_a[:, -1] = 1.0
    theta0 = np.full(cfg.dim, cfg.theta0 / np.sqrt(cfg.dim - 1))  # ||theta0[:-1]|| = theta0
    theta0[-1] = cfg.known_theta

    def diffs(a):
        n = len(a)
        d = rng.uniform(cfg.difficulty_lo, cfg.difficulty_hi, n)
        if cfg.hopeless_share == 0 and cfg.solved_share == 0:
            return d  # the original pool: no further draws, the stream is unchanged
        # The mixture (module docstring): the first round(h n) problems hopeless, the next
        # round(s n) solved, by their initial logit z0 = <theta0, a> - d (problems are drawn
        # by uniform index, so their order does not matter).
        n_h = int(round(cfg.hopeless_share * n))
        n_s = min(int(round(cfg.solved_share * n)), n - n_h)
        z = rng.uniform(cfg.extreme_lo, cfg.extreme_hi, n_h + n_s)
        z[:n_h] = -z[:n_h]
        d[:n_h + n_s] = a[:n_h + n_s] @ theta0 - z
        return d

    def skill(a):
        # hopeless_skill c > 0 (module docstring): coordinate 0 is a skill only the hopeless
        # problems need. A deterministic transform of the drawn loadings (no extra draws).
        c, n_h = cfg.hopeless_skill, int(round(cfg.hopeless_share * len(a)))
        if c == 0 or n_h == 0:
            return a
        a = a.copy()
        a[:, 0] = 0.0
        a[:, :-1] /= np.linalg.norm(a[:, :-1], axis=1, keepdims=True)
        a[:n_h] *= np.sqrt(1.0 - c)
        a[:n_h, 0] = np.sqrt(c)
        return a

    train_a = skill(loadings(cfg.n_problems))
    train_d = diffs(train_a)
    held_a = skill(loadings(cfg.n_heldout))
    held_d = diffs(held_a)
    return Population(train_a, train_d, held_a, held_d, known_a, np.zeros(cfg.n_known), theta0)


def initial_shares(cfg: PopulationConfig, seed: int = 0) -> dict:
    """Measured shares of the train pool (and held-out set) at theta0, for the pool drawn by
    `seed` (the data stream simulate uses): 'low' = share with p0 < 1/16, 'high' = p0 > 15/16,
    'p_hat_0' / 'p_hat_1' = expected share with c = 0 / c = K at K rollouts (mean of (1-p0)^K
    and p0^K). Keys prefixed 'held_' for the held-out set. See the module docstring for how
    hopeless_share / solved_share map to them."""
    data_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    pop = make_population(cfg, data_rng)
    out = {}
    for prefix, a, d in (("", pop.train_a, pop.train_d), ("held_", pop.held_a, pop.held_d)):
        p = _sigmoid(a @ pop.theta0 - d)
        out.update({prefix + "low": float((p < 1 / 16).mean()),
                    prefix + "high": float((p > 15 / 16).mean()),
                    prefix + "p_hat_0": float(((1 - p) ** cfg.K).mean()),
                    prefix + "p_hat_1": float((p ** cfg.K).mean())})
    return out


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def forward_moments(p, cfg: PopulationConfig) -> tuple[np.ndarray, np.ndarray]:
    """(s(p), v(p)) of the forward model (module docstring; ours):
    s = (p^gamma + lambda)(1 - p), v = (1 - p)^2 fwd_sigma2 + fwd_noise."""
    p = np.asarray(p, dtype=float)
    s = (p ** cfg.fwd_gamma + cfg.fwd_lambda) * (1.0 - p)
    v = (1.0 - p) ** 2 * cfg.fwd_sigma2 + cfg.fwd_noise
    return s, v


def forward_rho(p, cfg: PopulationConfig) -> np.ndarray:
    """SNR of the forward model, rho = s^2/v = (p^gamma + lambda)^2 (1-p)^2 /
    ((1-p)^2 fwd_sigma2 + fwd_noise) (ours); the forward oracle's weight."""
    s, v = forward_moments(p, cfg)
    return s**2 / v


def forward_gradients(a: np.ndarray, p: np.ndarray, cfg: PopulationConfig,
                      rng: np.random.Generator) -> np.ndarray:
    """Per-problem forward-KL gradients (m, dim) for loadings a (m, dim) at pass rates p (m,):
    G = (1-p)[(p^gamma + lambda) a + xi] + e (module docstring), without the forgetting term.
    The simulator's update uses exactly this function."""
    m, dim = a.shape
    xi = rng.normal(0.0, np.sqrt(cfg.fwd_sigma2 / dim), (m, dim))
    e = rng.normal(0.0, np.sqrt(cfg.fwd_noise / dim), (m, dim))
    gap = (1.0 - p)[:, None]
    return gap * ((p ** cfg.fwd_gamma + cfg.fwd_lambda)[:, None] * a + xi) + e


def parse_method(method: str) -> tuple[str, dict]:
    """'uniform' | 'hard' | 'beta' | 'beta:A,B' | 'beta+floor:A,B,EPS' | 'oracle' ->
    (kind, params). beta+floor: the Beta weight (config estimator), and weight EPS for problems
    with c = 0 (max(Beta weight, EPS) there, as paced_train's weights.floor: exactly EPS with
    the plugin or unbiased estimator, whose weight at c = 0 is 0 for A > 0)."""
    if method in ("uniform", "hard", "oracle"):
        return method, {}
    if method == "beta":
        return "beta", {}
    if method.startswith("beta+floor:"):
        try:
            a, b, eps = (float(x) for x in method[len("beta+floor:"):].split(","))
        except ValueError:
            raise InputError(f"method {method!r}: expected beta+floor:A,B,EPS") from None
        if a < 0 or b < 0 or not eps > 0 or not np.isfinite(eps):
            raise InputError(f"method {method!r}: need A, B >= 0 and a finite EPS > 0")
        return "beta", {"alpha": a, "beta": b, "floor": eps}
    if method.startswith("beta:"):
        try:
            a, b = (float(x) for x in method[5:].split(","))
        except ValueError:
            raise InputError(f"method {method!r}: expected beta:A,B") from None
        if a < 0 or b < 0:
            raise InputError(f"method {method!r}: alpha and beta must be >= 0")
        return "beta", {"alpha": a, "beta": b}
    raise InputError(f"unknown method {method!r}: use uniform, hard, beta, beta:A,B, "
                     "beta+floor:A,B,EPS or oracle")


def method_weights(method: str, c, cfg: PopulationConfig) -> np.ndarray:
    """Weights of problems with c successes in cfg.K rollouts under a pass-rate method (hard,
    beta, beta:A,B, beta+floor:A,B,EPS; uniform gives ones). The oracle reads true p: use
    forward_rho or models.m1(...).rho."""
    kind, mparams = parse_method(method)
    c = np.asarray(c)
    if kind == "uniform":
        return np.ones(c.shape)
    if kind == "hard":
        return hard_band(c / cfg.K, cfg.hard_lo, cfg.hard_hi)
    if kind != "beta":
        raise InputError(f"method_weights: {method!r} does not weight by pass-rate counts")
    w = estimate_weight(c, cfg.K, mparams.get("alpha", cfg.alpha), mparams.get("beta", cfg.beta),
                        estimator=cfg.estimator)
    floor = mparams.get("floor", 0.0)
    if floor > 0:  # beta+floor: problems with c = 0 keep weight EPS (paced_train's weights.floor)
        w[c == 0] = np.maximum(w[c == 0], floor)
    return w


def simulate(cfg: PopulationConfig, method: str, seed: int = 0,
             budget: float | None = None, max_steps: int | None = None) -> dict:
    """Run one method; the population and all randomness derive from `seed` (same data for
    every method with the same seed; the rollout stream is separate from the data stream).

    budget=None runs cfg.steps steps. With a budget, the run ignores cfg.steps and stops after
    the first step whose cumulative compute reaches `budget` (overshoot: at most one step's
    compute), or after max_steps steps (default 100 * cfg.steps), evaluating there too."""
    kind, _ = parse_method(method)
    forward = cfg.gradient == "forward"
    if budget is not None and not (np.isfinite(budget) and budget > 0):
        raise InputError(f"simulate: budget must be a finite number > 0 (got {budget!r})")
    max_steps = 100 * cfg.steps if max_steps is None else int(max_steps)
    data_rng, run_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    pop = make_population(cfg, data_rng)
    theta = pop.theta0.copy()
    if kind != "oracle":
        rho = None
    elif forward:
        def rho(p):
            return forward_rho(p, cfg)
    else:
        rho = m1(K=cfg.K, sigma2=cfg.sigma2, tau2=cfg.tau2, Delta=cfg.Delta).rho
    B, K, n = min(cfg.batch_size, cfg.n_problems), cfg.K, cfg.n_problems
    needs_rollouts = not (forward and kind == "uniform")  # forward uniform reads no pass rate

    def accuracy(a, d):
        return float(_sigmoid(a @ theta - d).mean())

    known0 = accuracy(pop.known_a, pop.known_d)
    curve = [(0, 0.0, accuracy(pop.held_a, pop.held_d))]
    rollouts = updates = 0
    reached = None
    step = 0
    while True:
        step += 1
        idx = run_rng.integers(0, n, B)
        a, p = pop.train_a[idx], _sigmoid(pop.train_a[idx] @ theta - pop.train_d[idx])
        if needs_rollouts:
            r = (run_rng.random((B, K)) < p[:, None]).astype(float)
            c = r.sum(1).astype(int)
            rollouts += B * K
        if kind == "uniform":
            w = np.ones(B)
        elif kind == "oracle":
            w = rho(p)
        else:
            w = method_weights(method, c, cfg)
        keep = w > 0
        m = int(keep.sum())
        updates += m
        if m and forward:
            a, p, w = a[keep], p[keep], w[keep]
            g = forward_gradients(a, p, cfg, run_rng)
            g[:, -1] -= cfg.interference * (1.0 - p)  # the forgetting assumption above
            norm = w.sum() if cfg.normalise == "sum" else B
            theta = theta + cfg.lr * (w[:, None] * g).sum(0) / norm
        elif m:
            a, p, r, w = a[keep], p[keep], r[keep], w[keep]
            adv = cfg.Delta * r + run_rng.normal(0.0, np.sqrt(cfg.tau2), (m, K))
            adv -= adv.mean(1, keepdims=True)
            zeta = run_rng.normal(0.0, np.sqrt(cfg.sigma2 / cfg.dim), (m, K, cfg.dim))
            g = (adv * (r - p[:, None])).mean(1)[:, None] * a
            g += np.einsum("mk,mkd->md", adv, zeta) / K
            g[:, -1] -= cfg.interference * (1.0 - p)  # the forgetting assumption above
            norm = w.sum() if cfg.normalise == "sum" else B
            theta = theta + cfg.lr * (w[:, None] * g).sum(0) / norm
        compute = cfg.rollout_cost * rollouts + cfg.cost_update * updates
        last = (step == cfg.steps) if budget is None else (compute >= budget
                                                            or step >= max_steps)
        if step % cfg.eval_every == 0 or last:
            acc = accuracy(pop.held_a, pop.held_d)
            curve.append((step, compute, acc))
            if reached is None and acc >= cfg.target:
                reached = {"steps": step, "rollouts": rollouts, "updates": updates,
                           "compute": compute}
        if last:
            break
    final_known = accuracy(pop.known_a, pop.known_d)
    return {
        "method": method,
        "seed": seed,
        "final_accuracy": curve[-1][2],
        "start_accuracy": curve[0][2],
        "to_target": reached,
        "rollouts": rollouts,
        "updates": updates,
        "compute": cfg.rollout_cost * rollouts + cfg.cost_update * updates,
        "steps": step,
        "known_start": known0,
        "known_final": final_known,
        "forgetting": known0 - final_known,
        "curve": curve,
    }


def compare(cfg: PopulationConfig, methods, seeds: int = 3, progress: bool = True) -> list[dict]:
    """Every method on the same seeds (hence the same problems); one row per method with
    mean and std over seeds. Compute-to-target averages over the seeds that reached it.
    With progress, a legend line and one line per finished run go to stderr."""
    if int(seeds) < 1:
        raise InputError(f"--seeds must be >= 1 (got {seeds})")
    methods = list(methods)
    for method in methods:
        parse_method(method)  # refuse a bad name before any run
    total, t0 = len(methods) * int(seeds), time.perf_counter()
    if progress:
        print(f"simulate: {len(methods)} method(s) x {int(seeds)} seed(s), {cfg.steps} steps "
              f"of {min(cfg.batch_size, cfg.n_problems)} problems each; one line per run: "
              f"the step at which held-out accuracy first reached {cfg.target} (never: not "
              "within the steps), the final accuracy, seconds since the start",
              file=sys.stderr, flush=True)

    def run(method: str, seed: int, k: int) -> dict:
        r = simulate(cfg, method, seed)
        if progress:
            hit = r["to_target"]
            print(f"simulate [{k}/{total}] {method}, seed {seed}: target "
                  f"{'at step ' + str(hit['steps']) if hit else 'never'}, final accuracy "
                  f"{r['final_accuracy']:.3f}, {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
        return r

    rows = []
    for i, method in enumerate(methods):
        runs = [run(method, s, i * int(seeds) + s + 1) for s in range(int(seeds))]
        hit = [r["to_target"] for r in runs if r["to_target"] is not None]

        row = {"method": method, "seeds": len(runs), "reached": len(hit)}
        for key in ("steps", "updates", "compute"):
            row[f"{key}_to_target"] = mean_sd([h[key] for h in hit]) if hit else None
        row["final_accuracy"] = mean_sd([r["final_accuracy"] for r in runs])
        row["forgetting"] = mean_sd([r["forgetting"] for r in runs])
        row["updates"] = mean_sd([r["updates"] for r in runs])
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown table of `compare` rows (mean ± std over seeds)."""
    def pm(x, fmt="{:.3g}"):
        return "never" if x is None else (fmt.format(x[0]) + " ± " + fmt.format(x[1]))

    out = ["| method | reached | steps to target | compute to target | final accuracy | "
           "forgetting | updates |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['method']} | {r['reached']}/{r['seeds']} | {pm(r['steps_to_target'])} "
                   f"| {pm(r['compute_to_target'])} | {pm(r['final_accuracy'], '{:.3f}')} "
                   f"| {pm(r['forgetting'], '{:.4f}')} | {pm(r['updates'])} |")
    return "\n".join(out)




# ------------------------------------------------------------------ phase diagram (forward KL)
# predict_phase's defaults: a modest size (~0.1-0.3 s per run) and a base range of difficulties
# that is mostly frontier (initial logits in about [-2.2, 2.3], p0 in [0.1, 0.9]), so that
# hopeless_share is close to the pool's measured share of p_hat = 0 (rows report it).
PHASE_DEFAULTS = {"gradient": "forward", "n_problems": 2000, "n_heldout": 500, "n_known": 50,
                  "batch_size": 64, "steps": 200, "eval_every": 5, "lr": 0.02,
                  "difficulty_lo": -1.5, "difficulty_hi": 3.0}


def _interp_at(curve, x: float) -> float:
    """Accuracy of a (step, compute, acc) curve at compute x (piecewise linear)."""
    cs = np.array([c for _, c, _ in curve], float)
    acc = np.array([a for _, _, a in curve], float)
    return float(np.interp(x, cs, acc))


def area_under_curve(curve, budget: float) -> float:
    """(1/budget) * integral over compute in [0, budget] of held-out accuracy, the curve taken
    piecewise linear between evaluations (it starts at compute 0); needs the curve to reach
    the budget. A mean accuracy over the budget, in [0, 1]."""
    cs = np.array([c for _, c, _ in curve], float)
    acc = np.array([a for _, _, a in curve], float)
    if cs[-1] < budget * (1 - 1e-12):
        raise InputError(f"area_under_curve: the curve ends at compute {cs[-1]:g} < budget "
                         f"{budget:g}")
    inside = cs < budget
    x = np.append(cs[inside], budget)
    y = np.append(acc[inside], np.interp(budget, cs, acc))
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / budget)


def compute_to_reach(curve, level: float) -> float:
    """First compute at which the piecewise-linear curve reaches `level`; nan if it never does."""
    for (_, c0, a0), (_, c1, a1) in zip(curve[:-1], curve[1:]):
        if a1 >= level:
            if a0 >= level:
                return float(c0)
            return float(c0 + (c1 - c0) * (level - a0) / (a1 - a0))
    return float(curve[0][1]) if curve[0][2] >= level else float("nan")


def predict_phase(hopeless_shares, methods=("uniform", "hard", "beta", "beta+floor:1,1,0.05"),
                  seeds: int = 3, horizon: float = 1.0, **overrides) -> list[dict]:
    """The simulator's phase diagram: every method on pools of each hopeless share, at equal
    compute. Ours (a prediction of the model in the module docstring, not a measurement).

    Config: PopulationConfig defaults, then PHASE_DEFAULTS (forward gradients, modest size,
    a frontier-heavy base range), then `overrides` (any PopulationConfig key, e.g.
    gradient="onpolicy", solved_share=0.1, fwd_lambda=0.2, rollout_cost=0.1), then
    hopeless_share from the list. Per share and seed s = 0..seeds-1: uniform runs cfg.steps
    steps; its compute C_u is the budget; every method of that seed (uniform included) then
    runs until its compute reaches horizon * C_u (simulate(budget=...); overshoot <= one
    step). Uniform is always run and always reported, whether or not `methods` names it.
    Row keys: hopeless_share, solved_share, method, seed, final_accuracy (held-out accuracy
    at compute exactly C_u, interpolated between evaluations), auc (area under accuracy vs
    compute over [0, C_u] divided by C_u: the mean accuracy over the budget), budget (C_u),
    compute (what the run used; >= horizon * C_u), steps, rollouts, updates,
    compute_to_uniform_final (compute at which the method's curve first reaches uniform's
    final accuracy, divided by C_u; nan if not within horizon * C_u; set horizon > 1 to see
    ratios above 1), start_accuracy, share_p_hat_0 and share_low (the pool's measured initial
    shares, initial_shares), forgetting.
    Ratios against uniform per seed: phase_summary(rows).

    What the model predicts (3 seeds, shares 0 / 0.25 / 0.5 / 0.75, defaults; numbers in the
    report that introduced it). With rollouts charged at rollout_cost = 1 per rollout (K = 8
    per drawn problem, update cost 3), every p_hat-reading method gets ~1/3.5 of uniform's
    steps and uniform has the larger AUC at every share (ratios ~0.87-0.89). With cheap
    rollouts (rollout_cost -> 0, as when a pass-rate table is refreshed rarely), Paced beats
    uniform at every share, and its advantage GROWS with the hopeless share: with
    normalise="sum" a step's size does not depend on how many problems it keeps, so dropping
    c = 0 problems saves compute at no cost in drift, while hopeless held-out problems stay
    near p = 0 (sigmoid'(logit -5) ~ 0.007) whatever is trained. No fwd_lambda in [0, 2],
    rollout_cost in [0, 1] or hopeless_skill in {0, 0.5, 1} gave the neural ordering (uniform
    ahead on a hopeless-heavy pool, Paced ahead on a frontier-rich one): the model predicts
    the opposite trend. FORWARD_LAMBDA = 0.5 is therefore an assumption, not a fit."""
    if int(seeds) < 1:
        raise InputError(f"predict_phase: seeds must be >= 1 (got {seeds})")
    if not (np.isfinite(horizon) and horizon >= 1):
        raise InputError(f"predict_phase: horizon must be >= 1 (got {horizon})")
    methods = list(methods)
    for m in methods:
        parse_method(m)
    order = ["uniform"] + [m for m in methods if m != "uniform"]
    rows = []
    for h in hopeless_shares:
        cfg = from_overrides({**PHASE_DEFAULTS, **overrides, "hopeless_share": float(h)})
        for seed in range(int(seeds)):
            shares = initial_shares(cfg, seed)
            budget = simulate(cfg, "uniform", seed)["compute"]
            runs = {m: simulate(cfg, m, seed, budget=horizon * budget) for m in order}
            u_final = _interp_at(runs["uniform"]["curve"], budget)
            for m in order:
                r = runs[m]
                rows.append({
                    "hopeless_share": float(h), "solved_share": cfg.solved_share,
                    "method": m, "seed": seed,
                    "final_accuracy": _interp_at(r["curve"], budget),
                    "auc": area_under_curve(r["curve"], budget),
                    "budget": budget, "compute": r["compute"], "steps": r["steps"],
                    "rollouts": r["rollouts"], "updates": r["updates"],
                    "compute_to_uniform_final": compute_to_reach(r["curve"], u_final) / budget,
                    "start_accuracy": r["start_accuracy"],
                    "share_p_hat_0": shares["p_hat_0"], "share_low": shares["low"],
                    "forgetting": r["forgetting"],
                })
    return rows


def phase_summary(rows: list[dict], key: str = "auc") -> list[dict]:
    """Per (hopeless_share, method): mean and sd over seeds of row[key] / uniform's row[key] of
    the same share and seed (ratio 1 for uniform itself), and of the raw value."""
    base = {(r["hopeless_share"], r["seed"]): r[key] for r in rows if r["method"] == "uniform"}
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["hopeless_share"], r["method"]), []).append(
            (r[key], r[key] / base[(r["hopeless_share"], r["seed"])]))
    out = []
    for (h, m), xs in groups.items():
        val, ratio = (np.array(v, float) for v in zip(*xs))

        def sd(z):
            return float(z.std(ddof=1)) if len(z) > 1 else 0.0

        out.append({"hopeless_share": h, "method": m, "seeds": len(xs),
                    f"{key}_mean": float(val.mean()), f"{key}_sd": sd(val),
                    "ratio_mean": float(ratio.mean()), "ratio_sd": sd(ratio)})
    return out
