"""Which problems make up a step's batch, and how they are packed into tensors.

candidates() gives a step's B candidate problems (a seeded permutation per epoch, from
sampling_pool(): all problems, or only those of positive weight); pack() and
completion_index() turn prompts and completions into the model's inputs.

Logits at position t predict token t+1, so for a sequence s = prompt + completion we feed
x = s[:-1], score against y = s[1:], and `mask` marks the positions of x whose next token
is a completion token -- the only positions any loss in this package looks at.
"""

from __future__ import annotations

import numpy as np
import torch

from paced_train.config import RunConfig
from paced_train.loop.passrates import PassRateTable, problem_weights, reads_pass_rates
from paced_train.loop.seeding import seed_for


def candidates(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Indices of step `step` (1-based): the next batch_size entries of an endless sequence of
    seeded permutations of range(n) (one per epoch), so every problem is seen once per epoch."""
    B = min(batch_size, n)
    start = (step - 1) * B
    first, last = start // n, (start + B - 1) // n
    order = np.concatenate([np.random.default_rng(seed_for(seed, e, "data")).permutation(n)
                            for e in range(first, last + 1)])
    return order[start - first * n:start - first * n + B]


def sampling_pool(cfg: RunConfig, table: PassRateTable) -> np.ndarray:
    """Indices (into the table's ids, the training problems) a step draws its candidates
    from. optim.sampler = "pool": all of them (problems of weight 0 are then dropped from the
    batch). "kept" (ours): only those of positive weight under the current pass-rate table,
    so every step trains on a full batch; the expected update is the same weighted mean over
    the kept problems, with less batch noise and no tiny steps once most problems are
    settled. When nothing has positive weight it falls back to the whole pool (the step then
    keeps none)."""
    everything = np.arange(len(table.ids))
    if cfg.optim.sampler == "pool" or not reads_pass_rates(cfg.weights.method):
        return everything
    kept = np.flatnonzero(problem_weights(cfg.weights, table, table.ids) > 0)
    return kept if kept.size else everything


def pass_rate_ages(cfg: RunConfig, table: PassRateTable, cand: np.ndarray,
                   step: int) -> dict:
    """How old the pass rates behind a step are, in optimizer updates (table.ages at `step`,
    the student's update count when the step's weights are read): pass_rate_age, the mean
    over the step's candidates `cand` (indices into the table), and pass_rate_age_max, the
    oldest entry the sampler read: the whole table under optim.sampler = "kept" (a problem
    left out as solved or hopeless is decided by its pass rate too), the candidates under
    "pool". None for both under uniform weighting and the value criteria, which read no pass
    rate."""
    if not reads_pass_rates(cfg.weights.method) or len(cand) == 0:
        return {"pass_rate_age": None, "pass_rate_age_max": None}
    ages = table.ages(step)
    read = ages if cfg.optim.sampler == "kept" else ages[cand]
    return {"pass_rate_age": round(float(ages[cand].mean()), 3),
            "pass_rate_age_max": int(read.max())}


def pack(prompts: list[list[int]], completions: list[list[int]], pad_id: int,
         device="cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, y, mask), each (B, T-1); mask is float 1.0 on completion-predicting positions."""
    seqs = [p + c for p, c in zip(prompts, completions)]
    T = max(len(s) for s in seqs)
    full = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), T - 1)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        full[i, : len(p) + len(c)] = torch.tensor(p + c)
        mask[i, len(p) - 1 : len(p) + len(c) - 1] = 1.0
    return full[:, :-1].to(device), full[:, 1:].to(device), mask.to(device)


def completion_index(prompts: list[list[int]], completions: list[list[int]],
                     device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(index, mask), each (B, C) with C the longest completion: index[i, j] is the position
    of pack()'s x whose logits predict completion token j of row i (0 past the row's end,
    where mask is 0). With it, two packings of the same completions behind DIFFERENT prompts
    (a teacher with privileged context) are scored token for token: pass it to a model's
    forward as `positions` to get logits (B, C, V) at those positions only."""
    C = max(len(c) for c in completions)
    index = torch.zeros(len(prompts), C, dtype=torch.long)
    mask = torch.zeros(len(prompts), C)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        index[i, : len(c)] = torch.arange(len(p) - 1, len(p) + len(c) - 1)
        mask[i, : len(c)] = 1.0
    return index.to(device), mask.to(device)



def completion_targets(completions: list[list[int]], device="cpu") -> torch.Tensor:
    """(B, C) long: completion token j of row i at [i, j], 0 past the row's end (where
    completion_index's mask is 0): the tokens the logits at completion_index predict."""
    C = max(len(c) for c in completions)
    return torch.tensor([c + [0] * (C - len(c)) for c in completions], dtype=torch.long,
                        device=device)
