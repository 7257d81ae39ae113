"""The empirical gradient SNR of one pass-rate bin (docs/theory.md §6; ours).

A bin holds n problems with (possibly sketched) per-problem gradients g_1..g_n, the rows of
G (n, d). With g_bar their mean and var_hat the per-coordinate sample variance (ddof = 1):

    noise  = tr Cov_hat = sum_j var_hat(G[:, j])         unbiased for tr Cov g
    signal = ||g_bar||^2 - noise / n                      unbiased for ||E g||^2
    SNR    = signal / noise, clipped at 0 (the bias correction can overshoot)

(E ||g_bar||^2 = ||E g||^2 + tr Cov g / n, hence the correction.)

Intervals: a bias-corrected percentile bootstrap over the bin's problems. On a resample the
estimator's expectation is the PLUG-IN ||g_bar||^2 of the sample, which is above the unbiased
signal by noise / n, so plain percentiles sit above the estimate (in simulation they covered a
small true SNR in under 30 % of bins). The unclipped replicates are shifted by their mean's
excess over the estimate before the percentiles are taken, then clipped at 0; in simulation
they cover the true SNR at or above the nominal level (tests/theory/test_snr.py).

One implementation for every caller: the probe on real students
(paced_train.experiments.snr_probe), the theory walkthrough's Monte Carlo curve, and figure 1.
Pure numpy.
"""

from __future__ import annotations

import numpy as np

from paced_theory.errors import InputError

__all__ = ["bin_snr"]


def _stats(X: np.ndarray) -> tuple[float, float, float]:
    """(signal, noise, unclipped SNR) of the rows of X; SNR NaN when the noise is 0."""
    noise = float(X.var(axis=0, ddof=1).sum())
    mean = X.mean(axis=0)
    signal = float(mean @ mean) - noise / X.shape[0]
    return signal, noise, signal / noise if noise > 0 else np.nan


def bin_snr(G, n_boot: int = 200, rng: np.random.Generator | None = None,
            level: float = 0.95) -> dict:
    """Unbiased signal, noise and SNR of the rows of G (n, d), with a bootstrap interval.

    Returns {"n", "signal", "noise", "snr", "lo", "hi", "se"}: snr = max(signal / noise, 0);
    lo, hi the bias-corrected `level` bootstrap interval (module docstring) from n_boot
    resamples drawn with `rng` (default np.random.default_rng(0)); se the standard deviation
    of the replicates. With n_boot = 0 no random number is drawn and lo, hi, se are NaN; with
    n < 2 every statistic is NaN. Ours.
    """
    G = np.asarray(G, dtype=float)
    if G.ndim != 2:
        raise InputError(f"bin_snr: G must be (problems, dimensions); got shape {G.shape}")
    n = G.shape[0]
    nan = float("nan")
    if n < 2:
        return {"n": n, "signal": nan, "noise": nan, "snr": nan, "lo": nan, "hi": nan,
                "se": nan}
    signal, noise, raw = _stats(G)
    lo = hi = se = nan
    if n_boot > 0:
        rng = rng if rng is not None else np.random.default_rng(0)
        boots = np.array([_stats(G[rng.integers(0, n, n)])[2] for _ in range(n_boot)])
        boots = boots[np.isfinite(boots)]
        if boots.size and np.isfinite(raw):
            shifted = boots - (boots.mean() - raw)
            tail = 100 * (1 - level) / 2
            lo, hi = (max(float(q), 0.0) for q in np.percentile(shifted, [tail, 100 - tail]))
        if boots.size > 1:
            se = float(boots.std(ddof=1))
    return {"n": n, "signal": signal, "noise": noise,
            "snr": max(raw, 0.0) if np.isfinite(raw) else nan, "lo": lo, "hi": hi, "se": se}
