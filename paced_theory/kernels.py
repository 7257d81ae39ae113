"""Weighting kernels w(p) of a problem's pass rate p, and estimators of w from K rollouts.

The PACED weight (Paper) is the Beta kernel w(p) = p^alpha (1-p)^beta, default alpha = beta = 1,
so problems the student always or never solves get weight 0. It is evaluated in log space,

    log w(p) = alpha * log(p) + beta * log1p(-p),

so that it stays finite and accurate for p within 1e-300 of 0 (and within float resolution,
about 1.1e-16, of 1), where p**alpha * (1-p)**beta would underflow to 0. Convention 0**0 = 1:
alpha = 0 gives w(0) = 1 (and beta = 0 gives w(1) = 1).

The other kernels are the baselines and alternative families that `fit.py` compares:
uniform, hard band, Gaussian bump, Kumaraswamy, sqrt-variance. `KERNELS` maps a name to the
function, `make_kernel(name, **params)` returns a vectorised p -> w(p) with the parameters bound.

In training, p is unknown: we only see c successes in K rollouts (docs/theory.md §5). Three
estimators of w(p) from (c, K):

    plug-in     w(c/K)                                      biased (Paper's default usage)
    unbiased    [c]_alpha [K-c]_beta / [K]_(alpha+beta)      exact U-statistic, integer alpha, beta
                (falling factorials; = c(K-c)/(K(K-1)) at alpha = beta = 1)
    posterior   E[p^alpha (1-p)^beta | c] under a Beta(a, b) prior
                = B(a+c+alpha, b+K-c+beta) / B(a+c, b+K-c)

`paced_theory.estimation` measures how much efficiency each loses at finite K.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from functools import partial

import numpy as np
from scipy.special import betaln

from paced_theory.errors import InputError

Kernel = Callable[[np.ndarray], np.ndarray]

ESTIMATORS = ("plugin", "unbiased", "posterior")

__all__ = [
    "Kernel",
    "ESTIMATORS",
    "KERNELS",
    "log_beta_kernel",
    "beta_kernel",
    "beta_kernel_peak",
    "uniform_kernel",
    "hard_band",
    "gaussian_bump",
    "kumaraswamy_kernel",
    "sqrt_variance_kernel",
    "make_kernel",
    "plugin_weight",
    "unbiased_beta_weight",
    "posterior_beta_weight",
    "estimate_weight",
]


# ----------------------------------------------------------------------------- validation
def _as_prob(p, where: str) -> np.ndarray:
    """p as a float array, every entry in [0, 1] (NaN rejected)."""
    arr = np.asarray(p, dtype=float)
    bad = ~((arr >= 0.0) & (arr <= 1.0))  # also catches NaN
    if np.any(bad):
        first = arr[bad].flat[0]
        raise InputError(
            f"{where}: argument 'p' must lie in [0, 1] (got {first!r}); pass pass rates, "
            "not percentages or logits"
        )
    return arr


def _real(x, name: str, where: str) -> float:
    try:
        val = float(x)
    except (TypeError, ValueError):
        raise InputError(f"{where}: argument '{name}' must be a real number (got {x!r})") from None
    if not math.isfinite(val):
        raise InputError(f"{where}: argument '{name}' must be finite (got {x!r})")
    return val


def _nonneg(x, name: str, where: str) -> float:
    val = _real(x, name, where)
    if val < 0:
        raise InputError(f"{where}: argument '{name}' must be >= 0 (got {x!r})")
    return val


def _positive(x, name: str, where: str) -> float:
    val = _real(x, name, where)
    if val <= 0:
        raise InputError(f"{where}: argument '{name}' must be > 0 (got {x!r})")
    return val


def _as_int_array(x, name: str, where: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise InputError(f"{where}: argument '{name}' must be integer counts (got {x!r})")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise InputError(
                f"{where}: argument '{name}' must be integer-valued (got {x!r}); "
                "pass the number of successes/rollouts, not a rate"
            )
        arr = arr.astype(np.int64)
    return arr.astype(np.int64)


def _counts(c, K, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate c successes out of K rollouts; return broadcast int64 arrays (c, K)."""
    K_arr = _as_int_array(K, "K", where)
    if np.any(K_arr < 1):
        raise InputError(f"{where}: argument 'K' (rollouts) must be >= 1 (got {K!r})")
    c_arr = _as_int_array(c, "c", where)
    try:
        c_arr, K_arr = np.broadcast_arrays(c_arr, K_arr)
    except ValueError:
        raise InputError(
            f"{where}: arguments 'c' and 'K' have incompatible shapes "
            f"{np.shape(c)} and {np.shape(K)}"
        ) from None
    if np.any((c_arr < 0) | (c_arr > K_arr)):
        raise InputError(
            f"{where}: argument 'c' (successes) must lie in [0, K] (got c={c!r}, K={K!r})"
        )
    return c_arr, K_arr


# ----------------------------------------------------------------------------- kernels
def log_beta_kernel(p, alpha: float = 1.0, beta: float = 1.0) -> np.ndarray:
    """log w(p) = alpha*log(p) + beta*log1p(-p); -inf where w(p) = 0.

    Paper: the PACED weight is w(p) = p^alpha (1-p)^beta. Ours: the log-space evaluation and
    the 0**0 = 1 convention (a zero exponent contributes 0, also at p = 0 or p = 1).
    Accurate for p as small as the smallest subnormal double and for p = 1 - 2**-53.
    """
    where = "log_beta_kernel"
    alpha = _nonneg(alpha, "alpha", where)
    beta = _nonneg(beta, "beta", where)
    return _log_beta(_as_prob(p, where), alpha, beta)


def _log_beta(p: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """log_beta_kernel without the argument checks (p a float array in [0, 1], alpha and
    beta >= 0), for loops that evaluate one validated p many times (fit.fit_beta_eff)."""
    with np.errstate(divide="ignore"):
        la = alpha * np.log(p) if alpha > 0 else np.zeros_like(p)
        lb = beta * np.log1p(-p) if beta > 0 else np.zeros_like(p)
    return la + lb


def beta_kernel(p, alpha: float = 1.0, beta: float = 1.0) -> np.ndarray:
    """w(p) = p^alpha (1-p)^beta = exp(log_beta_kernel(p, alpha, beta)), with 0**0 = 1.

    Paper: PACED's weight (default alpha = beta = 1, w = p(1-p), zero at p in {0, 1}).
    Its maximum max_p w = w(alpha/(alpha+beta)) is at `beta_kernel_peak(alpha, beta)`.
    """
    return np.exp(log_beta_kernel(p, alpha, beta))


def beta_kernel_peak(alpha: float, beta: float) -> float:
    """argmax_p p^alpha (1-p)^beta = alpha / (alpha + beta).

    Ours (elementary): d/dp log w = alpha/p - beta/(1-p) = 0. For alpha = beta = 0 the kernel
    is constant and has no unique peak: InputError.
    """
    where = "beta_kernel_peak"
    alpha = _nonneg(alpha, "alpha", where)
    beta = _nonneg(beta, "beta", where)
    if alpha + beta == 0:
        raise InputError(
            f"{where}: alpha = beta = 0 gives a constant kernel with no unique peak; "
            "make 'alpha' or 'beta' positive"
        )
    return alpha / (alpha + beta)


def uniform_kernel(p) -> np.ndarray:
    """w(p) = 1: unweighted distillation (Paper's baseline)."""
    return np.ones_like(_as_prob(p, "uniform_kernel"))


def hard_band(p, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """w(p) = 1 on the open interval lo < p < hi, else 0: the hard filter (Paper's baseline).

    With the default band (0, 1) it drops exactly the problems with p in {0, 1}.
    """
    where = "hard_band"
    lo = _real(lo, "lo", where)
    hi = _real(hi, "hi", where)
    if not (0.0 <= lo < hi <= 1.0):
        raise InputError(f"{where}: need 0 <= lo < hi <= 1 (got lo={lo!r}, hi={hi!r})")
    p = _as_prob(p, where)
    return ((p > lo) & (p < hi)).astype(float)


def gaussian_bump(p, center: float = 0.5, width: float = 0.2) -> np.ndarray:
    """w(p) = exp(-(p - center)^2 / (2 width^2)); an alternative family for fits (ours).

    Unlike the Beta kernel it does not vanish at p in {0, 1}.
    """
    where = "gaussian_bump"
    center = _real(center, "center", where)
    width = _positive(width, "width", where)
    p = _as_prob(p, where)
    return np.exp(-0.5 * ((p - center) / width) ** 2)


def kumaraswamy_kernel(p, a: float = 2.0, b: float = 2.0) -> np.ndarray:
    """w(p) = p^a (1 - p^a)^b, evaluated as exp(a log p + b log(-expm1(a log p))).

    Ours: the form is chosen so that its boundary exponents are (a, b), like the Beta kernel's
    (alpha, beta): near 0, w ~ p^a; near 1, 1 - p^a ~ a (1-p), so w ~ a^b (1-p)^b. What differs
    is the interior shape (skewed towards 1 for a > 1). It is the Kumaraswamy(a, b+1) density
    a(b+1) p^(a-1) (1-p^a)^b times p / (a(b+1)). Peak at p* = (1 + b)^(-1/a).
    Requires a > 0, b >= 0 (0**0 = 1: b = 0 gives w = p^a).
    """
    where = "kumaraswamy_kernel"
    a = _positive(a, "a", where)
    b = _nonneg(b, "b", where)
    p = _as_prob(p, where)
    with np.errstate(divide="ignore"):
        alog = a * np.log(p)
        lw = alog.copy()
        if b > 0:
            lw = lw + b * np.log(-np.expm1(alog))
    return np.exp(lw)


def sqrt_variance_kernel(p) -> np.ndarray:
    """w(p) = sqrt(p (1-p)), the standard deviation of one rollout's reward (ours, a baseline).

    Equal to beta_kernel(p, 0.5, 0.5).
    """
    return np.exp(log_beta_kernel(p, 0.5, 0.5))


KERNELS: dict[str, Callable[..., np.ndarray]] = {
    "beta": beta_kernel,
    "uniform": uniform_kernel,
    "hard": hard_band,
    "gaussian": gaussian_bump,
    "kumaraswamy": kumaraswamy_kernel,
    "sqrt_variance": sqrt_variance_kernel,
}


def make_kernel(name: str, **params) -> Kernel:
    """A vectorised p -> w(p) for the kernel `name` in KERNELS with `params` bound.

    Example: make_kernel("beta", alpha=2, beta=1). Unknown names, unknown parameters and bad
    parameter values raise InputError at construction time, not at the first call.
    """
    if name not in KERNELS:
        raise InputError(
            f"make_kernel: unknown kernel name {name!r}; choose one of {sorted(KERNELS)}"
        )
    fn = KERNELS[name]
    allowed = [k for k in inspect.signature(fn).parameters if k != "p"]
    for key in params:
        if key not in allowed:
            raise InputError(
                f"make_kernel: kernel {name!r} has no parameter {key!r}; "
                f"its parameters are {allowed or 'none'}"
            )
    kernel = partial(fn, **params)
    kernel(np.array([0.0, 0.5, 1.0]))  # validates the parameter values now
    return kernel


# ----------------------------------------------------------------------------- estimators
def plugin_weight(c, K, alpha: float = 1.0, beta: float = 1.0) -> np.ndarray:
    """w_hat(c) = w(c/K) = (c/K)^alpha (1 - c/K)^beta: the plug-in weight.

    Paper: PACED weights with the empirical pass rate p_hat = c/K (K = 8 in the paper).
    Biased for w(p): for alpha = beta = 1, E[w(c/K)] = (1 - 1/K) p(1-p) (ours).
    Zero for c in {0, K} when alpha, beta > 0.
    """
    where = "plugin_weight"
    alpha = _nonneg(alpha, "alpha", where)
    beta = _nonneg(beta, "beta", where)
    c_arr, K_arr = _counts(c, K, where)
    return beta_kernel(c_arr / K_arr, alpha, beta)


def _integer_exponent(x, name: str, where: str) -> int:
    val = _nonneg(x, name, where)
    if val != round(val):
        raise InputError(
            f"{where}: argument '{name}' must be a non-negative integer for the unbiased "
            f"estimator (got {x!r}); use estimator='posterior' or 'plugin' for real exponents"
        )
    return int(round(val))


def unbiased_beta_weight(c, K, alpha: float, beta: float) -> np.ndarray:
    """w_hat(c) = [c]_alpha [K-c]_beta / [K]_(alpha+beta): unbiased for p^alpha (1-p)^beta.

    [n]_j = n (n-1) ... (n-j+1) is the falling factorial. Equivalently
    w_hat(c) = C(c, alpha) C(K-c, beta) / (C(K, alpha+beta) C(alpha+beta, alpha)).
    Ours (a standard U-statistic): draw an ordered sample of alpha+beta of the K rollouts
    without replacement; the indicator "the first alpha succeed and the other beta fail" has
    expectation p^alpha (1-p)^beta, and its average over all ordered samples given c is the
    formula. Hence E_{c ~ Bin(K, p)}[w_hat(c)] = p^alpha (1-p)^beta exactly, for every p.
    For alpha = beta = 1: c (K-c) / (K (K-1)).
    Note: C(c, alpha) C(K-c, beta) / C(K, alpha+beta) alone (the earlier reference text's form,
    docs/theory.md §9)
    is the hypergeometric probability of alpha successes in an unordered subsample; it is
    unbiased for C(alpha+beta, alpha) p^alpha (1-p)^beta (twice p(1-p) at alpha = beta = 1),
    hence the extra 1/C(alpha+beta, alpha) here.
    Requires integer alpha, beta >= 0 and alpha + beta <= K. Computed as a product of ratios
    <= 1 (no overflow): prod_{j<alpha} (c-j)/(K-j) * prod_{j<beta} (K-c-j)/(K-alpha-j).
    """
    where = "unbiased_beta_weight"
    a = _integer_exponent(alpha, "alpha", where)
    b = _integer_exponent(beta, "beta", where)
    c_arr, K_arr = _counts(c, K, where)
    if np.any(a + b > K_arr):
        raise InputError(
            f"{where}: the unbiased estimator needs alpha + beta <= K (got alpha={alpha!r}, "
            f"beta={beta!r}, K={K!r}); use more rollouts or the 'posterior' estimator"
        )
    c_f = c_arr.astype(float)
    K_f = K_arr.astype(float)
    out = np.ones(c_f.shape)
    for j in range(a):
        out = out * np.maximum(c_f - j, 0.0) / (K_f - j)
    for j in range(b):
        out = out * np.maximum(K_f - c_f - j, 0.0) / (K_f - a - j)
    return out


def posterior_beta_weight(
    c, K, alpha: float, beta: float, a: float = 1.0, b: float = 1.0
) -> np.ndarray:
    """w_hat(c) = E[p^alpha (1-p)^beta | c] = B(a+c+alpha, b+K-c+beta) / B(a+c, b+K-c).

    Ours: with prior p ~ Beta(a, b) and c ~ Bin(K, p), the posterior is Beta(a+c, b+K-c), whose
    moment E[p^alpha (1-p)^beta] is the Beta-function ratio above (computed with
    scipy.special.betaln in log space). Real alpha, beta >= 0 allowed; a, b > 0. It is the
    Bayes (squared-error) estimate of w under the prior; it is never exactly 0, so no problem is
    dropped.
    """
    where = "posterior_beta_weight"
    alpha = _nonneg(alpha, "alpha", where)
    beta = _nonneg(beta, "beta", where)
    a = _positive(a, "a", where)
    b = _positive(b, "b", where)
    c_arr, K_arr = _counts(c, K, where)
    c_f = c_arr.astype(float)
    K_f = K_arr.astype(float)
    return np.exp(betaln(a + c_f + alpha, b + K_f - c_f + beta) - betaln(a + c_f, b + K_f - c_f))


def estimate_weight(
    c,
    K,
    alpha: float = 1.0,
    beta: float = 1.0,
    estimator: str = "plugin",
    prior: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """Estimate w(p) = p^alpha (1-p)^beta from c successes in K rollouts.

    estimator: "plugin" (w(c/K); Paper), "unbiased" (U-statistic; ours) or "posterior"
    (posterior mean under a Beta(prior[0], prior[1]) prior; ours). See the functions above.
    """
    if estimator == "plugin":
        return plugin_weight(c, K, alpha, beta)
    if estimator == "unbiased":
        return unbiased_beta_weight(c, K, alpha, beta)
    if estimator == "posterior":
        try:
            pa, pb = prior
        except (TypeError, ValueError):
            raise InputError(
                f"estimate_weight: argument 'prior' must be a pair (a, b) (got {prior!r})"
            ) from None
        return posterior_beta_weight(c, K, alpha, beta, pa, pb)
    raise InputError(
        f"estimate_weight: unknown estimator {estimator!r}; choose one of {list(ESTIMATORS)}"
    )
