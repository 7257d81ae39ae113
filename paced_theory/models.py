"""Gradient-statistics models: s(p), v(p) and rho(p) = s^2/v derived in sympy, with vectorised
numeric twins, boundary exponents, implied Beta kernels and Monte Carlo samplers of
per-problem gradients (docs/theory.md §2, §4).

Conventions (Ours). A problem's gradient G is a random vector in R^dim; the skill direction is
u = e_1. s(p) = E[G . u] is the expected useful component, v(p) = tr Cov G its noise (trace of
the covariance, not the raw second moment E||G||^2 = v + s^2), rho(p) = s^2/v its SNR. The
optimal weight is
    w* = rho = s^2/v     ("allocation" criterion, the default; compute-allocation view), or
    w* = s/v             ("progress" criterion; Cauchy-Schwarz optimum of Q(w)),
and the boundary exponents of w* are
    a = lim_{p->0+} log w* / log p,        b = lim_{p->1-} log w* / log(1-p).
They are computed by sympy limits of the logarithmic derivatives p d/dp log w* and
-(1-p) d/dp log w*, which equal the limits above by L'Hopital's rule (|log p| -> infinity), and
are much faster for sympy than the quotient of logarithms. The implied Beta kernel is
p^a (1-p)^b (negative exponents clipped to 0, see GradientModel.implied_beta).

M1, on-policy outcome model (docs/theory.md §4.1; the finite-K derivations for the three
baselines are Ours). Logit z along u, p = sigmoid(z). K rollouts, r_j ~ Bernoulli(p) i.i.d.,
score along u l_j = r_j - p (d log p_r / dz), advantage A_j = Delta r_j + eps_j with eps_j
i.i.d. mean 0, Var eps = tau2, and zeta_j i.i.d. isotropic in all `dim` dimensions (including
u) with E||zeta||^2 = sigma2 (N(0, sigma2/dim I) in the sampler; s and v do not depend on how
zeta is split between u and its complement, only the split of v between the two does).
Rollout gradient (A_j - b_j)(l_j u + zeta_j); G = mean over the K rollouts. Baselines:
    true_mean      b = Delta p (deterministic);
    leave_one_out  b_j = mean over k != j of the baseline source;
    group_mean     b = mean over all K of the baseline source;
where the baseline source is Delta r_k ("reward", the default: the verifier's reward) or the
observed advantage A_k ("advantage": eps enters the baseline, as in GRPO-style averaging of a
noisy score). With q = p(1-p), f = K/(K-1) and D2 = Delta^2, exact at every integer K (derived
in sympy with symbolic K through the Binomial(K, p) moments E c^m = sum_k S2(m,k) K^(k) p^k;
cross-checked by enumeration of all 2^K outcomes in the tests):
    true_mean      s = Delta q
                   v = [D2 q((1-2p)^2 + sigma2) + tau2 (q + sigma2)] / K
                   rho = K D2 q^2 / (D2 q((1-2p)^2 + sigma2) + tau2 (q + sigma2))
                   (tau2 = 0: rho = K q / ((1-2p)^2 + sigma2), §4.1)
    leave_one_out  s = Delta q (unbiased)
       reward      v = [D2 q((1-2p)^2 + 2q/(K-1)) + f sigma2 D2 q + tau2 (q + sigma2)] / K
       advantage   v = [D2 q((1-2p)^2 + 2q/(K-1)) + f (sigma2 D2 q + tau2 (q + sigma2))] / K
    group_mean     s = Delta q (K-1)/K
       reward      v = [D2 q((1-2p)^2 + 2q/(K-1))/f^2 + sigma2 D2 q/f + tau2 (q + sigma2)] / K
       advantage   v = (leave_one_out advantage v) / f^2
The group-mean advantage equals (K-1)/K times the leave-one-out advantage only when eps enters
the baseline ("advantage") or tau2 = 0; with the "reward" source the eps_j term is not
shrunk, so group mean and leave-one-out then have different rho. The random baseline adds
D2 q * 2q/(K-1) to the per-rollout variance: the (1-2p)^2 term of the true-mean baseline,
which vanishes at p = 1/2, never vanishes for leave-one-out / group mean.

Exponents of M1 (the same for all baselines and baseline sources):
    case                     allocation rho    progress s/v
    sigma2 > 0, tau2 = 0     (1, 1)            (0, 0)
    sigma2 > 0, tau2 > 0     (2, 2)            (1, 1)
    sigma2 = 0, tau2 > 0     (1, 1)            (0, 0)
    sigma2 = 0, tau2 = 0     (1, 1)            (0, 0)
With tau2 > 0 and sigma2 > 0 the noise keeps a floor tau2 sigma2 / K at the boundaries while
s^2 ~ q^2. With sigma2 = 0 the tau2 noise is (q + 0) tau2, proportional to q like s, so the
exponents fall back to (1, 1). The progress criterion's exponents are one less than the
allocation ones here (s/v = rho/s and s ~ q): p(1-p) is allocation-optimal for tau2 = 0 and
progress-optimal for tau2, sigma2 > 0. Degeneracy: true_mean with sigma2 = tau2 = 0 has v = 0
at p = 1/2 (every rollout gradient equals Delta/4 u), so rho has a pole there
(rho = K q/(1-2p)^2); the random baselines remove it (v(1/2) = D2/(8K(K-1)) > 0 for
leave_one_out). At K = 1 the group mean cancels the reward signal (s = 0; leave-one-out is
undefined), so the random baselines
need K >= 2.

M2, teacher-forced forward KL with an engagement mechanism (Ours: the model, not the paper's).
    G = (1-p) [kappa p^gamma u + xi] + e,
xi isotropic with E||xi||^2 = sigma2 (the problem-specific incoherent part of the remaining
gap), e isotropic with E||e||^2 = noise_floor = nu (token-level sampling noise of the
teacher-forced references, e.g. nu0/L for L reference tokens). The coherent part scales with
engagement p^gamma (a problem the student cannot engage does not move the shared skill) and
with the gap (1-p). The floor does not vanish as p -> 1: the score of a sampled reference
y ~ teacher has mean grad KL -> 0 as the student matches the teacher, but covariance -> the
Fisher information, not 0. Then
    s = kappa p^gamma (1-p),   v = (1-p)^2 sigma2 + nu,
    rho = kappa^2 p^(2 gamma) (1-p)^2 / ((1-p)^2 sigma2 + nu),
    allocation exponents (2 gamma, 2) if nu > 0, (2 gamma, 0) if nu = 0;
    progress   exponents (gamma, 1)   if nu > 0, (gamma, -1) if nu = 0 (needs sigma2 > 0).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, cached_property

import numpy as np
import sympy as sp
from sympy.functions.combinatorial.numbers import stirling

from paced_theory.efficiency import CRITERIA
from paced_theory.errors import InputError

__all__ = [
    "P",
    "BASELINES",
    "BASELINE_SOURCES",
    "GradientModel",
    "boundary_exponents",
    "m1_symbolic",
    "m2_symbolic",
    "m1",
    "m2",
    "MODELS",
]

P = sp.Symbol("p", positive=True)
# Model parameters as symbols (positive so that sympy can decide limits; 0 is substituted).
K_SYM, SIGMA2, TAU2, DELTA = sp.symbols("K sigma2 tau2 Delta", positive=True)
GAMMA, NU, KAPPA = sp.symbols("gamma nu kappa", positive=True)

BASELINES = ("true_mean", "leave_one_out", "group_mean")
BASELINE_SOURCES = ("reward", "advantage")


# --------------------------------------------------------------------------- symbolic core
def _binomial_moment(m: int, K: sp.Expr, p: sp.Expr) -> sp.Expr:
    """E[c^m] for c ~ Binomial(K, p), symbolic K: sum_k Stirling2(m, k) K(K-1)..(K-k+1) p^k."""
    return sp.expand(sum(stirling(m, k) * sp.ff(K, k) * p**k for k in range(m + 1)))


def _binomial_expect(poly: sp.Expr, c: sp.Symbol, K: sp.Expr, p: sp.Expr) -> sp.Expr:
    """E over c ~ Binomial(K, p) of a polynomial in c."""
    terms = sp.Poly(sp.expand(poly), c).terms()
    return sp.expand(sum(coef * _binomial_moment(deg[0], K, p) for deg, coef in terms))


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"{name} must be one of {choices} (got {value!r})")


@cache
def m1_symbolic(baseline: str = "true_mean",
                baseline_of: str = "reward") -> tuple[sp.Expr, sp.Expr]:
    """(s, v) of M1 as sympy expressions in p and the symbols K, sigma2, tau2, Delta (K symbolic:
    the result is exact for every integer K >= 1 (true_mean) or K >= 2 (the others)).

    Ours. Every baseline gives an advantage of the form
        c_j = A_j - b_j = Delta a (l_j - h lbar) + e (eps_j - h' epsbar),
        true_mean: a = 1, h = 0, e = 1, h' = 0
        leave_one_out: a = K/(K-1), h = 1;  reward source e = 1, h' = 0;
                                            advantage source e = K/(K-1), h' = 1
        group_mean: a = 1, h = 1;           reward source e = 1, h' = 0; advantage e = 1, h' = 1
    (r_j - mean_{k!=j} r_k = K/(K-1) (l_j - lbar)). With c = sum_j r_j ~ Binomial(K, p),
    L1 = sum l_j = c - Kp, L2 = sum l_j^2 = c(1-2p) + K p^2 and X = L2 - h L1^2/K
    (= sum_j (l_j - h lbar)^2 = sum_j l_j (l_j - h lbar)):
        K (G minus its zeta part) . u = sum_j c_j l_j = Delta a X + sum_j eta_j l_j,
        eta_j = e (eps_j - h' epsbar),
        s = Delta a E[X] / K,
        K^2 E||G||^2 = Delta^2 a^2 E[X^2] + q e^2 tau2 (K - h')              (along u)
                     + sigma2 (Delta^2 a^2 E[X] + e^2 tau2 (K - h'))         (zeta part),
        v = E||G||^2 - s^2,
    using that eps, r and zeta are independent, E[l_j l_k] = q 1{j=k} and
    E sum_j (eps_j - h' epsbar)^2 = tau2 (K - h').
    """
    _check_choice("baseline", baseline, BASELINES)
    _check_choice("baseline_of", baseline_of, BASELINE_SOURCES)
    K, p = K_SYM, P
    q = p * (1 - p)
    f = K / (K - 1)
    if baseline == "true_mean":
        a, h, e, hp = 1, 0, 1, 0
    elif baseline == "leave_one_out":
        a, h = f, 1
        e, hp = (1, 0) if baseline_of == "reward" else (f, 1)
    else:
        a, h = 1, 1
        e, hp = (1, 0) if baseline_of == "reward" else (1, 1)
    c = sp.Symbol("c")
    L1 = c - K * p
    L2 = c * (1 - 2 * p) + K * p**2
    X = L2 - h * L1**2 / K
    EX = _binomial_expect(X, c, K, p)
    EX2 = _binomial_expect(X**2, c, K, p)
    s = DELTA * a * EX / K
    second = (DELTA**2 * a**2 * EX2 + q * e**2 * TAU2 * (K - hp)
              + SIGMA2 * (DELTA**2 * a**2 * EX + e**2 * TAU2 * (K - hp))) / K**2
    v = second - s**2
    return sp.factor(s), sp.factor(v)


def m2_symbolic() -> tuple[sp.Expr, sp.Expr]:
    """(s, v) of M2 in p and the symbols gamma, kappa, sigma2, nu (Ours):
    s = kappa p^gamma (1-p), v = (1-p)^2 sigma2 + nu."""
    return KAPPA * P**GAMMA * (1 - P), (1 - P) ** 2 * SIGMA2 + NU


def _optimal_weight(s: sp.Expr, v: sp.Expr, criterion: str) -> sp.Expr:
    _check_choice("criterion", criterion, CRITERIA)
    return s**2 / v if criterion == "allocation" else s / v


def _limit_exponent(s: sp.Expr, v: sp.Expr, k: int, at: int) -> sp.Expr:
    """lim log w / log t of w = s^k / v (t = p at 0+, t = 1-p at 1-), computed as the limit of
    the logarithmic derivative t d/dt log w = t d/dt (k log s - log v) (L'Hopital: |log t| ->
    infinity; the derivative is a rational function in p and p^gamma, easy for sympy).
    Falls back to the defining quotient of logarithms if that limit is not finite."""
    dlog = k * sp.diff(s, P) / s - sp.diff(v, P) / v
    t, direction, factor = (P, "+", P) if at == 0 else (1 - P, "-", -(1 - P))
    try:
        lim = sp.limit(sp.cancel(sp.together(factor * dlog)), P, at, direction)
    except (NotImplementedError, ValueError):  # pragma: no cover - sympy gave up
        lim = sp.nan
    if not lim.is_finite:
        lim = sp.limit(sp.log(s**k / v) / sp.log(t), P, at, direction)
    return sp.simplify(lim)


def boundary_exponents(s: sp.Expr, v: sp.Expr,
                       criterion: str = "allocation") -> tuple[sp.Expr, sp.Expr]:
    """(a, b) = (lim_{p->0+} log w*/log p, lim_{p->1-} log w*/log(1-p)) of w* = s^2/v
    ("allocation") or s/v ("progress") by sympy limits; s and v may contain symbolic
    parameters (declared positive), e.g. m2_symbolic() gives (2 gamma, 2). Ours.

    Raises ArithmeticError if a limit is not a finite number (e.g. w* = 0 identically)."""
    _check_choice("criterion", criterion, CRITERIA)
    k = 2 if criterion == "allocation" else 1
    out = tuple(_limit_exponent(s, v, k, at) for at in (0, 1))
    for x in out:
        if x.has(sp.oo, -sp.oo, sp.zoo, sp.nan) or x.is_finite is False:
            raise ArithmeticError(f"boundary exponent of s^{k}/v is not finite ({x}); "
                                  f"s = {s}, v = {v}")
    return out  # type: ignore[return-value]


# Readable closed forms of M1 (text; q = p*(1 - p)). The tests parse them and check that they
# equal m1_symbolic's derivation exactly, so the text cannot drift from the derivation.
_T = "tau2*(q + sigma2)"
_RB = "Delta**2*q*((1 - 2*p)**2 + 2*q/(K - 1))"
M1_CLOSED_FORMS: dict[tuple[str, str], tuple[str, str]] = {
    ("true_mean", "reward"): ("Delta*q", f"(Delta**2*q*((1 - 2*p)**2 + sigma2) + {_T})/K"),
    ("leave_one_out", "reward"): (
        "Delta*q", f"({_RB} + K/(K - 1)*sigma2*Delta**2*q + {_T})/K"),
    ("leave_one_out", "advantage"): (
        "Delta*q", f"({_RB} + K/(K - 1)*(sigma2*Delta**2*q + {_T}))/K"),
    ("group_mean", "reward"): (
        "(K - 1)/K*Delta*q",
        f"(((K - 1)/K)**2*{_RB} + (K - 1)/K*sigma2*Delta**2*q + {_T})/K"),
    ("group_mean", "advantage"): (
        "(K - 1)/K*Delta*q", f"((K - 1)/K)**2*({_RB} + K/(K - 1)*(sigma2*Delta**2*q + {_T}))/K"),
}
M1_CLOSED_FORMS[("true_mean", "advantage")] = M1_CLOSED_FORMS[("true_mean", "reward")]


def _text_in_q(expr: sp.Expr) -> str | None:
    """A rational function of p symmetric under p <-> 1-p as text in q = p(1-p), or None.

    A symmetric polynomial f(p) is a polynomial g(q); g(q) = f((1 - sqrt(1-4q))/2), and the
    odd powers of the square root cancel exactly when f is symmetric."""
    q = sp.Symbol("q", positive=True)
    root = sp.sqrt(1 - 4 * q)
    num, den = sp.fraction(sp.cancel(expr))
    parts = []
    for f in (num, den):
        g = sp.expand(f.subs(P, (1 - root) / 2))
        if g.has(root):
            return None
        parts.append(sp.factor(g))
    num, den = parts
    if num.could_extract_minus_sign():
        num, den = -num, -den
    return f"{sp.sstr(num / den)}, q = p*(1 - p)"


# --------------------------------------------------------------------------- the model class
class GradientModel:
    """A gradient-statistics model of a problem's gradient as a function of its pass rate p.

    Attributes: `name`, `params` (dict), sympy `p` (the symbol), `s_expr`, `v_expr`,
    `rho_expr` = s^2/v (parameters substituted, rational numbers), `general` (dict of the
    expressions with symbolic parameters, when the model has them). Numeric twins `s(p)`,
    `v(p)`, `rho(p)`, `optimal_weight(p, criterion)` take array-like p and return float arrays
    of the same shape (lambdified; removable singularities at p in {0, 1} cancelled
    symbolically, a genuine pole, e.g. M1 true_mean at p = 1/2 with sigma2 = tau2 = 0, gives
    inf). `sample_gradients(p, n, rng, dim)` draws per-problem gradients with u = e_1.
    """

    def __init__(self, name: str, params: dict, s_expr: sp.Expr, v_expr: sp.Expr,
                 sampler: Callable[[float, int, np.random.Generator, int], np.ndarray], *,
                 general: dict | None = None,
                 texts: dict[str, Callable[[], str]] | None = None) -> None:
        self.name = name
        self.params = dict(params)
        self.p = P
        self.s_expr = s_expr
        self.v_expr = v_expr
        self.general = dict(general or {})
        self._texts = dict(texts or {})
        self._sampler = sampler
        self._num: dict = {}  # lambdified twins and cached sympy forms, filled on first use
        self._exponents: dict[str, tuple[sp.Expr, sp.Expr]] = {}

    @cached_property
    def rho_expr(self) -> sp.Expr:
        """rho = s^2/v in p, common factors cancelled (sympy)."""
        return self.optimal_weight_expr("allocation")

    def __repr__(self) -> str:
        return f"GradientModel({self.name!r}, {self.params})"

    def _eval(self, key: str, p) -> np.ndarray:
        if key not in self._num:  # lambdify on first use (model construction stays cheap)
            expr = {"s": self.s_expr, "v": self.v_expr, "rho": self.rho_expr,
                    "progress": self.optimal_weight_expr("progress")}[key]
            self._num[key] = sp.lambdify(P, expr, "numpy")
        p = np.asarray(p, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.asarray(self._num[key](p), dtype=float)
        return np.broadcast_to(out, p.shape).copy()

    def s(self, p) -> np.ndarray:
        """Expected useful gradient component E[G . u] at pass rate(s) p."""
        return self._eval("s", p)

    def v(self, p) -> np.ndarray:
        """Trace of the covariance of the per-problem gradient at pass rate(s) p."""
        return self._eval("v", p)

    def rho(self, p) -> np.ndarray:
        """SNR rho = s^2 / v (the allocation-optimal weight) at pass rate(s) p."""
        return self._eval("rho", p)

    def optimal_weight(self, p, criterion: str = "allocation") -> np.ndarray:
        """w*(p): rho = s^2/v ("allocation") or s/v ("progress"). Ours (docs/theory.md §2)."""
        _check_choice("criterion", criterion, CRITERIA)
        return self._eval("rho" if criterion == "allocation" else "progress", p)

    def optimal_weight_expr(self, criterion: str = "allocation") -> sp.Expr:
        """w* as a sympy expression in p: s^2/v or s/v, common factors cancelled (cached)."""
        key = ("w", criterion)
        if key not in self._num:
            w = _optimal_weight(self.s_expr, self.v_expr, criterion)
            self._num[key] = sp.factor(sp.cancel(w))
        return self._num[key]

    def exponents_exact(self, criterion: str = "allocation") -> tuple[sp.Expr, sp.Expr]:
        """Boundary exponents of w* as sympy numbers (cached); see boundary_exponents."""
        _check_choice("criterion", criterion, CRITERIA)
        if criterion not in self._exponents:
            self._exponents[criterion] = boundary_exponents(self.s_expr, self.v_expr, criterion)
        return self._exponents[criterion]

    def exponents(self, criterion: str = "allocation") -> tuple[float, float]:
        """(a, b) = (lim_{p->0+} log w*/log p, lim_{p->1-} log w*/log(1-p)), w* = rho
        ("allocation", default) or s/v ("progress"), by sympy limits. Ours."""
        a, b = self.exponents_exact(criterion)
        return float(a), float(b)

    def implied_beta(self, criterion: str = "allocation") -> tuple[float, float]:
        """(alpha, beta) of the Beta kernel p^alpha (1-p)^beta with the boundary behaviour of
        w*: the exponents, with negative ones clipped to 0 (a Beta weight in kernels.py has
        alpha, beta >= 0 and cannot follow a w* that grows without bound at a boundary,
        e.g. M2's progress weight with nu = 0). Ours."""
        a, b = self.exponents(criterion)
        return max(a, 0.0), max(b, 0.0)

    def rho_text(self, symbolic: bool = False) -> str:
        """rho(p) = s^2/v as text: with this model's numbers substituted (M1: in q = p(1-p)),
        or (symbolic=True) the closed form in the model's symbolic parameters."""
        key = "rho_symbolic" if symbolic else "rho"
        text = self._texts[key]() if key in self._texts else None
        if text is not None:
            return text
        return sp.sstr(self.general["rho"] if symbolic and "rho" in self.general
                       else self.rho_expr)

    def sample_gradients(self, p: float, n: int, rng: np.random.Generator,
                         dim: int = 8) -> np.ndarray:
        """n independent per-problem gradients at pass rate p, shape (n, dim); u = e_1.
        E[G[:, 0]] = s(p) and tr Cov G = v(p); the other coordinates have mean 0."""
        if not isinstance(rng, np.random.Generator):
            raise InputError("sample_gradients: rng must be a numpy Generator "
                             "(np.random.default_rng(seed))")
        if not (np.isfinite(p) and 0.0 <= p <= 1.0):
            raise InputError(f"sample_gradients: p must be in [0, 1] (got {p})")
        for k, x in (("n", n), ("dim", dim)):
            if int(x) != x or x < 1:
                raise InputError(f"sample_gradients: {k} must be an integer >= 1 (got {x})")
        return self._sampler(float(p), int(n), rng, int(dim))


def _exact(x: float) -> sp.Rational:
    """A float as the exact rational of its shortest decimal representation (0.1 -> 1/10)."""
    return sp.Rational(repr(float(x)))


# Parameters enter sympy as exact rationals; beyond this range their powers would overflow a
# float in the lambdified numeric twins (and such scales are meaningless for these models).
_SCALE = (1e-8, 1e8)


def _check_nonneg(where: str, **kw: float) -> None:
    lo, hi = _SCALE
    for k, val in kw.items():
        if (isinstance(val, bool) or not isinstance(val, int | float | np.integer | np.floating)
                or not np.isfinite(val) or val < 0 or (val != 0 and not lo <= val <= hi)):
            raise InputError(f"{where}: {k} must be 0 or a number in [{lo:g}, {hi:g}] "
                             f"(got {val!r})")


def _check_pos(where: str, **kw: float) -> None:
    _check_nonneg(where, **kw)
    for k, val in kw.items():
        if val == 0:
            raise InputError(f"{where}: {k} must be > 0 (got {val!r})")


# --------------------------------------------------------------------------- M1
def m1(K: int = 8, sigma2: float = 1.0, tau2: float = 0.0, Delta: float = 1.0,
       baseline: str = "true_mean", baseline_of: str = "reward") -> GradientModel:
    """M1, the on-policy outcome model (reverse KL / self-distillation), docs/theory.md §4.1.

    Per-rollout gradient (A_j - b_j)(l_j u + zeta_j), A_j = Delta r_j + eps_j, r_j ~ Bern(p),
    l_j = r_j - p, Var eps = tau2, E||zeta||^2 = sigma2 (isotropic in all dim dimensions);
    per-problem gradient = mean over the K rollouts. baseline: "true_mean" (b = Delta p),
    "leave_one_out" (mean of the other K-1 sources), "group_mean" (mean of all K sources);
    baseline_of: "reward" (source Delta r_k, default) or "advantage" (source A_k).
    Closed forms of s, v, rho and the exponent table: module docstring. With b = Delta p,
    tau2 = 0: rho = K p(1-p)/((1-2p)^2 + sigma2) and exponents (1, 1) (Paper's default kernel
    p(1-p)); tau2, sigma2 > 0: (2, 2). Finite-K baselines, sigma2 = 0 cases: Ours.
    sigma2, tau2 are 0 or in [1e-8, 1e8], Delta in [1e-8, 1e8], K in [1, 1e6] (K >= 2 for the
    random baselines).
    """
    if isinstance(K, bool) or not isinstance(K, int | np.integer) or not 1 <= K <= 10**6:
        raise InputError(f"m1: K must be an integer in [1, 1e6] (got {K!r})")
    _check_choice("m1: baseline", baseline, BASELINES)
    _check_choice("m1: baseline_of", baseline_of, BASELINE_SOURCES)
    if baseline != "true_mean" and K < 2:
        raise InputError(f"m1: the {baseline} baseline needs K >= 2 rollouts (got K={K})")
    _check_nonneg("m1", sigma2=sigma2, tau2=tau2)
    _check_pos("m1", Delta=Delta)
    K = int(K)
    sigma2, tau2, Delta = float(sigma2), float(tau2), float(Delta)
    s_gen, v_gen = m1_symbolic(baseline, baseline_of)
    subs = {K_SYM: K, SIGMA2: _exact(sigma2), TAU2: _exact(tau2), DELTA: _exact(Delta)}
    s = s_gen.subs(subs)
    v = sp.factor(v_gen.subs(subs))
    general = {"s": s_gen, "v": v_gen, "rho": s_gen**2 / v_gen}
    s_text, v_text = M1_CLOSED_FORMS[(baseline, baseline_of)]
    texts = {"rho_symbolic": lambda: f"s**2/v, s = {s_text}, v = {v_text}, q = p*(1 - p)",
             "rho": lambda: _text_in_q(s**2 / v)}

    def sampler(p: float, n: int, rng: np.random.Generator, dim: int) -> np.ndarray:
        # Straight from the definitions (not from the reduced formulas): rewards, advantages,
        # baselines, then G = (1/K) sum_j c_j (l_j u + zeta_j).
        r = (rng.random((n, K)) < p).astype(float)
        adv = Delta * r + np.sqrt(tau2) * rng.standard_normal((n, K))
        source = Delta * r if baseline_of == "reward" else adv
        if baseline == "true_mean":
            b = Delta * p
        elif baseline == "leave_one_out":
            b = (source.sum(axis=1, keepdims=True) - source) / (K - 1)
        else:
            b = source.mean(axis=1, keepdims=True)
        c = adv - b
        # sum_j c_j zeta_j with zeta_j ~ N(0, sigma2/dim I) i.i.d. is, given c, exactly
        # N(0, sigma2/dim * sum_j c_j^2 I): draw it directly (O(n dim), not O(n K dim)).
        scale = np.sqrt(sigma2 / dim * (c**2).sum(axis=1)) / K
        g = scale[:, None] * rng.standard_normal((n, dim))
        g[:, 0] += (c * (r - p)).mean(axis=1)
        return g

    params = {"K": K, "sigma2": sigma2, "tau2": tau2, "Delta": Delta, "baseline": baseline,
              "baseline_of": baseline_of}
    return GradientModel("m1", params, s, v, sampler, general=general, texts=texts)


# --------------------------------------------------------------------------- M2
def m2(gamma: float = 1.0, noise_floor: float = 0.1, kappa: float = 1.0,
       sigma2: float = 1.0) -> GradientModel:
    """M2, teacher-forced forward KL with engagement p^gamma (Ours: the model and its results).

    G = (1-p)[kappa p^gamma u + xi] + e, E||xi||^2 = sigma2, E||e||^2 = noise_floor (nu):
    s = kappa p^gamma (1-p), v = (1-p)^2 sigma2 + nu,
    rho = kappa^2 p^(2 gamma) (1-p)^2 / ((1-p)^2 sigma2 + nu);
    allocation exponents (2 gamma, 2) for nu > 0, (2 gamma, 0) for nu = 0;
    progress exponents (gamma, 1) for nu > 0, (gamma, -1) for nu = 0. Needs sigma2 + nu > 0;
    each parameter is 0 or in [1e-8, 1e8] (kappa > 0, gamma <= 50).
    """
    _check_nonneg("m2", noise_floor=noise_floor, sigma2=sigma2)
    _check_pos("m2", kappa=kappa)
    _check_nonneg("m2", gamma=gamma)
    if gamma > 50:
        raise InputError(f"m2: gamma must be at most 50 (got {gamma!r})")
    if sigma2 == 0 and noise_floor == 0:
        raise InputError("m2: sigma2 and noise_floor are both 0, so v = 0 and rho is "
                         "undefined; give one of them a positive value")
    gamma, noise_floor, kappa, sigma2 = map(float, (gamma, noise_floor, kappa, sigma2))
    s_gen, v_gen = m2_symbolic()
    subs = {GAMMA: _exact(gamma), NU: _exact(noise_floor), KAPPA: _exact(kappa),
            SIGMA2: _exact(sigma2)}
    s, v = s_gen.subs(subs), v_gen.subs(subs)
    general = {"s": s_gen, "v": v_gen, "rho": s_gen**2 / v_gen}
    texts = {"rho": lambda: sp.sstr(s**2 / v), "rho_symbolic": lambda: sp.sstr(s_gen**2 / v_gen)}

    def sampler(p: float, n: int, rng: np.random.Generator, dim: int) -> np.ndarray:
        xi = np.sqrt(sigma2 / dim) * rng.standard_normal((n, dim))
        e = np.sqrt(noise_floor / dim) * rng.standard_normal((n, dim))
        g = (1.0 - p) * xi + e
        g[:, 0] += (1.0 - p) * kappa * p**gamma
        return g

    params = {"gamma": gamma, "noise_floor": noise_floor, "kappa": kappa, "sigma2": sigma2}
    return GradientModel("m2", params, s, v, sampler, general=general, texts=texts)


MODELS: dict[str, Callable[..., GradientModel]] = {"m1": m1, "m2": m2}
