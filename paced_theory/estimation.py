"""How much efficiency is lost because p is estimated from K rollouts (docs/theory.md §5).

Ours: the whole framework of this file is our derivation; the paper only states that p is the
empirical pass rate from K = 8 rollouts and w = p^alpha (1-p)^beta.

Setting. A problem has true pass rate p ~ mu (a PassRateMeasure). The student makes K rollouts,
c ~ Binomial(K, p), and the problem is weighted by an estimate w_hat(c) of w(p) = p^alpha
(1-p)^beta (plug-in, unbiased or posterior mean; see paced_theory.kernels). Write

    w_bar(p)  = E_c[w_hat(c) | p]   = sum_c Bin(c; K, p) w_hat(c)      (mean weight at p)
    m2(p)     = E_c[w_hat(c)^2 | p] = sum_c Bin(c; K, p) w_hat(c)^2    (its second moment)

Efficiency (allocation criterion of docs/theory.md §2, with a random weight). The value of
a weighted batch is E[w_hat rho] = E_mu[w_bar rho], its effective-sample-size cost is
E[w_hat^2] = E_mu[m2], so

    eta(w_hat) = (E_mu[w_bar rho])^2 / (E_mu[m2] * E_mu[rho^2])          in [0, 1]

(Cauchy-Schwarz in L2(mu), and m2 >= w_bar^2 by Jensen). rho is the true SNR; by default
rho = w itself (the true Beta kernel), so eta(w_true) = 1 and every loss is due to
estimation: bias (w_bar not proportional to w) and noise (m2 - w_bar^2 > 0). Relative
efficiency is eta(w_hat) / eta(w_true), eta(w_true) = (E w rho)^2 / (E w^2 E rho^2).

Known closed form (ours, a check used by the tests): alpha = beta = 1, uniform mu, rho = w,
unbiased estimator: c is uniform on {0..K} and eta = K (K-1) / (K^2 + 1). The plug-in weight
at alpha = beta = 1 is (K-1)/K times the unbiased one, so it has the *same* eta (eta is
scale-invariant); the two differ for other exponents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.special import gammaln

from paced_theory.errors import InputError
from paced_theory.kernels import (
    ESTIMATORS,
    _integer_exponent,
    _nonneg,
    _real,
    beta_kernel,
    estimate_weight,
)

__all__ = [
    "estimator_moments",
    "estimator_efficiency",
    "efficiency_table",
    "best_K",
    "symbolic_expectation",
    "prove_unbiased",
]

_DEFAULT_GRID = 2001


# ----------------------------------------------------------------------------- helpers
def _measure(mu, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(p, mass) of a PassRateMeasure-like object (attributes p, mass); None -> uniform."""
    if mu is None:
        try:
            from paced_theory.efficiency import PassRateMeasure
        except ImportError:  # efficiency.py absent: midpoint rule on (0, 1)
            p = (np.arange(_DEFAULT_GRID) + 0.5) / _DEFAULT_GRID
            return p, np.full(_DEFAULT_GRID, 1.0 / _DEFAULT_GRID)
        mu = PassRateMeasure.uniform()
    try:
        p = np.asarray(mu.p, dtype=float).ravel()
        mass = np.asarray(mu.mass, dtype=float).ravel()
    except AttributeError:
        raise InputError(
            f"{where}: argument 'mu' must be a PassRateMeasure (attributes p, mass) or None "
            f"(got {type(mu).__name__})"
        ) from None
    if p.shape != mass.shape or p.size == 0:
        raise InputError(f"{where}: argument 'mu' needs p and mass of the same non-zero length")
    if np.any(~((p >= 0) & (p <= 1))):
        raise InputError(f"{where}: argument 'mu' has support points outside [0, 1]")
    if np.any(~(mass >= 0)) or not mass.sum() > 0:
        raise InputError(f"{where}: argument 'mu' needs non-negative masses with a positive sum")
    return p, mass / mass.sum()


def _rho_values(rho, p: np.ndarray, alpha: float, beta: float, where: str) -> np.ndarray:
    """rho at the support points: None -> the true Beta kernel; callable; or an array."""
    if rho is None:
        vals = beta_kernel(p, alpha, beta)
    elif callable(rho):
        vals = np.asarray(rho(p), dtype=float)
    else:
        vals = np.asarray(rho, dtype=float)
    vals = np.broadcast_to(vals, p.shape) if vals.ndim == 0 else vals
    if vals.shape != p.shape:
        raise InputError(
            f"{where}: argument 'rho' must give one value per support point of mu "
            f"(got shape {vals.shape}, expected {p.shape})"
        )
    if np.any(~np.isfinite(vals)) or np.any(vals < 0):
        raise InputError(f"{where}: argument 'rho' (an SNR) must be finite and >= 0")
    return vals


def _K(K, where: str) -> int:
    val = _real(K, "K", where)
    if val != round(val) or val < 1:
        raise InputError(f"{where}: argument 'K' (rollouts) must be an integer >= 1 (got {K!r})")
    return int(round(val))


def _check_estimator(estimator: str, where: str) -> None:
    if estimator not in ESTIMATORS:
        raise InputError(
            f"{where}: unknown estimator {estimator!r}; choose one of {list(ESTIMATORS)}"
        )


def estimator_moments(
    K: int,
    p,
    alpha: float = 1.0,
    beta: float = 1.0,
    estimator: str = "plugin",
    prior: tuple[float, float] = (1.0, 1.0),
) -> dict[str, np.ndarray]:
    """Moments of w_hat(c), c ~ Bin(K, p), at each p: exact sums over c = 0..K.

    Returns dict(mean = w_bar(p) = sum_c Bin(c;K,p) w_hat(c), second = E_c[w_hat^2],
    p_nonzero = P(w_hat(c) > 0 | p), weights = w_hat(c) for c = 0..K).
    Ours. For estimator="unbiased", mean == p^alpha (1-p)^beta exactly.
    """
    where = "estimator_moments"
    K = _K(K, where)
    _check_estimator(estimator, where)
    p = np.asarray(p, dtype=float)
    if np.any(~((p >= 0) & (p <= 1))):
        raise InputError(f"{where}: argument 'p' must lie in [0, 1]")
    c = np.arange(K + 1)
    w_hat = np.asarray(estimate_weight(c, K, alpha, beta, estimator, prior), dtype=float)
    pmf = _binom_pmf(c, K, p[..., None])  # (..., K+1)
    return {
        "mean": pmf @ w_hat,
        "second": pmf @ (w_hat**2),
        "p_nonzero": pmf @ (w_hat > 0).astype(float),
        "weights": w_hat,
    }


def _binom_pmf(c: np.ndarray, K: int, p: np.ndarray) -> np.ndarray:
    """Bin(c; K, p) in log space, 0 * log 0 = 0 (exact at p in {0, 1}, no underflow trouble
    for subnormal p, where scipy.stats.binom.pmf raises OverflowError)."""
    log_comb = gammaln(K + 1.0) - gammaln(c + 1.0) - gammaln(K - c + 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        lp = np.where(c > 0, c * np.log(p), 0.0)
        lq = np.where(K - c > 0, (K - c) * np.log1p(-p), 0.0)
    return np.exp(log_comb + lp + lq)


def _ratio(num: float, den: float) -> float:
    return 0.0 if den <= 0 else float(num / den)


def _efficiencies(K, alpha, beta, estimator, p, mass, rho, prior) -> dict[str, float]:
    """eta(w_hat), eta(w_true), relative, P(w_hat > 0) on the measure (p, mass)."""
    mom = estimator_moments(K, p, alpha, beta, estimator, prior)
    w = beta_kernel(p, alpha, beta)
    e_rho2 = float(mass @ rho**2)
    e_w2 = float(mass @ w**2)
    if e_rho2 <= 0:
        raise InputError("estimator efficiency: 'rho' is zero mu-almost everywhere")
    if e_w2 <= 0:
        raise InputError(
            "estimator efficiency: the true kernel p^alpha (1-p)^beta is zero mu-almost "
            "everywhere (mu sits on p in {0, 1}); choose another 'mu'"
        )
    eta = _ratio(float(mass @ (mom["mean"] * rho)) ** 2, float(mass @ mom["second"]) * e_rho2)
    eta_true = float(mass @ (w * rho)) ** 2 / (e_w2 * e_rho2)
    return {
        "efficiency": eta,
        "true_efficiency": eta_true,
        "relative_efficiency": _ratio(eta, eta_true),
        "p_nonzero": float(mass @ mom["p_nonzero"]),
    }


# ----------------------------------------------------------------------------- public API
def estimator_efficiency(
    K: int,
    alpha: float = 1.0,
    beta: float = 1.0,
    estimator: str = "plugin",
    mu=None,
    rho: Callable[[np.ndarray], np.ndarray] | np.ndarray | None = None,
    prior: tuple[float, float] = (1.0, 1.0),
    relative: bool = False,
) -> float:
    """eta(w_hat) = (E_mu[w_bar rho])^2 / (E_mu[E_c w_hat^2] E_mu[rho^2]) for K rollouts.

    Ours (module docstring). K: rollouts per problem; alpha, beta: the Beta kernel estimated;
    estimator: "plugin" | "unbiased" | "posterior" (prior=(a, b) for the latter); mu: a
    PassRateMeasure (default uniform); rho: true SNR as a callable of p or values at mu.p
    (default the true kernel, so eta(w_true) = 1). relative=True returns
    eta(w_hat) / eta(w_true) instead of the absolute eta. Returns 0 when w_hat is identically 0
    (e.g. plug-in with K = 1 and alpha, beta > 0).
    """
    where = "estimator_efficiency"
    K = _K(K, where)
    _check_estimator(estimator, where)
    alpha = _nonneg(alpha, "alpha", where)
    beta = _nonneg(beta, "beta", where)
    p, mass = _measure(mu, where)
    rho_v = _rho_values(rho, p, alpha, beta, where)
    out = _efficiencies(K, alpha, beta, estimator, p, mass, rho_v, prior)
    return out["relative_efficiency"] if relative else out["efficiency"]


def efficiency_table(
    Ks: Sequence[int],
    alpha: float = 1.0,
    beta: float = 1.0,
    estimators: Sequence[str] = ESTIMATORS,
    mu=None,
    rho=None,
    prior: tuple[float, float] = (1.0, 1.0),
) -> list[dict]:
    """One row per (K, estimator): K, estimator, alpha, beta, efficiency (absolute eta),
    relative_efficiency (eta / eta(w_true)), true_efficiency, p_nonzero (fraction of problems
    kept, P(w_hat > 0)), note.

    Ours. Infeasible cells (the unbiased estimator with non-integer exponents or
    alpha + beta > K) get None in the numeric fields and the reason in `note`.
    """
    where = "efficiency_table"
    alpha = _nonneg(alpha, "alpha", where)
    beta = _nonneg(beta, "beta", where)
    for est in estimators:
        _check_estimator(est, where)
    p, mass = _measure(mu, where)
    rho_v = _rho_values(rho, p, alpha, beta, where)
    rows = []
    for K in Ks:
        K = _K(K, where)
        for est in estimators:
            row = {"K": K, "estimator": est, "alpha": alpha, "beta": beta, "note": ""}
            if est == "unbiased" and (
                alpha != round(alpha) or beta != round(beta) or alpha + beta > K
            ):
                row.update(
                    efficiency=None,
                    relative_efficiency=None,
                    true_efficiency=None,
                    p_nonzero=None,
                    note="unbiased needs integer alpha, beta with alpha + beta <= K",
                )
            else:
                row.update(_efficiencies(K, alpha, beta, est, p, mass, rho_v, prior))
            rows.append(row)
    return rows


def best_K(
    cost_rollout: float,
    cost_update: float,
    updates_per_refresh: float,
    alpha: float = 1.0,
    beta: float = 1.0,
    estimator: str = "plugin",
    K_max: int = 64,
    mu=None,
    rho=None,
    prior: tuple[float, float] = (1.0, 1.0),
    K_min: int = 1,
) -> dict:
    """The number of rollouts K that maximises progress per unit compute, and the whole curve.

    Ours. Cost model, per problem and per pass-rate refresh:
      - the student makes K rollouts: cost K * cost_rollout;
      - the problem is then used for R = updates_per_refresh weighted updates, each costing
        cost_update (teacher + student forward/backward) -- but only if w_hat(c) > 0, since
        zero-weight problems are dropped before any forward pass. With the plug-in or unbiased
        estimator and alpha, beta > 0, problems with c in {0, K} cost rollouts only;
        the posterior-mean weight is never 0, so every problem pays for its updates.
    Progress per update is proportional to eta(K) (the allocation efficiency of
    `estimator_efficiency`, per problem drawn from mu, dropped ones included). Hence

        progress per compute (K) = R eta(K) / (K cost_rollout + R cost_update P(w_hat > 0)),

    P(w_hat > 0) = E_mu[P(w_hat(c) > 0 | p)]. The model ignores staleness of p over the R
    updates and the cost of evaluating rollouts beyond cost_rollout.

    K runs over max(K_min, alpha+beta for "unbiased") .. K_max. Returns dict(K=argmax (the
    smallest K on ties), progress=its value, Ks, progress_per_compute, efficiency, p_nonzero,
    compute (per problem per refresh), model=the formula as text, and the inputs).
    """
    where = "best_K"
    cost_rollout = _nonneg(cost_rollout, "cost_rollout", where)
    cost_update = _nonneg(cost_update, "cost_update", where)
    R = _real(updates_per_refresh, "updates_per_refresh", where)
    if R <= 0:
        raise InputError(f"{where}: argument 'updates_per_refresh' must be > 0 (got {R!r})")
    if cost_rollout == 0 and cost_update == 0:
        raise InputError(f"{where}: 'cost_rollout' and 'cost_update' cannot both be 0")
    alpha = _nonneg(alpha, "alpha", where)
    beta = _nonneg(beta, "beta", where)
    _check_estimator(estimator, where)
    K_min = _K(K_min, where)
    K_max = _K(K_max, where)
    if estimator == "unbiased":
        a = _integer_exponent(alpha, "alpha", where)
        b = _integer_exponent(beta, "beta", where)
        K_min = max(K_min, a + b, 1)
    if K_max < K_min:
        raise InputError(
            f"{where}: argument 'K_max' ({K_max}) is below the smallest feasible K ({K_min})"
        )
    p, mass = _measure(mu, where)
    rho_v = _rho_values(rho, p, alpha, beta, where)
    Ks = list(range(K_min, K_max + 1))
    effs, keep, compute, prog = [], [], [], []
    for K in Ks:
        e = _efficiencies(K, alpha, beta, estimator, p, mass, rho_v, prior)
        cost = K * cost_rollout + R * cost_update * e["p_nonzero"]
        effs.append(e["efficiency"])
        keep.append(e["p_nonzero"])
        compute.append(cost)
        prog.append(_ratio(R * e["efficiency"], cost))
    # smallest K within rounding of the maximum: exact ties occur (plug-in, alpha = beta = 1,
    # uniform mu: K = 2 and K = 3 have proportional efficiency, keep rate and cost)
    best = max(prog)
    i = next(j for j, v in enumerate(prog) if v >= best * (1 - 1e-12))
    return {
        "K": Ks[i],
        "progress": prog[i],
        "Ks": Ks,
        "progress_per_compute": prog,
        "efficiency": effs,
        "p_nonzero": keep,
        "compute": compute,
        "model": "R*eta(K) / (K*cost_rollout + R*cost_update*P(w_hat>0))",
        "cost_rollout": cost_rollout,
        "cost_update": cost_update,
        "updates_per_refresh": R,
        "alpha": alpha,
        "beta": beta,
        "estimator": estimator,
    }


# ----------------------------------------------------------------------------- symbolic
def symbolic_expectation(
    K: int,
    alpha: int,
    beta: int,
    estimator: str = "unbiased",
    prior: tuple[float, float] = (1, 1),
):
    """E_{c ~ Bin(K, p)}[w_hat(c)] as an expanded sympy polynomial in the symbol p.

    Ours. Exact rational arithmetic for integer K, alpha, beta (and a rational prior):
      unbiased  w_hat(c) = ff(c, alpha) ff(K-c, beta) / ff(K, alpha+beta)   (ff: falling factorial)
      plugin    w_hat(c) = (c/K)^alpha (1 - c/K)^beta
      posterior w_hat(c) = rf(a+c, alpha) rf(b+K-c, beta) / rf(a+b+K, alpha+beta)
                (rf: rising factorial; equals B(a+c+alpha, b+K-c+beta)/B(a+c, b+K-c))
    E.g. plugin, alpha = beta = 1: (1 - 1/K) p (1-p), the plug-in's bias.
    """
    import sympy as sp

    where = "symbolic_expectation"
    K = _K(K, where)
    a_ = _integer_exponent(alpha, "alpha", where)
    b_ = _integer_exponent(beta, "beta", where)
    _check_estimator(estimator, where)
    if estimator == "unbiased" and a_ + b_ > K:
        raise InputError(f"{where}: the unbiased estimator needs alpha + beta <= K")
    p = sp.Symbol("p")
    pa, pb = (sp.nsimplify(x) for x in prior)
    if estimator == "posterior" and not (pa > 0 and pb > 0):
        raise InputError(f"{where}: argument 'prior' must have a, b > 0 (got {prior!r})")
    total = sp.Integer(0)
    for c in range(K + 1):
        if estimator == "unbiased":
            w = sp.ff(c, a_) * sp.ff(K - c, b_) / sp.ff(K, a_ + b_)
        elif estimator == "plugin":
            w = sp.Rational(c, K) ** a_ * (1 - sp.Rational(c, K)) ** b_
        else:
            w = sp.rf(pa + c, a_) * sp.rf(pb + K - c, b_) / sp.rf(pa + pb + K, a_ + b_)
        total += sp.binomial(K, c) * p**c * (1 - p) ** (K - c) * w
    return sp.expand(total)


def prove_unbiased(K: int, alpha: int, beta: int) -> bool:
    """True iff sum_c Bin(c; K, p) w_hat(c) - p^alpha (1-p)^beta expands to the zero polynomial.

    Ours: a symbolic proof, for the given integer K, alpha, beta (alpha + beta <= K), that the
    U-statistic of `paced_theory.kernels.unbiased_beta_weight` is exactly unbiased.
    """
    import sympy as sp

    p = sp.Symbol("p")
    expectation = symbolic_expectation(K, alpha, beta, "unbiased")
    target = p ** int(round(float(alpha))) * (1 - p) ** int(round(float(beta)))
    return sp.expand(expectation - target) == 0
