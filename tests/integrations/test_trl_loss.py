"""The TRL adapter's weighted loss is paced_train's: values and gradients on the same batch,
for the on-policy trainer (forward, reverse, JSD at 1/2) and the forward-KL GKD stage; and
gradient-accumulated micro-batches give the full batch's gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from trl_helpers import args, load, problems

from paced_train.config import load_config
from paced_train.loop import losses
from paced_train.loop.distill import completion_logits
from paced_train.loop.losses import divergence
from paced_train.loop.passrates import normaliser, problem_weights
from paced_train.models.hf import load_any

EOS = 2
CPU = torch.device("cpu")
# completions of different lengths: some end with eos, some are cut at the length limit
COMPLETIONS = [[5, 9, 7, EOS], [12, 13, 14, 15, 16, 17], [8, EOS], [30, 31, 32, 33, 34, EOS],
               [6, 6, 6, 6, 6, 6], [40, EOS], [21, 22, 23, EOS], [11, 19, EOS]]
SOLVED = {a: c for a, c in zip(range(10, 18), (0, 1, 2, 3, 4, 1, 2, 3))}  # c of 4: 10, 14 drop


def _grads(model) -> torch.Tensor:
    g = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    model.zero_grad(set_to_none=True)
    return g


def _close(loss, g, ref_loss, ref_g) -> None:
    """float32 agreement: the two sides compute the same sums in different orders."""
    loss = float(loss.detach())
    assert abs(loss - ref_loss) <= 1e-6 * max(1.0, abs(ref_loss)), (loss, ref_loss)
    assert float((g - ref_g).abs().max()) <= 1e-6 * max(1.0, float(ref_g.abs().max()))


def _table(trainer):
    """Fill the trainer's table: c of 4 per problem (so the weights p(1-p) differ)."""
    t = trainer._paced.table
    t.refresh(t.ids, [SOLVED[int(i[1:])] for i in t.ids], 4, 0)


def _reference(pair_dir, kept_rows, completions, kind, weights_cfg, table, jsd_beta=0.5):
    """paced_train's own step on the same problems and completions: completion_logits for
    teacher and student, losses.divergence, weights from the table, weighted_loss over
    normaliser(sum) -- what distill_step computes -- plus the gradient."""
    student, tok, _ = load_any(pair_dir["student"])
    teacher, _, _ = load_any(pair_dir["teacher"])
    cfg = load_config(None, [f"loss.jsd_beta={jsd_beta}"])
    prompts = [tok.encode_prompt(r["prompt"][0]["content"]) for r in kept_rows]
    with torch.no_grad():
        t_logits, _, _ = completion_logits(teacher, tok, prompts, completions, CPU)
    s_logits, mask, _ = completion_logits(student, tok, prompts, completions, CPU)
    per_seq = divergence(kind, s_logits, t_logits, mask, cfg.loss)
    w = problem_weights(weights_cfg, table, [r["id"] for r in kept_rows])
    loss = losses.weighted_loss(per_seq, torch.as_tensor(w, dtype=torch.float32),
                                normaliser(w, weights_cfg.normalise, len(w)))
    loss.backward()
    return float(loss.detach()), _grads(student.hf), prompts


@pytest.mark.parametrize("beta, kind", [(0.0, "forward"), (1.0, "reverse"), (0.5, "jsd")])
def test_on_policy_loss_and_gradient_equal_paced_train(pair_dir, tmp_path, beta, kind):
    from datasets import Dataset
    from trl import DistillationConfig

    from paced_train.integrations.trl import PacedDistillationTrainer

    student, tok = load(pair_dir["student"])
    teacher, _ = load(pair_dir["teacher"])
    rows = problems(8)
    tr = PacedDistillationTrainer(
        model=student, teacher_model=teacher, train_dataset=Dataset.from_list(rows),
        args=args(DistillationConfig, str(tmp_path), beta=beta, max_completion_length=6),
        processing_class=tok)
    _table(tr)
    kept = [r for r in rows if SOLVED[int(r["id"][1:])] % 4 != 0]
    comps = COMPLETIONS[:len(kept)]
    seen = []

    def fixed_completions(prompt_ids, *a, **kw):
        seen.append([list(p) for p in prompt_ids])
        return comps

    tr._generate_single_turn = fixed_completions
    tr.model.train()
    out = tr._generate_and_score_completions(kept)
    loss = tr.compute_loss(tr.model, out)
    loss.backward()
    g = _grads(tr.model)
    ref_loss, ref_g, prompts = _reference(pair_dir, kept, comps, kind, tr._paced.weights,
                                          tr._paced.table)
    assert seen == [prompts]  # TRL tokenised exactly paced_train's prompt tokens
    assert float(out["paced_norm"]) == pytest.approx(
        float(np.sum(problem_weights(tr._paced.weights, tr._paced.table,
                                     [r["id"] for r in kept]))))
    _close(loss, g, ref_loss, ref_g)


def test_forward_kl_stage_equals_paced_train(pair_dir, tmp_path):
    """PacedGKDTrainer (lmbda 0, beta 0) on reference completions = paced_train's forward KL."""
    from datasets import Dataset
    from trl.experimental.gkd import GKDConfig

    from paced_train.integrations.trl_gkd import PacedGKDTrainer

    student, tok = load(pair_dir["student"])
    teacher, _ = load(pair_dir["teacher"])
    rows = problems(8)
    kept = [r for r in rows if SOLVED[int(r["id"][1:])] % 4 != 0]
    refs = [tok.decode(c, skip_special_tokens=True) for c in COMPLETIONS[:len(kept)]]
    data = [{"messages": [*r["prompt"], {"role": "assistant", "content": ref}], "id": r["id"]}
            for r, ref in zip(rows, refs + ["x"] * (len(rows) - len(kept)))]
    tr = PacedGKDTrainer(student, teacher, args(GKDConfig, str(tmp_path), lmbda=0.0, beta=0.0,
                                                max_length=64),
                         train_dataset=Dataset.from_list(data), processing_class=tok)
    _table(tr)
    batch = tr.data_collator([d for d in data if d["id"] in {r["id"] for r in kept}])
    norm = tr._get_num_items_in_batch([batch], torch.device("cpu"))
    tr.model.train()
    loss = tr.compute_loss(tr.model, batch, num_items_in_batch=norm)
    loss.backward()
    g = _grads(tr.model)
    # the collator's completion: the assistant turn as the template renders it ("ref</s>")
    comps = [[t for t, keep in zip(ids, m) if keep] for ids, m in
             zip(batch["input_ids"].tolist(), (batch["labels"] != -100).tolist())]
    ref_loss, ref_g, _ = _reference(pair_dir, kept, comps, "forward", tr._paced.weights,
                                    tr._paced.table)
    _close(loss, g, ref_loss, ref_g)
