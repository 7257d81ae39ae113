"""Pass-rate bookkeeping, PACED weights and the compute ledger.

The table keeps, per problem id, the successes c and rollouts n counted since the problem's
last refresh and the step at which that refresh happened. Weights come from
paced_theory.kernels (never re-implemented here):
  paced    estimate_weight(c, n, alpha, beta, estimator, prior)   (plug-in by default)
  hard     1 if lo < c/n < hi else 0
  uniform  1
Problems never measured get weight 1 under uniform and are skipped otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from paced_theory.kernels import estimate_weight, hard_band


class PassRateTable:
    def __init__(self, ids: list[str]):
        self.ids = list(ids)
        self.index = {pid: i for i, pid in enumerate(self.ids)}
        n = len(self.ids)
        self.c = np.zeros(n, dtype=np.int64)
        self.n = np.zeros(n, dtype=np.int64)
        self.step = np.full(n, -1, dtype=np.int64)

    def refresh(self, ids, successes, rollouts: int, step: int) -> None:
        """New estimates from `rollouts` fresh samples each: replaces the old counts."""
        idx = np.array([self.index[i] for i in ids], dtype=np.int64)
        self.c[idx] = np.asarray(successes, dtype=np.int64)
        self.n[idx] = rollouts
        self.step[idx] = step

    def add(self, ids, successes) -> None:
        """On-policy samples (one per id, success 0/1) drawn for reverse KL also count."""
        for pid, ok in zip(ids, successes):
            i = self.index[pid]
            self.c[i] += int(ok)
            self.n[i] += 1

    def rates(self, ids=None) -> np.ndarray:
        idx = slice(None) if ids is None else [self.index[i] for i in ids]
        n = self.n[idx]
        return np.where(n > 0, self.c[idx] / np.maximum(n, 1), np.nan)

    def histogram(self, bins: int = 5) -> str:
        """Compact pass-rate histogram for the progress bar: counts at 0, bins of (0,1), 1."""
        r = self.rates()
        r = r[~np.isnan(r)]
        if r.size == 0:
            return "-"
        inner = r[(r > 0) & (r < 1)]
        counts = np.histogram(inner, bins=bins, range=(0, 1))[0] if inner.size else [0] * bins
        return f"0:{int((r == 0).sum())}|" + ",".join(str(int(x)) for x in counts) + \
            f"|1:{int((r == 1).sum())}"

    def state(self) -> dict:
        return {"ids": self.ids, "c": self.c.tolist(), "n": self.n.tolist(),
                "step": self.step.tolist()}

    def load(self, state: dict) -> None:
        if state["ids"] != self.ids:
            raise ValueError("pass-rate table belongs to a different problem set")
        self.c, self.n, self.step = (np.asarray(state[k], dtype=np.int64)
                                     for k in ("c", "n", "step"))


def problem_weights(cfg_weights, table: PassRateTable, ids) -> np.ndarray:
    """Per-problem weights for `ids` under the configured method (see module docstring)."""
    idx = [table.index[i] for i in ids]
    c, n = table.c[idx], table.n[idx]
    measured = n > 0
    w = np.zeros(len(ids))
    if cfg_weights.method == "uniform":
        return np.ones(len(ids))
    if not measured.any():
        return w
    cm, nm = c[measured], n[measured]
    if cfg_weights.method == "hard":
        w[measured] = hard_band(cm / nm, cfg_weights.lo, cfg_weights.hi)
    else:
        w[measured] = estimate_weight(cm, nm, cfg_weights.alpha, cfg_weights.beta,
                                      estimator=cfg_weights.estimator,
                                      prior=(cfg_weights.prior_a, cfg_weights.prior_b))
    return w


def normaliser(weights: np.ndarray, mode: str, batch_size: int) -> float:
    """sum: sum of kept weights (a weighted mean); mean: the candidate batch size; none: 1."""
    if mode == "sum":
        return float(max(weights.sum(), 1e-12))
    if mode == "mean":
        return float(batch_size)
    return 1.0


@dataclass
class Ledger:
    """Cumulative compute. FLOPs use the standard 2 N per token forward and 4 N per token
    backward (N = non-embedding parameters of the model doing the work), an estimate that
    ignores attention's sequence-length term (small at our lengths)."""

    n_student: int
    n_teacher: int
    rollout_tokens: int = 0
    teacher_tokens: int = 0
    student_fwd_tokens: int = 0
    student_bwd_tokens: int = 0
    flops: float = 0.0
    extra: dict = field(default_factory=dict)

    def rollout(self, tokens: int) -> None:
        self.rollout_tokens += int(tokens)
        self.flops += 2.0 * self.n_student * tokens

    def teacher(self, tokens: int) -> None:
        self.teacher_tokens += int(tokens)
        self.flops += 2.0 * self.n_teacher * tokens

    def student_step(self, tokens: int) -> None:
        self.student_fwd_tokens += int(tokens)
        self.student_bwd_tokens += int(tokens)
        self.flops += 6.0 * self.n_student * tokens

    def row(self) -> dict:
        return {"rollout_tokens": self.rollout_tokens, "teacher_tokens": self.teacher_tokens,
                "student_fwd_tokens": self.student_fwd_tokens,
                "student_bwd_tokens": self.student_bwd_tokens, "flops": self.flops}

    def load(self, d: dict) -> None:
        for k, v in d.items():
            setattr(self, k, v)
