"""The pass-rate table, per-problem weights, and the batch normaliser.

For every training problem the table holds c (successes) and n (rollouts) counted since the
problem's last refresh, and the step of its latest rollout. A refresh (K fresh rollouts of
the student) replaces the counts; the on-policy samples drawn for reverse KL are rollouts of
the current student too, so they are added to the counts between refreshes. The estimate is
p_hat = c / n. Each refresh also appends its counts to a history (one small int list per
refresh), from which pass rates over time can be plotted.

Weights come from paced_theory.kernels, never re-implemented here:
  paced    estimate_weight(c, n, alpha, beta, estimator, prior)
           = w(p) = p^alpha (1-p)^beta estimated from c of n ("plugin": w(c/n))
  hard     hard_band(c/n, lo, hi) = 1 if lo < p_hat < hi else 0
  uniform  uniform_kernel(p_hat) = 1
A problem not yet measured (n = 0) gets weight 1 under uniform and 0 otherwise.
Paper: w(p) = p^alpha (1-p)^beta with p from K = 8 student rollouts, default alpha = beta = 1,
so problems the student always or never solves get weight 0 (docs/theory.md §1). Ours: the
unbiased and posterior estimators (docs/theory.md §5) and counting on-policy samples as rollouts.
"""

from __future__ import annotations

import numpy as np

from paced_theory.errors import InputError
from paced_theory.kernels import estimate_weight, hard_band, uniform_kernel

METHODS = ("paced", "uniform", "hard")
NORMALISERS = ("sum", "mean", "none")


class PassRateTable:
    """Successes c, rollouts n and the step of the latest rollout, per problem id."""

    def __init__(self, ids: list[str]):
        self.ids = list(ids)
        self.index = {pid: i for i, pid in enumerate(self.ids)}
        if len(self.index) != len(self.ids):
            raise InputError("pass-rate table: problem ids must be unique")
        n = len(self.ids)
        self.c = np.zeros(n, dtype=np.int64)
        self.n = np.zeros(n, dtype=np.int64)
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
        idx, c = self._idx(ids), np.asarray(successes, dtype=np.int64)
        n = np.broadcast_to(np.asarray(rollouts, dtype=np.int64), idx.shape)
        if c.shape != idx.shape or (n < 1).any() or (c < 0).any() or (c > n).any():
            top = int(n.max()) if n.size else 0
            raise InputError(f"refresh: need one success count in [0, {top}] (the rollouts) "
                             f"per id, and rollouts >= 1")
        self.c[idx], self.n[idx], self.step[idx] = c, n, step
        self.history.append({"step": int(step), "idx": idx.tolist(), "c": c.tolist(),
                             "n": int(n[0]) if n.size and (n == n[0]).all() else n.tolist()})

    def add(self, ids, successes, step: int | None = None) -> None:
        """Count one more rollout per entry of ids (success 0/1), e.g. an on-policy sample
        drawn for reverse KL; a repeated id counts once per occurrence."""
        idx = self._idx(ids)
        np.add.at(self.c, idx, np.asarray(successes, dtype=np.int64))
        np.add.at(self.n, idx, 1)
        if step is not None:
            self.step[idx] = step

    def rates(self, ids=None) -> np.ndarray:
        """p_hat = c / n per problem (NaN where never measured)."""
        idx = slice(None) if ids is None else self._idx(ids)
        c, n = self.c[idx], self.n[idx]
        return np.where(n > 0, c / np.maximum(n, 1), np.nan)

    def shares(self, refresh: int | None = None) -> dict | None:
        """Shares of measured problems at p_hat = 0 ("zero"), strictly between ("frontier")
        and at 1 ("one"): now, or as measured by the refresh-th refresh (0: the first, the
        pool's composition at the start). None when nothing was measured."""
        if refresh is None:
            c, n = self.c[self.n > 0], self.n[self.n > 0]
        else:
            if refresh >= len(self.history):
                return None
            h = self.history[refresh]
            c, n = np.asarray(h["c"]), np.broadcast_to(np.asarray(h["n"]), len(h["c"]))
        if len(c) == 0:
            return None
        zero, one = float(np.mean(c == 0)), float(np.mean(c == n))
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
                "step": self.step.tolist(), "history": self.history}

    def load(self, state: dict) -> None:
        if list(state["ids"]) != self.ids:
            raise InputError("pass-rate table: the checkpoint's problems differ from this run's "
                             "(was data.* or run.seed changed before --resume?)")
        self.c, self.n, self.step = (np.asarray(state[k], dtype=np.int64)
                                     for k in ("c", "n", "step"))
        self.history = list(state.get("history", []))


def problem_weights(cfg_weights, table: PassRateTable, ids) -> np.ndarray:
    """Weights of `ids` under cfg_weights.method, from the table's counts (module docstring).

    Paper (paced, plugin): w = p_hat^alpha (1 - p_hat)^beta. Ours: the other estimators."""
    w = cfg_weights
    if w.method not in METHODS:
        raise InputError(f"weights.method {w.method!r}: choose one of {', '.join(METHODS)}")
    idx = table._idx(ids)
    c, n = table.c[idx], table.n[idx]
    out = np.zeros(len(idx))
    measured = n > 0
    p_hat = c[measured] / np.maximum(n[measured], 1)
    if w.method == "uniform":
        out[:] = 1.0
        out[measured] = uniform_kernel(p_hat)
    elif w.method == "hard":
        out[measured] = hard_band(p_hat, w.lo, w.hi)
    elif measured.any():
        out[measured] = estimate_weight(c[measured], n[measured], w.alpha, w.beta,
                                        estimator=w.estimator, prior=(w.prior_a, w.prior_b))
        if w.floor > 0:  # ours: hopeless problems keep a small weight (forward KL learns them)
            out[measured & (c == 0)] = np.maximum(out[measured & (c == 0)], w.floor)
    return out


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
