"""The periodic evaluation of a run (generation + verification: rollouts.generate_and_verify).

evaluate() reports, on problems never trained on:
  acc                greedy accuracy on the held-out split
  acc_by_difficulty  greedy accuracy per cell, keyed "<skill><difficulty>" ("add3", "mul2")
  mean_at_k          mean over held-out problems of the fraction of k samples (temperature 1,
                     top-p 1) that verify: the paper's mean@k
  retention          greedy accuracy on the retention set (a skill never distilled)
and forgetting(start, now) = retention at the start of the run - retention now.
Sampling uses a generator seeded by the caller, so evaluating never moves a training stream.
"""

from __future__ import annotations

import numpy as np
import torch

from paced_train.loop.rollouts import generate_and_verify
from paced_train.tasks import Problem


def solve_rates(model, tok, problems: list[Problem], max_new_tokens: int, k: int = 1,
                temperature: float = 0.0, generator: torch.Generator | None = None) -> np.ndarray:
    """Per problem, the fraction of its k completions that verify (k = 1, greedy by default)."""
    if not problems:
        return np.zeros(0)
    ok, _, _ = generate_and_verify(model, tok, problems, max_new_tokens, k, temperature,
                                   1.0, generator)
    return ok.reshape(len(problems), k).mean(1)


def by_cell(problems: list[Problem], scores: np.ndarray) -> dict[str, float]:
    """Mean score per "<skill><difficulty>" cell, in sorted order."""
    cells: dict[str, list[float]] = {}
    for p, s in zip(problems, scores):
        cells.setdefault(f"{p.skill}{p.difficulty}", []).append(float(s))
    return {key: float(np.mean(v)) for key, v in sorted(cells.items())}


def evaluate(model, tok, heldout: list[Problem], retention: list[Problem], cfg_eval,
             seed: int) -> dict:
    """acc, acc_by_difficulty, mean_at_k and retention (module docstring).

    Ours: the metrics' definitions; mean@k follows the paper's mean@8 (here k =
    cfg_eval.mean_at_k samples at temperature 1)."""
    gen = torch.Generator().manual_seed(int(seed))
    greedy = solve_rates(model, tok, heldout + retention, cfg_eval.max_new_tokens)
    held, ret = greedy[:len(heldout)], greedy[len(heldout):]
    sampled = solve_rates(model, tok, heldout, cfg_eval.max_new_tokens, k=cfg_eval.mean_at_k,
                          temperature=1.0, generator=gen)
    nan = float("nan")
    return {"acc": float(held.mean()) if held.size else nan,
            "acc_by_difficulty": by_cell(heldout, held),
            "mean_at_k": float(sampled.mean()) if sampled.size else nan,
            "retention": float(ret.mean()) if ret.size else nan}


def forgetting(retention_start: float, retention_now: float) -> float:
    """Retention accuracy at the start of the run minus now (> 0: the student forgot)."""
    return float(retention_start - retention_now)
