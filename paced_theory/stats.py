"""Summaries over seeds: mean ± sd, and percentile-bootstrap intervals for paired comparisons.

A method is compared with a baseline on the SAME seeds (same data, initial student and
random streams), so the unit of analysis is the per-seed difference d_s = m_s - b_s (or the
ratio m_s / b_s). Its mean gets a 95 % percentile-bootstrap interval over seeds: resample
the S differences with replacement n_boot times, take the 2.5 and 97.5 percentiles of the
resampled means. With few seeds (S = 5) the percentile bootstrap is known to be somewhat
narrow (it cannot see variation beyond the S values it has), so an interval that only just
excludes 0 is weak evidence; `verdict` says "not significant" whenever it contains 0.
Ours: the protocol (the paper reports single runs).
"""

from __future__ import annotations

import numpy as np

N_BOOT = 10_000


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


def paired(method, baseline, kind: str = "diff", **kw) -> dict:
    """Per-seed method - baseline (kind "diff") or method / baseline ("ratio"), over the seeds
    where both are finite: {"per_seed", "mean", "lo", "hi", "n", "wins", "verdict"}. wins
    counts seeds where the method is better (diff > 0, ratio > 1); verdict is "better",
    "worse" or "not significant" (the interval contains 0, or 1 for a ratio)."""
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
    mean, lo, hi = bootstrap_ci(d, **kw)
    verdict = ("not significant" if d.size < 2 or lo <= null <= hi
               else ("better" if lo > null else "worse"))
    return {"per_seed": d.tolist(), "mean": mean, "lo": lo, "hi": hi, "n": int(d.size),
            "wins": int((d > null).sum()), "verdict": verdict}


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
