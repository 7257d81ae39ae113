"""pack / completion_index (paced_train/loop/batching.py): the positions a loss scores are exactly
the completion-predicting ones, and two packings behind different prompts line up."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from paced_train.config import load_config
from paced_train.loop.batching import candidates, completion_index, pack, sampling_pool
from paced_train.loop.passrates import PassRateTable

PAD = 0
tokens = st.lists(st.integers(1, 50), min_size=1, max_size=7)
rows = st.lists(st.tuples(tokens, tokens), min_size=1, max_size=5)


@settings(max_examples=80, deadline=None)
@given(rows)
def test_pack_shifts_by_one_and_masks_the_completion_predictions(batch):
    prompts, comps = [list(p) for p, _ in batch], [list(c) for _, c in batch]
    x, y, mask = pack(prompts, comps, PAD)
    T = max(len(p) + len(c) for p, c in zip(prompts, comps))
    assert x.shape == y.shape == mask.shape == (len(batch), T - 1)
    for i, (p, c) in enumerate(zip(prompts, comps)):
        seq = p + c
        n = len(seq)
        assert x[i, :n].tolist() == seq[: T - 1][:n] and y[i, : n - 1].tolist() == seq[1:]
        assert (x[i, n:] == PAD).all() and (y[i, n - 1:] == PAD).all()  # right padding
        # mask[t] = 1 exactly where y[t] (the token predicted at t) is a completion token
        assert mask[i].nonzero().flatten().tolist() == list(range(len(p) - 1, n - 1))
        assert y[i][mask[i].bool()].tolist() == c
    assert mask.sum() == sum(map(len, comps))


@settings(max_examples=80, deadline=None)
@given(rows, st.lists(tokens, min_size=5, max_size=5))
def test_completion_index_picks_the_same_tokens_behind_any_prompt(batch, other_prompts):
    """index[i, j] is where pack()'s row i predicts completion token j, so a student behind
    its prompt and a teacher behind a longer (privileged) prompt score the same tokens."""
    prompts, comps = [list(p) for p, _ in batch], [list(c) for _, c in batch]
    C = max(map(len, comps))
    for ps in (prompts, [list(q) + list(p) for q, p in zip(other_prompts, prompts)]):
        _, y, _ = pack(ps, comps, PAD)
        index, mask = completion_index(ps, comps)
        assert index.shape == mask.shape == (len(batch), C)
        assert mask.sum(1).tolist() == [float(len(c)) for c in comps]
        picked = torch.gather(y, 1, index)
        for i, c in enumerate(comps):
            assert picked[i, : len(c)].tolist() == c
            assert (index[i, len(c):] == 0).all() and (mask[i, len(c):] == 0).all()


def test_device_argument_places_every_tensor():
    x, y, mask = pack([[1, 2]], [[3]], PAD, device="cpu")
    index, imask = completion_index([[1, 2]], [[3]], device="cpu")
    assert {t.device.type for t in (x, y, mask, index, imask)} == {"cpu"}
    assert mask.dtype == imask.dtype == torch.float32 and index.dtype == torch.long


def test_kept_sampler_draws_only_positive_weights_and_falls_back():
    t = PassRateTable([f"q{i}" for i in range(6)])
    t.refresh(t.ids, [0, 4, 8, 2, 0, 5], 8, step=0)
    kept = load_config(None, ["optim.sampler=kept"])
    pool = sampling_pool(kept, t)
    assert pool.tolist() == [1, 3, 5]
    batch = pool[candidates(len(pool), 2, 0, 1)]
    assert set(batch.tolist()) <= {1, 3, 5}
    assert sampling_pool(load_config(None, []), t).tolist() == list(range(6))  # sampler = pool
    uniform = load_config(None, ["optim.sampler=kept", "weights.method=uniform"])
    assert sampling_pool(uniform, t).tolist() == list(range(6))  # uniform weighs every one
    t.refresh(t.ids, [0, 8, 0, 8, 0, 8], 8, step=1)                # nothing kept: the whole pool
    assert sampling_pool(kept, t).tolist() == list(range(6))


def test_data_order_covers_every_problem_once_per_epoch():
    order = np.concatenate([candidates(10, 4, 0, s) for s in range(1, 6)])
    assert sorted(order[:10]) == list(range(10)) and sorted(order[10:20]) == list(range(10))
    assert not np.array_equal(order[:10], order[10:20])  # a new permutation each epoch
    assert np.array_equal(candidates(10, 4, 0, 3), candidates(10, 4, 0, 3))
    assert not np.array_equal(candidates(10, 4, 0, 3), candidates(10, 4, 1, 3))  # seeded
    assert sorted(candidates(3, 8, 0, 1).tolist()) == [0, 1, 2]  # B capped at the pool size
