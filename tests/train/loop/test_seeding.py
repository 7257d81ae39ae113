"""Seeded random streams (paced_train/loop/seeding.py): a function of (seed, step, stream, ...),
independent across every argument, and leaving the global generators alone."""

from __future__ import annotations

import itertools

import torch

from paced_train.loop.seeding import STREAMS, seed_for, seeded_global_rng, torch_gen


def test_seeds_are_deterministic_distinct_and_63_bit():
    """Distinct across every argument for a fixed number of sub-stream indices (what each
    stream's callers use: refresh always (chunk, phase)); numpy pads short entropy with
    zeros, so (s, t, stream) and (s, t, stream, 0) are the same stream by design."""
    args = list(itertools.product((0, 1), (0, 1, 2), STREAMS, ((),)))
    args += itertools.product((0, 1), (0, 1, 2), STREAMS, ((0, 0), (0, 1), (1, 0), (1, 2)))
    seeds = [seed_for(s, step, name, *more) for s, step, name, more in args]
    assert seeds == [seed_for(s, step, name, *more) for s, step, name, more in args]
    assert len(set(seeds)) == len(seeds)  # every argument matters
    assert all(0 <= x < 2**63 for x in seeds)
    assert seed_for(4, 9, "onpolicy") == seed_for(4, 9, "onpolicy", 0)  # rank 0 = one process
    a, b = torch_gen(0, 3, "refresh", 1), torch_gen(0, 3, "refresh", 1)
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))


def test_seeded_global_rng_is_reproducible_and_restores_the_callers_state():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    with seeded_global_rng(0, 5, torch.device("cpu")):
        first = torch.rand(3)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's stream did not move
    with seeded_global_rng(0, 5, torch.device("cpu")):
        assert torch.equal(torch.rand(3), first)
    with seeded_global_rng(0, 6, torch.device("cpu")):
        assert not torch.equal(torch.rand(3), first)
