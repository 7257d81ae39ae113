"""Efficiency of a weighting w(p) against the best one (docs/theory.md §2; our framework).

Setting (ours). mu is the distribution of pass rates p over the training problems; s(p) is
the expected useful component of a problem's gradient (its projection on the descent
direction of the population objective), v(p) >= 0 its second moment (or the trace of its
covariance), and rho(p) = s(p)^2 / v(p) its signal-to-noise ratio.

Two criteria; every function here takes `criterion` and every result says which it used.

* "progress". A batch drawn from mu and weighted by w gives, with the best step size in the
  noise-dominated regime, an expected one-step progress proportional to

      Q(w) = (E_mu[w s])^2 / E_mu[w^2 v].

  Cauchy-Schwarz in L2(mu) applied to a = w sqrt(v) and b = s / sqrt(v):

      Q(w) <= Q* = E_mu[s^2 / v],   with equality iff w ∝ s/v  mu-almost everywhere,

  so eta(w) = Q(w) / Q* = <a, b>^2 / (|a|^2 |b|^2) in [0, 1] is a squared cosine.

* "allocation". Every processed problem costs the same; a problem at pass rate p is worth
  its SNR rho(p), and the weights spend an effective-sample-size budget E_mu[w^2] <= 1.
  max E_mu[w rho] subject to E_mu[w^2] <= 1 is sqrt(E_mu[rho^2]), attained by w ∝ rho, so

      eta(w) = (E_mu[w rho])^2 / (E_mu[w^2] E_mu[rho^2])  in [0, 1],

  the squared cosine between w and rho in L2(mu). This is the sense in which "weight ∝ SNR"
  is optimal, and the one whose boundary exponents PACED's Beta kernel p^a (1-p)^b copies.

Both are squared cosines, which is why the Kantorovich analysis of robustness.py applies to
both (with nu ∝ s^2/v dmu, resp. nu ∝ rho^2 dmu).

Inputs. w, s, v, rho are either callables of p (vectorised) or arrays of their values at
mu.p (a scalar is broadcast). Values at atoms of zero mass are ignored (so a callable may
return NaN at an atom that carries no mass). Efficiencies are scale-invariant in w (and in
rho); w is rescaled by its largest value before squaring, so kernels as small as 1e-200
(e.g. a Beta kernel with large exponents) do not underflow.

Paper: only the statement that the Beta kernel is the leading-order optimal family. Ours:
the two criteria, the efficiency functional and everything in this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.special import roots_legendre

from paced_theory.errors import InputError

CRITERIA = ("progress", "allocation")

__all__ = [
    "CRITERIA",
    "PassRateMeasure",
    "progress",
    "optimal_progress",
    "optimal_weight",
    "efficiency",
]


# ----------------------------------------------------------------------------- the measure
@dataclass(frozen=True)
class PassRateMeasure:
    """A probability measure mu on [0, 1]: atoms p with masses summing to 1.

    The constructor validates (p in [0, 1], finite, mass >= 0 with a positive total, equal
    lengths) and normalises the masses to sum to 1. Densities are discretised by `on_grid`
    with Gauss-Legendre nodes on (0, 1), so the boundaries p = 0 and p = 1 (where kernels
    vanish and some SNRs are 0/0) are never evaluated.
    Ours (a numerical device).
    """

    p: np.ndarray
    mass: np.ndarray

    def __post_init__(self) -> None:
        p = np.asarray(self.p, dtype=float).ravel()
        m = np.asarray(self.mass, dtype=float).ravel()
        if p.shape != m.shape:
            raise InputError(
                f"PassRateMeasure: 'p' has {p.size} points but 'mass' has {m.size}; "
                "give one mass per pass rate"
            )
        if p.size == 0:
            raise InputError("PassRateMeasure: 'p' is empty; give at least one pass rate")
        bad = ~((p >= 0.0) & (p <= 1.0))  # catches NaN too
        if np.any(bad):
            i = int(np.argmax(bad))
            raise InputError(
                f"PassRateMeasure: 'p'[{i}] = {p[i]!r} is outside [0, 1]; pass rates, "
                "not percentages"
            )
        if not np.all(np.isfinite(m)):
            i = int(np.argmax(~np.isfinite(m)))
            raise InputError(f"PassRateMeasure: 'mass'[{i}] = {m[i]!r} is not finite")
        if np.any(m < 0):
            i = int(np.argmax(m < 0))
            raise InputError(
                f"PassRateMeasure: 'mass'[{i}] = {m[i]!r} is negative; masses must be >= 0"
            )
        total = m.sum()
        if not total > 0:
            raise InputError("PassRateMeasure: 'mass' sums to 0; give some atom positive mass")
        object.__setattr__(self, "p", p)
        object.__setattr__(self, "mass", m / total)

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_samples(cls, p_samples, weights=None) -> PassRateMeasure:
        """The empirical measure of observed pass rates: one atom per sample, mass 1/n
        (or ∝ `weights`)."""
        s = np.asarray(p_samples, dtype=float).ravel()
        w = np.ones_like(s) if weights is None else np.asarray(weights, dtype=float).ravel()
        return cls(s, w)

    @classmethod
    def on_grid(
        cls, density: Callable | None = None, n: int = 2001, rule: str = "gauss"
    ) -> PassRateMeasure:
        """A density f on (0, 1) (uniform if None), discretised with n nodes.

        rule="gauss": Gauss-Legendre nodes x_k mapped to p_k = (x_k + 1)/2, masses
        ∝ w_k f(p_k) / 2 (exact for polynomial integrands of degree < 2n).
        rule="midpoint": p_k = (k + 1/2)/n, masses ∝ f(p_k).
        The density need not be normalised; the masses are. Neither rule touches 0 or 1.
        """
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise InputError(f"PassRateMeasure.on_grid: 'n' must be an integer >= 1 (got {n!r})")
        if rule == "gauss":
            p, base = _gauss_legendre_01(int(n))
        elif rule == "midpoint":
            p = (np.arange(n) + 0.5) / n
            base = np.full(n, 1.0 / n)
        else:
            raise InputError(
                f"PassRateMeasure.on_grid: 'rule' must be 'gauss' or 'midpoint' (got {rule!r})"
            )
        if density is None:
            dens = np.ones_like(p)
        else:
            dens = np.asarray(density(p), dtype=float)
            if dens.ndim == 0:
                dens = np.full_like(p, float(dens))
        if dens.shape != p.shape:
            raise InputError(
                f"PassRateMeasure.on_grid: 'density' returned shape {dens.shape} for "
                f"{p.size} nodes; it must be vectorised"
            )
        if not np.all(np.isfinite(dens)) or np.any(dens < 0):
            raise InputError(
                "PassRateMeasure.on_grid: 'density' must be finite and >= 0 on (0, 1)"
            )
        return cls(p, base * dens)

    @classmethod
    def uniform(cls, n: int = 2001) -> PassRateMeasure:
        """Uniform pass rates on (0, 1), Gauss-Legendre grid of n nodes."""
        return cls.on_grid(None, n)

    @classmethod
    def beta(cls, a: float, b: float, n: int = 2001) -> PassRateMeasure:
        """Beta(a, b) pass rates; density p^(a-1) (1-p)^(b-1) evaluated in log space."""
        a, b = float(a), float(b)
        if not (math.isfinite(a) and math.isfinite(b) and a > 0 and b > 0):
            raise InputError(
                f"PassRateMeasure.beta: 'a' and 'b' must be finite and > 0 (got {a}, {b})"
            )

        def dens(p: np.ndarray) -> np.ndarray:
            lg = (a - 1.0) * np.log(p) + (b - 1.0) * np.log1p(-p)
            return np.exp(lg - lg.max())

        return cls.on_grid(dens, n)

    # ---------------------------------------------------------------- use
    @property
    def size(self) -> int:
        return int(self.p.size)

    def expect(self, values) -> float:
        """E_mu[f] for f a callable of p or an array of values at self.p."""
        return float(np.dot(self.mass, _values(values, self, "values", "PassRateMeasure.expect")))


# ----------------------------------------------------------------------------- helpers
@lru_cache(maxsize=16)
def _gauss_legendre_cached(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, wq = roots_legendre(n)  # Golub-Welsch in scipy: ~0.2 s for n = 2001 (numpy's is ~4 s)
    p, base = 0.5 * (x + 1.0), 0.5 * wq
    p.setflags(write=False)
    base.setflags(write=False)
    return p, base


def _gauss_legendre_01(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on (0, 1) (copies of a cached table)."""
    p, base = _gauss_legendre_cached(n)
    return p.copy(), base.copy()


def _values(f, mu: PassRateMeasure, name: str, where: str) -> np.ndarray:
    """f at mu.p (callable), or an array/scalar checked to have one finite value per atom.

    Atoms of zero mass are set to 0 (their values never matter)."""
    if f is None:
        raise InputError(f"{where}: argument '{name}' is required here")
    out = np.asarray(f(mu.p) if callable(f) else f, dtype=float)
    if out.ndim == 0:
        out = np.full(mu.p.shape, float(out))
    if out.shape != mu.p.shape:
        raise InputError(
            f"{where}: argument '{name}' has shape {out.shape} but mu has {mu.p.size} atoms; "
            "pass one value per atom of mu (or a callable of p)"
        )
    out = np.where(mu.mass > 0, out, 0.0)
    bad = ~np.isfinite(out)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise InputError(
            f"{where}: argument '{name}' is {out[i]!r} at p = {mu.p[i]:.6g}; it must be "
            "finite wherever mu has mass"
        )
    return out


def _nonneg(x: np.ndarray, mu: PassRateMeasure, name: str, where: str) -> np.ndarray:
    if np.any(x < 0):
        i = int(np.argmax(x < 0))
        raise InputError(
            f"{where}: argument '{name}' is negative ({x[i]:.6g}) at p = {mu.p[i]:.6g}; "
            f"'{name}' must be >= 0"
        )
    return x


def _scaled(x: np.ndarray) -> np.ndarray:
    """x / max|x| (x unchanged if 0): the squared cosines below are scale-invariant."""
    top = float(np.max(np.abs(x))) if x.size else 0.0
    return x / top if top > 0 else x


def _cos2(a: np.ndarray, b: np.ndarray, mass: np.ndarray) -> float:
    """<a, b>^2 / (|a|^2 |b|^2) in L2(mass); 0 if either vanishes."""
    a, b = _scaled(a), _scaled(b)
    den = float(np.dot(mass, a * a)) * float(np.dot(mass, b * b))
    if den == 0.0:
        return 0.0
    return float(np.dot(mass, a * b)) ** 2 / den


def _check_criterion(criterion: str, where: str) -> None:
    if criterion not in CRITERIA:
        raise InputError(f"{where}: 'criterion' must be one of {CRITERIA} (got {criterion!r})")


def _signal_noise(s, v, mu: PassRateMeasure, where: str) -> tuple[np.ndarray, np.ndarray]:
    sv = _values(s, mu, "s", where)
    vv = _nonneg(_values(v, mu, "v", where), mu, "v", where)
    bad = (vv == 0) & (sv != 0)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise InputError(
            f"{where}: v = 0 but s = {sv[i]:.6g} at p = {mu.p[i]:.6g}: a noiseless signal "
            "makes Q* infinite; give v > 0 wherever s != 0"
        )
    return sv, vv


def _snr(sv: np.ndarray, vv: np.ndarray) -> np.ndarray:
    """s / sqrt(v) with 0/0 := 0 (callers have excluded s != 0 = v)."""
    pos = vv > 0
    return np.where(pos, sv / np.sqrt(np.where(pos, vv, 1.0)), 0.0)


# ----------------------------------------------------------------------------- public API
def progress(w, s, v, mu: PassRateMeasure) -> float:
    """Q(w) = (E_mu[w s])^2 / E_mu[w^2 v]  ("progress" criterion).

    Returns 0 if both numerator and denominator vanish and inf if only the denominator does.
    Q is invariant under w -> c w. Ours (docs/theory.md §2).
    """
    where = "progress"
    wv = _values(w, mu, "w", where)
    sv = _values(s, mu, "s", where)
    vv = _nonneg(_values(v, mu, "v", where), mu, "v", where)
    wv = _scaled(wv)
    num = float(np.dot(mu.mass, wv * sv)) ** 2
    den = float(np.dot(mu.mass, wv * wv * vv))
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / den


def optimal_progress(s, v, mu: PassRateMeasure) -> float:
    """Q* = E_mu[s^2 / v] = max_w Q(w) (Cauchy-Schwarz; atoms with s = v = 0 contribute 0).

    InputError if v = 0 where s != 0 (then Q* is infinite). Ours (docs/theory.md §2).
    """
    sv, vv = _signal_noise(s, v, mu, "optimal_progress")
    b = _snr(sv, vv)
    return float(np.dot(mu.mass, b * b))


def optimal_weight(s, v, criterion: str = "progress"):
    """The optimal weight, up to a positive constant:

        "progress":   w* = s / v          (maximises Q(w); Cauchy-Schwarz equality case)
        "allocation": w* = rho = s^2 / v  (maximises E[w rho] at fixed E[w^2])

    with 0/0 := 0. If s and v are both callables, returns a callable p -> w*(p); if either is
    an array (values at some common points), returns the array of w* values there.
    Ours (docs/theory.md §2).
    """
    where = "optimal_weight"
    _check_criterion(criterion, where)

    def combine(sv, vv) -> np.ndarray:
        sv = np.asarray(sv, dtype=float)
        vv = np.asarray(vv, dtype=float)
        if np.any(vv < 0):
            raise InputError(f"{where}: argument 'v' must be >= 0 (got a negative value)")
        if np.any((vv == 0) & (sv != 0)):
            raise InputError(f"{where}: v = 0 where s != 0 makes the optimal weight infinite")
        num = sv if criterion == "progress" else sv * sv
        pos = vv > 0
        return np.where(pos, num / np.where(pos, vv, 1.0), 0.0)

    if callable(s) and callable(v):
        return lambda p: combine(s(p), v(p))
    if callable(s) or callable(v):
        raise InputError(f"{where}: pass 's' and 'v' both as callables or both as arrays")
    sv, vv = np.asarray(s, dtype=float), np.asarray(v, dtype=float)
    if sv.shape != vv.shape:
        raise InputError(f"{where}: 's' has shape {sv.shape} but 'v' has shape {vv.shape}")
    return combine(sv, vv)


def efficiency(w, mu: PassRateMeasure, *, s=None, v=None, rho=None,
               criterion: str = "progress") -> float:
    """eta(w) in [0, 1] under the named criterion.

        progress:   eta = Q(w) / Q* = (E[w s])^2 / (E[w^2 v] E[s^2/v])        needs s and v
        allocation: eta = (E[w rho])^2 / (E[w^2] E[rho^2])      needs rho (or s and v,
                                                                 then rho = s^2/v)
    Expectations are under mu. eta = 1 iff w is proportional to the optimal weight
    mu-a.e.; a weight that vanishes mu-a.e., or a problem with no signal (Q* = 0, or
    rho = 0 mu-a.e.), gives 0. w must be >= 0. Rounding is clipped into [0, 1].
    Ours (docs/theory.md §2).
    """
    where = "efficiency"
    _check_criterion(criterion, where)
    wv = _nonneg(_values(w, mu, "w", where), mu, "w", where)
    if criterion == "progress":
        if s is None or v is None:
            raise InputError(
                f"{where}: the 'progress' criterion needs 's' and 'v' (rho alone is not "
                "enough); pass s=..., v=... or use criterion='allocation'"
            )
        sv, vv = _signal_noise(s, v, mu, where)
        eta = _cos2(wv * np.sqrt(vv), _snr(sv, vv), mu.mass)
    else:
        if rho is not None:
            r = _nonneg(_values(rho, mu, "rho", where), mu, "rho", where)
        elif s is not None and v is not None:
            b = _snr(*_signal_noise(s, v, mu, where))
            r = b * b
        else:
            raise InputError(f"{where}: the 'allocation' criterion needs 'rho' (or 's' and 'v')")
        eta = _cos2(wv, r, mu.mass)
    return float(min(max(eta, 0.0), 1.0))
