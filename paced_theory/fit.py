"""Fit weight-kernel families to a measured SNR curve (docs/theory.md §3, §7; ours).

Input: points (p_i, rho_i): pass-rate bin centres and the gradient SNR measured there
(paced_train's probe writes them as CSV p,snr[,count][,se]). The points define

    mu   the pass-rate measure: mass ∝ count_i, or equal masses without a count column;
    rho  the target: under the allocation criterion the optimal weight is w* ∝ rho.

Which points each quantity uses:
    log-space points  rho_i > 0, 0 < p_i < 1 and mu-mass > 0 (the log-space fits, the
                      residual oscillation's support apart from boundary bins, AIC).
    all points        the achieved efficiency (a bin with rho = 0 still costs budget).
Points with snr = 0 are dropped from the log-space fits (FitResult.notes says how many).

Fit weights (log-space least squares): with an `se` column, the delta method gives
se(log rho_i) ~ se_i / rho_i, so weight_i = rho_i^2 / se_i^2; else weight_i = count_i
(Var log rho_i ∝ 1/count_i); else equal. (With both columns, se sets the fit weights and
count sets mu.)

Families and how each is fitted (each kernel is the function of the same name in
paced_theory.kernels; a free log-scale c is always profiled out since eta ignores scale):
  beta_ls       log rho = alpha log p + beta log(1-p) + c, weighted least squares with
                alpha, beta >= 0 (scipy lsq_linear, bounded-variable LS).
  beta_eff      alpha, beta in [0, 20] maximising the achieved efficiency eta itself (grid,
                then bounded L-BFGS); uses every point, the ends and snr = 0 included.
                A result on the cap 20 (BETA_EFF_MAX) is flagged in FitResult.notes.
  beta_linf     the Chebyshev (L-infinity) fit of log rho by {log p, log(1-p), 1}:
                minimise t s.t. |log rho_i - alpha log p_i - beta log(1-p_i) - c| <= t,
                alpha, beta >= 0: a linear program (scipy linprog, HiGHS). Since
                min_c max_i |r_i - c| = osc(r)/2, it minimises the residual oscillation, hence
                maximises the Kantorovich guarantee, over all Beta kernels (docs/theory.md §3).
  gaussian      log w = -(p - center)^2 / (2 width^2): log rho ≈ k + a1 p + a2 p^2 is a linear
                least-squares problem with a2 <= -1/(2 * 10^2) (width <= 10), solved exactly.
  kumaraswamy   log w = a log p + b log(1 - p^a), b >= 0, 0.01 <= a <= 50: weighted LS in log
                space, (b, c) profiled in closed form, a by grid search + bounded refinement.
  hard          1 on lo < p < hi. Its log is -inf outside the band, so it is fitted on the
                linear scale: min_{c} ||rho - c 1_band||^2_mu = ||rho||^2 (1 - eta(1_band)),
                i.e. least squares = maximal achieved efficiency, searched exactly over all
                bands whose ends are 0, 1 or midpoints between neighbouring distinct p_i.
  sqrt_variance p^(1/2) (1-p)^(1/2); uniform 1: no parameters.

Reported per family (FitResult):
  efficiency            eta = (E_mu[w rho])^2 / (E_mu[w^2] E_mu[rho^2]) (allocation criterion,
                        efficiency.efficiency), over all points.
  residual_oscillation  osc = max - min of log(rho_i / w_i) over points with rho_i > 0 and
                        mu-mass > 0; inf if w_i = 0 at such a point.
  guaranteed_efficiency (1 - tanh^2(osc/2)) * signal_share, where signal_share =
                        E_mu[w^2 1{rho>0}] / E_mu[w^2] (1 unless w is positive on bins with
                        rho = 0). Kantorovich (robustness.py) bounds eta restricted to the bins
                        with signal; the share is exact. So guaranteed <= achieved, always.
  aic                   n log(WRSS/n) + 2k on the log-space residuals (weights normalised to
                        sum n, c profiled; k = #params + 1 for c); inf when w = 0 at a
                        log-space point (e.g. the hard band).
  intervals             bootstrap percentile intervals (resampling the points with
                        replacement, seeded), `level` = 95 % by default.
Ours throughout (the paper reports the bell-shaped curve, not these fits).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import linprog, lsq_linear, minimize, minimize_scalar

from paced_theory.efficiency import PassRateMeasure, efficiency
from paced_theory.errors import InputError
from paced_theory.kernels import (
    _log_beta,
    beta_kernel,
    gaussian_bump,
    hard_band,
    kumaraswamy_kernel,
    log_beta_kernel,
    sqrt_variance_kernel,
    uniform_kernel,
)
from paced_theory.robustness import guaranteed_efficiency_from_oscillation

FAMILIES = ("beta_ls", "beta_linf", "beta_eff", "hard", "gaussian", "kumaraswamy",
            "sqrt_variance", "uniform")
PARAMS = {
    "beta_ls": ("alpha", "beta"),
    "beta_linf": ("alpha", "beta"),
    "beta_eff": ("alpha", "beta"),
    "hard": ("lo", "hi"),
    "gaussian": ("center", "width"),
    "kumaraswamy": ("a", "b"),
    "sqrt_variance": (),
    "uniform": (),
}
BETA_FAMILIES = ("beta_ls", "beta_linf", "beta_eff")
BETA_EFF_MAX = 20.0  # beta_eff searches alpha, beta in [0, BETA_EFF_MAX]
BETA_EFF_GRID = (0.0, 0.01, 0.03, 0.1, 0.3, 0.6, 1.0, 1.5, 2.0, 3.0, 4.5, 6.0, 8.0)
GAUSS_MAX_WIDTH = 10.0
GAUSS_MIN_WIDTH = 1e-3
KUMA_A_RANGE = (0.01, 50.0)

__all__ = [
    "FAMILIES",
    "SNRCurve",
    "FitResult",
    "read_snr_csv",
    "fit_beta_ls",
    "fit_beta_linf",
    "fit_beta_eff",
    "fit_gaussian",
    "fit_kumaraswamy",
    "fit_hard",
    "fit_family",
    "fit_families",
    "chebyshev_beta",
    "family_kernel",
    "log_family_kernel",
    "residual_oscillation",
    "achieved_efficiency",
    "guaranteed_efficiency",
]


# ----------------------------------------------------------------------------- data
@dataclass(frozen=True)
class SNRCurve:
    """A measured SNR curve: bin centres p in [0, 1], SNR >= 0, optional count (problems per
    bin, >= 0) or se (standard error of the SNR; > 0 where snr > 0). `source` names the
    origin (a file path) in error messages."""

    p: np.ndarray
    snr: np.ndarray
    count: np.ndarray | None = None
    se: np.ndarray | None = None
    source: str = "SNR curve"

    def __post_init__(self) -> None:
        src = self.source
        p = np.asarray(self.p, dtype=float).ravel()
        snr = np.asarray(self.snr, dtype=float).ravel()
        if p.shape != snr.shape or p.size == 0:
            raise InputError(f"{src}: 'p' ({p.size} values) and 'snr' ({snr.size}) must have "
                             "the same non-zero length")
        bad = ~((p >= 0) & (p <= 1))
        if np.any(bad):
            raise InputError(f"{src}: every p must lie in [0, 1] (got {p[bad][0]})")
        if np.any(~(snr >= 0)) or not np.all(np.isfinite(snr)):
            raise InputError(f"{src}: every snr must be finite and >= 0")
        object.__setattr__(self, "p", p)
        object.__setattr__(self, "snr", snr)
        for name in ("count", "se"):
            x = getattr(self, name)
            if x is None:
                continue
            x = np.asarray(x, dtype=float).ravel()
            if x.shape != p.shape:
                raise InputError(f"{src}: '{name}' has {x.size} values, p has {p.size}")
            if np.any(~(x >= 0)) or not np.all(np.isfinite(x)):
                raise InputError(f"{src}: every {name} must be finite and >= 0")
            object.__setattr__(self, name, x)
        if self.count is not None and not self.count.sum() > 0:
            raise InputError(f"{src}: column 'count' sums to 0; give some bin a positive count")
        if self.se is not None and np.any((self.se == 0) & (snr > 0)):
            raise InputError(f"{src}: se = 0 where snr > 0 would give the point infinite "
                             "weight; give se > 0 (or drop the se column)")

    def mass(self) -> np.ndarray:
        """mu: masses ∝ count, or equal; normalised to sum 1."""
        m = np.ones_like(self.p) if self.count is None else self.count
        return m / m.sum()

    def measure(self) -> PassRateMeasure:
        return PassRateMeasure(self.p, self.mass())

    def subset(self, idx) -> SNRCurve:
        """The curve restricted to (or resampled at) integer indices idx."""
        idx = np.asarray(idx)

        def pick(a):
            return None if a is None else a[idx]

        return SNRCurve(self.p[idx], self.snr[idx], pick(self.count), pick(self.se), self.source)


@dataclass
class FitResult:
    """One family fitted to a curve; see the module docstring for every field's definition."""

    family: str
    params: dict[str, float]
    residual_oscillation: float
    guaranteed_efficiency: float
    efficiency: float
    aic: float
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    signal_share: float = 1.0
    n_boot: int = 0
    notes: list[str] = field(default_factory=list)

    def kernel(self, p) -> np.ndarray:
        """The fitted kernel w(p) (paced_theory.kernels), up to scale."""
        return family_kernel(self.family, self.params, p)


# ----------------------------------------------------------------------------- CSV input
def read_snr_csv(path) -> SNRCurve:
    """Read a CSV with header columns p,snr and optionally count and/or se.

    Header names are case-insensitive; other columns are ignored; blank lines and lines
    starting with '#' are skipped. Every error is an InputError naming the file, the line
    and the column: missing column, missing or non-numeric cell, p outside [0, 1],
    negative snr/count/se, se = 0 where snr > 0, no data rows, all snr zero.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; give a CSV with columns p,snr "
                         "(optionally count or se)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it as UTF-8 text ({exc})") from None

    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    header_line = 0
    cols: dict[str, list[float]] = {}
    for row in reader:
        line = reader.line_num
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if header is None:
            header, header_line = [c.lower() for c in cells], line
            dup = {c for c in header if c and header.count(c) > 1}
            if dup:
                raise InputError(f"{path}: line {line}: column {sorted(dup)[0]!r} appears "
                                 "twice in the header")
            for need in ("p", "snr"):
                if need not in header:
                    raise InputError(
                        f"{path}: line {line}: missing column '{need}' (header has "
                        f"{', '.join(repr(c) for c in header)}); the file needs columns "
                        "p,snr and optionally count or se")
            cols = {c: [] for c in ("p", "snr", "count", "se") if c in header}
            continue
        if len(cells) > len(header) and any(cells[len(header):]):
            raise InputError(f"{path}: line {line}: {len(cells)} fields but the header "
                             f"(line {header_line}) has {len(header)}")
        for name in cols:
            j = header.index(name)
            cell = cells[j] if j < len(cells) else ""
            if cell == "":
                raise InputError(f"{path}: line {line}, column '{name}': missing value")
            try:
                x = float(cell)
            except ValueError:
                raise InputError(f"{path}: line {line}, column '{name}': {cell!r} is not a "
                                 "number") from None
            if not math.isfinite(x):
                raise InputError(f"{path}: line {line}, column '{name}': {cell!r} is not "
                                 "finite")
            if name == "p" and not 0.0 <= x <= 1.0:
                raise InputError(f"{path}: line {line}, column 'p': {cell} is outside [0, 1]; "
                                 "p is a pass rate (a fraction, not a percentage)")
            if name != "p" and x < 0:
                what = {"snr": "an SNR ||E g||^2 / tr Cov is >= 0 (clip bias-corrected "
                               "estimates at 0)",
                        "count": "a count of problems is >= 0",
                        "se": "a standard error is >= 0"}[name]
                raise InputError(f"{path}: line {line}, column '{name}': {cell} is negative; "
                                 f"{what}")
            cols[name].append(x)
        if "se" in cols and cols["se"][-1] == 0 and cols["snr"][-1] > 0:
            raise InputError(f"{path}: line {line}, column 'se': 0 where snr > 0 would give "
                             "the point infinite weight; give se > 0")
    if header is None:
        raise InputError(f"{path}: empty file; expected a header line p,snr[,count][,se]")
    if not cols["p"]:
        raise InputError(f"{path}: no data rows after the header (line {header_line})")
    arr = {k: np.asarray(v, dtype=float) for k, v in cols.items()}
    if not np.any(arr["snr"] > 0):
        raise InputError(f"{path}: column 'snr': every value is 0; nothing to fit")
    if "count" in arr and not arr["count"].sum() > 0:
        raise InputError(f"{path}: column 'count': every value is 0; give bins positive counts")
    return SNRCurve(arr["p"], arr["snr"], arr.get("count"), arr.get("se"), source=str(path))


# ----------------------------------------------------------------------------- kernels
def _check_family(family: str) -> None:
    if family not in PARAMS:
        raise InputError(f"--families: unknown family {family!r}; choose from "
                         f"{', '.join(FAMILIES)}")


def family_kernel(family: str, params: dict, p) -> np.ndarray:
    """w(p) of a fitted family via paced_theory.kernels."""
    _check_family(family)
    p = np.asarray(p, dtype=float)
    if family in BETA_FAMILIES:
        return beta_kernel(p, params["alpha"], params["beta"])
    if family == "gaussian":
        return gaussian_bump(p, params["center"], params["width"])
    if family == "kumaraswamy":
        return kumaraswamy_kernel(p, params["a"], params["b"])
    if family == "hard":
        return hard_band(p, params["lo"], params["hi"])
    if family == "sqrt_variance":
        return sqrt_variance_kernel(p)
    return uniform_kernel(p)


def log_family_kernel(family: str, params: dict, p) -> np.ndarray:
    """log w(p), -inf where w = 0; equals log(family_kernel) wherever that does not underflow
    (the Gaussian and Kumaraswamy logs are written out so that narrow or far-off kernels stay
    finite in log space)."""
    _check_family(family)
    p = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore"):
        if family == "gaussian":
            return -0.5 * ((p - params["center"]) / params["width"]) ** 2
        if family == "kumaraswamy":
            a, b = params["a"], params["b"]
            alog = a * np.log(p)
            return alog + (b * np.log(-np.expm1(alog)) if b > 0 else 0.0)
        if family in BETA_FAMILIES:
            return log_beta_kernel(p, params["alpha"], params["beta"])
        return np.log(family_kernel(family, params, p))


def _weights_from_log(lw: np.ndarray) -> np.ndarray:
    """exp(lw - max lw): the kernel up to scale, without underflow at its top."""
    top = np.max(lw)
    if not np.isfinite(top):
        return np.zeros_like(lw)
    return np.exp(lw - top)


def achieved_efficiency(w: np.ndarray, curve: SNRCurve) -> float:
    """eta(w) on the curve (allocation criterion, mu = curve.mass(), rho = snr). Ours."""
    return efficiency(np.asarray(w, float), curve.measure(), rho=curve.snr,
                      criterion="allocation")


def _signal_points(curve: SNRCurve) -> np.ndarray:
    return (curve.snr > 0) & (curve.mass() > 0)


def residual_oscillation(w_or_logw: np.ndarray, curve: SNRCurve, log: bool = False) -> float:
    """osc = max - min of log(rho_i / w_i) over points with rho_i > 0 and mu-mass > 0;
    inf if w_i = 0 at such a point. Ours (docs/theory.md §3)."""
    x = np.asarray(w_or_logw, dtype=float)
    sig = _signal_points(curve)
    with np.errstate(divide="ignore"):
        lw = x[sig] if log else np.log(x[sig])
    if np.any(~np.isfinite(lw)):
        return math.inf
    res = np.log(curve.snr[sig]) - lw
    return float(res.max() - res.min())


def guaranteed_efficiency(w: np.ndarray, curve: SNRCurve, osc: float | None = None
                          ) -> tuple[float, float]:
    """(guarantee, signal_share): (1 - tanh^2(osc/2)) * share, share = E[w^2 1{rho>0}]/E[w^2].

    Ours: Kantorovich on the bins with signal (robustness.py), times the exact fraction of
    w's second moment spent there; never above achieved_efficiency."""
    w = np.asarray(w, dtype=float)
    m = curve.mass()
    total = float(np.dot(m, w * w))
    if total == 0.0:
        return 0.0, 0.0
    share = float(np.dot(m, w * w * (curve.snr > 0))) / total
    if osc is None:
        osc = residual_oscillation(w, curve)
    return guaranteed_efficiency_from_oscillation(osc) * share, share


# ----------------------------------------------------------------------------- log-space data
def _log_mask(curve: SNRCurve) -> tuple[np.ndarray, np.ndarray]:
    """(mask of the log-space points, their fit weights normalised to mean 1)."""
    mass = curve.mass()
    ok = (curve.snr > 0) & (curve.p > 0) & (curve.p < 1) & (mass > 0)
    if curve.se is not None:
        wts = np.zeros_like(curve.p)
        wts[ok] = (curve.snr[ok] / curve.se[ok]) ** 2
    elif curve.count is not None:
        wts = curve.count.copy()
    else:
        wts = np.ones_like(curve.p)
    ok &= wts > 0
    if np.unique(curve.p[ok]).size < 3:
        raise InputError(
            f"{curve.source}: fewer than 3 distinct p with snr > 0, 0 < p < 1 and positive "
            "weight; a log-space fit needs at least 3")
    w = wts[ok]
    return ok, w / w.mean()


def _log_points(curve: SNRCurve) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p, log rho, fit weights normalised to mean 1) on the log-space points."""
    ok, w = _log_mask(curve)
    return curve.p[ok], np.log(curve.snr[ok]), w


def _beta_design(p: np.ndarray) -> np.ndarray:
    return np.column_stack([np.log(p), np.log1p(-p), np.ones_like(p)])


# ----------------------------------------------------------------------------- fitters
def fit_beta_ls(curve: SNRCurve) -> dict[str, float]:
    """{alpha, beta}: weighted LS of log rho on {log p, log(1-p), 1}, alpha, beta >= 0. Ours."""
    p, y, wts = _log_points(curve)
    sw = np.sqrt(wts)
    sol = lsq_linear(_beta_design(p) * sw[:, None], y * sw,
                     bounds=([0.0, 0.0, -np.inf], [np.inf, np.inf, np.inf]), method="bvls")
    # the solvers honour the bound only to round-off (-2.6e-14 was seen): clip at the bound
    return {"alpha": max(0.0, float(sol.x[0])), "beta": max(0.0, float(sol.x[1]))}


def fit_beta_linf(curve: SNRCurve) -> dict[str, float]:
    """{alpha, beta}: Chebyshev fit, min_{alpha,beta>=0,c} max_i |log rho_i - alpha log p_i
    - beta log(1-p_i) - c|, as an LP in (alpha, beta, c, t). It minimises the residual
    oscillation (= 2 t*) over Beta kernels, so it maximises 1 - tanh^2(osc/2).
    Ours (docs/theory.md §3)."""
    p, y, _ = _log_points(curve)
    A = _beta_design(p)
    n = len(p)
    ones = np.ones((n, 1))
    # y - A x <= t  and  A x - y <= t   ->   [-A, -1] z <= -y,  [A, -1] z <= y
    A_ub = np.vstack([np.hstack([-A, -ones]), np.hstack([A, -ones])])
    b_ub = np.concatenate([-y, y])
    res = linprog(np.array([0.0, 0.0, 0.0, 1.0]), A_ub=A_ub, b_ub=b_ub,
                  bounds=[(0, None), (0, None), (None, None), (0, None)], method="highs")
    if not res.success:  # pragma: no cover - the LP is always feasible and bounded
        raise InputError(f"{curve.source}: the L-infinity linear program failed ({res.message})")
    return {"alpha": max(0.0, float(res.x[0])), "beta": max(0.0, float(res.x[1]))}


def fit_gaussian(curve: SNRCurve) -> dict[str, float]:
    """{center, width}: weighted LS of log rho on {1, p, p^2} with the p^2 coefficient
    a2 in [-1/(2 w_min^2), -1/(2 w_max^2)] (w_min = 1e-3, w_max = 10); then
    width = sqrt(-1/(2 a2)), center = -a1/(2 a2). Exact (a linear LS). Ours."""
    p, y, wts = _log_points(curve)
    sw = np.sqrt(wts)
    X = np.column_stack([np.ones_like(p), p, p * p])
    lo2 = -0.5 / GAUSS_MIN_WIDTH**2
    hi2 = -0.5 / GAUSS_MAX_WIDTH**2
    sol = lsq_linear(X * sw[:, None], y * sw,
                     bounds=([-np.inf, -np.inf, lo2], [np.inf, np.inf, hi2]), method="bvls")
    a1, a2 = float(sol.x[1]), min(float(sol.x[2]), hi2)
    return {"center": -a1 / (2 * a2), "width": math.sqrt(-0.5 / a2)}


def _kuma_profile(a: np.ndarray, lp: np.ndarray, y: np.ndarray, wts: np.ndarray):
    """For each a: best (b >= 0, c) and weighted RSS of y - a log p - b z(a) - c,
    z(a) = log(1 - p^a). Closed-form weighted simple regression, b clipped at 0."""
    a = np.atleast_1d(a)[:, None]
    alog = a * lp[None, :]
    z = np.log(-np.expm1(alog))
    t = y[None, :] - alog
    wn = wts / wts.sum()
    zm, tm = z @ wn, t @ wn
    zc, tc = z - zm[:, None], t - tm[:, None]
    var = (zc * zc) @ wn
    b = np.where(var > 0, ((zc * tc) @ wn) / np.where(var > 0, var, 1.0), 0.0)
    b = np.maximum(b, 0.0)
    r = tc - b[:, None] * zc
    return b, (r * r) @ wts


def fit_kumaraswamy(curve: SNRCurve) -> dict[str, float]:
    """{a, b}: weighted LS of log rho on log w = a log p + b log(1 - p^a) + c with b >= 0 and
    a in [0.01, 50]; (b, c) in closed form for each a, a by a log grid then a bounded scalar
    refinement around the best grid point. Ours."""
    p, y, wts = _log_points(curve)
    lp = np.log(p)
    grid = np.geomspace(*KUMA_A_RANGE, 121)
    _, rss = _kuma_profile(grid, lp, y, wts)
    k = int(np.argmin(rss))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    best_a, best_rss = float(grid[k]), float(rss[k])
    if hi > lo:
        res = minimize_scalar(lambda la: float(_kuma_profile(np.exp(la), lp, y, wts)[1][0]),
                              bounds=(math.log(lo), math.log(hi)), method="bounded",
                              options={"xatol": 1e-10})
        if res.fun < best_rss:
            best_a = float(math.exp(res.x))
    b, _ = _kuma_profile(np.array([best_a]), lp, y, wts)
    return {"a": best_a, "b": float(b[0])}


def fit_hard(curve: SNRCurve) -> dict[str, float]:
    """{lo, hi}: the band maximising the achieved efficiency (= least squares of rho by a
    scaled indicator in L2(mu)), over all ends in {0, 1, midpoints of neighbouring distinct
    p}. Points at p = 0 or 1 can never lie inside an open band (lo >= 0, hi <= 1). Ours."""
    m, r = curve.mass(), curve.snr
    u, inv = np.unique(curve.p, return_inverse=True)
    inside = (u > 0) & (u < 1)
    m0 = np.bincount(inv, weights=m, minlength=u.size) * inside   # mass per distinct p
    m1 = np.bincount(inv, weights=m * r, minlength=u.size) * inside
    if not np.any(m1 > 0):
        raise InputError(f"{curve.source}: no point with snr > 0 strictly inside (0, 1); "
                         "cannot place a hard band")
    cuts = np.concatenate([[0.0], 0.5 * (u[:-1] + u[1:]), [1.0]])
    S0 = np.concatenate([[0.0], np.cumsum(m0)])
    S1 = np.concatenate([[0.0], np.cumsum(m1)])
    num = (S1[None, :] - S1[:, None]) ** 2
    den = S0[None, :] - S0[:, None]
    i, j = np.triu_indices(cuts.size, k=1)  # band (cuts[i], cuts[j]) holds u[i..j-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(den[i, j] > 0, num[i, j] / den[i, j], -1.0)
    # relative tie tolerance: among (numerically) equal scores prefer the widest band
    best = score.max()
    tied = np.flatnonzero(score >= best * (1 - 1e-12))
    k = tied[np.argmax(cuts[j[tied]] - cuts[i[tied]])]
    return {"lo": float(cuts[i[k]]), "hi": float(cuts[j[k]])}


def fit_beta_eff(curve: SNRCurve) -> dict[str, float]:
    """{alpha, beta} in [0, BETA_EFF_MAX]^2 maximising the achieved efficiency
    eta = E[w rho]^2 / (E[w^2] E[rho^2]) directly (the allocation criterion that the other
    fits approximate through a log-space residual): a grid on [0, 8]^2 dense near 0 plus the
    log-space fits as starts, then bounded L-BFGS from the best three. It uses every point,
    p = 0 and p = 1 and snr = 0 included. Ours."""
    m, r, p = curve.mass(), curve.snr, curve.p
    if not np.any(_signal_points(curve)):
        raise InputError(f"{curve.source}: every snr is 0; no kernel beats another")

    def neg_eta(x):  # eta in closed form (achieved_efficiency, without its validation)
        w = _weights_from_log(_log_beta(p, max(x[0], 0.0), max(x[1], 0.0)))
        ww = float(np.dot(m, w * w))
        return -float(np.dot(m, w * r)) ** 2 / ww if ww > 0 else 0.0  # E[rho^2]: a constant

    # eta is not concave in (alpha, beta) (points near p = 0 or 1 make small exponents
    # matter): a grid dense near 0, the log-space fits as extra starts, L-BFGS from the best 3
    starts = [[a, b] for a in BETA_EFF_GRID for b in BETA_EFF_GRID]
    for fitter in (fit_beta_ls, fit_beta_linf):
        try:
            prm = fitter(curve)
        except InputError:  # fewer than 3 usable log-space points
            continue
        starts.append([min(prm["alpha"], BETA_EFF_MAX), min(prm["beta"], BETA_EFF_MAX)])
    best = min(starts, key=neg_eta)
    for x0 in sorted(starts, key=neg_eta)[:3]:
        sol = minimize(neg_eta, x0, method="L-BFGS-B", bounds=[(0.0, BETA_EFF_MAX)] * 2)
        if sol.fun < neg_eta(best):
            best = sol.x
    return {"alpha": float(best[0]), "beta": float(best[1])}


FITTERS = {
    "beta_ls": fit_beta_ls,
    "beta_linf": fit_beta_linf,
    "beta_eff": fit_beta_eff,
    "gaussian": fit_gaussian,
    "kumaraswamy": fit_kumaraswamy,
    "hard": fit_hard,
    "sqrt_variance": lambda curve: {},
    "uniform": lambda curve: {},
}


def chebyshev_beta(rho, lo: float = 0.01, hi: float = 0.99, n: int = 97) -> dict[str, float]:
    """The Chebyshev (L-infinity) Beta fit of a closed-form SNR rho(p) on n equispaced points
    in [lo, hi]: the Beta kernel with the best Kantorovich guarantee there. Ours (s. 3)."""
    if not (0.0 < lo < hi < 1.0) or n < 3:
        raise InputError(f"chebyshev_beta: need 0 < lo < hi < 1 and n >= 3 (got {lo}, {hi}, {n})")
    p = np.linspace(lo, hi, n)
    vals = np.asarray(rho(p), dtype=float)
    if vals.shape != p.shape or np.any(~(vals >= 0)) or np.any(~np.isfinite(vals)):
        raise InputError("chebyshev_beta: rho(p) must be finite and >= 0 on the grid")
    return fit_beta_linf(SNRCurve(p=p, snr=vals, source="chebyshev_beta(rho)"))


# ----------------------------------------------------------------------------- assessment
def _aic(lw: np.ndarray, curve: SNRCurve, n_params: int) -> float:
    """n log(WRSS/n) + 2 (n_params + 1) on the log-space residuals, c profiled."""
    ok, wts = _log_mask(curve)
    if np.any(~np.isfinite(lw[ok])):
        return math.inf
    r = np.log(curve.snr[ok]) - lw[ok]
    r = r - np.dot(wts, r) / wts.sum()
    n = r.size
    wrss = max(float(np.dot(wts, r * r)), 1e-300)  # wts have mean 1, so they sum to n
    return n * math.log(wrss / n) + 2 * (n_params + 1)


def _assess(curve: SNRCurve, family: str, params: dict) -> FitResult:
    lw = log_family_kernel(family, params, curve.p)
    w = _weights_from_log(lw)
    osc = residual_oscillation(lw, curve, log=True)
    guar, share = guaranteed_efficiency(w, curve, osc)
    eff = achieved_efficiency(w, curve)
    return FitResult(family=family, params=params, residual_oscillation=osc,
                     guaranteed_efficiency=guar, efficiency=eff,
                     aic=_aic(lw, curve, len(params)), signal_share=share)


def _notes(curve: SNRCurve) -> list[str]:
    notes = []
    zero = int(np.sum(curve.snr == 0))
    if zero:
        notes.append(f"{zero} point(s) with snr = 0 dropped from the log-space fits "
                     "(they still count in the efficiency)")
    edge = int(np.sum((curve.snr > 0) & ((curve.p == 0) | (curve.p == 1))))
    if edge:
        notes.append(f"{edge} point(s) at p = 0 or 1 with snr > 0 cannot be fitted in log "
                     "space; a kernel vanishing there has infinite residual oscillation")
    return notes


def fit_family(curve: SNRCurve, family: str) -> FitResult:
    """Fit one family and assess it (no bootstrap). Ours."""
    _check_family(family)
    res = _assess(curve, family, FITTERS[family](curve))
    res.notes = _notes(curve)
    capped = [k for k, v in res.params.items()
              if family == "beta_eff" and v >= BETA_EFF_MAX * (1 - 1e-9)]
    if capped:
        res.notes.append(f"{' and '.join(capped)} = {BETA_EFF_MAX:g} is beta_eff's search cap "
                         "(BETA_EFF_MAX): the best Beta kernel found lies on it, so the curve "
                         "favours a narrower peak than the searched Beta kernels can make")
    return res


def fit_families(curve: SNRCurve, families=FAMILIES, n_boot: int = 200, seed: int = 0,
                 level: float = 0.95) -> dict[str, FitResult]:
    """Fit each family in `families` to the curve and bootstrap its parameters.

    Bootstrap: n_boot resamples of the points with replacement (np.random.default_rng(seed));
    each family is refitted on each resample (resamples with too few usable points are
    skipped; FitResult.n_boot says how many were used), and `intervals` holds the
    (1-level)/2 and (1+level)/2 percentiles. Ours.
    """
    families = tuple(families)
    if not families:
        raise InputError("--families: give at least one family")
    for f in families:
        _check_family(f)
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 0:
        raise InputError(f"--n-boot must be an integer >= 0 (got {n_boot!r})")
    if not 0.0 < level < 1.0:
        raise InputError(f"level must lie in (0, 1) (got {level!r})")
    results = {f: fit_family(curve, f) for f in families}
    rng = np.random.default_rng(seed)
    n = curve.p.size
    draws: dict[str, list[dict]] = {f: [] for f in families if PARAMS[f]}
    for _ in range(n_boot):
        sub = curve.subset(rng.integers(0, n, n))
        if sub.count is not None and not sub.count.sum() > 0:
            continue
        for f in draws:
            try:
                draws[f].append(FITTERS[f](sub))
            except InputError:
                continue  # a resample without enough usable points
    q = (100 * (1 - level) / 2, 100 * (1 + level) / 2)
    for f, ds in draws.items():
        results[f].n_boot = len(ds)
        if ds:
            results[f].intervals = {
                k: tuple(float(x) for x in np.percentile([d[k] for d in ds], q))
                for k in PARAMS[f]
            }
    return results
