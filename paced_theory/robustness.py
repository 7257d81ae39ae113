"""Minimax robustness of a misspecified weighting (docs/theory.md §3).

Paper: under bounded multiplicative misspecification the Beta kernel's worst-case
efficiency loss is O(delta^2).

Ours (exact constants, via the Kantorovich inequality). Let w = w* m, with w* the optimal
weight of either criterion of efficiency.py and m(p) > 0 a multiplicative error. Then

    eta(w) = (E_nu m)^2 / E_nu m^2,

for the probability measure nu ∝ (s^2/v) dmu ("progress") or nu ∝ rho^2 dmu ("allocation").
If m takes values in [m_min, m_max], the Kantorovich inequality gives

    (E_nu m)^2 / E_nu m^2 >= 4 m_min m_max / (m_min + m_max)^2,

with equality exactly for the two-point m = m_min with nu-mass m_max/(m_min+m_max) and
m = m_max with nu-mass m_min/(m_min+m_max). (Proof: q = P_nu(m = m_min) in
f(q) = (q a + (1-q) b)^2 / (q a^2 + (1-q) b^2) is minimised at q = b/(a+b); a general m in
[a, b] satisfies (m - a)(b - m) >= 0, i.e. E m^2 <= (a+b) E m - ab, and AM-GM on
(a+b) E m >= 2 sqrt(ab E m^2) finishes it.) Hence, exactly,

    m in [1-delta, 1+delta] (0 <= delta < 1):  worst-case loss = 1 - (1-delta^2) = delta^2,
    m in [e^-delta, e^delta] (delta >= 0):     worst-case loss = 1 - 1/cosh^2 delta = tanh^2 delta.

The worst case is NOT attained by nu-masses 1/2 each, as the earlier reference text had it
(docs/theory.md §9). With masses 1/2 on 1 +- delta, E m = 1 and E m^2 = 1 + delta^2, a loss of only
delta^2/(1+delta^2). The attaining nu-masses are (1+delta)/2 on 1-delta and (1-delta)/2 on
1+delta. What is 1/2 each is the *tilted* measure m dnu / E_nu m (both atoms carry
q a = (1-q) b = ab/(a+b)); `witness` reports both.

A kernel whose log-residual log(rho/w) has oscillation osc = max - min is, up to a constant
factor (which eta ignores), a misspecification with m in [e^-osc/2, e^osc/2], so it loses at
most tanh^2(osc/2): the guarantee used by fit.py (ours).
"""

from __future__ import annotations

import math

import numpy as np

from paced_theory.efficiency import PassRateMeasure, efficiency
from paced_theory.errors import InputError

__all__ = [
    "band",
    "worst_case_loss",
    "kantorovich_bound",
    "witness",
    "misspecified_efficiency",
    "guaranteed_efficiency_from_oscillation",
    "kernel_loss",
    "kantorovich_symbolic",
]


LOG_DELTA_MAX = 709.0  # e^709 < the largest float < e^710


def _delta(delta, log: bool) -> float:
    try:
        d = float(delta)
    except (TypeError, ValueError):
        raise InputError(f"--delta must be a number (got {delta!r})") from None
    if not math.isfinite(d) or d < 0:
        raise InputError(f"--delta must be a finite number >= 0 (got {delta!r})")
    if not log and d >= 1:
        raise InputError(
            f"--delta must be < 1 for the band [1-delta, 1+delta] (got {delta!r}); "
            "use the log band [e^-delta, e^delta] (log=True, `--log`) for larger errors"
        )
    if log and d > LOG_DELTA_MAX:
        raise InputError(
            f"--delta must be <= {LOG_DELTA_MAX:g} for the log band (got {delta!r}): e^delta "
            "overflows a float beyond it (the worst-case loss tanh(delta)^2 is already 1 to "
            "double precision from delta = 19)"
        )
    return d


def band(delta: float, log: bool = False) -> tuple[float, float]:
    """(m_min, m_max) = (1-delta, 1+delta), or (e^-delta, e^delta) with log=True.

    InputError naming --delta if delta < 0, or delta >= 1 for the linear band. Ours.
    """
    d = _delta(delta, log)
    return (math.exp(-d), math.exp(d)) if log else (1.0 - d, 1.0 + d)


def worst_case_loss(delta: float, log: bool = False) -> float:
    """Exact worst-case efficiency loss over all m in the band and all nu:

        linear band [1-delta, 1+delta]:  delta^2
        log band    [e^-delta, e^delta]: tanh(delta)^2

    Paper: the loss is O(delta^2). Ours: the exact constants (Kantorovich; attained by
    `witness`). InputError if delta < 0, or delta >= 1 without log.
    """
    d = _delta(delta, log)
    return math.tanh(d) ** 2 if log else d * d


def kantorovich_bound(m_min: float, m_max: float) -> float:
    """Lower bound on (E m)^2 / E m^2 for m with values in [m_min, m_max] (any measure):

        4 m_min m_max / (m_min + m_max)^2   (Kantorovich inequality; sharp).

    Ours (the application to PACED). Requires 0 < m_min <= m_max < inf.
    """
    try:
        lo, hi = float(m_min), float(m_max)
    except (TypeError, ValueError):
        raise InputError(f"kantorovich_bound: 'm_min', 'm_max' must be numbers "
                         f"(got {m_min!r}, {m_max!r})") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise InputError(
            f"kantorovich_bound: need 0 < m_min <= m_max < inf (got m_min={m_min!r}, "
            f"m_max={m_max!r})"
        )
    # 4ab/(a+b)^2 = 1 - ((b-a)/(b+a))^2, which keeps full precision when a ~ b.
    return 1.0 - ((hi - lo) / (hi + lo)) ** 2


def misspecified_efficiency(m, nu_mass) -> float:
    """(E_nu m)^2 / E_nu m^2 for values m with nu-masses nu_mass (normalised here).

    This is eta(w* m) under either criterion, with nu as in the module docstring.
    Ours. InputError on mismatched lengths, negative or all-zero masses, non-finite values.
    """
    mv = np.asarray(m, dtype=float).ravel()
    nu = np.asarray(nu_mass, dtype=float).ravel()
    where = "misspecified_efficiency"
    if mv.shape != nu.shape:
        raise InputError(f"{where}: 'm' has {mv.size} values but 'nu_mass' has {nu.size}")
    if mv.size == 0:
        raise InputError(f"{where}: 'm' is empty")
    if not (np.all(np.isfinite(mv)) and np.all(np.isfinite(nu))):
        raise InputError(f"{where}: 'm' and 'nu_mass' must be finite")
    if np.any(nu < 0) or not nu.sum() > 0:
        raise InputError(f"{where}: 'nu_mass' must be >= 0 with a positive sum")
    nu = nu / nu.sum()
    top = float(np.max(np.abs(mv)))
    if top == 0.0:
        return 0.0
    mv = mv / top  # eta is scale-invariant
    e2 = float(np.dot(nu, mv * mv))
    return 0.0 if e2 == 0.0 else float(np.dot(nu, mv)) ** 2 / e2


def witness(delta: float, log: bool = False) -> dict:
    """The two-point misspecification that attains the worst case of the band.

    values:        [m_min, m_max], the band's ends
    masses:        the nu-masses [m_max, m_min] / (m_min + m_max)
                   (= [(1+delta)/2, (1-delta)/2] for the linear band,
                      [e^delta, e^-delta] / (2 cosh delta) for the log band)
    tilted_masses: [1/2, 1/2], the same witness seen through m dnu / E_nu m
    efficiency:    (E_nu m)^2 / E_nu m^2 = 4 m_min m_max / (m_min + m_max)^2
    loss:          1 - efficiency = delta^2 (linear) or tanh^2 delta (log)

    Ours (Kantorovich equality case). nu-mass 1/2 each (the earlier reference text,
    docs/theory.md §9) gives the smaller loss delta^2/(1+delta^2): see the module docstring.
    """
    lo, hi = band(delta, log)
    masses = [hi / (lo + hi), lo / (lo + hi)]
    eff = misspecified_efficiency([lo, hi], masses)
    tilt = np.array([lo * masses[0], hi * masses[1]])
    return {
        "values": [lo, hi],
        "masses": masses,
        "tilted_masses": (tilt / tilt.sum()).tolist(),
        "efficiency": eff,
        "loss": 1.0 - eff,
    }


def guaranteed_efficiency_from_oscillation(osc: float) -> float:
    """1 - tanh^2(osc/2) = 1/cosh^2(osc/2): the Kantorovich floor on eta(w) when
    log(w/w*) has oscillation (max - min) osc; 0 for osc = inf.

    Ours (a log band of half-width osc/2 after rescaling w). InputError if osc < 0 or NaN.
    """
    try:
        o = float(osc)
    except (TypeError, ValueError):
        raise InputError(f"oscillation must be a number (got {osc!r})") from None
    if math.isnan(o) or o < 0:
        raise InputError(f"oscillation must be >= 0 (got {osc!r})")
    if math.isinf(o):
        return 0.0
    e = math.exp(-o)  # sech^2(o/2) = 4 e^-o / (1 + e^-o)^2, without cosh's overflow
    return 4.0 * e / (1.0 + e) ** 2


def kernel_loss(w, rho, mu: PassRateMeasure, criterion: str = "allocation",
                s=None, v=None) -> float:
    """1 - eta(w): the efficiency a kernel w loses against the optimum.

    criterion="allocation" uses rho (the SNR); criterion="progress" uses s and v (rho is
    then ignored and may be None). w, rho, s, v: callables of p or arrays at mu.p.
    Ours (docs/theory.md §2-3).
    """
    if criterion == "allocation":
        if rho is None:
            return 1.0 - efficiency(w, mu, s=s, v=v, criterion="allocation")
        return 1.0 - efficiency(w, mu, rho=rho, criterion="allocation")
    return 1.0 - efficiency(w, mu, s=s, v=v, criterion=criterion)


def kantorovich_symbolic() -> dict:
    """Symbolic derivation (sympy) of the two-point worst case for m in {a, b}, 0 < a < b.

    f(q) = (q a + (1-q) b)^2 / (q a^2 + (1-q) b^2), q = nu-mass on a. Returns the sympy
    expressions: 'f', 'q_star' (the root of f'(q) = 0 in (0, 1)), 'min_efficiency' = f(q_star)
    simplified, 'linear_loss' = 1 - min at (a, b) = (1-delta, 1+delta), 'log_loss' the same at
    (e^-delta, e^delta), and 'half_loss' = the loss at q = 1/2 on the linear band.
    Ours.
    """
    import sympy as sp

    a, b, q, d = sp.symbols("a b q delta", positive=True)
    f = (q * a + (1 - q) * b) ** 2 / (q * a**2 + (1 - q) * b**2)
    roots = sp.solve(sp.Eq(sp.diff(f, q), 0), q)
    interior = [r for r in roots if sp.simplify(r - b / (a + b)) == 0]
    if not interior:  # pragma: no cover - would mean the derivation changed
        raise RuntimeError(f"kantorovich_symbolic: unexpected stationary points {roots}")
    q_star = interior[0]
    fmin = sp.factor(sp.simplify(f.subs(q, q_star)))
    lin = sp.simplify(1 - fmin.subs({a: 1 - d, b: 1 + d}))
    log_loss = sp.simplify((1 - fmin.subs({a: sp.exp(-d), b: sp.exp(d)})).rewrite(sp.exp))
    half = sp.simplify(1 - f.subs({q: sp.Rational(1, 2), a: 1 - d, b: 1 + d}))
    return {"f": f, "q_star": q_star, "min_efficiency": fmin, "linear_loss": lin,
            "log_loss": log_loss, "half_loss": half, "symbols": (a, b, q, d)}
