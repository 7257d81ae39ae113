"""The training loop end to end on tiny random models: determinism, resume equivalence,
dropping zero-weight problems before forward passes, NaN handling, the two-stage switch."""

from __future__ import annotations

import json

import pytest
import torch

import paced_train.trainer as trainer
from paced_theory.errors import ConfigError, PacedError
from paced_train.checkpoint import load_checkpoint
from paced_train.model import load_model
from paced_train.trainer import train

VOLATILE = {"wall_s", "timers_s", "rollout_share"}


def rows(run_dir):
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        out.append({k: v for k, v in r.items() if k not in VOLATILE})
    return out


def stable(summary):
    return {k: v for k, v in summary.items() if k not in VOLATILE}


def test_run_writes_outputs_and_is_deterministic(tiny_cfg, tmp_path):
    cfg = tiny_cfg("weights.method=uniform")
    a = train(cfg, tmp_path / "a")
    b = train(cfg, tmp_path / "b")
    assert stable(a) == stable(b)
    assert rows(tmp_path / "a") == rows(tmp_path / "b")
    for name in ("config.toml", "metrics.jsonl", "summary.json", "checkpoints/last.pt"):
        assert (tmp_path / "a" / name).exists()
    steps = [r for r in rows(tmp_path / "a") if r["kind"] == "step"]
    assert [r["step"] for r in steps] == list(range(1, 9))
    flops = [r["flops"] for r in steps]
    assert all(y > x for x, y in zip(flops, flops[1:]))  # ledger grows every step
    # a different seed gives a different run
    c = train(tiny_cfg("weights.method=uniform", "run.seed=1"), tmp_path / "c")
    assert stable(c) != stable(a)


@pytest.mark.parametrize("method", ["uniform", "two-stage"])
def test_resume_reaches_the_same_final_metrics(tiny_cfg, tmp_path, monkeypatch, method):
    overrides = trainer.METHOD_OVERRIDES[method] + ["weights.method=uniform"]
    cfg = tiny_cfg(*overrides)
    full = train(cfg, tmp_path / "full")
    real_step = trainer.distill_step

    def dying(st, *args, **kw):
        if st.step == 6:  # after the checkpoint at step 4: the process is killed
            raise KeyboardInterrupt
        return real_step(st, *args, **kw)

    monkeypatch.setattr(trainer, "distill_step", dying)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "killed")
    monkeypatch.setattr(trainer, "distill_step", real_step)
    resumed = train(cfg, tmp_path / "killed", resume=True)
    assert stable(resumed) == stable(full)
    assert rows(tmp_path / "killed") == rows(tmp_path / "full")
    m1 = torch.load(tmp_path / "full/checkpoints/last.pt", weights_only=False)["model"]
    m2 = torch.load(tmp_path / "killed/checkpoints/last.pt", weights_only=False)["model"]
    assert all(torch.equal(m1[k], m2[k]) for k in m1)


def test_zero_weight_problems_never_reach_a_forward_pass(tiny_cfg, tmp_path, monkeypatch):
    """A random student solves nothing: every p_hat is 0, so PACED's p(1-p) drops every
    problem. No teacher or student forward pass may happen for them."""
    calls = []
    real = trainer.distill_step
    monkeypatch.setattr(trainer, "distill_step",
                        lambda st, s, t, tok, batch, *a, **k: calls.append(len(batch))
                        or real(st, s, t, tok, batch, *a, **k))
    s = train(tiny_cfg("weights.method=paced"), tmp_path / "r")
    steps = [r for r in rows(tmp_path / "r") if r["kind"] == "step"]
    assert all(r["n_kept"] == 0 and r["n_dropped"] == 8 for r in steps)
    assert calls == [] and s["student_fwd_tokens"] == 0
    # the teacher only paid for its cached references
    assert s["teacher_tokens"] == steps[0]["teacher_tokens"]


def test_partial_dropping_counts_tokens_of_kept_problems_only(tiny_cfg, tmp_path, monkeypatch):
    import numpy as np

    def half(cfg_w, table, ids):
        return np.array([1.0 if i % 2 == 0 else 0.0 for i in range(len(ids))])

    seen = []
    real = trainer.distill_step
    monkeypatch.setattr(trainer, "problem_weights", half)
    monkeypatch.setattr(trainer, "distill_step",
                        lambda st, s, t, tok, batch, w, *a, **k: seen.append((len(batch),
                                                                              list(w)))
                        or real(st, s, t, tok, batch, w, *a, **k))
    train(tiny_cfg("weights.method=paced"), tmp_path / "r")
    assert seen and all(n == 4 and all(x > 0 for x in w) for n, w in seen)
    steps = [r for r in rows(tmp_path / "r") if r["kind"] == "step"]
    assert all(r["n_kept"] == 4 for r in steps)


def test_nan_loss_stops_and_keeps_last_checkpoint(tiny_cfg, tmp_path, monkeypatch):
    cfg = tiny_cfg("weights.method=uniform", "run.ckpt_every=2")
    real = trainer.losses.weighted_loss
    count = {"n": 0}

    def poisoned(*a, **k):
        count["n"] += 1
        out = real(*a, **k)
        return out * float("nan") if count["n"] == 3 else out

    monkeypatch.setattr(trainer.losses, "weighted_loss", poisoned)
    with pytest.raises(PacedError, match="step 3"):
        train(cfg, tmp_path / "nan")
    model, _, _ = load_model(cfg.models.student)
    info = load_checkpoint(tmp_path / "nan/checkpoints/last.pt", model=model)
    assert info["step"] == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_two_stage_switches_at_the_configured_step(tiny_cfg, tmp_path):
    train(tiny_cfg("weights.method=uniform", "loss.schedule=two-stage", "loss.switch_at=0.25"),
          tmp_path / "r")
    kinds = [r["loss_kind"] for r in rows(tmp_path / "r") if r["kind"] == "step"]
    assert kinds == ["forward"] * 2 + ["reverse"] * 6


def test_reverse_kl_samples_count_as_rollouts(tiny_cfg, tmp_path):
    s = train(tiny_cfg("weights.method=uniform", "loss.schedule=reverse"), tmp_path / "r")
    f = train(tiny_cfg("weights.method=uniform", "loss.schedule=forward"), tmp_path / "f")
    assert s["rollout_tokens"] > f["rollout_tokens"]


def test_compute_budget_stops_the_run(tiny_cfg, tmp_path):
    full = train(tiny_cfg("weights.method=uniform"), tmp_path / "a")
    capped = train(tiny_cfg("weights.method=uniform", f"budget.flops={full['flops'] / 2}"),
                   tmp_path / "b")
    assert capped["steps"] < full["steps"]
    assert capped["flops"] >= full["flops"] / 2


def test_vocab_mismatch_is_a_config_error(tiny_cfg, tmp_path):
    from paced_train.model import GPT, GPTConfig, save_model
    from paced_train.tokenizer import CharTokenizer

    tok = CharTokenizer("0123456789+=")
    save_model(tmp_path / "odd.safetensors", GPT(GPTConfig(tok.vocab_size, n_layer=1,
                                                            n_head=1, n_embd=8)), tok, {})
    with pytest.raises(ConfigError, match="vocabulary"):
        train(tiny_cfg(f'models.teacher="{tmp_path / "odd.safetensors"}"'), tmp_path / "r")
