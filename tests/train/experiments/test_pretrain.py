"""Pretraining recipes at a tiny size (loss falls, the file is written and reloads, seeded
runs repeat), the recipes' shape, and the shipped weights against their README claims."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from paced_theory.errors import InputError
from paced_train.experiments.pretrain import (
    RECIPES,
    Recipe,
    accuracy_table,
    format_table,
    pretrain,
    train_recipe,
)
from paced_train.models.model import GPT, GPTConfig, load_model, shipped_path
from paced_train.models.tokenizer import check_same_vocab, default_tokenizer
from paced_train.tasks import SKILLS, make_problems, verify

TINY = Recipe(n_layer=1, n_head=2, n_embd=32, steps=120, batch_size=32, lr=1e-2,
              mixture={"add:1": 1.0, "compare:3": 1.0})


def test_tiny_recipe_learns_writes_and_reloads(tmp_path):
    out = tmp_path / "m.safetensors"
    meta = pretrain("student", out, seed=1, recipe=TINY, progress=False)
    assert meta["final_loss"] < 0.6 * meta["first_loss"]  # the loss decreases
    assert meta["steps"] == 120 and meta["seed"] == 1 and meta["role"] == "student"
    model, tok, stored = load_model(out)
    # the file carries the returned meta (and the meta says where it was written)
    assert meta["path"] == str(out)
    assert stored == json.loads(json.dumps({k: v for k, v in meta.items() if k != "path"}))
    assert model.config.n_embd == 32 and tok == default_tokenizer()
    acc = meta["accuracy"]
    assert set(acc) == set(SKILLS) and set(acc["add"]) == {"1", "2", "3", "4"}
    row = acc["add"]["1"]
    assert sum(row["hist"]) == 64 and len(row["hist"]) == 9
    assert row["p0"] + row["mid"] + row["p1"] == pytest.approx(1.0)
    assert row["mean_p"] == pytest.approx(np.dot(np.arange(9), row["hist"]) / (8 * 64))
    # the table describes the saved model: recompute one cell's greedy accuracy from the file
    probs = make_problems("add", 1, 64, 0)
    comps = model.generate([tok.encode_prompt(p.prompt) for p in probs], 7, temperature=0)
    assert row["greedy"] == np.mean([verify(p, tok.decode(c)) for p, c in zip(probs, comps)])
    assert "| add 1 |" in format_table(acc)


def test_training_is_seeded():
    short = replace(TINY, steps=15)
    (a, la), (b, lb) = (train_recipe(short, seed=3, progress=False) for _ in range(2))
    c, lc = train_recipe(short, seed=4, progress=False)
    assert la == lb and la != lc
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values()))


def test_errors():
    with pytest.raises(InputError, match="unknown recipe 'oracle'.*student-large"):
        pretrain("oracle", "x.safetensors")
    with pytest.raises(InputError, match="shipped model directory"):
        pretrain("student-large", shipped_path("student"))  # read-only, checked before training
    with pytest.raises(InputError, match="steps"):
        pretrain("student", "x.safetensors", steps=0)


def test_recipes_shape():
    tok = default_tokenizer()

    def size(r: Recipe) -> int:
        return GPT(GPTConfig(tok.vocab_size, r.block_size, r.n_layer, r.n_head,
                             r.n_embd)).num_params(False)

    t, s = RECIPES["teacher"], RECIPES["student"]
    assert 0.3e6 < size(t) < 2e6 and 0.05e6 < size(s) < 0.5e6 and size(s) < size(t) / 2
    assert s.steps * s.batch_size * size(s) < t.steps * t.batch_size * size(t)
    for r in (t, s):
        assert {k.split(":")[0] for k in r.mixture} == set(SKILLS)  # retention trained too
        assert r.block_size <= 64
    # the teacher sees every cell; the student rarely sees the hardest
    cells = {f"add:{d}" for d in (1, 2, 3, 4)} | {f"mul:{d}" for d in (1, 2, 3)}
    assert cells <= set(t.mixture) and min(t.mixture.values()) > 0
    assert s.mixture["add:4"] < s.mixture["add:3"] < s.mixture["add:1"]
    assert s.mixture["mul:3"] < s.mixture["mul:1"]


# --------------------------------------------------------------- the shipped weights
@pytest.fixture(scope="module")
def shipped():
    if not (shipped_path("teacher").exists() and shipped_path("student").exists()):
        pytest.fail("shipped weights missing: run `paced pretrain teacher` and `... student`")
    return {name: load_model(shipped_path(name)) for name in ("teacher", "student")}


def test_shipped_pair_is_consistent(shipped):
    (t, t_tok, t_meta), (s, s_tok, s_meta) = shipped["teacher"], shipped["student"]
    check_same_vocab(t_tok, s_tok)
    assert t_meta["role"] == "teacher" and s_meta["role"] == "student"
    assert t.num_params(False) > 2 * s.num_params(False)
    for name in ("teacher", "student"):
        assert shipped_path(name).stat().st_size < 4e6  # a few MB at most
        meta = shipped[name][2]
        r = RECIPES[name]  # the shipped file came from the recipe as it stands
        assert meta["recipe"]["n_embd"] == r.n_embd and meta["steps"] == r.steps


@torch.no_grad()
def test_shipped_accuracies_match_their_meta(shipped):
    """Recompute greedy accuracy on a slice of the stored eval table (a quick check that the
    file and its README numbers agree), and the qualitative claims the demo relies on."""
    t_acc, s_acc = shipped["teacher"][2]["accuracy"], shipped["student"][2]["accuracy"]
    for skill in ("add", "mul"):
        for d, row in t_acc[skill].items():
            assert row["greedy"] >= 0.9, (skill, d)  # the teacher is good everywhere
    assert t_acc["compare"]["3"]["greedy"] >= 0.9
    assert s_acc["add"]["1"]["mean_p"] > 0.8 and s_acc["add"]["4"]["mean_p"] < 0.1
    assert s_acc["compare"]["3"]["greedy"] > 0.7  # retention is measurable
    assert max(r["mid"] for rows in (s_acc["add"], s_acc["mul"]) for r in rows.values()) > 0.5
    for name, cell in (("teacher", ("add", 3)), ("student", ("add", 2))):
        model, tok, meta = shipped[name]
        small = accuracy_table(model, tok, seed=0, n=64, K=0)  # greedy only
        assert small[cell[0]][str(cell[1])]["greedy"] == meta["accuracy"][cell[0]][
            str(cell[1])]["greedy"]
