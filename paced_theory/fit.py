"""Fit weight-kernel families to a measured SNR curve (THEORY.md sections 3 and 6; ours).

Input: points (p_i, rho_i) -- pass-rate bin centres and the SNR measured there -- with
optional counts n_i (problems per bin) or standard errors se_i. The points define the
pass-rate measure mu (mass ∝ n_i, or equal) and the target rho.

Families and how each is fitted:
  beta_ls       log rho = alpha log p + beta log(1-p) + c by weighted least squares
                (weights n_i, or 1/se_log_i^2 with se_log = se/rho by the delta method),
                alpha, beta >= 0 (scipy lsq_linear).
  beta_linf     the Chebyshev (L-infinity) fit of log rho by {log p, log(1-p), 1}: minimise
                t subject to |log rho_i - alpha log p_i - beta log(1-p_i) - c| <= t, alpha,
                beta >= 0, a linear program (scipy linprog). It minimises the residual
                oscillation, hence maximises the Kantorovich guarantee, among Beta kernels.
  gaussian      log w = -(p - centre)^2 / (2 width^2): least squares in log space.
  kumaraswamy   log w = a log p + b log(1 - p^a): nonlinear least squares in log space.
  hard          1 on lo < p < hi: log w is -inf outside, so lo, hi maximise the achieved
                efficiency over all bands with ends between neighbouring points.
  sqrt_variance p^(1/2) (1-p)^(1/2), uniform 1: no parameters.
Points with rho_i = 0 (or p_i in {0, 1}) carry no log-space information and are left out
of the log-space fits; they still count in the efficiencies.

Reported per family:
  efficiency            eta = (E_mu[w rho])^2 / (E_mu[w^2] E_mu[rho^2])  (allocation criterion)
  residual_oscillation  osc = max - min over rho_i > 0 of log(rho_i / w_i)  (inf if some w_i = 0)
  guaranteed_efficiency (1 - tanh^2(osc/2)) * E_mu[w^2 1{rho>0}] / E_mu[w^2]: the Kantorovich
                        floor for the part of w on points with signal, times the exact share of
                        w's second moment spent there. It never exceeds the achieved efficiency.
  aic                   n log(RSS/n) + 2k on the log-space residuals (k = params + 1 for scale)
  intervals             bootstrap percentile intervals (resampling points), 95 %.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares, linprog, lsq_linear

from paced_theory.errors import InputError
from paced_theory.kernels import (
    beta_kernel,
    gaussian_bump,
    hard_band,
    kumaraswamy_kernel,
    sqrt_variance_kernel,
    uniform_kernel,
)
from paced_theory.robustness import guaranteed_efficiency_from_oscillation

FAMILIES = ("beta_ls", "beta_linf", "hard", "gaussian", "kumaraswamy", "sqrt_variance", "uniform")


@dataclass(frozen=True)
class SNRCurve:
    """A measured SNR curve: bin centres p, SNR values, optional counts or standard errors."""

    p: np.ndarray
    snr: np.ndarray
    count: np.ndarray | None = None
    se: np.ndarray | None = None

    def mass(self) -> np.ndarray:
        m = np.ones_like(self.p) if self.count is None else np.asarray(self.count, float)
        return m / m.sum()

    def subset(self, idx: np.ndarray) -> SNRCurve:
        def pick(a):
            return None if a is None else np.asarray(a)[idx]

        return SNRCurve(self.p[idx], self.snr[idx], pick(self.count), pick(self.se))


@dataclass
class FitResult:
    family: str
    params: dict[str, float]
    residual_oscillation: float
    guaranteed_efficiency: float
    efficiency: float
    aic: float
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)

    def kernel(self, p) -> np.ndarray:
        return family_kernel(self.family, self.params, p)


# ------------------------------------------------------------------------------ input
def read_snr_csv(path) -> SNRCurve:
    """Read a CSV with columns p,snr (optional count or se). Errors name file, line, column."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    reader = csv.DictReader(text.splitlines())
    cols = [c.strip() for c in (reader.fieldnames or [])]
    for need in ("p", "snr"):
        if need not in cols:
            raise InputError(f"{path}: line 1: missing column '{need}' (columns: {cols})")
    extra = [c for c in ("count", "se") if c in cols]
    rows: dict[str, list[float]] = {c: [] for c in ["p", "snr", *extra]}
    for lineno, raw in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        for c in rows:
            try:
                x = float(row[c])
            except ValueError:
                raise InputError(f"{path}: line {lineno}: column '{c}' is not a number "
                                 f"({row[c]!r})") from None
            if not math.isfinite(x):
                raise InputError(f"{path}: line {lineno}: column '{c}' is not finite")
            rows[c].append(x)
        if not 0.0 <= rows["p"][-1] <= 1.0:
            raise InputError(f"{path}: line {lineno}: p = {rows['p'][-1]} is outside [0, 1]")
        if rows["snr"][-1] < 0:
            raise InputError(f"{path}: line {lineno}: snr = {rows['snr'][-1]} is negative")
        for c in extra:
            if rows[c][-1] < 0:
                raise InputError(f"{path}: line {lineno}: {c} = {rows[c][-1]} is negative")
    if len(rows["p"]) < 3:
        raise InputError(f"{path}: needs at least 3 data rows to fit (got {len(rows['p'])})")
    arr = {k: np.asarray(v) for k, v in rows.items()}
    if "count" in arr and arr["count"].sum() <= 0:
        raise InputError(f"{path}: column 'count' sums to 0")
    if not np.any(arr["snr"] > 0):
        raise InputError(f"{path}: every snr is 0; nothing to fit")
    return SNRCurve(arr["p"], arr["snr"], arr.get("count"), arr.get("se"))


# ------------------------------------------------------------------- kernels & metrics
def family_kernel(family: str, params: dict, p) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    if family in ("beta_ls", "beta_linf"):
        return beta_kernel(p, params["alpha"], params["beta"])
    if family == "gaussian":
        return gaussian_bump(p, params["center"], params["width"])
    if family == "kumaraswamy":
        return kumaraswamy_kernel(p, params["a"], params["b"])
    if family == "hard":
        return hard_band(p, params["lo"], params["hi"])
    if family == "sqrt_variance":
        return sqrt_variance_kernel(p)
    if family == "uniform":
        return uniform_kernel(p)
    raise InputError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")


def achieved_efficiency(w: np.ndarray, curve: SNRCurve) -> float:
    m, r = curve.mass(), curve.snr
    den = np.dot(m, w * w) * np.dot(m, r * r)
    return 0.0 if den == 0 else float(min(np.dot(m, w * r) ** 2 / den, 1.0))


def oscillation(w: np.ndarray, curve: SNRCurve) -> float:
    pos = curve.snr > 0
    if np.any(w[pos] <= 0):
        return math.inf
    res = np.log(curve.snr[pos]) - np.log(w[pos])
    return float(res.max() - res.min())


def guaranteed_efficiency(w: np.ndarray, curve: SNRCurve) -> float:
    m = curve.mass()
    total = np.dot(m, w * w)
    if total == 0:
        return 0.0
    share = np.dot(m[curve.snr > 0], w[curve.snr > 0] ** 2) / total
    return guaranteed_efficiency_from_oscillation(oscillation(w, curve)) * float(share)


def _log_points(curve: SNRCurve):
    ok = (curve.snr > 0) & (curve.p > 0) & (curve.p < 1)
    if ok.sum() < 3:
        raise InputError("fit: fewer than 3 points with snr > 0 and 0 < p < 1")
    p, y = curve.p[ok], np.log(curve.snr[ok])
    if curve.se is not None:
        se_log = np.asarray(curve.se, float)[ok] / curve.snr[ok]
        wts = 1.0 / np.maximum(se_log, 1e-12) ** 2
    else:
        wts = curve.mass()[ok]
    return p, y, wts / wts.sum()


# ------------------------------------------------------------------------ fitters
def fit_beta_ls(curve: SNRCurve) -> dict:
    p, y, wts = _log_points(curve)
    A = np.column_stack([np.log(p), np.log1p(-p), np.ones_like(p)])
    sw = np.sqrt(wts)
    sol = lsq_linear(A * sw[:, None], y * sw, bounds=([0, 0, -np.inf], [np.inf] * 3))
    return {"alpha": float(sol.x[0]), "beta": float(sol.x[1])}


def fit_beta_linf(curve: SNRCurve) -> dict:
    p, y, _ = _log_points(curve)
    A = np.column_stack([np.log(p), np.log1p(-p), np.ones_like(p)])
    n = len(p)
    # variables (alpha, beta, c, t); minimise t s.t. +-(y - A x) <= t
    c_obj = np.array([0, 0, 0, 1.0])
    A_ub = np.vstack([np.column_stack([-A, -np.ones(n)]), np.column_stack([A, -np.ones(n)])])
    b_ub = np.concatenate([-y, y])
    res = linprog(c_obj, A_ub=A_ub, b_ub=b_ub,
                  bounds=[(0, None), (0, None), (None, None), (0, None)], method="highs")
    if not res.success:
        raise InputError(f"fit: the L-infinity linear program failed ({res.message})")
    return {"alpha": float(res.x[0]), "beta": float(res.x[1])}


def chebyshev_beta(rho, lo: float = 0.01, hi: float = 0.99, n: int = 97) -> dict:
    """The Chebyshev Beta fit of a closed-form SNR function rho(p) on a grid in [lo, hi]:
    the Beta kernel with the best Kantorovich guarantee there (THEORY.md section 3)."""
    p = np.linspace(lo, hi, n)
    return fit_beta_linf(SNRCurve(p=p, snr=np.asarray(rho(p), dtype=float)))


def _log_ls(curve: SNRCurve, logw, x0, bounds) -> np.ndarray:
    """Weighted least squares of log rho against log w(p; theta) + c, c profiled out."""
    p, y, wts = _log_points(curve)
    sw = np.sqrt(wts)

    def resid(theta):
        lw = logw(p, theta)
        c = np.dot(wts, y - lw)
        return sw * (y - lw - c)

    return least_squares(resid, x0, bounds=bounds).x


def fit_gaussian(curve: SNRCurve) -> dict:
    th = _log_ls(curve, lambda p, t: -((p - t[0]) ** 2) / (2 * t[1] ** 2), [0.5, 0.25],
                 ([-1.0, 1e-3], [2.0, 10.0]))
    return {"center": float(th[0]), "width": float(th[1])}


def fit_kumaraswamy(curve: SNRCurve) -> dict:
    th = _log_ls(curve, lambda p, t: np.log(np.maximum(kumaraswamy_kernel(p, t[0], t[1]), 1e-300)),
                 [1.0, 1.0], ([1e-3, 0.0], [20.0, 20.0]))
    return {"a": float(th[0]), "b": float(th[1])}


def fit_hard(curve: SNRCurve) -> dict:
    ps = np.unique(curve.p)
    cuts = np.concatenate([[0.0], (ps[:-1] + ps[1:]) / 2, [1.0]])
    best, arg = -1.0, (0.0, 1.0)
    for i in range(len(cuts)):
        for j in range(i + 1, len(cuts)):
            e = achieved_efficiency(hard_band(curve.p, cuts[i], cuts[j]), curve)
            if e > best + 1e-15:
                best, arg = e, (cuts[i], cuts[j])
    return {"lo": float(arg[0]), "hi": float(arg[1])}


FITTERS = {
    "beta_ls": fit_beta_ls,
    "beta_linf": fit_beta_linf,
    "gaussian": fit_gaussian,
    "kumaraswamy": fit_kumaraswamy,
    "hard": fit_hard,
    "sqrt_variance": lambda curve: {},
    "uniform": lambda curve: {},
}


def _aic(w: np.ndarray, curve: SNRCurve, k: int) -> float:
    ok = (curve.snr > 0) & (curve.p > 0) & (curve.p < 1)
    if np.any(w[ok] <= 0):
        return math.inf
    res = np.log(curve.snr[ok]) - np.log(w[ok])
    res = res - res.mean()
    n = int(ok.sum())
    rss = max(float(res @ res), 1e-300)
    return n * math.log(rss / n) + 2 * (k + 1)


def fit_family(curve: SNRCurve, family: str) -> FitResult:
    if family not in FITTERS:
        raise InputError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    params = FITTERS[family](curve)
    w = family_kernel(family, params, curve.p)
    return FitResult(
        family=family,
        params=params,
        residual_oscillation=oscillation(w, curve),
        guaranteed_efficiency=guaranteed_efficiency(w, curve),
        efficiency=achieved_efficiency(w, curve),
        aic=_aic(w, curve, len(params)),
    )


def fit_families(curve: SNRCurve, families=FAMILIES, n_boot: int = 200,
                 seed: int = 0) -> dict[str, FitResult]:
    """Fit each family; bootstrap 95 % intervals for its parameters (resampling points)."""
    if n_boot < 0:
        raise InputError(f"--n-boot must be >= 0 (got {n_boot})")
    results = {f: fit_family(curve, f) for f in families}
    rng = np.random.default_rng(seed)
    n = len(curve.p)
    draws: dict[str, list[dict]] = {f: [] for f in families}
    for _ in range(n_boot):
        sub = curve.subset(rng.integers(0, n, n))
        for f in families:
            if not results[f].params:
                continue
            try:
                draws[f].append(FITTERS[f](sub))
            except (InputError, ValueError):
                continue  # a resample with too few usable points
    for f in families:
        if draws[f]:
            results[f].intervals = {
                k: (float(np.percentile([d[k] for d in draws[f]], 2.5)),
                    float(np.percentile([d[k] for d in draws[f]], 97.5)))
                for k in results[f].params
            }
    return results
