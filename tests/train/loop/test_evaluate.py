"""The periodic evaluation (paced_train/loop/evaluate.py), with a scripted stand-in model whose
answers are known in advance (scripted.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scripted import ScriptedModel

from paced_train.config import EvalSection
from paced_train.loop.evaluate import by_cell, evaluate, forgetting, solve_rates
from paced_train.models.tokenizer import default_tokenizer
from paced_train.tasks import arithmetic_suite, retention_suite


def test_evaluate_scores_by_cell_mean_at_k_and_retention():
    tok = default_tokenizer()
    held, ret = arithmetic_suite(0, 3, (1, 2), (1,)), retention_suite(0, 4)
    ev = evaluate(ScriptedModel(tok, held + ret), tok, held, ret, EvalSection(mean_at_k=2), 0)
    assert ev == {"acc": 2 / 3, "acc_by_difficulty": {"add1": 1.0, "add2": 1.0, "mul1": 0.0},
                  "mean_at_k": 2 / 3, "retention": 0.0}
    assert forgetting(0.75, 0.5) == 0.25 and forgetting(0.5, 0.75) == -0.25


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
