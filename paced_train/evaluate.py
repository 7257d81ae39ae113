"""Evaluation: held-out accuracy by difficulty (greedy and mean@k sampled) and retention.

Forgetting = retention accuracy at the start of the run minus retention accuracy now.
"""

from __future__ import annotations

import numpy as np
import torch

from paced_train.tasks import Problem, verify


@torch.no_grad()
def solve_rates(model, tok, problems: list[Problem], max_new_tokens: int, k: int = 1,
                temperature: float = 0.0, generator=None, batch: int = 1024) -> np.ndarray:
    """Per problem, the fraction of k completions that verify (k = 1, greedy by default)."""
    return generate_and_verify(model, tok, problems, max_new_tokens, k, temperature, 1.0,
                               generator, batch)[0].reshape(len(problems), k).mean(1)


@torch.no_grad()
def generate_and_verify(model, tok, problems, max_new_tokens, k=1, temperature=1.0, top_p=1.0,
                        generator=None, batch=1024):
    """k completions per problem: (ok flags (n*k,), completions, tokens processed)."""
    was_training = model.training
    model.eval()
    prompts = [tok.encode_prompt(p.prompt) for p in problems for _ in range(k)]
    comps, tokens = [], 0
    for i in range(0, len(prompts), batch):
        chunk = prompts[i:i + batch]
        out = model.generate(chunk, max_new_tokens, temperature=temperature, top_p=top_p,
                             generator=generator, eos_id=tok.eos_id, pad_id=tok.pad_id)
        comps += out
        tokens += sum(len(p) for p in chunk) + sum(len(c) for c in out)
    ok = np.array([verify(problems[j // k], tok.decode(c)) for j, c in enumerate(comps)])
    model.train(was_training)
    return ok, comps, tokens


def evaluate(model, tok, heldout: list[Problem], retention: list[Problem], cfg_eval,
             seed: int) -> dict:
    """Greedy held-out accuracy (overall and per skill+difficulty), mean@k at temperature 1,
    greedy retention accuracy. Sampling uses its own generator, so evaluating never changes
    the training run's random streams."""
    gen = torch.Generator().manual_seed(seed)
    greedy = solve_rates(model, tok, heldout, cfg_eval.max_new_tokens)
    by = {}
    for p, r in zip(heldout, greedy):
        by.setdefault(f"{p.skill}{p.difficulty}", []).append(r)
    sampled = solve_rates(model, tok, heldout, cfg_eval.max_new_tokens, k=cfg_eval.mean_at_k,
                          temperature=1.0, generator=gen)
    ret = solve_rates(model, tok, retention, cfg_eval.max_new_tokens) if retention else np.array([])
    return {"acc": float(greedy.mean()),
            "acc_by_difficulty": {k: float(np.mean(v)) for k, v in sorted(by.items())},
            "mean_at_k": float(sampled.mean()),
            "retention": float(ret.mean()) if ret.size else float("nan")}
