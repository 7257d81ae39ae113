"""Recipes for the shipped teacher and student (`paced pretrain teacher|student`).

Both are trained from scratch by cross-entropy on the correct completions of freshly
sampled problems (answers least-significant digit first, see tasks.py), on a mixture of
the distillation skills (add, mul) and the retention skill (compare).
  teacher: 4 layers x 96, every difficulty equally often, long enough to be good at all.
  student: 2 layers x 64, a curriculum that rarely shows the hard cells and far fewer
           steps, so that it is competent on easy problems, on the frontier in the middle
           and hopeless on the hardest -- its sampled pass rates spread over [0, 1].
The shipped weights in paced_train/assets/ were produced by these recipes; the command,
seed and measured accuracies are in paced_train/assets/README.md.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from paced_train.batching import pack
from paced_train.model import GPT, GPTConfig, save_model
from paced_train.tasks import make_problem, target_text, verify
from paced_train.tokenizer import default_tokenizer


@dataclass(frozen=True)
class Recipe:
    n_layer: int
    n_embd: int
    n_head: int
    steps: int
    batch_size: int = 128
    lr: float = 3e-3
    # (skill, difficulty) -> sampling weight
    mixture: dict = field(default_factory=dict)


ADD, MUL = (1, 2, 3, 4), (1, 2, 3)
_TEACHER_MIX = {**{("add", d): 1.0 for d in ADD}, **{("mul", d): 1.0 for d in MUL},
                ("compare", 3): 1.0}
_STUDENT_MIX = {("add", 1): 1.0, ("add", 2): 1.0, ("add", 3): 0.3, ("add", 4): 0.05,
                ("mul", 1): 1.0, ("mul", 2): 0.3, ("mul", 3): 0.05, ("compare", 3): 1.0}
RECIPES = {
    "teacher": Recipe(n_layer=4, n_embd=96, n_head=4, steps=4000, mixture=_TEACHER_MIX),
    "student": Recipe(n_layer=2, n_embd=64, n_head=2, steps=2500, mixture=_STUDENT_MIX),
}


def _sample_batch(recipe: Recipe, rng: np.random.Generator, n: int):
    cells = list(recipe.mixture)
    w = np.array([recipe.mixture[c] for c in cells])
    picks = rng.choice(len(cells), size=n, p=w / w.sum())
    return [make_problem(cells[i][0], cells[i][1], rng) for i in picks]


@torch.no_grad()
def accuracy_table(model, tok, seed: int = 123, n: int = 64, K: int = 0) -> dict:
    """Greedy accuracy per (skill, difficulty); with K > 0 also the mean sampled pass rate
    and the share of problems with pass rate 0, in (0, 1), 1."""
    from paced_train.tasks import make_problems, retention_suite

    model.eval()
    out = {}
    cells = [("add", d) for d in ADD] + [("mul", d) for d in MUL]
    sets = {f"{s}{d}": make_problems(s, d, n, seed) for s, d in cells}
    sets["compare"] = retention_suite(seed, n)
    gen = torch.Generator().manual_seed(seed)
    for name, probs in sets.items():
        prompts = [tok.encode_prompt(p.prompt) for p in probs]
        comps = model.generate(prompts, 8, temperature=0, eos_id=tok.eos_id, pad_id=tok.pad_id)
        row = {"greedy": float(np.mean([verify(p, tok.decode(c)) for p, c in zip(probs, comps)]))}
        if K:
            samples = model.generate([q for q in prompts for _ in range(K)], 8, temperature=1.0,
                                     generator=gen, eos_id=tok.eos_id, pad_id=tok.pad_id)
            ok = np.array([verify(probs[i // K], tok.decode(c)) for i, c in enumerate(samples)])
            rate = ok.reshape(len(probs), K).mean(1)
            row.update(mean_p=float(rate.mean()), p0=float((rate == 0).mean()),
                       p1=float((rate == 1).mean()),
                       frontier=float(((rate > 0) & (rate < 1)).mean()))
        out[name] = row
    return out


def pretrain(role: str, out_path=None, seed: int = 0, steps: int | None = None,
             progress: bool = True, recipe: Recipe | None = None) -> dict:
    """Train the teacher or student recipe; write safetensors to out_path (default: the
    shipped asset). Returns the measured accuracy table and timing."""
    from paced_theory.errors import InputError

    if recipe is None:
        if role not in RECIPES:
            raise InputError(f"unknown pretraining role {role!r}; use teacher or student")
        recipe = RECIPES[role]
    steps = recipe.steps if steps is None else int(steps)
    if steps < 1:
        raise InputError(f"--steps must be >= 1 (got {steps})")
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 17])
    tok = default_tokenizer()
    model = GPT(GPTConfig(tok.vocab_size, block_size=48, n_layer=recipe.n_layer,
                          n_head=recipe.n_head, n_embd=recipe.n_embd))
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01,
                            betas=(0.9, 0.98))
    warm = max(1, steps // 20)
    t0, losses = time.time(), []
    for step in range(steps):
        lr = recipe.lr * min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for g in opt.param_groups:
            g["lr"] = lr
        probs = _sample_batch(recipe, rng, recipe.batch_size)
        x, y, mask = pack([tok.encode_prompt(p.prompt) for p in probs],
                          [tok.encode(target_text(p)) + [tok.eos_id] for p in probs], tok.pad_id)
        model.train()
        logits = model(x)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
        loss = (ce * mask.reshape(-1)).sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if progress and (step % 500 == 0 or step == steps - 1):
            print(f"[{role}] step {step:5d}  loss {np.mean(losses[-100:]):.4f}  "
                  f"{time.time() - t0:.0f}s", flush=True)
    wall = time.time() - t0
    table = accuracy_table(model, tok, K=8 if role == "student" else 0)
    meta = {"role": role, "seed": seed, "steps": steps, "recipe": {
        "n_layer": recipe.n_layer, "n_embd": recipe.n_embd, "n_head": recipe.n_head,
        "batch_size": recipe.batch_size, "lr": recipe.lr}, "wall_s": round(wall, 1),
        "final_loss": float(np.mean(losses[-50:])), "accuracy": table}
    if out_path is None:
        from paced_train.model import shipped_path
        out_path = shipped_path(role)
    save_model(Path(out_path), model, tok, meta)
    return meta
