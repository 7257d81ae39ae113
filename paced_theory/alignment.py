"""The measured value of a pass-rate bin: alignment with the held-out gradient, second
moment, and the improvement per FLOP they predict (docs/theory.md §10.7; ours).

A bin holds n problems with per-problem loss gradients g_1..g_n; the held-out loss L_val is
the mean loss over held-out problems, split into G groups (group j: n_j problems, mean
gradient h_j), so that ∇L_val = h = Σ_j n_j h_j / Σ_j n_j. The probe passes, per problem,

    align[i, j] = <g_i, h_j>      (n, G), or (n,) = <g_i, h> when G = 1
    sq[i]       = ||g_i||^2
    flops[i]    the training FLOPs of one step on problem i (ledger rule)

and this module returns, for a step of size eta on a problem drawn from the bin (§10.1's
descent lemma with smoothness L):

    A      = mean_i <g_i, h>              unbiased for <E_bin g, ∇L_val>  (the alignment)
    M      = mean_i ||g_i||^2             unbiased for E_bin ||g||^2      (the second moment)
    weight = A / M                        the value criterion's optimal weight w ∝ a/m (§10.1)
    F      = mean_i flops[i]
    first  = eta A / F,   second = eta^2 L M / (2 F),   value = first - second
                                          (predicted held-out loss decrease per FLOP)
    eta_balance = 2 A / (L M)             the step size at which the two terms cancel
    eta_best    = A / (L M)               the step size that maximises value (value* = A^2/(2LM))

Intervals: percentile bootstrap, each replicate resampling the bin's problems AND the held-out
groups (with replacement; the groups' sizes weight their gradients), so the held-out set's
own sampling noise is in the interval. A and M are means (unbiased: no bias correction as
the SNR's needs); weight, eta_balance are ratios of means, whose O(1/n) bias is small next
to their interval at the bin sizes the probe uses. Pure numpy.
"""

from __future__ import annotations

import numpy as np

from paced_theory.errors import InputError
from paced_theory.fit import SNRCurve

__all__ = ["bin_value", "value_curve"]

_KEYS = ("align", "sq", "weight", "value", "first", "second", "eta_balance")


def _stats(align: np.ndarray, gw: np.ndarray, sq: np.ndarray, flops: np.ndarray,
           eta: float, L: float) -> dict:
    """The point statistics of one (re)sample; align (n, G), gw (G,) group weights."""
    A = float(align.mean(axis=0) @ gw / gw.sum())
    M = float(sq.mean())
    F = float(flops.mean())
    first, second = eta * A / F, eta**2 * L * M / (2 * F)
    return {"align": A, "sq": M, "flops": F, "weight": A / M if M > 0 else np.nan,
            "first": first, "second": second, "value": first - second,
            "eta_balance": 2 * A / (L * M) if M > 0 else np.nan,
            "eta_best": A / (L * M) if M > 0 else np.nan}


def bin_value(align, sq, flops, eta: float, L: float, group_sizes=None, n_boot: int = 200,
              rng: np.random.Generator | None = None, level: float = 0.95) -> dict:
    """The value statistics of one bin (module docstring) with bootstrap intervals.

    align (n,) or (n, G); sq, flops (n,); eta > 0 the step size; L > 0 the smoothness;
    group_sizes (G,) the held-out problems per group (default: equal). Returns {"n", and for
    each of align, sq, weight, value, first, second, eta_balance: the estimate and its
    "<key>_lo", "<key>_hi" bounds (and "weight_se", the replicates' standard deviation: the
    kernel fit's weights), "flops", "eta_best", "sq_max_share" (the largest problem's share
    of the bin's sum of ||g||^2: near 1, M is one problem's)}. n_boot = 0 draws no random
    number and gives NaN bounds; n < 2 gives NaN bounds too. Ours.
    """
    a = np.asarray(align, dtype=float)
    a = a[:, None] if a.ndim == 1 else a
    sq, flops = np.asarray(sq, dtype=float).ravel(), np.asarray(flops, dtype=float).ravel()
    n = a.shape[0]
    if a.ndim != 2 or sq.shape != (n,) or flops.shape != (n,) or n == 0:
        raise InputError(f"bin_value: align must be (n,) or (n, G) and sq, flops (n,) with "
                         f"n >= 1; got {np.shape(align)}, {sq.shape}, {flops.shape}")
    if not (np.isfinite(eta) and eta > 0 and np.isfinite(L) and L > 0):
        raise InputError(f"bin_value: eta and L must be finite and > 0 (got {eta}, {L})")
    if np.any(~np.isfinite(a)) or np.any(~(sq >= 0)) or np.any(~(flops > 0)):
        raise InputError("bin_value: align must be finite, sq >= 0 and flops > 0")
    G = a.shape[1]
    gw = np.ones(G) if group_sizes is None else np.asarray(group_sizes, dtype=float).ravel()
    if gw.shape != (G,) or np.any(~(gw > 0)):
        raise InputError(f"bin_value: group_sizes needs {G} positive entries (got {gw})")
    out = {"n": n, **_stats(a, gw, sq, flops, eta, L),
           "sq_max_share": float(sq.max() / sq.sum()) if sq.sum() > 0 else float("nan")}
    nan = float("nan")
    for k in _KEYS:
        out[f"{k}_lo"] = out[f"{k}_hi"] = nan
    out["weight_se"] = nan
    if n_boot > 0 and n >= 2:
        rng = rng if rng is not None else np.random.default_rng(0)
        reps = {k: [] for k in _KEYS}
        for _ in range(n_boot):
            i = rng.integers(0, n, n)
            j = rng.integers(0, G, G)
            s = _stats(a[np.ix_(i, j)], gw[j], sq[i], flops[i], eta, L)
            for k in _KEYS:
                reps[k].append(s[k])
        tail = 100 * (1 - level) / 2
        for k, r in reps.items():
            r = np.asarray(r)
            r = r[np.isfinite(r)]
            if r.size:
                out[f"{k}_lo"], out[f"{k}_hi"] = (float(q) for q in
                                                  np.percentile(r, [tail, 100 - tail]))
            if k == "weight" and r.size > 1:
                out["weight_se"] = float(r.std(ddof=1))
    return out


def value_curve(bins: list[dict], source: str = "value probe") -> SNRCurve | None:
    """The curve a kernel is fitted to: points p with target max(A/M, 0) (the value weight;
    a bin whose problems pull against the held-out gradient gets the optimal weight 0), and
    mass ∝ n M (bins with fewer problems, or with a NaN weight, are left out).

    Why the mass n M: fit.py's achieved efficiency on this curve, (E_n[w t M])^2 /
    (E_n[w^2 M] E_n[t^2 M]) with t = A/M, equals §2's progress efficiency
    (E_n[w A])^2 / (E_n[w^2 M] E_n[A^2/M]) with s = A, v = M: the value criterion of
    §10.1, maximal at w ∝ A/M. So fit.py's fits (beta_eff maximises it) apply unchanged.
    se: the bootstrap se of A/M when every point with a positive target has one > 0, else
    None (the log-space fits then weight by n M). None when no bin is usable. Ours."""
    use = [b for b in bins if np.isfinite(b["weight"]) and b["sq"] > 0]
    if not use:
        return None
    t = np.array([max(b["weight"], 0.0) for b in use])
    se = np.array([b["weight_se"] for b in use], dtype=float)
    se_ok = bool(np.all(np.isfinite(se)) and not np.any((se == 0) & (t > 0)))
    return SNRCurve(np.array([b["p"] for b in use]), t,
                    np.array([b["n"] * b["sq"] for b in use], dtype=float),
                    se if se_ok else None, source)
