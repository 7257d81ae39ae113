"""Recipes for the shipped teacher and student (`paced pretrain teacher|student`).

Both are trained from scratch by next-token cross-entropy on the correct completions of
freshly drawn problems (answers least-significant digit first, see tasks.py), on a mixture
of the distillation skills (add, mul) and the retention skill (compare):
  teacher  bigger, every cell of the suite (3-digit addition twice as often, see below),
           long enough to be good at all of them.
  student  smaller, a mixture that rarely shows the hard cells, and far fewer steps: it is
           competent on easy problems, on the frontier in the middle and hopeless on the
           hardest, so its sampled pass rates (K = 8, temperature 1) spread over [0, 1] --
           the regime PACED is about -- and it is decent at compare, so forgetting shows.
The shipped weights in paced_train/assets/ were produced by these recipes; the command, seed,
wall time and measured accuracies are in paced_train/assets/README.md. The accuracies are
measured on the model as shipped (fp16 storage, reloaded), not on the float32 one in memory.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from paced_theory.errors import InputError
from paced_train.loop.batching import pack
from paced_train.loop.distributed import autocast
from paced_train.models.model import GPT, GPTConfig, load_model, save_model, shipped_path
from paced_train.models.tokenizer import default_tokenizer
from paced_train.tasks import make_problem, make_problems, retention_suite, target_text, verify

ADD_DIGITS, MUL_DIGITS = (1, 2, 3, 4), (1, 2, 3)
EVAL_CELLS = [("add", d) for d in ADD_DIGITS] + [("mul", d) for d in MUL_DIGITS]
RETENTION_DIGITS = 3  # retention_suite's default: operands of 1..3 digits


@dataclass(frozen=True)
class Recipe:
    n_layer: int
    n_head: int
    n_embd: int
    steps: int
    batch_size: int = 128
    lr: float = 3e-3  # peak; linear warmup over 5 % of the steps, then cosine to zero
    weight_decay: float = 0.01
    block_size: int = 48  # longest use: <bos> + "9999+9999=" + 5 digits + <eos> = 17 tokens
    # "skill:difficulty" -> relative sampling weight of that cell in a training batch
    mixture: dict = field(default_factory=dict)


# add:3 is shown twice as often: with equal weights and 4000 steps the teacher learnt 4-digit
# but not 3-digit addition (11 % greedy; it copied the second operand's middle digit)
_TEACHER_MIX = {**{f"add:{d}": 1.0 for d in ADD_DIGITS}, **{f"mul:{d}": 1.0 for d in MUL_DIGITS},
                "add:3": 2.0, f"compare:{RETENTION_DIGITS}": 1.0}
_STUDENT_MIX = {"add:1": 1.0, "add:2": 1.0, "add:3": 0.3, "add:4": 0.05,
                "mul:1": 1.0, "mul:2": 0.3, "mul:3": 0.05, f"compare:{RETENTION_DIGITS}": 1.0}
RECIPES: dict[str, Recipe] = {
    "teacher": Recipe(n_layer=4, n_head=4, n_embd=96, steps=6000, mixture=_TEACHER_MIX),
    "student": Recipe(n_layer=2, n_head=2, n_embd=64, steps=2500, mixture=_STUDENT_MIX),
    # GPU validation (configs/large.toml, bench/gpu_validation.py): tens of millions of
    # parameters, trained from scratch on one GPU in bf16. Not tuned on a GPU yet: the
    # student's step count is a guess at the frontier regime (see bench/README.md).
    "teacher-large": Recipe(n_layer=8, n_head=8, n_embd=512, steps=4000, batch_size=256,
                            lr=1e-3, mixture=_TEACHER_MIX),
    "student-large": Recipe(n_layer=6, n_head=6, n_embd=384, steps=600, batch_size=256,
                            lr=1e-3, mixture=_STUDENT_MIX),
}


def _cells(recipe: Recipe) -> tuple[list[tuple[str, int]], np.ndarray]:
    cells, weights = [], []
    for key, w in recipe.mixture.items():
        skill, d = key.split(":")
        cells.append((skill, int(d)))
        weights.append(float(w))
    weights = np.asarray(weights)
    return cells, weights / weights.sum()


@torch.no_grad()
def accuracy_table(model, tok, seed: int = 0, n: int = 64, K: int = 8,
                   max_new_tokens: int = 7) -> dict:
    """Measured competence per skill and difficulty: {skill: {str(difficulty): row}}.
    row["greedy"] is the greedy accuracy; with K > 0 each problem also gets K samples at
    temperature 1, and the row has the mean pass rate "mean_p" = mean over problems of
    p_hat = c/K, the shares of problems with p_hat = 0 ("p0"), 0 < p_hat < 1 ("mid") and
    p_hat = 1 ("p1"), and "hist", the number of problems with c = 0..K successes.
    The problems are make_problems(skill, d, n, seed) -- with seed 0 and n <= 72, a prefix of
    each cell of the demo's arithmetic_suite -- and retention_suite(seed, n) for compare."""
    was_training = model.training
    model.eval()
    sets = {(s, d): make_problems(s, d, n, seed) for s, d in EVAL_CELLS}
    sets[("compare", RETENTION_DIGITS)] = retention_suite(seed, n, RETENTION_DIGITS)
    gen = torch.Generator().manual_seed(seed)
    out: dict = {}
    for (skill, d), probs in sets.items():
        prompts = [tok.encode_prompt(p.prompt) for p in probs]
        kw = dict(eos_id=tok.eos_id, pad_id=tok.pad_id)
        comps = model.generate(prompts, max_new_tokens, temperature=0.0, **kw)
        row = {"greedy": float(np.mean([verify(p, tok.decode(c)) for p, c in zip(probs, comps)]))}
        if K:
            samples = model.generate([q for q in prompts for _ in range(K)], max_new_tokens,
                                     temperature=1.0, generator=gen, **kw)
            ok = [verify(probs[i // K], tok.decode(c)) for i, c in enumerate(samples)]
            c = np.asarray(ok).reshape(len(probs), K).sum(1)
            row.update(mean_p=float(c.mean() / K), p0=float((c == 0).mean()),
                       mid=float(((c > 0) & (c < K)).mean()), p1=float((c == K).mean()),
                       hist=np.bincount(c, minlength=K + 1).tolist())
        out.setdefault(skill, {})[str(d)] = row
    model.train(was_training)
    return out


def train_recipe(recipe: Recipe, seed: int = 0, steps: int | None = None, progress: bool = True,
                 tag: str = "", device="cpu") -> tuple[GPT, list[float]]:
    """Train a fresh GPT on the recipe's mixture; returns (model, per-step losses).
    Loss = mean over completion tokens (answer + <eos>) of -log q(token | prefix).
    On CUDA the forward pass runs under bf16 autocast (float32 master weights)."""
    device = torch.device(device)
    steps = recipe.steps if steps is None else int(steps)
    if steps < 1:
        raise InputError(f"pretrain: steps must be >= 1 (got {steps})")
    torch.manual_seed(seed)  # parameter init; the data comes from rng below
    rng = np.random.default_rng([seed, 17])
    tok = default_tokenizer()
    model = GPT(GPTConfig(tok.vocab_size, block_size=recipe.block_size, n_layer=recipe.n_layer,
                          n_head=recipe.n_head, n_embd=recipe.n_embd)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=(0.9, 0.98),
                            weight_decay=recipe.weight_decay)
    cells, probs = _cells(recipe)
    warm = max(1, steps // 20)
    t0, losses = time.time(), []
    model.train()
    for step in range(steps):
        lr = recipe.lr * min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for g in opt.param_groups:
            g["lr"] = lr
        batch = [make_problem(*cells[i], rng) for i in rng.choice(len(cells), recipe.batch_size,
                                                                  p=probs)]
        x, y, mask = pack([tok.encode_prompt(p.prompt) for p in batch],
                          [tok.encode(target_text(p)) + [tok.eos_id] for p in batch], tok.pad_id,
                          device)
        with autocast(device):
            logits = model(x)
        ce = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none")
        loss = (ce * mask.flatten()).sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if progress and (step % max(1, steps // 10) == 0 or step == steps - 1):
            print(f"[{tag}] step {step:5d}/{steps}  loss {np.mean(losses[-100:]):.4f}  "
                  f"lr {lr:.2e}  {time.time() - t0:.0f}s", flush=True)
    return model.eval(), losses


def default_out(role: str) -> Path:
    """Where `paced pretrain ROLE` writes without --out: runs/pretrain/ROLE.safetensors under
    the working directory (never the installed package)."""
    return Path("runs") / "pretrain" / f"{role}.safetensors"


def check_not_shipped(path) -> None:
    """InputError if path is one of the shipped files (or in their directory): the shipped
    weights are read-only to every command; replace one by copying a file over it by hand."""
    target = Path(path).expanduser().resolve()
    assets = shipped_path("student").resolve().parent
    if target.parent == assets:
        raise InputError(f"{path}: is in the shipped model directory {assets}, which paced "
                         "never writes; give --out another path (to replace a shipped model, "
                         "copy the new file over it yourself)")


def pretrain(role: str, out_path=None, seed: int = 0, steps: int | None = None,
             progress: bool = True, recipe: Recipe | None = None, device="cpu") -> dict:
    """Train the `role` recipe with `seed`, save it to out_path (default: default_out(role),
    never the shipped assets: check_not_shipped) and return the file's meta: role, seed,
    steps, recipe, n_params, wall_s (training), first_loss/final_loss (mean of the first/last
    50 steps), accuracy = accuracy_table(...) of the saved model, reloaded, and path. The
    same meta (without path) is stored in the safetensors metadata. `recipe` replaces
    RECIPES[role] (used by tests)."""
    if recipe is None:
        if role not in RECIPES:
            raise InputError(f"pretrain: unknown recipe {role!r}; use one of "
                             f"{', '.join(RECIPES)}")
        recipe = RECIPES[role]
    out_path = Path(out_path) if out_path is not None else default_out(role)
    check_not_shipped(out_path)
    t0 = time.time()
    model, losses = train_recipe(recipe, seed, steps, progress, tag=role, device=device)
    wall = time.time() - t0
    tok = default_tokenizer()
    meta = {"role": role, "seed": seed, "steps": len(losses), "recipe": asdict(recipe),
            "n_params": model.num_params(non_embedding=False), "wall_s": round(wall, 1),
            "first_loss": float(np.mean(losses[:50])), "final_loss": float(np.mean(losses[-50:]))}
    save_model(out_path, model, tok, meta)
    shipped, tok, _ = load_model(out_path, device)  # measure what ships: fp16, reloaded
    meta["accuracy"] = accuracy_table(shipped, tok, seed=0)
    meta["eval_s"] = round(time.time() - t0 - wall, 1)
    save_model(out_path, shipped, tok, meta)  # fp16 -> fp32 -> fp16 is exact: same weights
    if progress:
        print(format_table(meta["accuracy"]), flush=True)
    return {**meta, "path": str(out_path)}


def format_table(acc: dict) -> str:
    """A markdown table of accuracy_table's output (used for assets/README.md)."""
    lines = ["| cell | greedy | mean p_hat | p_hat=0 | 0<p_hat<1 | p_hat=1 | hist c=0..K |",
             "|---|---|---|---|---|---|---|"]
    for skill, rows in acc.items():
        for d, r in rows.items():
            extra = (f"{r['mean_p']:.2f} | {r['p0']:.2f} | {r['mid']:.2f} | {r['p1']:.2f} | "
                     f"{' '.join(map(str, r['hist']))}") if "hist" in r else "- | - | - | - | -"
            lines.append(f"| {skill} {d} | {r['greedy']:.2f} | {extra} |")
    return "\n".join(lines)
