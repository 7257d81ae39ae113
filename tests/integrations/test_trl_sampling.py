"""Which prompts the TRL adapter trains on: zero-weight prompts reach no generation and no
forward pass, a refresh changes the sampled prompts mid-epoch, and gradient-accumulated
micro-batches give the gradient of the full batch."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from transformers import TrainerCallback
from trl_helpers import CountingReward, args, load, problems, sampled_batches

from paced_theory.errors import PacedError
from paced_train.loop.passrates import PassRateTable


def _dataset(rows):
    from datasets import Dataset

    return Dataset.from_list(rows)


def _distill(pair_dir, tmp_path, rows, **kw):
    from trl import DistillationConfig

    from paced_train.integrations.trl import PacedDistillationTrainer

    student, tok = load(pair_dir["student"])
    teacher, _ = load(pair_dir["teacher"])
    targs = {k: kw.pop(k) for k in list(kw) if k not in ("weights", "pass_rates", "refresh")}
    cfg = args(DistillationConfig, str(tmp_path / "out"), max_completion_length=4, **targs)
    return PacedDistillationTrainer(model=student, teacher_model=teacher, args=cfg,
                                    train_dataset=_dataset(rows), processing_class=tok, **kw)


def _gkd(pair_dir, tmp_path, rows, **kw):
    from trl.experimental.gkd import GKDConfig

    from paced_train.integrations.trl_gkd import PacedGKDTrainer

    student, tok = load(pair_dir["student"])
    teacher, _ = load(pair_dir["teacher"])
    data = [{"messages": [*r["prompt"], {"role": "assistant", "content": r["answer"]}],
             "id": r["id"], "answer": r["answer"]} for r in rows]
    targs = {k: kw.pop(k) for k in list(kw) if k not in ("weights", "pass_rates", "refresh")}
    cfg = args(GKDConfig, str(tmp_path / "out"), lmbda=0.0, beta=0.0, max_length=64,
               max_new_tokens=4, **targs)
    return PacedGKDTrainer(student, teacher, cfg, train_dataset=_dataset(data),
                           processing_class=tok, **kw)


def _fixed_table(rows, solved):
    t = PassRateTable([r["id"] for r in rows])
    t.refresh(t.ids, [solved(int(r["id"][1:])) for r in rows], 4, 0)
    return t


class Seen:
    """Forward pre-hooks on the student's and the teacher's decoders: every prompt 'a+b=' that
    reaches a forward pass (training, teacher scoring, or generation)."""

    def __init__(self, tok, *models):
        self.tok, self.prompts = tok, set()
        self.handles = [m.base_model.register_forward_pre_hook(self.hook, with_kwargs=True)
                        for m in models]

    def hook(self, module, a, kw):
        ids = kw.get("input_ids", a[0] if a else None)
        if ids is not None and ids.shape[-1] > 1:  # a prefill or a training forward
            for row in ids.tolist():
                self.prompts.update(re.findall(r"(\d+)\+\d+=", self.tok.decode(row)))


@pytest.mark.parametrize("make", [_distill, _gkd], ids=["distill", "gkd"])
def test_zero_weight_prompts_reach_no_generation_and_no_forward(pair_dir, tmp_path, make):
    rows = problems(16)
    # c of 4: a % 5 in {0, 4} -> p in {0, 1} -> weight 0 (p(1-p)); the others are kept
    table = _fixed_table(rows, lambda a: a % 5)
    tr = make(pair_dir, tmp_path, rows, pass_rates=table, max_steps=3)
    dropped = {str(a) for a in range(10, 26) if a % 5 in (0, 4)}
    kept = {str(a) for a in range(10, 26)} - dropped
    seen = Seen(tr.processing_class, tr.model, tr.teacher_model)
    generated = []
    if hasattr(tr, "_generate_single_turn"):
        real = tr._generate_single_turn

        def spy(prompt_ids, *a, **kw):
            generated.extend(re.findall(r"(\d+)\+\d+=", tr.processing_class.decode(p))[0]
                             for p in prompt_ids)
            return real(prompt_ids, *a, **kw)

        tr._generate_single_turn = spy
    tr.train()
    assert seen.prompts and seen.prompts <= kept, seen.prompts & dropped
    assert len(seen.prompts) >= 6  # 3 steps of 4: most kept prompts were trained on
    if hasattr(tr, "_generate_single_turn"):
        assert len(generated) == 12 and set(generated) <= kept


def test_a_refresh_changes_the_sampled_prompts_mid_epoch(pair_dir, tmp_path):
    from paced_train.integrations.trl import PassRateRefresh

    rows = problems(16)

    def solved(a):  # first refresh (2 reward calls of 8 prompts): even a on the frontier,
        # odd a always solved; from the second refresh on, the other way round
        frontier = (a % 2 == 0) == (len(reward.seen) < 2)
        return 2 if frontier else 4

    reward = CountingReward(solved)
    tr = _distill(pair_dir, tmp_path, rows, per_device_train_batch_size=2, max_steps=6,
                  refresh=PassRateRefresh(reward, rollouts=4, every=2, prompts_per_call=8))
    drawn = sampled_batches(tr)
    tr.train()
    even = {f"p{a}" for a in range(10, 26, 2)}
    # an epoch is 8 batches of 2: refreshes at steps 0, 2 and 4 are all mid-epoch
    assert [h["step"] for h in tr._paced.table.history] == [0, 2, 4]
    assert len(drawn) >= 6
    # the batch of step 3 was fetched with step 2 (one batch ahead), before the refresh
    assert all(set(b) <= even for b in drawn[:3]), drawn
    assert all(not set(b) & even for b in drawn[3:]), drawn


def test_sampler_reads_the_table_at_every_batch():
    from datasets import Dataset

    from paced_train.integrations.trl import PacedSampler, PacedState

    rows = problems(12)
    state = PacedState(Dataset.from_list(rows), None, None, "id")
    t = state.table
    t.refresh(t.ids, [2 if i < 6 else 0 for i in range(12)], 4, 0)
    s, twin = PacedSampler(state, 4, repeat=2, seed=3), PacedSampler(state, 4, repeat=2, seed=3)
    first = s.next_batch()
    assert set(first) <= set(range(6)) and first == twin.next_batch()
    t.refresh(t.ids, [0 if i < 6 else 1 for i in range(12)], 4, 1)
    assert set(s.next_batch()) <= set(range(6, 12))
    it = list(PacedSampler(state, 4, repeat=2, seed=3))
    assert len(it) == 3 * 4 * 2 and it[:4] == it[4:8]  # each batch twice (GA reuse)
    t.refresh(t.ids, [1] + [0] * 11, 4, 2)  # a single kept prompt: the walk wraps, repeats
    assert s.next_batch() == [0, 0, 0, 0]
    t.refresh(t.ids, [0] * 12, 4, 3)
    with pytest.raises(PacedError, match="no prompt has weight > 0"):
        s.next_batch()


class Grads(TrainerCallback):
    """The gradient of every optimizer step (after accumulation and all-reduce)."""

    def __init__(self, model):
        self.model, self.steps = model, []

    def on_pre_optimizer_step(self, args, state, control, **kw):
        self.steps.append(torch.cat([p.grad.flatten().clone() for p in self.model.parameters()
                                     if p.grad is not None]))


@pytest.mark.parametrize("make", [_distill, _gkd], ids=["distill", "gkd"])
def test_accumulated_micro_batches_equal_the_full_batch(pair_dir, tmp_path, make):
    rows = problems(16)
    table = _fixed_table(rows, lambda a: a % 5)
    runs = []
    for per_device, ga in ((4, 1), (2, 2), (1, 4)):
        tr = make(pair_dir, tmp_path / f"{per_device}x{ga}", rows, pass_rates=table,
                  per_device_train_batch_size=per_device, gradient_accumulation_steps=ga,
                  max_steps=2, optim="sgd", max_grad_norm=0.0)
        grads = Grads(tr.model)
        tr.add_callback(grads)
        drawn = sampled_batches(tr)
        tr.train()
        runs.append((grads.steps, drawn))
    (full, batches), *rest = runs
    for steps, drawn in rest:
        if make is _distill:
            assert drawn == batches  # one generation batch per step, the same prompts
        else:
            assert sum(drawn, [])[:8] == sum(batches, [])[:8]  # 2 steps of 4 (+ prefetch)
        for a, b in zip(full, steps):
            assert float((a - b).abs().max()) <= 1e-6 * float(a.abs().max())
    assert np.isfinite(float(full[0].norm())) and float(full[0].norm()) > 0
