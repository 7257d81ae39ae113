"""Which student parameters train ([trainable], paced_train/models/adapters.py): the top N
blocks (frozen parameters get no gradient, no optimizer state and do not move), LoRA through
peft (at initialisation the logits are the base model's; a step moves only the adapters), the
ledger's backward rate, and a checkpoint / resume round trip through the trainer. On the tiny
random Llama of test_hf.py; the LoRA tests need peft (skipped without it)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from test_hf import save_tiny_llama  # noqa: E402  (tests/train/models/test_hf.py)

from paced_theory.errors import ConfigError  # noqa: E402
from paced_train.config import apply_overrides, load_config  # noqa: E402
from paced_train.loop.trainer import setup, train  # noqa: E402
from paced_train.models import adapters  # noqa: E402
from paced_train.models.hf import load_any  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("hf") / "tiny-llama", seed=3)


def cfg_for(tiny_dir, *overrides):
    """Self-distillation on the tiny Llama: reverse KL on its own samples, teacher shown the
    answer (the SmolLM2 comparison's setting), a few steps."""
    return load_config(ROOT / "configs" / "tiny.toml", [
        f'models.student="{tiny_dir}"', "models.teacher=self", "loss.privileged=answer",
        "loss.schedule=reverse", "weights.method=uniform", "budget.steps=4", "eval.every=4",
        "data.n_retention=2", "run.ckpt_every=2", "optim.lr=0.01", *overrides])


def step_once(run, st):
    """One training step through the loop's own distill_step on the first 4 problems."""
    from paced_train.loop.trainer import distill_step

    st.step += 1
    batch = run.train_set[:4]
    return distill_step(run, st, batch, np.ones(len(batch)), float(len(batch)))


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# ------------------------------------------------------------------------------ top N
def test_top_blocks_freeze_the_rest(tiny_dir):
    run, st = setup(cfg_for(tiny_dir, "trainable.mode=top", "trainable.top_blocks=1"))
    model = run.student
    layers = adapters.blocks(model)
    assert len(layers) == 2
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("hf.model.layers.1.", "hf.model.norm.")) for n in
                             trainable)
    assert all(p.requires_grad for p in layers[1].parameters())
    assert not any(p.requires_grad for p in layers[0].parameters())
    # the optimizer holds exactly the trainable tensors
    opt_params = {id(p) for g in run.opt.param_groups for p in g["params"]}
    assert opt_params == {id(p) for p in model.parameters() if p.requires_grad}
    before = snapshot(model)
    step_once(run, st)
    after = snapshot(model)
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None
        else:  # frozen: no gradient, no optimizer state, unchanged
            assert p.grad is None and p not in run.opt.state
            assert torch.equal(before[n], after[n]), n
    assert any(not torch.equal(before[n], after[n]) for n in trainable)
    assert set(run.opt.state) == {p for p in model.parameters() if p.requires_grad}
    # the teacher (a copy of the initial student) is untouched and fully frozen
    assert not any(p.requires_grad for p in run.teacher.parameters())


def test_top_blocks_errors_name_the_key(tiny_dir):
    with pytest.raises(ConfigError, match="trainable.top_blocks"):
        setup(cfg_for(tiny_dir, "trainable.mode=top", "trainable.top_blocks=3"))
    with pytest.raises(ConfigError, match="trainable.top_blocks"):
        load_config(None, ["trainable.top_blocks=0"])
    # a head tied to the input embedding is refused (our tiny GPT ties its head)
    gpt = load_config(ROOT / "configs" / "tiny.toml", ["trainable.mode=top", "trainable.head=true"])
    from paced_train.models.model import GPT, GPTConfig

    with pytest.raises(ConfigError, match="trainable.head"):
        adapters.configure(GPT(GPTConfig(20, n_layer=2, n_head=2, n_embd=8)), gpt.trainable)


def test_untied_head_trains_when_asked(tiny_dir):
    run, _ = setup(cfg_for(tiny_dir, "trainable.mode=top", "trainable.top_blocks=1",
                           "trainable.head=true"))
    assert run.student.hf.get_output_embeddings().weight.requires_grad
    assert not run.student.hf.get_input_embeddings().weight.requires_grad


def test_backward_rate(tiny_dir):
    """2 N_act + 2 N_w: 4 N with everything trainable; with the top block only, the block
    below is neither crossed nor trained."""
    model, _, _ = load_any(str(tiny_dir))
    N = model.num_params()
    assert adapters.backward_flops_per_token(model, N) == 4.0 * N
    cfg = load_config(None, ["trainable.mode=top", "trainable.top_blocks=1"])
    adapters.configure(model, cfg.trainable)
    b0 = sum(p.numel() for p in adapters.blocks(model)[0].parameters())
    top = sum(p.numel() for p in adapters.blocks(model)[1].parameters())
    norm = model.hf.get_decoder().norm.weight.numel()
    assert adapters.backward_flops_per_token(model, N) == 2.0 * (N - b0) + 2.0 * (top + norm)


def test_ledger_charges_the_backward_rate(tiny_dir, tmp_path):
    """A run with frozen blocks is charged 2 N_act + 2 N_w per backward token."""
    cfg = cfg_for(tiny_dir, "trainable.mode=top", "trainable.top_blocks=1", "budget.steps=1")
    run, st = setup(cfg)
    rate = adapters.backward_flops_per_token(run.student, run.student.num_params())
    assert st.ledger.bwd_per_token == rate < 4.0 * run.student.num_params()
    summary = train(cfg, tmp_path / "r")
    n_s, n_t = run.student.num_params(), run.teacher.num_params()
    expect = (2.0 * n_s * (summary["student_fwd_tokens"] + summary["sample_tokens"])
              + rate * summary["student_bwd_tokens"] + 2.0 * n_t * summary["teacher_tokens"])
    assert summary["flops"] == pytest.approx(expect, rel=1e-12)


# ---------------------------------------------------------------------------------- LoRA
def test_lora_starts_at_the_base_model_and_trains_only_adapters(tiny_dir):
    pytest.importorskip("peft")
    base, tok, _ = load_any(str(tiny_dir))
    run, st = setup(cfg_for(tiny_dir, "trainable.mode=lora", "trainable.lora_rank=4"))
    model = run.student
    lora = {n for n, p in model.named_parameters() if "lora_" in n}
    assert lora and {n for n, p in model.named_parameters() if p.requires_grad} == lora
    assert type(model.hf) is type(base.hf)  # injected in place: the same model class
    assert not any("lora_" in n for n, _ in run.teacher.named_parameters())  # plain teacher
    # at initialisation (lora_B = 0) the logits are the base model's
    x = torch.tensor([tok.encode_prompt("12+39="), tok.encode_prompt("98+76=")])
    with torch.no_grad():
        assert torch.equal(model.eval()(x), base.eval()(x))
    model.train()
    before = snapshot(model)
    step_once(run, st)
    after = snapshot(model)
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert moved and moved <= lora
    assert any("lora_B" in n for n in moved)  # the update reaches B (A alone would not)
    assert set(run.opt.state) == {p for p in model.parameters() if p.requires_grad}
    # the adapted model now differs from the base
    with torch.no_grad():
        assert not torch.equal(model.eval()(x), base.eval()(x))


def test_lora_matches_a_dense_reference(tiny_dir):
    """peft's adapted linear = W x + (alpha / r) B A x: checked against the dense matrix
    W + (alpha / r) B A on one adapted layer, with B set to random values."""
    pytest.importorskip("peft")
    cfg = load_config(None, ["trainable.mode=lora", "trainable.lora_rank=2",
                             "trainable.lora_alpha=6", "trainable.lora_targets=q_proj"])
    model, tok, _ = load_any(str(tiny_dir))
    adapters.configure(model, cfg.trainable, seed=0)
    layer = model.hf.model.layers[0].self_attn.q_proj
    torch.manual_seed(1)
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
    W, A, B = (layer.base_layer.weight, layer.lora_A["default"].weight,
               layer.lora_B["default"].weight)
    x = torch.randn(3, W.shape[1])
    dense = x @ (W + (6 / 2) * B @ A).T
    assert torch.allclose(layer(x), dense, atol=1e-5)


def test_lora_is_seeded_and_errors_name_the_key(tiny_dir, monkeypatch):
    pytest.importorskip("peft")
    cfg = load_config(None, ["trainable.mode=lora"])
    a, _, _ = load_any(str(tiny_dir))
    b = copy.deepcopy(a)
    c = copy.deepcopy(a)
    adapters.configure(a, cfg.trainable, seed=0)
    adapters.configure(b, cfg.trainable, seed=0)
    adapters.configure(c, cfg.trainable, seed=1)
    sa, sb, sc = snapshot(a), snapshot(b), snapshot(c)
    key = "hf.model.layers.0.self_attn.q_proj.lora_A.default.weight"
    assert torch.equal(sa[key], sb[key]) and not torch.equal(sa[key], sc[key])
    bad = load_config(None, ["trainable.mode=lora", "trainable.lora_targets=qkv"])
    with pytest.raises(ConfigError, match="trainable.lora_targets.*q_proj"):
        adapters.configure(load_any(str(tiny_dir))[0], bad.trainable)


def test_lora_without_peft_names_the_key(tiny_dir, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_peft(name, *args, **kw):
        if name == "peft" or name.startswith("peft."):
            raise ImportError("no peft here")
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_peft)
    cfg = load_config(None, ["trainable.mode=lora"])
    with pytest.raises(ConfigError, match="trainable.mode.*peft"):
        adapters.configure(load_any(str(tiny_dir))[0], cfg.trainable)


# ----------------------------------------------------------------------- resume round trip
@pytest.mark.parametrize("mode", ["top", "lora"])
def test_resume_equals_an_uninterrupted_run(tiny_dir, tmp_path, mode):
    """Killed after step 2 and resumed: the same weights (frozen and trainable), optimizer
    moments and metrics as one run of 4 steps."""
    if mode == "lora":
        pytest.importorskip("peft")
    extra = ["trainable.mode=top", "trainable.top_blocks=1"] if mode == "top" else \
        ["trainable.mode=lora", "trainable.lora_rank=2"]
    cfg = cfg_for(tiny_dir, *extra)
    whole = train(cfg, tmp_path / "whole")
    train(apply_overrides(cfg, ["budget.steps=2"]), tmp_path / "part")
    resumed = train(cfg, tmp_path / "part", resume=True)
    for k in ("acc", "flops", "student_bwd_tokens", "sample_tokens"):
        assert resumed[k] == whole[k]
    from paced_train.models.checkpoint import checkpoint_path, load_checkpoint

    def weights(d):
        run, _ = setup(cfg)
        load_checkpoint(checkpoint_path(d), model=run.student, optimizer=run.opt)
        return snapshot(run.student), run.opt.state_dict()["state"]

    (wa, oa), (wb, ob) = weights(tmp_path / "whole"), weights(tmp_path / "part")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[n], wb[n]) for n in wa)
    assert oa.keys() == ob.keys() and all(
        torch.equal(oa[i][k], ob[i][k]) for i in oa for k in ("exp_avg", "exp_avg_sq"))
    rows = lambda d: [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    losses = lambda d: [r["loss"] for r in rows(d) if r["kind"] == "step"]  # noqa: E731
    assert losses(tmp_path / "whole") == losses(tmp_path / "part")
