"""Generation + verification and the periodic evaluation (paced_train/evaluate.py), with a
scripted stand-in model whose answers are known in advance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paced_train.config import EvalSection
from paced_train.evaluate import (
    by_cell,
    evaluate,
    forgetting,
    generate_and_verify,
    solve_rates,
)
from paced_train.tasks import arithmetic_suite, retention_suite, target_text
from paced_train.tokenizer import default_tokenizer


class ScriptedModel(torch.nn.Module):
    """A stand-in model for evaluate(): answers add problems right, everything else wrong."""

    def __init__(self, tok, problems):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.tok, self.by_prompt = tok, {tuple(tok.encode_prompt(p.prompt)): p for p in problems}
        self.calls: list[list[list[int]]] = []

    def generate(self, prompts, max_new_tokens, **kw):
        self.calls.append([list(p) for p in prompts])
        out = []
        for pr in prompts:
            p = self.by_prompt[tuple(pr)]
            text = target_text(p) if p.skill == "add" else "x"
            out.append(self.tok.encode(text) + [self.tok.eos_id])
        return out


def test_evaluate_scores_by_cell_mean_at_k_and_retention():
    tok = default_tokenizer()
    held, ret = arithmetic_suite(0, 3, (1, 2), (1,)), retention_suite(0, 4)
    ev = evaluate(ScriptedModel(tok, held + ret), tok, held, ret, EvalSection(mean_at_k=2), 0)
    assert ev == {"acc": 2 / 3, "acc_by_difficulty": {"add1": 1.0, "add2": 1.0, "mul1": 0.0},
                  "mean_at_k": 2 / 3, "retention": 0.0}
    assert forgetting(0.75, 0.5) == 0.25 and forgetting(0.5, 0.75) == -0.25


def test_generate_and_verify_orders_rollouts_and_counts_each_prompt_once():
    """k completions per problem, problem by problem; the token count charges each distinct
    prompt once per generation chunk (the K rollouts share the prefill) plus every generated
    token; the model's train/eval mode is restored."""
    tok = default_tokenizer()
    probs = arithmetic_suite(0, 2, (1,), (1,))  # add1 x2 (solved), mul1 x2 (not)
    model = ScriptedModel(tok, probs)
    model.train()
    ok, comps, tokens = generate_and_verify(model, tok, probs, 8, k=3)
    assert model.training
    assert ok.tolist() == [p.skill == "add" for p in probs for _ in range(3)]
    assert len(comps) == 3 * len(probs) and comps[0] == comps[1] == comps[2]
    prompts = [tok.encode_prompt(p.prompt) for p in probs]
    assert tokens == sum(map(len, prompts)) + sum(map(len, comps))
    # in chunks of 2 prompts, a problem's 3 rollouts span two chunks: its prompt counts twice
    model.calls.clear()
    _, _, chunked = generate_and_verify(model, tok, probs, 8, k=3, batch=2)
    assert [len(c) for c in model.calls] == [2] * 6
    per_chunk = sum(sum(len(q) for q in {tuple(p) for p in c}) for c in model.calls)
    assert chunked == per_chunk + sum(map(len, comps))


def test_solve_rates_and_by_cell():
    tok = default_tokenizer()
    probs = arithmetic_suite(0, 2, (1, 2), (1,))
    rates = solve_rates(ScriptedModel(tok, probs), tok, probs, 8, k=2)
    assert rates.tolist() == [float(p.skill == "add") for p in probs]
    assert solve_rates(ScriptedModel(tok, []), tok, [], 8).shape == (0,)
    cells = by_cell(probs, np.arange(len(probs), dtype=float))
    assert list(cells) == sorted(cells) == ["add1", "add2", "mul1"]
    assert cells["add1"] == pytest.approx(np.mean([i for i, p in enumerate(probs)
                                                   if f"{p.skill}{p.difficulty}" == "add1"]))


def test_evaluate_with_nothing_to_measure_gives_nan_not_an_error():
    tok = default_tokenizer()
    held = arithmetic_suite(0, 1, (1,), ())
    ev = evaluate(ScriptedModel(tok, held), tok, held, [], EvalSection(mean_at_k=1), 0)
    assert ev["acc"] == 1.0 and np.isnan(ev["retention"])
    ev = evaluate(ScriptedModel(tok, []), tok, [], [], EvalSection(mean_at_k=1), 0)
    assert np.isnan(ev["acc"]) and np.isnan(ev["mean_at_k"]) and ev["acc_by_difficulty"] == {}
