"""Summaries over seeds, and paired comparisons with honest intervals.

A method is compared with a baseline on the SAME seeds (same data, initial student and
random streams), so the unit of analysis is the per-seed difference d_s = m_s - b_s (or the
ratio m_s / b_s), s = 1..S. `paired` reports three things about them:

  t-interval (primary)   mean(d) ± t_{S-1, 0.975} sd(d) / sqrt(S): exact 95 % coverage when
                         the d_s are normal, close to it otherwise (tests/theory/test_stats.py
                         measures its coverage under no effect: 93-97 %).
  sign-flip p-value      the share of the 2^S sign patterns e_s ∈ {±1} whose |mean(e d)| is at
                         least |mean(d)| (exact enumeration up to S = 16, else 20,000 seeded
                         draws); two-sided, valid under a symmetric null without normality.
                         With S = 5 its smallest value is 2/32 = 0.0625: five seeds can never
                         be significant by it.
  seeds won              how many d_s are on the method's side of the null.

The percentile bootstrap over seeds is reported beside them only from 10 seeds up: with S
seeds it resamples S values, so with 3 seeds it is essentially [min, max] (coverage ~75 %)
and with 5 about 83 % (ours, measured in tests/theory/test_stats.py).

The verdict ("better", "worse", "not significant") is the t-interval's, except where all
S differences are equal (no spread: the t-interval is a point) — then the sign-flip p-value
decides at 0.05. One seed never gives a verdict. Ours: the protocol (the paper reports
single runs).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import stats as _sps

N_BOOT = 10_000
LEVEL = 0.95
BOOT_MIN_SEEDS = 10  # the percentile bootstrap is reported from this many seeds up
EXACT_FLIPS = 16    # enumerate all 2^S sign patterns up to this S
N_FLIPS = 20_000


def finite(xs) -> np.ndarray:
    """The finite entries of xs as a float array (None and NaN dropped)."""
    arr = np.array([np.nan if x is None else float(x) for x in xs], dtype=float)
    return arr[np.isfinite(arr)]


def mean_sd(xs) -> list[float] | None:
    """[mean, sample sd] of the finite entries (sd 0 for one value); None when there are none."""
    x = finite(xs)
    if x.size == 0:
        return None
    return [float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0]


def bootstrap_ci(xs, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0,
                 stat=np.mean) -> tuple[float, float, float]:
    """(stat, lo, hi): stat of the finite entries of xs and its percentile-bootstrap interval
    at `level` (resampling the entries with replacement). One value: (x, x, x)."""
    x = finite(xs)
    if x.size == 0:
        return (float("nan"),) * 3
    point = float(stat(x))
    if x.size == 1:
        return point, point, point
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    boots = stat(x[idx], axis=1)
    a = (1 - level) / 2
    lo, hi = np.quantile(boots, [a, 1 - a])
    return point, float(lo), float(hi)


def t_interval(xs, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, lo, hi): the Student t-interval for the mean of the finite entries of xs,
    mean ± t_{n-1, (1+level)/2} sd / sqrt(n). One value or none: (x, nan, nan)."""
    x = finite(xs)
    if x.size == 0:
        return (float("nan"),) * 3
    m = float(x.mean())
    if x.size == 1:
        return m, float("nan"), float("nan")
    half = float(_sps.t.ppf((1 + level) / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return m, m - half, m + half


def sign_flip_p(d, null: float = 0.0, seed: int = 0) -> float:
    """Two-sided sign-flip permutation p-value of mean(d) against `null`: the share of sign
    patterns e (the identity included) with |mean(e (d - null))| >= |mean(d - null)|. Exact
    over all 2^S patterns for S <= EXACT_FLIPS, else N_FLIPS seeded random patterns (plus the
    identity). nan for no data; 1.0 when d equals the null throughout."""
    x = finite(d) - null
    n = x.size
    if n == 0:
        return float("nan")
    obs = abs(x.mean())
    if n <= EXACT_FLIPS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        rng = np.random.default_rng(seed)
        signs = np.vstack([np.ones(n), rng.choice((1.0, -1.0), size=(N_FLIPS, n))])
    stat = np.abs(signs @ x) / n
    return float(np.mean(stat >= obs - 1e-12 * max(obs, 1e-300)))


def paired(method, baseline, kind: str = "diff", level: float = LEVEL, **boot) -> dict:
    """Per-seed method - baseline (kind "diff") or method / baseline ("ratio"), over the seeds
    where both are finite (module docstring). Returns {"per_seed", "mean", "lo", "hi" (the
    t-interval), "n", "wins" (seeds where diff > 0, ratio > 1), "p" (sign-flip p-value),
    "boot" ([lo, hi] percentile bootstrap, from BOOT_MIN_SEEDS seeds up, else None),
    "spread" (False when every per-seed value is the same), "verdict"}; a bound or value that
    is undefined (one seed, no seed) is None. The verdict is
    "better", "worse" or "not significant": from the t-interval, or from p < 1 - level when
    there is no spread; one seed is always "not significant"."""
    m = np.array([np.nan if v is None else float(v) for v in method], dtype=float)
    b = np.array([np.nan if v is None else float(v) for v in baseline], dtype=float)
    if m.shape != b.shape:
        raise ValueError(f"paired: {m.size} method values against {b.size} baseline values")
    ok = np.isfinite(m) & np.isfinite(b)
    if kind == "diff":
        d, null = m[ok] - b[ok], 0.0
    elif kind == "ratio":
        ok &= b != 0
        d, null = m[ok] / b[ok], 1.0
    else:
        raise ValueError(f"paired: kind must be 'diff' or 'ratio' (got {kind!r})")
    mean, lo, hi = t_interval(d, level)
    p = sign_flip_p(d, null)
    spread = bool(d.size > 1 and np.ptp(d) > 0)
    if d.size < 2:
        verdict = "not significant"
    elif spread:
        verdict = "not significant" if lo <= null <= hi else ("better" if lo > null else "worse")
    else:
        verdict = ("not significant" if p >= 1 - level or mean == null
                   else ("better" if mean > null else "worse"))
    boot_ci = None
    if d.size >= BOOT_MIN_SEEDS:
        _, blo, bhi = bootstrap_ci(d, level=level, **boot)
        boot_ci = [blo, bhi]
    def num(x: float) -> float | None:  # JSON-safe: an undefined bound is None, not NaN
        return x if np.isfinite(x) else None

    return {"per_seed": d.tolist(), "mean": num(mean), "lo": num(lo), "hi": num(hi),
            "n": int(d.size), "wins": int((d > null).sum()), "p": num(p), "boot": boot_ci,
            "spread": spread, "verdict": verdict}


def curve_auc(x, y, x_max: float) -> float:
    """Normalised area under a piecewise-linear curve y(x) over [0, x_max]: the mean of y
    there (1 means y = 1 throughout). The curve is held at its last value past its last
    point and cut at x_max (interpolated); it must start at x = 0 (a run's first eval)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size == 0 or x_max <= 0:
        return float("nan")
    if x[0] > 0:
        raise ValueError(f"curve_auc: the curve starts at x = {x[0]}, not 0")
    grid_x = np.concatenate([x[x < x_max], [x_max]])
    grid_y = np.interp(grid_x, x, y)  # np.interp holds the end values beyond the data
    return float(np.sum(np.diff(grid_x) * (grid_y[1:] + grid_y[:-1]) / 2) / x_max)
