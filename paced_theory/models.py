"""Gradient-statistics models: s(p), v(p), rho(p) derived in sympy, with numeric twins and
Monte Carlo samplers of per-problem gradients (THEORY.md section 4).

Conventions. A problem's gradient G is the mean over its K rollouts (M1) or its teacher-forced
tokens (M2). s(p) = ||E G|| (the mean lies along the skill direction u), v(p) = tr Cov G,
rho(p) = s^2 / v. The optimal weight is w* ∝ rho ("allocation" criterion) or w* ∝ s/v
("progress" criterion), see efficiency.py; the boundary exponents of w*,
    a = lim_{p->0+} log w* / log p,    b = lim_{p->1-} log w* / log(1-p),
are computed by sympy limits and give the implied Beta kernel p^a (1-p)^b.

M1, on-policy outcome model (THEORY.md; the derivation for finite K and the three baselines
is ours). K rollouts, r_j ~ Bernoulli(p), score l_j = r_j - p along u, advantage
A_j = Delta r_j + eps_j (Var eps = tau2), isotropic zeta_j with E||zeta||^2 = sigma2, rollout
gradient (A_j - b_j)(l_j u + zeta_j). Write q = p(1-p) and a_j = Delta l_j + eps_j.
  true_mean      b = Delta p:               s = Delta q,
                 v = [Delta^2 q((1-2p)^2 + sigma2) + tau2 (q + sigma2)] / K.
  leave_one_out  b_j = mean of the other K-1 advantages A:  A_j - b_j = K/(K-1) (a_j - abar),
                 G = 1/(K-1) sum_j (a_j - abar)(l_j u + zeta_j),   s = Delta q (unbiased),
                 v = [Delta^2 Var(S) + tau2 (K-1) q] / (K-1)^2 + sigma2 (Delta^2 q + tau2)/(K-1),
                 S = sum_j (l_j - lbar)^2 = c - c^2/K with c ~ Binomial(K, p); Var(S) from the
                 binomial moments E c^m = sum_k Stirling2(m, k) K^(k falling) p^k.
  group_mean     b = mean of all K advantages: exactly (K-1)/K times the leave-one-out G, so
                 s and sqrt(v) scale by (K-1)/K and rho is identical to leave_one_out's.
  Exponents (allocation): (1, 1) when tau2 = 0; (2, 2) when tau2 > 0 and sigma2 > 0 (the
  variance keeps a floor ~ sigma2 tau2 while s^2 ~ q^2); (1, 1) when sigma2 = 0, tau2 > 0.
  Progress criterion: s/v has exponents (0, 0) when tau2 = 0 and (1, 1) when tau2, sigma2 > 0,
  so p(1-p) is also the progress-optimal kernel of the noisy-advantage model.
  Degeneracy: sigma2 = tau2 = 0, true mean: v = 0 at p = 1/2 (every rollout gives the same
  gradient Delta/4 u), and rho has a pole there.

M2, teacher-forced forward KL with an engagement mechanism (ours). The gradient of a problem
is G = (1-p) [kappa p^gamma u + xi] + e: the coherent part scales with engagement p^gamma
(a problem the student cannot engage does not move the shared skill) and with the remaining
gap (1-p); xi (E||xi||^2 = sigma2) is the problem-specific incoherent part of that gap, and e
(E||e||^2 = noise_floor) the token-level sampling noise of teacher-forced references.
  s = kappa p^gamma (1-p),   v = (1-p)^2 sigma2 + noise_floor,
  allocation exponents (2 gamma, 2) if noise_floor > 0, (2 gamma, 0) if noise_floor = 0;
  progress exponents (gamma, 1) if noise_floor > 0, (gamma, -1) if noise_floor = 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import sympy as sp

from paced_theory.errors import InputError

P = sp.Symbol("p", positive=True)
BASELINES = ("true_mean", "leave_one_out", "group_mean")
CRITERIA = ("allocation", "progress")


def _binomial_moment(m: int, K: sp.Expr, p: sp.Expr) -> sp.Expr:
    """E[c^m] for c ~ Binomial(K, p), symbolic K: sum_k S2(m, k) ff(K, k) p^k."""
    from sympy.functions.combinatorial.numbers import stirling

    return sp.expand(sum(stirling(m, k) * sp.ff(K, k) * p**k for k in range(m + 1)))


def _bernoulli_expect(expr: sp.Expr, r: sp.Symbol, p: sp.Expr) -> sp.Expr:
    """E over r ~ Bernoulli(p) of a polynomial in r."""
    return sp.expand(p * expr.subs(r, 1) + (1 - p) * expr.subs(r, 0))


@cache
def m1_symbolic(baseline: str = "true_mean") -> tuple[sp.Expr, sp.Expr]:
    """(s, v) of M1 as sympy expressions in p and the symbols K, sigma2, tau2, Delta.

    true_mean: from single-rollout expectations over r in {0, 1} (g_j are i.i.d., v = Var g/K).
    leave_one_out / group_mean: through S = c - c^2/K and the binomial moments (see module doc).
    """
    K, sigma2, tau2, Delta = sp.symbols("K sigma2 tau2 Delta", positive=True)
    p, q = P, P * (1 - P)
    if baseline == "true_mean":
        r = sp.Symbol("r")
        l = r - p
        # u-component (Delta l + eps) l, zeta-component (Delta l + eps) zeta;
        # E eps = 0, E eps^2 = tau2
        s = _bernoulli_expect(Delta * l * l, r, p)
        second = _bernoulli_expect(Delta**2 * l**2 * (l**2 + sigma2) + tau2 * (l**2 + sigma2), r, p)
        v = (second - s**2) / K
        return sp.factor(s), sp.factor(sp.simplify(v))
    if baseline not in ("leave_one_out", "group_mean"):
        raise InputError(f"baseline must be one of {BASELINES} (got {baseline!r})")
    c = sp.Symbol("c")
    S = c - c**2 / K

    def E(poly):  # expectation of a polynomial in c over Binomial(K, p)
        poly = sp.Poly(sp.expand(poly), c)
        return sum(coef * _binomial_moment(deg[0], K, p) for deg, coef in poly.terms())

    var_S = sp.simplify(E(S**2) - E(S) ** 2)
    s = Delta * q
    v = ((Delta**2 * var_S + tau2 * (K - 1) * q) / (K - 1) ** 2
         + sigma2 * (Delta**2 * q + tau2) / (K - 1))
    if baseline == "group_mean":
        f = (K - 1) / K
        s, v = f * s, f**2 * v
    return sp.factor(sp.simplify(s)), sp.simplify(v)


@dataclass
class GradientModel:
    """A gradient-statistics model: sympy s, v (parameters substituted) and numeric twins."""

    name: str
    params: dict
    s_expr: sp.Expr
    v_expr: sp.Expr
    sampler: Callable = field(repr=False)

    def __post_init__(self):
        self.p = P
        self.rho_expr = sp.simplify(self.s_expr**2 / self.v_expr)
        self._s = sp.lambdify(P, self.s_expr, "numpy")
        self._v = sp.lambdify(P, self.v_expr, "numpy")
        self._rho = sp.lambdify(P, self.rho_expr, "numpy")
        self._exp_cache: dict = {}

    def _num(self, f, p) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.broadcast_to(np.asarray(f(p), dtype=float), p.shape).copy()

    def s(self, p) -> np.ndarray:
        return self._num(self._s, p)

    def v(self, p) -> np.ndarray:
        return self._num(self._v, p)

    def rho(self, p) -> np.ndarray:
        return self._num(self._rho, p)

    def optimal_weight_expr(self, criterion: str = "allocation") -> sp.Expr:
        if criterion not in CRITERIA:
            raise InputError(f"criterion must be one of {CRITERIA} (got {criterion!r})")
        if criterion == "allocation":
            return self.rho_expr
        return sp.simplify(self.s_expr / self.v_expr)

    def exponents(self, criterion: str = "allocation") -> tuple[float, float]:
        """(a, b) = (lim_{p->0} log w*/log p, lim_{p->1} log w*/log(1-p)) by sympy limits."""
        if criterion not in self._exp_cache:
            w = self.optimal_weight_expr(criterion)
            a = sp.limit(sp.log(w) / sp.log(P), P, 0, "+")
            b = sp.limit(sp.log(w) / sp.log(1 - P), P, 1, "-")
            self._exp_cache[criterion] = (_as_float(a), _as_float(b))
        return self._exp_cache[criterion]

    def implied_beta(self, criterion: str = "allocation") -> tuple[float, float]:
        """The Beta kernel p^a (1-p)^b with the boundary exponents of w* (negative ones -> 0,
        since a Beta weight cannot grow without bound at a boundary)."""
        a, b = self.exponents(criterion)
        return max(a, 0.0), max(b, 0.0)

    def rho_text(self) -> str:
        return str(sp.factor(self.rho_expr))

    def sample_gradients(self, p: float, n: int, rng: np.random.Generator,
                         dim: int = 8) -> np.ndarray:
        """n independent per-problem gradients at pass rate p, shape (n, dim); u = e_1."""
        if not 0.0 <= p <= 1.0:
            raise InputError(f"sample_gradients: p must be in [0, 1] (got {p})")
        return self.sampler(float(p), int(n), rng, int(dim))


def _as_float(x: sp.Expr) -> float:
    x = sp.nsimplify(x)
    if x in (sp.oo, -sp.oo) or x.has(sp.nan, sp.zoo):
        raise ArithmeticError(f"boundary exponent is not finite ({x})")
    return float(x)


def _check_nonneg(**kw) -> None:
    for k, val in kw.items():
        if not np.isfinite(val) or val < 0:
            raise InputError(f"{k} must be a finite number >= 0 (got {val})")


def m1(K: int = 8, sigma2: float = 1.0, tau2: float = 0.0, Delta: float = 1.0,
       baseline: str = "true_mean") -> GradientModel:
    """M1, the on-policy outcome model (see the module docstring for s, v and exponents)."""
    if int(K) != K or K < 1:
        raise InputError(f"K must be an integer >= 1 (got {K})")
    if baseline not in BASELINES:
        raise InputError(f"baseline must be one of {BASELINES} (got {baseline!r})")
    if baseline != "true_mean" and K < 2:
        raise InputError(f"the {baseline} baseline needs K >= 2 (got {K})")
    _check_nonneg(sigma2=sigma2, tau2=tau2)
    if not Delta > 0:
        raise InputError(f"Delta must be > 0 (got {Delta})")
    s, v = m1_symbolic(baseline)
    subs = {sp.Symbol("K", positive=True): int(K),
            sp.Symbol("sigma2", positive=True): sp.nsimplify(sigma2),
            sp.Symbol("tau2", positive=True): sp.nsimplify(tau2),
            sp.Symbol("Delta", positive=True): sp.nsimplify(Delta)}
    s, v = sp.simplify(s.subs(subs)), sp.simplify(v.subs(subs))
    K = int(K)

    def sampler(p, n, rng, dim):
        r = (rng.random((n, K)) < p).astype(float)
        eps = rng.normal(0.0, np.sqrt(tau2), (n, K))
        a = Delta * r + eps  # advantages A_j
        if baseline == "true_mean":
            adv = a - Delta * p
        elif baseline == "leave_one_out":
            adv = a - (a.sum(1, keepdims=True) - a) / (K - 1)
        else:
            adv = a - a.mean(1, keepdims=True)
        zeta = rng.normal(0.0, np.sqrt(sigma2 / dim), (n, K, dim))
        direction = zeta
        direction[:, :, 0] += r - p  # l_j u + zeta_j with u = e_1
        return (adv[:, :, None] * direction).mean(axis=1)

    params = {"K": K, "sigma2": sigma2, "tau2": tau2, "Delta": Delta, "baseline": baseline}
    return GradientModel("m1", params, s, v, sampler)


def m2(gamma: float = 1.0, noise_floor: float = 0.1, kappa: float = 1.0,
       sigma2: float = 1.0) -> GradientModel:
    """M2, teacher-forced forward KL with engagement p^gamma (see the module docstring)."""
    _check_nonneg(gamma=gamma, noise_floor=noise_floor, sigma2=sigma2)
    if not kappa > 0:
        raise InputError(f"kappa must be > 0 (got {kappa})")
    if sigma2 == 0 and noise_floor == 0:
        raise InputError("m2 needs sigma2 > 0 or noise_floor > 0 (otherwise v = 0)")
    g, nu, k, sg = (sp.nsimplify(x) for x in (gamma, noise_floor, kappa, sigma2))
    s = k * P**g * (1 - P)
    v = (1 - P) ** 2 * sg + nu

    def sampler(p, n, rng, dim):
        xi = rng.normal(0.0, np.sqrt(sigma2 / dim), (n, dim))
        e = rng.normal(0.0, np.sqrt(noise_floor / dim), (n, dim))
        coherent = np.zeros(dim)
        coherent[0] = kappa * p**gamma
        return (1 - p) * (coherent + xi) + e

    params = {"gamma": gamma, "noise_floor": noise_floor, "kappa": kappa, "sigma2": sigma2}
    return GradientModel("m2", params, s, v, sampler)


MODELS: dict[str, Callable[..., GradientModel]] = {"m1": m1, "m2": m2}
