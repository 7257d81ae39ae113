"""Efficiency of a weighting w(p) against the best one (THEORY.md section 2; our framework).

Setting. mu is the distribution of pass rates over the training problems; s(p) >= 0 is the
expected useful component of a problem's gradient, v(p) > 0 its second moment (or trace of
covariance), rho(p) = s(p)^2 / v(p) its signal-to-noise ratio.

Two criteria, and every result here says which one it uses:

* "progress": a batch drawn from mu and weighted by w gives, with the best step size in the
  noise-dominated regime, one-step progress proportional to
      Q(w) = (E_mu[w s])^2 / E_mu[w^2 v].
  Cauchy-Schwarz in L2(v dmu): Q(w) <= Q* = E_mu[s^2 / v], with equality iff w ∝ s/v
  mu-almost everywhere. Efficiency eta = Q(w) / Q* in [0, 1].
* "allocation": every processed problem costs the same, a problem at pass rate p is worth
  its SNR rho(p), and the weights spend an effective-sample-size budget E_mu[w^2] <= 1.
  The best achievable value of E_mu[w rho] is sqrt(E_mu[rho^2]), attained by w ∝ rho, so
      eta = (E_mu[w rho])^2 / (E_mu[w^2] E_mu[rho^2])  in [0, 1].
  This is the sense in which "weight ∝ SNR" is optimal, and the one PACED's Beta kernel
  p^a (1-p)^b approximates (the exponents of rho at the boundaries).

Both are squared cosines (between w sqrt(v) and s / sqrt(v), or between w and rho, in
L2(mu)), which is why the Kantorovich bound of robustness.py applies to both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from paced_theory.errors import InputError

CRITERIA = ("progress", "allocation")


@dataclass(frozen=True)
class PassRateMeasure:
    """A probability measure on [0, 1] as atoms p with masses summing to 1.

    Densities are discretised with Gauss-Legendre nodes on (0, 1), so the boundaries
    (where kernels vanish and some SNRs are 0/0) are never evaluated exactly.
    """

    p: np.ndarray
    mass: np.ndarray

    def __post_init__(self):
        p = np.asarray(self.p, dtype=float).ravel()
        m = np.asarray(self.mass, dtype=float).ravel()
        if p.shape != m.shape:
            raise InputError(f"PassRateMeasure: p has {p.size} points but mass has {m.size}")
        if p.size == 0:
            raise InputError("PassRateMeasure: needs at least one point")
        if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
            raise InputError("PassRateMeasure: every p must lie in [0, 1]")
        if not np.all(np.isfinite(m)) or np.any(m < 0) or m.sum() <= 0:
            raise InputError("PassRateMeasure: masses must be finite, >= 0, with positive total")
        object.__setattr__(self, "p", p)
        object.__setattr__(self, "mass", m / m.sum())

    @classmethod
    def from_samples(cls, samples) -> PassRateMeasure:
        """The empirical measure of observed pass rates (one atom per sample)."""
        s = np.asarray(samples, dtype=float).ravel()
        return cls(s, np.ones_like(s))

    @classmethod
    def on_grid(cls, density: Callable | None = None, n: int = 2001) -> PassRateMeasure:
        """A density on (0, 1) (uniform if None), discretised with n Gauss-Legendre nodes."""
        if n < 2:
            raise InputError(f"PassRateMeasure.on_grid: n must be >= 2 (got {n})")
        x, wq = np.polynomial.legendre.leggauss(n)
        p = 0.5 * (x + 1.0)
        dens = np.ones_like(p) if density is None else np.asarray(density(p), dtype=float)
        if dens.shape != p.shape or np.any(~np.isfinite(dens)) or np.any(dens < 0):
            raise InputError("PassRateMeasure.on_grid: density must be finite and >= 0 on (0,1)")
        return cls(p, 0.5 * wq * dens)

    @classmethod
    def uniform(cls, n: int = 2001) -> PassRateMeasure:
        return cls.on_grid(None, n)

    @classmethod
    def beta(cls, a: float, b: float, n: int = 2001) -> PassRateMeasure:
        """Beta(a, b) pass-rate distribution (log-space density, normalised numerically)."""
        if not (a > 0 and b > 0):
            raise InputError(f"PassRateMeasure.beta: a and b must be > 0 (got {a}, {b})")
        return cls.on_grid(lambda p: np.exp((a - 1) * np.log(p) + (b - 1) * np.log1p(-p)), n)

    def expect(self, values) -> float:
        """E_mu[values], values given at self.p."""
        return float(np.dot(self.mass, values))


def _values(f, mu: PassRateMeasure, name: str) -> np.ndarray:
    """Evaluate a callable at mu.p, or check that an array has one value per atom."""
    if f is None:
        raise InputError(f"efficiency: '{name}' is required for this criterion")
    out = np.asarray(f(mu.p) if callable(f) else f, dtype=float)
    if out.ndim == 0:
        out = np.full(mu.p.shape, float(out))
    if out.shape != mu.p.shape:
        raise InputError(f"efficiency: '{name}' has shape {out.shape}, mu has {mu.p.shape} atoms")
    if np.any(np.isnan(out)):
        raise InputError(f"efficiency: '{name}' is NaN at some p")
    return out


def _nonneg(x: np.ndarray, name: str) -> np.ndarray:
    if np.any(x < 0):
        raise InputError(f"efficiency: '{name}' must be >= 0 everywhere")
    return x


def progress(w, s, v, mu: PassRateMeasure) -> float:
    """Q(w) = (E_mu[w s])^2 / E_mu[w^2 v]  (0 if w vanishes mu-a.e.)."""
    wv, sv, vv = _values(w, mu, "w"), _values(s, mu, "s"), _nonneg(_values(v, mu, "v"), "v")
    den = mu.expect(wv**2 * vv)
    return 0.0 if den == 0 else mu.expect(wv * sv) ** 2 / den


def optimal_progress(s, v, mu: PassRateMeasure) -> float:
    """Q* = E_mu[s^2 / v], the Cauchy-Schwarz maximum of Q (points with v = 0 need s = 0)."""
    sv, vv = _values(s, mu, "s"), _nonneg(_values(v, mu, "v"), "v")
    if np.any((vv == 0) & (sv != 0)):
        raise InputError("optimal_progress: v = 0 where s != 0 makes Q* infinite")
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(vv > 0, sv**2 / np.where(vv > 0, vv, 1.0), 0.0)
    return mu.expect(r)


def optimal_weight(s: Callable, v: Callable, criterion: str = "progress") -> Callable:
    """w* ∝ s/v for "progress", w* ∝ rho = s^2/v for "allocation"."""
    _check_criterion(criterion)
    if criterion == "progress":
        return lambda p: np.asarray(s(p), float) / np.asarray(v(p), float)
    return lambda p: np.asarray(s(p), float) ** 2 / np.asarray(v(p), float)


def efficiency(w, mu: PassRateMeasure, *, s=None, v=None, rho=None,
               criterion: str = "progress") -> float:
    """eta(w) in [0, 1] under the named criterion (see the module docstring).

    progress:   Q(w) / Q*             needs s and v
    allocation: (E[w rho])^2 / (E[w^2] E[rho^2])   needs rho (or s and v)
    A weight that is 0 mu-a.e. has efficiency 0. Rounding is clipped into [0, 1].
    """
    _check_criterion(criterion)
    if criterion == "progress":
        q_star = optimal_progress(s, v, mu)
        eta = 0.0 if q_star == 0 else progress(w, s, v, mu) / q_star
    else:
        if rho is None:
            sv, vv = _values(s, mu, "s"), _nonneg(_values(v, mu, "v"), "v")
            with np.errstate(divide="ignore", invalid="ignore"):
                r = np.where(vv > 0, sv**2 / np.where(vv > 0, vv, 1.0), 0.0)
        else:
            r = _nonneg(_values(rho, mu, "rho"), "rho")
        wv = _values(w, mu, "w")
        den = mu.expect(wv**2) * mu.expect(r**2)
        eta = 0.0 if den == 0 else mu.expect(wv * r) ** 2 / den
    return float(min(max(eta, 0.0), 1.0))


def _check_criterion(criterion: str) -> None:
    if criterion not in CRITERIA:
        raise InputError(f"criterion must be one of {CRITERIA} (got {criterion!r})")
