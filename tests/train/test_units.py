"""Unit tests: config, pass-rate bookkeeping and weights, tasks and the JSONL loader,
tokenizer, model (batched generation, KV cache, save/load) and checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from paced_theory.errors import ConfigError, InputError
from paced_theory.kernels import beta_kernel
from paced_train.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from paced_train.config import RunConfig, config_to_toml, from_dict, load_config
from paced_train.model import GPT, GPTConfig, load_model, save_model
from paced_train.passrates import Ledger, PassRateTable, normaliser, problem_weights
from paced_train.tasks import (
    arithmetic_suite,
    extract_answer,
    load_jsonl,
    make_problems,
    retention_suite,
    split,
    target_text,
    verify,
)
from paced_train.tokenizer import CharTokenizer, check_same_vocab, default_tokenizer


# -------------------------------------------------------------------------- config
def test_config_roundtrip_and_overrides(tmp_path):
    import tomllib

    cfg = load_config(None, ["weights.method=hard", "optim.lr=3e-4", "data.add_digits=[1, 3]",
                             "run.progress=false", 'models.student="x.safetensors"'])
    assert cfg.weights.method == "hard" and cfg.optim.lr == 3e-4
    assert cfg.data.add_digits == (1, 3) and cfg.run.progress is False
    assert from_dict(tomllib.loads(config_to_toml(cfg))) == cfg
    f = tmp_path / "c.toml"
    f.write_text(config_to_toml(cfg))
    assert load_config(f) == cfg


@pytest.mark.parametrize("body,needle", [
    ("[optim]\nlrr = 1\n", "optim.lrr"),
    ("[nope]\n", "[nope]"),
    ("[optim]\nlr = \"fast\"\n", "optim.lr"),
    ("[rollouts]\nK = 0\n", "rollouts.K"),
    ("[weights]\nalpha = -1.0\n", "weights.alpha"),
    ("[weights]\nlo = 0.6\nhi = 0.4\n", "weights.lo"),
    ("[weights]\nmethod = \"magic\"\n", "weights.method"),
    ("[optim\n", "invalid TOML"),
])
def test_bad_configs_name_file_and_key(tmp_path, body, needle):
    f = tmp_path / "bad.toml"
    f.write_text(body)
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    assert "bad.toml" in str(exc.value) and needle in str(exc.value)


def test_bad_overrides():
    for item in ["optim.lr", "lr=3", "optim.nope=1", "zz.lr=1", "rollouts.K=abc"]:
        with pytest.raises(ConfigError):
            load_config(None, [item])
    assert RunConfig() == load_config(None, [])


# ------------------------------------------------------------------------ passrates
def test_pass_rate_table_bookkeeping():
    t = PassRateTable(["a", "b", "c"])
    assert np.isnan(t.rates()).all()
    t.refresh(["a", "b"], [3, 8], 8, step=5)
    assert t.c.tolist() == [3, 8, 0] and t.n.tolist() == [8, 8, 0] and t.step.tolist() == [5, 5, -1]
    t.add(["a", "c"], [1, 0])  # on-policy samples count as rollouts
    assert t.c.tolist() == [4, 8, 0] and t.n.tolist() == [9, 8, 1]
    t.refresh(["a"], [0], 8, step=9)  # a refresh replaces, it does not accumulate
    assert t.c[0] == 0 and t.n[0] == 8 and t.step[0] == 9
    s = PassRateTable(["a", "b", "c"])
    s.load(t.state())
    assert s.c.tolist() == t.c.tolist() and s.n.tolist() == t.n.tolist()
    assert "1:1" in t.histogram()


def test_weights_come_from_paced_theory():
    from paced_train.config import WeightsSection

    t = PassRateTable([str(i) for i in range(9)])
    t.refresh([str(i) for i in range(9)], list(range(9)), 8, 0)
    ids = [str(i) for i in range(9)]
    c = np.arange(9)
    w = problem_weights(WeightsSection(method="paced", alpha=1.0, beta=2.0), t, ids)
    np.testing.assert_allclose(w, beta_kernel(c / 8, 1.0, 2.0))
    assert w[0] == 0 and w[8] == 0 and (w[1:8] > 0).all()
    hard = problem_weights(WeightsSection(method="hard", lo=0.2, hi=0.8), t, ids)
    assert hard.tolist() == [float(0.2 < x / 8 < 0.8) for x in c]
    assert problem_weights(WeightsSection(method="uniform"), t, ids).tolist() == [1.0] * 9
    unb = problem_weights(WeightsSection(method="paced", estimator="unbiased"), t, ids)
    np.testing.assert_allclose(unb, c * (8 - c) / 56)
    assert normaliser(w, "sum", 32) == pytest.approx(w.sum())
    assert normaliser(w, "mean", 32) == 32 and normaliser(w, "none", 32) == 1


def test_ledger_arithmetic():
    led = Ledger(n_student=10, n_teacher=100)
    led.rollout(5)
    led.teacher(3)
    led.student_step(2)
    assert led.flops == 2 * 10 * 5 + 2 * 100 * 3 + 6 * 10 * 2
    assert led.row()["student_bwd_tokens"] == 2


# ---------------------------------------------------------------------------- tasks
def test_tasks_are_deterministic_unique_and_verified():
    a, b = arithmetic_suite(3, 20), arithmetic_suite(3, 20)
    assert a == b and arithmetic_suite(4, 20) != a
    assert len({p.id for p in a}) == len(a)
    for p in a:
        assert verify(p, target_text(p))
        lhs, rhs = (x[::-1] for x in p.prompt[:-1].split("+" if p.skill == "add" else "*"))
        assert len(lhs) == p.difficulty or p.difficulty == 1
        want = int(lhs) + int(rhs) if p.skill == "add" else int(lhs) * int(rhs)
        assert p.answer == str(want) and target_text(p) == str(want)[::-1]
        assert not verify(p, str(want + 1)[::-1])
    train, held = split(a, 5, seed=0)
    assert not {p.prompt for p in train} & {p.prompt for p in held}
    assert len(held) == 5 * 7
    r = retention_suite(0, 30)
    assert all(p.skill == "compare" and verify(p, p.answer) for p in r)
    assert not {p.skill for p in a} & {"compare"}


def test_carries_are_present():
    probs = make_problems("add", 3, 100, 0)
    assert any(int(p.answer) >= 1000 for p in probs)


def test_extract_answer():
    assert extract_answer("The answer is 42.") == "42"
    assert extract_answer("so #### 1,234") == "1234"
    assert extract_answer(" > because") == ">"
    assert extract_answer("") is None


def test_jsonl_loader(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"prompt": "1+1=", "answer": "2"}) + "\n\n"
                 + json.dumps({"question": "Q?", "answer": "work... #### 1,000"}) + "\n")
    probs = load_jsonl(f)
    assert [p.answer for p in probs] == ["2", "1000"] and probs[1].prompt == "Q?"
    assert verify(probs[1], "It is 1000 apples")
    for body, line in [('{"prompt": "x"}\n', 1), ('{"prompt": "x", "answer": 1}\n{oops\n', 2),
                       ('[1, 2]\n', 1)]:
        f.write_text(body)
        with pytest.raises(InputError, match=f"p.jsonl:{line}:"):
            load_jsonl(f)


# ------------------------------------------------------------------------ tokenizer
def test_tokenizer():
    tok = default_tokenizer()
    ids = tok.encode("12+34=")
    assert tok.decode(ids) == "12+34=" and tok.decode(ids + [tok.eos_id, 5]) == "12+34="
    assert CharTokenizer.from_dict(tok.to_dict()) == tok
    with pytest.raises(InputError, match="'é'"):
        tok.encode("1é2")
    with pytest.raises(ConfigError):
        check_same_vocab(tok, CharTokenizer("0123456789"))
    with pytest.raises(ConfigError):
        check_same_vocab(tok, CharTokenizer(tok.chars[::-1]))
    check_same_vocab(tok, default_tokenizer())


# ---------------------------------------------------------------------------- model
@pytest.fixture(scope="module")
def model():
    tok = default_tokenizer()
    torch.manual_seed(0)
    m = GPT(GPTConfig(tok.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32)).eval()
    with torch.no_grad():  # larger weights so a random model's outputs vary with the prompt
        for p in m.parameters():
            p.mul_(15)
    return m, tok


def test_batched_greedy_equals_one_by_one(model):
    m, tok = model
    prompts = [tok.encode_prompt(s) for s in ["1+2=", "345+678=", "9*9=", "cmp 1,22="]]
    batched = m.generate(prompts, 6, temperature=0)
    single = [m.generate([p], 6, temperature=0)[0] for p in prompts]
    assert batched == single
    assert len({tuple(c) for c in single}) > 1  # the check is not vacuous


def test_kv_cache_logits_equal_full_forward(model):
    m, tok = model
    seq = tok.encode_prompt("12+34=") + tok.encode("64")
    x = torch.tensor([seq])
    full = m(x)[0]
    caches = [{} for _ in m.blocks]
    step_logits = [m(x[:, :4], attn_mask=torch.ones(1, 4), caches=caches)[0, -1]]
    for t in range(4, len(seq)):
        mask = torch.ones(1, t + 1)
        step_logits.append(m(x[:, t:t + 1], attn_mask=mask, pos=torch.tensor([[t]]),
                             caches=caches)[0, -1])
    assert torch.allclose(torch.stack(step_logits), full[3:], rtol=1e-5, atol=2e-3)


def test_sampling_deterministic_and_top_p(model):
    m, tok = model
    prompts = [tok.encode_prompt("1+2=")] * 16
    a = m.generate(prompts, 5, generator=torch.Generator().manual_seed(1))
    b = m.generate(prompts, 5, generator=torch.Generator().manual_seed(1))
    c = m.generate(prompts, 5, generator=torch.Generator().manual_seed(2))
    assert a == b and a != c
    tiny = m.generate(prompts, 5, top_p=1e-6, generator=torch.Generator().manual_seed(3))
    assert tiny == [m.generate(prompts[:1], 5, temperature=0)[0]] * 16  # top-p -> greedy


def test_save_load_roundtrip(model, tmp_path):
    m, tok = model
    save_model(tmp_path / "m.safetensors", m, tok, {"x": 1}, half=False)
    m2, tok2, meta = load_model(tmp_path / "m.safetensors")
    x = torch.tensor([tok.encode_prompt("1+1=")])
    assert torch.allclose(m(x), m2(x)) and tok2 == tok and meta == {"x": 1}
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(InputError, match="bad.safetensors"):
        load_model(tmp_path / "bad.safetensors")


# ----------------------------------------------------------------------- checkpoint
def test_checkpoint_roundtrip_restores_next_draws(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    gens = {"np": np.random.default_rng(1), "gen": torch.Generator().manual_seed(2)}
    path = tmp_path / "last.pt"
    save_checkpoint(path, model=net, optimizer=opt, step=7, rng_state=capture_rng(gens),
                    extra={"k": [1]})
    want = (gens["np"].random(), torch.rand(1, generator=gens["gen"]).item())
    net2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.AdamW(net2.parameters(), lr=0.1)
    info = load_checkpoint(path, model=net2, optimizer=opt2)
    g2 = {"np": np.random.default_rng(99), "gen": torch.Generator().manual_seed(99)}
    restore_rng(info["rng_state"], g2)
    assert (g2["np"].random(), torch.rand(1, generator=g2["gen"]).item()) == want
    assert info["step"] == 7 and info["extra"] == {"k": [1]}
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]

    # a crash while writing the next checkpoint leaves this one loadable
    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, model=net, optimizer=opt, step=8, rng_state={}, extra={})
    monkeypatch.undo()
    assert load_checkpoint(path, model=net2)["step"] == 7
    with pytest.raises(InputError, match="nothere"):
        load_checkpoint(tmp_path / "nothere.pt", model=net2)
