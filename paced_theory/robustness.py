"""Minimax robustness of a misspecified weighting (THEORY.md section 3).

Paper: under bounded multiplicative misspecification the Beta kernel's worst-case
efficiency loss is O(delta^2).

Ours (exact constants, via the Kantorovich inequality). Let w = w* m with w* optimal under
either criterion of efficiency.py. Then

    eta(w) = (E_nu m)^2 / E_nu m^2,

for a probability measure nu (nu ∝ s^2/v dmu for "progress", nu ∝ rho^2 dmu for
"allocation"). For m in [m_min, m_max] the Kantorovich inequality gives

    (E m)^2 / E m^2 >= 4 m_min m_max / (m_min + m_max)^2,

with equality for the two-point m taking the values m_min and m_max with nu-mass
m_max/(m_min+m_max) and m_min/(m_min+m_max) respectively. Hence

    m in [1-delta, 1+delta]:      worst-case loss = 1 - (1-delta)(1+delta) = delta^2,
    m in [e^-delta, e^delta]:     worst-case loss = 1 - 1/cosh^2(delta) = tanh^2(delta),

both attained by the two-point witness of `witness`. Note (ours, correcting THEORY.md
section 3): the attaining nu-masses are m_max/(m_min+m_max) on m_min and m_min/(m_min+m_max)
on m_max, i.e. (1+delta)/2 and (1-delta)/2 for the linear band; with masses 1/2 each the
loss is only delta^2/(1+delta^2). A kernel whose log-residual against log rho has
oscillation osc = max - min is a misspecification in [e^-osc/2, e^osc/2] up to scale, so
its loss is at most tanh^2(osc/2).
"""

from __future__ import annotations

import math

import numpy as np

from paced_theory.efficiency import PassRateMeasure, efficiency
from paced_theory.errors import InputError


def _delta(delta: float, log: bool) -> float:
    d = float(delta)
    if not math.isfinite(d) or d < 0:
        raise InputError(f"--delta must be a finite number >= 0 (got {delta})")
    if not log and d >= 1:
        raise InputError(f"--delta must be < 1 for the band [1-delta, 1+delta] (got {delta})")
    return d


def band(delta: float, log: bool = False) -> tuple[float, float]:
    """(m_min, m_max): [1-delta, 1+delta], or [e^-delta, e^delta] with log=True."""
    d = _delta(delta, log)
    return (math.exp(-d), math.exp(d)) if log else (1.0 - d, 1.0 + d)


def kantorovich_bound(m_min: float, m_max: float) -> float:
    """Lower bound 4 m_min m_max / (m_min + m_max)^2 on (E m)^2 / E m^2 for m in the band."""
    if not (0 < m_min <= m_max) or not math.isfinite(m_max):
        raise InputError(f"kantorovich_bound: need 0 < m_min <= m_max < inf (got {m_min}, {m_max})")
    return 4.0 * m_min * m_max / (m_min + m_max) ** 2


def worst_case_loss(delta: float, log: bool = False) -> float:
    """Exact worst-case efficiency loss: delta^2, or tanh^2(delta) for the log band."""
    d = _delta(delta, log)
    return math.tanh(d) ** 2 if log else d * d


def misspecified_efficiency(m, nu_mass) -> float:
    """(E_nu m)^2 / E_nu m^2 for values m with nu-masses nu_mass (normalised here)."""
    m = np.asarray(m, dtype=float).ravel()
    nu = np.asarray(nu_mass, dtype=float).ravel()
    if m.shape != nu.shape or np.any(nu < 0) or nu.sum() <= 0:
        raise InputError("misspecified_efficiency: m and nu_mass must match, nu >= 0, sum > 0")
    nu = nu / nu.sum()
    e2 = float(np.dot(nu, m * m))
    return 0.0 if e2 == 0 else float(np.dot(nu, m)) ** 2 / e2


def witness(delta: float, log: bool = False) -> dict:
    """The two-point misspecification that attains the worst case.

    m takes the band's end values; the loss-maximising nu-masses are
    (m_max, m_min) / (m_min + m_max) (maximise 1 - (E m)^2/E m^2 over q = P(m = m_min)).
    For the linear band that is (1+delta, 1-delta)/2, NOT 1/2 each: with masses 1/2 the loss
    is delta^2/(1+delta^2). For the log band the optimum is (e^delta, e^-delta)/(2 cosh delta).
    """
    lo, hi = band(delta, log)
    masses = [hi / (lo + hi), lo / (lo + hi)]
    eff = misspecified_efficiency([lo, hi], masses)
    return {"values": [lo, hi], "masses": masses, "efficiency": eff, "loss": 1.0 - eff}


def guaranteed_efficiency_from_oscillation(osc: float) -> float:
    """1 - tanh^2(osc/2): the Kantorovich floor for a log-residual of oscillation osc."""
    if osc < 0 or math.isnan(osc):
        raise InputError(f"oscillation must be >= 0 (got {osc})")
    return 0.0 if math.isinf(osc) else 1.0 - math.tanh(osc / 2.0) ** 2


def kernel_loss(w, rho, mu: PassRateMeasure, criterion: str = "allocation",
                s=None, v=None) -> float:
    """1 - efficiency of kernel w against the true SNR (criterion as in efficiency.py)."""
    if criterion == "allocation":
        return 1.0 - efficiency(w, mu, rho=rho, criterion="allocation")
    return 1.0 - efficiency(w, mu, s=s, v=v, criterion=criterion)
