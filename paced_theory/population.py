"""Item-response population simulator (THEORY.md section 4, M3; the model is ours).

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
Reported per method: steps, rollouts, updates and compute (rollouts + cost_update * updates)
to reach `target` held-out accuracy (first evaluation at or above it; None if never), final
held-out accuracy, forgetting = known accuracy at start - at end, and the learning curve.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from paced_theory.errors import InputError
from paced_theory.kernels import ESTIMATORS, estimate_weight, hard_band
from paced_theory.models import m1

NORMALISE = ("sum", "mean")


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

    def __post_init__(self):
        ints = ("n_problems", "n_heldout", "n_known", "dim", "steps", "batch_size", "K",
                "eval_every")
        for k in ints:
            if int(getattr(self, k)) < 1:
                raise InputError(f"population config: '{k}' must be >= 1 (got {getattr(self, k)})")
        if self.dim < 2:
            raise InputError("population config: 'dim' must be >= 2 "
                             "(the last coordinate is the known set's)")
        for k in ("lr", "cost_update"):
            if not getattr(self, k) > 0:
                raise InputError(f"population config: '{k}' must be > 0")
        for k in ("sigma2", "tau2", "alpha", "beta", "interference"):
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

    def diffs(n):
        return rng.uniform(cfg.difficulty_lo, cfg.difficulty_hi, n)

    known_a = np.zeros((cfg.n_known, cfg.dim))
    known_a[:, -1] = 1.0
    theta0 = np.full(cfg.dim, cfg.theta0 / np.sqrt(cfg.dim - 1))  # ||theta0[:-1]|| = theta0
    theta0[-1] = cfg.known_theta
    return Population(loadings(cfg.n_problems), diffs(cfg.n_problems), loadings(cfg.n_heldout),
                      diffs(cfg.n_heldout), known_a, np.zeros(cfg.n_known), theta0)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def parse_method(method: str) -> tuple[str, dict]:
    """'uniform' | 'hard' | 'beta' | 'beta:A,B' | 'oracle' -> (kind, params)."""
    if method in ("uniform", "hard", "oracle"):
        return method, {}
    if method == "beta":
        return "beta", {}
    if method.startswith("beta:"):
        try:
            a, b = (float(x) for x in method[5:].split(","))
        except ValueError:
            raise InputError(f"method {method!r}: expected beta:A,B") from None
        if a < 0 or b < 0:
            raise InputError(f"method {method!r}: alpha and beta must be >= 0")
        return "beta", {"alpha": a, "beta": b}
    raise InputError(f"unknown method {method!r}: use uniform, hard, beta, beta:A,B or oracle")


def simulate(cfg: PopulationConfig, method: str, seed: int = 0) -> dict:
    """Run one method; the population and all randomness derive from `seed` (same data for
    every method with the same seed; the rollout stream is separate from the data stream)."""
    kind, mparams = parse_method(method)
    alpha = mparams.get("alpha", cfg.alpha)
    beta = mparams.get("beta", cfg.beta)
    data_rng, run_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    pop = make_population(cfg, data_rng)
    theta = pop.theta0.copy()
    rho = m1(K=cfg.K, sigma2=cfg.sigma2, tau2=cfg.tau2, Delta=cfg.Delta).rho if kind == "oracle" \
        else None
    B, K, n = min(cfg.batch_size, cfg.n_problems), cfg.K, cfg.n_problems

    def accuracy(a, d):
        return float(_sigmoid(a @ theta - d).mean())

    known0 = accuracy(pop.known_a, pop.known_d)
    curve = [(0, 0.0, accuracy(pop.held_a, pop.held_d))]
    rollouts = updates = 0
    reached = None
    for step in range(1, cfg.steps + 1):
        idx = run_rng.integers(0, n, B)
        a, p = pop.train_a[idx], _sigmoid(pop.train_a[idx] @ theta - pop.train_d[idx])
        r = (run_rng.random((B, K)) < p[:, None]).astype(float)
        c = r.sum(1).astype(int)
        rollouts += B * K
        if kind == "uniform":
            w = np.ones(B)
        elif kind == "hard":
            w = hard_band(c / K, cfg.hard_lo, cfg.hard_hi)
        elif kind == "beta":
            w = estimate_weight(c, K, alpha, beta, estimator=cfg.estimator)
        else:
            w = rho(p)
        keep = w > 0
        m = int(keep.sum())
        updates += m
        if m:
            a, p, r, w = a[keep], p[keep], r[keep], w[keep]
            adv = cfg.Delta * r + run_rng.normal(0.0, np.sqrt(cfg.tau2), (m, K))
            adv -= adv.mean(1, keepdims=True)
            zeta = run_rng.normal(0.0, np.sqrt(cfg.sigma2 / cfg.dim), (m, K, cfg.dim))
            g = (adv * (r - p[:, None])).mean(1)[:, None] * a
            g += np.einsum("mk,mkd->md", adv, zeta) / K
            g[:, -1] -= cfg.interference * (1.0 - p)  # the forgetting assumption above
            norm = w.sum() if cfg.normalise == "sum" else B
            theta = theta + cfg.lr * (w[:, None] * g).sum(0) / norm
        if step % cfg.eval_every == 0 or step == cfg.steps:
            acc = accuracy(pop.held_a, pop.held_d)
            compute = rollouts + cfg.cost_update * updates
            curve.append((step, compute, acc))
            if reached is None and acc >= cfg.target:
                reached = {"steps": step, "rollouts": rollouts, "updates": updates,
                           "compute": compute}
    final_known = accuracy(pop.known_a, pop.known_d)
    return {
        "method": method,
        "seed": seed,
        "final_accuracy": curve[-1][2],
        "start_accuracy": curve[0][2],
        "to_target": reached,
        "rollouts": rollouts,
        "updates": updates,
        "compute": rollouts + cfg.cost_update * updates,
        "known_start": known0,
        "known_final": final_known,
        "forgetting": known0 - final_known,
        "curve": curve,
    }


def compare(cfg: PopulationConfig, methods, seeds: int = 3) -> list[dict]:
    """Every method on the same seeds (hence the same problems); one row per method with
    mean and std over seeds. Compute-to-target averages over the seeds that reached it."""
    if int(seeds) < 1:
        raise InputError(f"--seeds must be >= 1 (got {seeds})")
    rows = []
    for method in methods:
        runs = [simulate(cfg, method, s) for s in range(int(seeds))]
        hit = [r["to_target"] for r in runs if r["to_target"] is not None]

        def ms(xs):
            xs = np.asarray(xs, float)
            return float(xs.mean()), float(xs.std(ddof=1)) if len(xs) > 1 else 0.0

        row = {"method": method, "seeds": len(runs), "reached": len(hit)}
        for key in ("steps", "updates", "compute"):
            row[f"{key}_to_target"] = ms([h[key] for h in hit]) if hit else None
        row["final_accuracy"] = ms([r["final_accuracy"] for r in runs])
        row["forgetting"] = ms([r["forgetting"] for r in runs])
        row["updates"] = ms([r["updates"] for r in runs])
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


