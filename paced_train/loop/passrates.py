"""The pass-rate table, per-problem weights, and the batch normaliser.

For every training problem the table holds c (successes) and n (rollouts) of its latest
measurement, and the step it was measured at (the number of optimizer updates the measured
student had had). A refresh (K fresh rollouts of the student, or Binomial(K, P) drawn from
the likelihood P of the canonical answer: likelihood.py) replaces the counts. The estimate is
p_hat = c / n. With rollouts.source = "likelihood" and rollouts.likelihood = "exact" an entry
holds the exact pass probability P instead (a float, `p`; c = n = 0), and p_hat = P.

On-policy samples (reverse KL) are rollouts of the current student too, so add() counts them
in a window of the latest K outcomes (ours): when the window is full, the oldest outcome is
evicted first (the measurement's outcomes are exchangeable, so one of them is a success with
probability c' / n' of what is left of it, drawn from a seeded stream; once they are gone,
the oldest added one), so K failures in a row take a kept problem to p_hat = 0 and K
successes to 1. (Counting them on top of
the refresh's counts, as before, could never move a problem with 0 < c < n to 0 or 1.) An
add does not move the stamp: an entry's age is that of its last full measurement, an upper
bound on the age of its oldest outcome. Each refresh also appends its counts to a history
(one small list per refresh), from which pass rates over time can be plotted.

Weights come from paced_theory.kernels, never re-implemented here:
  paced    estimate_weight(c, n, alpha, beta, estimator, prior)
           = w(p) = p^alpha (1-p)^beta estimated from c of n ("plugin": w(c/n));
           an exact entry: beta_kernel(P) = w(P), the weight itself (no estimator needed)
  hard     hard_band(p_hat, lo, hi) = 1 if lo < p_hat < hi else 0
  uniform  uniform_kernel(p_hat) = 1
  lp, rholoss, maxloss  1: a value criterion (value.py) chooses the batch instead; it
           reads no pass rate (reads_pass_rates), so no refresh is paid for
A problem not yet measured gets weight 1 under uniform and the value criteria, 0 otherwise.
Paper: w(p) = p^alpha (1-p)^beta with p from K = 8 student rollouts, default alpha = beta = 1,
so problems the student always or never solves get weight 0 (docs/theory.md §1). Ours: the
unbiased and posterior estimators (docs/theory.md §5), the window of on-policy outcomes, and
exact pass probabilities (under which almost no problem has weight exactly 0).
"""

from __future__ import annotations

import numpy as np

from paced_theory.errors import InputError
from paced_theory.kernels import beta_kernel, estimate_weight, hard_band, uniform_kernel

PASS_RATE_METHODS = ("paced", "hard")
"""The weightings that read the pass-rate table (the only ones that pay for refreshes)."""
VALUE_METHODS = ("lp", "rholoss", "maxloss")
"""Value criteria (loop/value.py): they choose which problems a step trains on, weight 1."""
METHODS = ("paced", "uniform", "hard", *VALUE_METHODS)
NORMALISERS = ("sum", "mean", "none")


class PassRateTable:
    """Successes c, rollouts n (or an exact pass probability p) and the step of the latest
    measurement, per problem id."""

    def __init__(self, ids: list[str]):
        self.ids = list(ids)
        self.index = {pid: i for i, pid in enumerate(self.ids)}
        if len(self.index) != len(self.ids):
            raise InputError("pass-rate table: problem ids must be unique")
        n = len(self.ids)
        self.c = np.zeros(n, dtype=np.int64)
        self.n = np.zeros(n, dtype=np.int64)
        self.p = np.full(n, np.nan)                  # exact pass probability, else NaN
        self.recent: dict[int, list[int]] = {}        # outcomes added since, oldest first
        self.step = np.full(n, -1, dtype=np.int64)  # -1: never measured
        self.history: list[dict] = []               # one entry per refresh

    def _idx(self, ids) -> np.ndarray:
        try:
            return np.array([self.index[i] for i in ids], dtype=np.int64)
        except KeyError as exc:
            raise InputError(f"pass-rate table: unknown problem id {exc.args[0]!r}") from None

    def refresh(self, ids, successes, rollouts, step: int) -> None:
        """Replace the counts of `ids` with c = successes out of n = rollouts fresh samples
        (one number for all, or one per id)."""
        self.measure(ids, successes, rollouts, step, history=True)

    def measure(self, ids, successes, rollouts, step: int, history: bool = False) -> None:
        """Replace the counts of `ids` (as refresh, which also records the history; a free
        read of a few problems during a step does not)."""
        idx, c = self._idx(ids), np.asarray(successes, dtype=np.int64)
        n = np.broadcast_to(np.asarray(rollouts, dtype=np.int64), idx.shape)
        if c.shape != idx.shape or (n < 1).any() or (c < 0).any() or (c > n).any():
            top = int(n.max()) if n.size else 0
            raise InputError(f"refresh: need one success count in [0, {top}] (the rollouts) "
                             f"per id, and rollouts >= 1")
        self.c[idx], self.n[idx], self.step[idx], self.p[idx] = c, n, step, np.nan
        for i in idx.tolist():
            self.recent.pop(i, None)
        if history:
            self.history.append({"step": int(step), "idx": idx.tolist(), "c": c.tolist(),
                                 "n": int(n[0]) if n.size and (n == n[0]).all() else n.tolist()})

    def set_exact(self, ids, probs, step: int, history: bool = False) -> None:
        """Exact pass probabilities P of `ids` (likelihood.py, rollouts.likelihood = "exact"):
        p_hat = P, counts cleared."""
        idx, p = self._idx(ids), np.asarray(probs, dtype=float)
        if p.shape != idx.shape or not ((p >= 0) & (p <= 1)).all():
            raise InputError("set_exact: need one probability in [0, 1] per id")
        self.p[idx], self.c[idx], self.n[idx], self.step[idx] = p, 0, 0, step
        for i in idx.tolist():
            self.recent.pop(i, None)
        if history:
            self.history.append({"step": int(step), "idx": idx.tolist(), "p": p.tolist()})

    def add(self, ids, successes, window: int = 0,
            rng: np.random.Generator | None = None) -> None:
        """Count one more rollout per entry of ids (success 0/1), e.g. an on-policy sample
        drawn for reverse KL; a repeated id counts once per occurrence, in order.
        window = 0: the counts accumulate. window = W > 0: an entry holds at most W outcomes;
        a full one first evicts its oldest (module docstring), so p_hat can reach 0 or 1.
        Exact entries are left alone (their P is exact already). The stamp does not move."""
        idx, ok = self._idx(ids), np.asarray(successes, dtype=np.int64)
        if window > 0 and rng is None:
            raise ValueError("add: a window needs rng (the eviction draws)")
        for i, x in zip(idx.tolist(), ok.tolist()):
            if not np.isnan(self.p[i]):
                continue
            new = self.recent.setdefault(i, []) if window > 0 else []
            if window > 0 and self.n[i] >= window:
                left_n = self.n[i] - len(new)  # the measurement's outcomes still held
                if left_n > 0:
                    left_c = self.c[i] - sum(new)
                    self.c[i] -= int(rng.random() * left_n < left_c)
                else:
                    self.c[i] -= new.pop(0)
                self.n[i] -= 1
            new.append(int(x))
            self.c[i] += int(x)
            self.n[i] += 1

    def ages(self, step: int, ids=None) -> np.ndarray:
        """Optimizer updates between each entry's measurement and a student that has had
        `step` of them (step - stamp; step + 1 where never measured)."""
        idx = slice(None) if ids is None else self._idx(ids)
        return step - self.step[idx]

    def rates(self, ids=None) -> np.ndarray:
        """p_hat = c / n per problem, or the exact P (NaN where never measured)."""
        idx = slice(None) if ids is None else self._idx(ids)
        c, n, p = self.c[idx], self.n[idx], self.p[idx]
        return np.where(~np.isnan(p), p, np.where(n > 0, c / np.maximum(n, 1), np.nan))

    def shares(self, refresh: int | None = None, K: int = 8) -> dict | None:
        """Shares of measured problems at p_hat = 0 ("zero"), strictly between ("frontier")
        and at 1 ("one"): now, or as measured by the refresh-th refresh (0: the first, the
        pool's composition at the start). None when nothing was measured. An exact P counts
        by what K rollouts would give in expectation: (1 - P)^K to zero, P^K to one (so
        the shares mean what they meant when pass rates were K rollouts)."""
        if refresh is None:
            r = self.rates()
            r, exact = r[~np.isnan(r)], bool((~np.isnan(self.p)).any())
        else:
            if refresh >= len(self.history):
                return None
            h = self.history[refresh]
            exact = "p" in h
            if exact:
                r = np.asarray(h["p"], dtype=float)
            else:
                c = np.asarray(h["c"])
                r = c / np.broadcast_to(np.asarray(h["n"]), len(c))
        if len(r) == 0:
            return None
        if exact:
            zero, one = float(np.mean((1 - r) ** K)), float(np.mean(r ** K))
        else:
            zero, one = float(np.mean(r == 0)), float(np.mean(r == 1))
        return {"zero": zero, "frontier": 1.0 - zero - one, "one": one}

    def histogram(self, bins: int = 4) -> str:
        """Pass rates at a glance, for the progress bar: '0:N0 [a b c d] 1:N1' = the number
        of problems never solved, counts in `bins` equal bins of (0, 1), always solved."""
        r = self.rates()
        r = r[~np.isnan(r)]
        if r.size == 0:
            return "-"
        inner = r[(r > 0) & (r < 1)]
        counts = np.histogram(inner, bins=bins, range=(0.0, 1.0))[0]
        return (f"0:{int((r == 0).sum())} [{' '.join(str(int(x)) for x in counts)}] "
                f"1:{int((r == 1).sum())}")

    def state(self) -> dict:
        return {"ids": self.ids, "c": self.c.tolist(), "n": self.n.tolist(),
                "p": [None if np.isnan(x) else float(x) for x in self.p],
                "recent": {str(i): v for i, v in self.recent.items()},
                "step": self.step.tolist(), "history": self.history}

    def load(self, state: dict) -> None:
        if list(state["ids"]) != self.ids:
            raise InputError("pass-rate table: the checkpoint's problems differ from this run's "
                             "(was data.* or run.seed changed before --resume?)")
        self.c, self.n, self.step = (np.asarray(state[k], dtype=np.int64)
                                     for k in ("c", "n", "step"))
        p = state.get("p")  # checkpoints that predate exact entries have none
        self.p = (np.full(len(self.ids), np.nan) if p is None else
                  np.array([np.nan if x is None else x for x in p], dtype=float))
        self.recent = {int(i): list(v) for i, v in state.get("recent", {}).items()}
        self.history = list(state.get("history", []))


def problem_weights(cfg_weights, table: PassRateTable, ids) -> np.ndarray:
    """Weights of `ids` under cfg_weights.method, from the table's counts (module docstring).

    Paper (paced, plugin): w = p_hat^alpha (1 - p_hat)^beta. Ours: the other estimators, and
    w(P) for an exact pass probability (estimator and floor apply to counts only)."""
    w = cfg_weights
    if w.method not in METHODS:
        raise InputError(f"weights.method {w.method!r}: choose one of {', '.join(METHODS)}")
    idx = table._idx(ids)
    c, n, p = table.c[idx], table.n[idx], table.p[idx]
    out = np.zeros(len(idx))
    exact = ~np.isnan(p)
    counted = (n > 0) & ~exact
    measured = counted | exact
    p_hat = table.rates(ids)[measured]
    if w.method in VALUE_METHODS:
        out[:] = 1.0
    elif w.method == "uniform":
        out[:] = 1.0
        out[measured] = uniform_kernel(p_hat)
    elif w.method == "hard":
        out[measured] = hard_band(p_hat, w.lo, w.hi)
    else:
        if counted.any():
            out[counted] = estimate_weight(c[counted], n[counted], w.alpha, w.beta,
                                           estimator=w.estimator, prior=(w.prior_a, w.prior_b))
        if w.floor > 0:  # ours: hopeless problems keep a small weight (forward KL learns them)
            out[counted & (c == 0)] = np.maximum(out[counted & (c == 0)], w.floor)
        if exact.any():
            out[exact] = beta_kernel(p[exact], w.alpha, w.beta)
    return out


def reads_pass_rates(method: str) -> bool:
    """Whether weights.method reads the pass-rate table: uniform and the value criteria do
    not, so refreshes (rollouts.refresh_rows), likelihood reads and pass-rate ages skip them
    (equal-compute comparisons charge every refresh)."""
    return method in PASS_RATE_METHODS


def normaliser(weights: np.ndarray, mode: str, batch_size: int) -> float:
    """The divisor of sum_i w_i L_i over the kept problems of a step.

    sum:  sum_i w_i          (a weighted mean of the kept problems' losses)
    mean: batch_size         (B candidates, dropped ones included, so dropping a problem
                              does not raise the others' effective learning rate)
    none: 1
    Ours: the option names; the paper does not state its normalisation."""
    if mode == "sum":
        return float(max(float(np.sum(weights)), 1e-12))
    if mode == "mean":
        return float(batch_size)
    if mode == "none":
        return 1.0
    raise InputError(f"weights.normalise {mode!r}: choose one of {', '.join(NORMALISERS)}")
