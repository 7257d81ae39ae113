"""Seeded random streams: every random draw of a run is a function of (run.seed, step, stream).

Each stream (batch order, refresh rollouts, on-policy samples, eval samples, dropout, the
binomial draws of likelihood pass rates, on-policy window evictions, RL's groups) gets its
own generator per step, seeded from numpy's SeedSequence of (seed, step, stream, *sub-stream),
so the streams are independent of each other and of how many steps ran before: a run killed
and resumed from its checkpoint draws exactly what an uninterrupted run would have drawn.
Nothing here touches torch's or numpy's global generators, except seeded_global_rng, which
seeds torch's global one inside a fork (dropout reads it).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

STREAMS = {"data": 1, "refresh": 2, "onpolicy": 3, "eval": 4, "dropout": 5,
           "likelihood-refresh": 6, "likelihood-free": 7, "evict": 8, "rl": 9,
           "lp": 21, "reference": 22}  # value.py: learning-progress draws, the reference
"""The independent random streams, by name (the numbers are part of the seeds: keep them)."""


def seed_for(seed: int, step: int, stream: str, *more: int) -> int:
    """A 63-bit seed for one random stream at one step (independent across all arguments;
    `more` names a sub-stream: a refresh chunk and phase, a rank). Callers of one stream pass
    a fixed number of sub-stream indices: numpy's SeedSequence pads short entropy with zeros,
    so (seed, step, stream) and (seed, step, stream, 0) are one stream (the on-policy samples
    of a single process are those of rank 0)."""
    ss = np.random.SeedSequence([seed, step, STREAMS[stream], *more])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def torch_gen(seed: int, step: int, stream: str, *more: int) -> torch.Generator:
    """A CPU torch.Generator seeded by seed_for(seed, step, stream, *more)."""
    return torch.Generator().manual_seed(seed_for(seed, step, stream, *more))


@contextmanager
def seeded_global_rng(seed: int, step: int, device: torch.device):
    """Dropout draws from torch's global generator: inside this block it is seeded by
    (seed, step), in a fork, so the draws are reproducible and the caller's state is kept."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed_for(seed, step, "dropout"))
        yield
