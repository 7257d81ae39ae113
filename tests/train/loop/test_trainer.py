"""The training loop end to end on tiny random GPTs (tests/train/conftest.py) with the tiny
config: outputs, determinism, resume equivalence, dropping zero-weight problems before any
forward pass, NaN handling, the two-stage switch, the compute budget, and the ledger.

A random student solves nothing, so to get a spread of pass rates some tests swap in a
verifier that accepts a completion iff its first character's code is divisible by 3: about a
third of the random student's samples, so p_hat = c / K scatters over 0..1."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from runlog import ckpt, killed_and_resumed, rows, stable

import paced_train.loop.distributed as distributed
import paced_train.loop.rollouts as rollouts_mod
import paced_train.loop.trainer as trainer
from paced_theory.errors import ConfigError, PacedError
from paced_train.config import METHOD_OVERRIDES, load_config
from paced_train.loop.trainer import train
from paced_train.models.checkpoint import load_checkpoint
from paced_train.models.model import GPT, load_model
from paced_train.tasks import build_problems

STEP_KEYS = {"kind", "step", "rollout_tokens", "teacher_tokens", "student_fwd_tokens",
             "student_bwd_tokens", "flops", "loss", "n_kept", "n_dropped"}
EVAL_KEYS = {"kind", "step", "flops", "acc", "acc_by_difficulty", "mean_at_k", "retention",
             "forgetting"}


@pytest.fixture
def mixed_verifier(monkeypatch):
    monkeypatch.setattr(rollouts_mod, "verify",
                        lambda p, text: bool(text) and ord(text[0]) % 3 == 0)


def test_outputs_follow_the_contract_and_runs_are_deterministic(tiny_cfg, tmp_path,
                                                               mixed_verifier):
    cfg = tiny_cfg("weights.method=paced")
    a = train(cfg, tmp_path / "a")
    b = train(cfg, tmp_path / "b")
    assert stable(a) == stable(b) and rows(tmp_path / "a") == rows(tmp_path / "b")
    for name in ("config.toml", "metrics.jsonl", "summary.json", "checkpoints/last.safetensors"):
        assert (tmp_path / "a" / name).exists()
    assert load_config(tmp_path / "a" / "config.toml") == cfg
    steps, evals = rows(tmp_path / "a", "step"), rows(tmp_path / "a", "eval")
    assert [r["step"] for r in steps] == list(range(1, 9))
    assert [r["step"] for r in evals] == [0, 4, 8]
    assert all(STEP_KEYS <= set(r) for r in steps) and all(EVAL_KEYS <= set(r) for r in evals)
    assert set(evals[-1]["acc_by_difficulty"]) == {"add2", "add3", "mul2"}  # configs/tiny.toml
    assert all(r["n_kept"] + r["n_dropped"] == 8 for r in steps)
    assert 0 < sum(r["n_kept"] for r in steps) < 64  # the verifier spreads the pass rates
    flops = [r["flops"] for r in steps]
    assert all(y >= x for x, y in zip(flops, flops[1:])) and flops[-1] > flops[0]
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["steps"] == 8 and summary["flops"] == flops[-1]
    assert summary["acc"] == evals[-1]["acc"] and 0.0 <= summary["rollout_share"] <= 1.0
    assert summary["forgetting"] == pytest.approx(summary["retention_start"]
                                                  - summary["retention"])
    # a different seed gives a different run
    c = train(tiny_cfg("weights.method=paced", "run.seed=1"), tmp_path / "c")
    assert rows(tmp_path / "c") != rows(tmp_path / "a") and stable(c) != stable(a)


@pytest.mark.parametrize("method", ["paced", "two-stage", "paced-rl"])
def test_resume_reaches_the_same_final_metrics_and_weights(tiny_cfg, tmp_path, monkeypatch,
                                                           mixed_verifier, method):
    cfg = tiny_cfg(*METHOD_OVERRIDES[method])
    killed_and_resumed(cfg, tmp_path, monkeypatch, trainer, "candidates",
                       lambda n, b, seed, step: step)


def test_resume_refuses_a_different_config(tiny_cfg, tmp_path):
    train(tiny_cfg("weights.method=uniform", "budget.steps=4"), tmp_path / "r")
    with pytest.raises(ConfigError, match="run.seed"):
        train(tiny_cfg("weights.method=uniform", "run.seed=5"), tmp_path / "r", resume=True)
    # a longer budget is allowed: 4 steps then 4 more equal 8 steps in one go
    longer = train(tiny_cfg("weights.method=uniform"), tmp_path / "r", resume=True)
    assert stable(longer) == stable(train(tiny_cfg("weights.method=uniform"), tmp_path / "8"))


def test_zero_weight_problems_never_reach_a_forward_pass(tiny_cfg, tmp_path, monkeypatch,
                                                         mixed_verifier):
    """Every teacher/student forward pass of training (generation aside) sees exactly the
    kept problems of its step, and the teacher writes references for kept problems only."""
    calls, kept = [], []
    real_forward, real_step = GPT.forward, trainer.distill_step

    def forward(self, idx, attn_mask=None, pos=None, caches=None, positions=None):
        if caches is None:  # not generation: a training-batch pass
            who = "student" if any(p.requires_grad for p in self.parameters()) else "teacher"
            calls.append((who, idx.shape[0]))
        return real_forward(self, idx, attn_mask, pos, caches, positions)

    def step(run, st, batch, w, norm):
        assert (w > 0).all() and norm > 0
        kept.append([p.id for p in batch])
        return real_step(run, st, batch, w, norm)

    monkeypatch.setattr(GPT, "forward", forward)
    monkeypatch.setattr(trainer, "distill_step", step)
    cfg = tiny_cfg("weights.method=paced")
    s = train(cfg, tmp_path / "r")
    tok = load_model(cfg.models.student)[1]
    steps = rows(tmp_path / "r", "step")
    n_kept = [r["n_kept"] for r in steps if r["n_kept"] > 0]
    assert any(r["n_dropped"] > 0 for r in steps) and n_kept
    assert calls == [(who, k) for k in n_kept for who in ("teacher", "student")]
    assert [len(b) for b in kept] == n_kept
    refs = ckpt(tmp_path / "r")["extra"]["references"]
    assert set(refs) == {i for b in kept for i in b}
    # teacher tokens = the training batches (the student's too) + generating each reference
    prompts = {p.id: len(tok.encode_prompt(p.prompt)) for p in build_problems(cfg)[0]}
    assert s["student_fwd_tokens"] == s["student_bwd_tokens"] > 0
    assert s["teacher_tokens"] == s["student_fwd_tokens"] + sum(prompts[i] + len(r)
                                                                for i, r in refs.items())


def test_a_student_that_solves_nothing_costs_no_forward_pass(tiny_cfg, tmp_path):
    """Random student, real verifier: every p_hat = 0, so p(1-p) drops every problem."""
    s = train(tiny_cfg("weights.method=paced"), tmp_path / "r")
    steps = rows(tmp_path / "r", "step")
    assert all(r["n_kept"] == 0 and r["n_dropped"] == 8 and r["loss"] is None for r in steps)
    assert s["student_fwd_tokens"] == s["teacher_tokens"] == 0 and s["rollout_tokens"] > 0


def test_ledger_matches_two_and_four_n_per_token(tiny_cfg, tiny_models, tmp_path,
                                                 mixed_verifier):
    s = train(tiny_cfg("weights.method=paced", "loss.schedule=two-stage"), tmp_path / "r")
    n_s = load_model(tiny_models["student"])[0].num_params(non_embedding=True)
    n_t = load_model(tiny_models["teacher"])[0].num_params(non_embedding=True)
    assert s["rollout_tokens"] and s["sample_tokens"] and s["teacher_tokens"]
    assert s["student_bwd_tokens"]
    assert s["flops"] == pytest.approx(2 * n_s * (s["rollout_tokens"] + s["sample_tokens"]
                                                  + s["student_fwd_tokens"])
                                       + 4 * n_s * s["student_bwd_tokens"]
                                       + 2 * n_t * s["teacher_tokens"])


def test_nan_loss_stops_the_run_and_keeps_the_last_checkpoint(tiny_cfg, tmp_path, monkeypatch):
    cfg = tiny_cfg("weights.method=uniform", "run.ckpt_every=2")
    real_loss, real_save = trainer.losses.weighted_loss, trainer.save_checkpoint
    count, saved = {"n": 0}, {}

    def poisoned(*a, **k):
        count["n"] += 1
        out = real_loss(*a, **k)
        return out * float("nan") if count["n"] == 3 else out

    def save(path, **kw):
        real_save(path, **kw)
        saved[kw["step"]] = path.read_bytes()

    monkeypatch.setattr(trainer.losses, "weighted_loss", poisoned)
    monkeypatch.setattr(trainer, "save_checkpoint", save)
    with pytest.raises(PacedError, match="step 3"):
        train(cfg, tmp_path / "nan")
    assert list(saved) == [2]  # nothing was written after the NaN
    assert (tmp_path / "nan/checkpoints/last.safetensors").read_bytes() == saved[2]
    model = load_model(cfg.models.student)[0]
    assert load_checkpoint(tmp_path / "nan/checkpoints/last.safetensors",
                           model=model)["step"] == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # once the cause is gone, --resume finishes exactly like a run that never failed
    monkeypatch.setattr(trainer.losses, "weighted_loss", real_loss)
    resumed = train(cfg, tmp_path / "nan", resume=True)
    assert stable(resumed) == stable(train(cfg, tmp_path / "clean"))


def test_two_stage_switches_at_the_configured_step(tiny_cfg, tmp_path):
    train(tiny_cfg("weights.method=uniform", "loss.schedule=two-stage", "loss.switch_at=0.25"),
          tmp_path / "r")
    kinds = [r["loss_kind"] for r in rows(tmp_path / "r", "step")]
    assert kinds == ["forward"] * 2 + ["reverse"] * 6


def test_two_stage_switches_at_the_configured_compute(tiny_cfg, tmp_path):
    full = train(tiny_cfg("weights.method=uniform"), tmp_path / "f")
    budget = full["flops"]
    train(tiny_cfg("weights.method=uniform", "loss.schedule=two-stage", "loss.switch_at=0.5",
                   "loss.switch_unit=compute", f"budget.flops={budget}", "budget.steps=100"),
          tmp_path / "r")
    steps = rows(tmp_path / "r", "step")
    before = [0.0] + [r["flops"] for r in steps[:-1]]  # the ledger when each step began
    kinds = [r["loss_kind"] for r in steps]
    assert kinds == ["forward" if f < 0.5 * budget else "reverse" for f in before]
    assert "forward" in kinds and "reverse" in kinds
    assert steps[-2]["flops"] < budget <= steps[-1]["flops"]  # the FLOP cap stopped it


def test_reverse_kl_samples_are_training_compute_that_updates_the_table(tiny_cfg, tmp_path):
    s = train(tiny_cfg(*METHOD_OVERRIDES["uniform-reverse"]), tmp_path / "r")
    assert s["sample_tokens"] > 0 and s["teacher_tokens"] > 0 and s["rollout_tokens"] == 0
    assert s["rollout_flops_share"] == 0  # not estimation
    table = ckpt(tmp_path / "r")["extra"]["table"]
    assert sum(table["n"]) == 8 * 8  # one sample per kept problem per step, no refreshes
    assert max(table["step"]) == -1 and table["history"] == []  # samples are no measurement
    f = train(tiny_cfg("weights.method=uniform"), tmp_path / "f")
    assert f["rollout_tokens"] == 0 and sum(ckpt(tmp_path / "f")["extra"]["table"]["n"]) == 0


NO_TEACHER = 'models.teacher="/nonexistent/teacher.safetensors"'  # rl must not load it


def test_rl_learns_from_the_verifier_with_no_teacher_and_charges_its_samples(
        tiny_cfg, tiny_models, tmp_path, monkeypatch, mixed_verifier):
    """Uniform RL: every candidate gets a group of K = 4 samples (sample tokens: training
    compute), no teacher is loaded (models.teacher names no file) or charged, no estimation
    is paid; the groups' c / K replace their table entries (stamped, no refresh history);
    the groups that can move the student are those with 0 < c < K, and the degenerate ones
    still count in the normaliser (sum of weights 1 = the kept candidates)."""
    seen = []
    real = trainer.losses.policy_gradient

    def spy(logp, rewards, groups, weights, norm, **kw):
        seen.append((rewards.clone(), groups.clone(), weights.clone(), norm))
        return real(logp, rewards, groups, weights, norm, **kw)

    monkeypatch.setattr(trainer.losses, "policy_gradient", spy)
    cfg = tiny_cfg(*METHOD_OVERRIDES["rl"], NO_TEACHER)
    s = train(cfg, tmp_path / "r")
    assert trainer.setup(cfg)[0].teacher is None
    steps = rows(tmp_path / "r", "step")
    assert [r["loss_kind"] for r in steps] == ["rl"] * 8 and all(r["n_kept"] == 8 for r in steps)
    assert s["teacher_tokens"] == s["rollout_tokens"] == s["estimate_tokens"] == 0
    assert s["rollout_flops_share"] == 0 and s["sample_tokens"] >= 8 * 8 * 4
    n_s = load_model(tiny_models["student"])[0].num_params(non_embedding=True)
    assert s["student_fwd_tokens"] == s["student_bwd_tokens"] > 0
    assert s["flops"] == pytest.approx(2 * n_s * (s["sample_tokens"] + s["student_fwd_tokens"])
                                       + 4 * n_s * s["student_bwd_tokens"])
    table = ckpt(tmp_path / "r")["extra"]["table"]
    measured = [i for i, t in enumerate(table["step"]) if t >= 0]
    assert measured and all(table["n"][i] == 4 for i in measured) and table["history"] == []
    assert seen and sum(r["n_frontier"] for r in steps) == sum(len(w) for _, _, w, _ in seen)
    for rewards, groups, w, norm in seen:
        c = torch.zeros(len(w)).index_add(0, groups, rewards.float())
        assert ((c > 0) & (c < 4)).all() and (w == 1).all() and norm == 8


def test_paced_rl_weights_each_group_by_its_own_fresh_pass_rate(tiny_cfg, tmp_path,
                                                                monkeypatch, mixed_verifier):
    """Paced RL: the sampler skips problems the table says are settled (n_dropped > 0),
    so only the kept candidates are sampled; each trained group's weight is w(c / K) =
    p_hat (1 - p_hat) of its own K samples, and the normaliser the sum of those fresh
    weights over the step's groups."""
    seen, sampled = [], []
    real_pg, real_groups = trainer.losses.policy_gradient, trainer.group_samples

    def spy(logp, rewards, groups, weights, norm, **kw):
        seen.append((rewards.clone(), groups.clone(), weights.clone(), norm))
        return real_pg(logp, rewards, groups, weights, norm, **kw)

    def groups_spy(run, st, kept):
        out = real_groups(run, st, kept)
        sampled.append((len(kept), out[3].copy()))
        return out

    monkeypatch.setattr(trainer.losses, "policy_gradient", spy)
    monkeypatch.setattr(trainer, "group_samples", groups_spy)
    train(tiny_cfg(*METHOD_OVERRIDES["paced-rl"], NO_TEACHER, "rollouts.max_age=3"),
          tmp_path / "r")
    steps = rows(tmp_path / "r", "step")
    assert any(r["n_dropped"] > 0 for r in steps)
    assert [n for n, _ in sampled] == [r["n_kept"] for r in steps if r["n_kept"] > 0]
    assert len(seen) == len(sampled)  # every step here had a frontier group
    for (rewards, groups, w, norm), (_, counts) in zip(seen, sampled):
        p = torch.zeros(len(w), dtype=torch.float64).index_add(0, groups, rewards.double()) / 4
        torch.testing.assert_close(w.double(), p * (1 - p))
        q = counts / 4
        assert norm == pytest.approx(float(np.sum(q * (1 - q))))


def test_rl_gives_exactly_zero_gradient_where_every_group_fails(tiny_cfg, tiny_models,
                                                                  tmp_path):
    """A random student and the real verifier: every group fails (c = 0), so every
    advantage is 0, no group goes through the model, and the student's weights end exactly
    where they started, though every step paid for its samples."""
    s = train(tiny_cfg(*METHOD_OVERRIDES["rl"]), tmp_path / "r")
    assert s["sample_tokens"] > 0 and s["student_fwd_tokens"] == 0
    assert all(r["reward"] == 0 and r["grad_norm"] == 0 for r in rows(tmp_path / "r", "step"))
    start = load_model(tiny_models["student"])[0].state_dict()
    end = ckpt(tmp_path / "r")["model"]
    assert all(torch.equal(end[k], start[k].float()) for k in end)


def test_rl_raises_the_reward_it_is_trained_on(tiny_cfg, tmp_path, mixed_verifier):
    """The policy gradient climbs: with the mixed verifier (a first character whose code is
    divisible by 3) the random student's sampled reward rises from ~0.3 to ~1 in 40 steps
    (with the policy gradient's sign flipped it falls to ~0.06)."""
    train(tiny_cfg(*METHOD_OVERRIDES["rl"], "budget.steps=40", "optim.lr=1e-2",
                   "eval.every=40", "run.ckpt_every=40"), tmp_path / "r")
    reward = [r["reward"] for r in rows(tmp_path / "r", "step")]
    first, last = np.mean(reward[:5]), np.mean(reward[-5:])
    assert last > first + 0.3, (first, last)


def test_rl_kl_runs_the_frozen_initial_student_and_charges_it(tiny_cfg, tiny_models, tmp_path,
                                                              mixed_verifier):
    s = train(tiny_cfg(*METHOD_OVERRIDES["rl"], NO_TEACHER, "loss.rl_kl=0.1"), tmp_path / "r")
    n_s = load_model(tiny_models["student"])[0].num_params(non_embedding=True)
    assert s["teacher_tokens"] == s["student_fwd_tokens"] > 0  # the reference, same batches
    assert s["flops"] == pytest.approx(2 * n_s * (s["sample_tokens"] + s["student_fwd_tokens"]
                                                  + s["teacher_tokens"])
                                       + 4 * n_s * s["student_bwd_tokens"])


def test_dropout_is_seeded_by_the_run_not_by_global_state(tiny_cfg, tmp_path):
    """Dropout draws from torch's global RNG; the loop seeds it per step in a fork, so two
    runs agree whatever the global state was."""
    from paced_train.models.model import GPTConfig, save_model
    from paced_train.models.tokenizer import default_tokenizer

    tok = default_tokenizer()
    torch.manual_seed(0)
    student = tmp_path / "dropout.safetensors"
    save_model(student, GPT(GPTConfig(tok.vocab_size, block_size=48, n_layer=1, n_head=2,
                                      n_embd=16, dropout=0.5)), tok, {}, half=False)
    cfg = tiny_cfg("weights.method=uniform", f'models.student="{student}"', "budget.steps=3")
    out = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        train(cfg, tmp_path / f"r{global_seed}")
        out.append(rows(tmp_path / f"r{global_seed}"))
    assert out[0] == out[1]


def test_vocab_mismatch_is_a_config_error(tiny_cfg, tmp_path):
    from paced_train.models.model import GPTConfig, save_model
    from paced_train.models.tokenizer import CharTokenizer

    tok = CharTokenizer("0123456789+=")
    odd = tmp_path / "odd.safetensors"
    save_model(odd, GPT(GPTConfig(tok.vocab_size, n_layer=1, n_head=1, n_embd=8)), tok, {})
    with pytest.raises(ConfigError, match="vocabulary"):
        train(tiny_cfg(f'models.teacher="{odd}"'), tmp_path / "r")


def test_progress_bar_and_device_resolution(tiny_cfg, tmp_path, capsys):
    train(tiny_cfg("weights.method=uniform", "run.progress=true", "budget.steps=2"),
          tmp_path / "r")
    err = capsys.readouterr().err
    assert "loss" in err and "acc" in err and " p " in err
    assert "bar: loss = " in err and "kept = " in err  # the postfix's legend
    assert distributed.resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert distributed.resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="cuda"):
            distributed.resolve_device("cuda")


def test_a_refresh_the_budget_cannot_pay_for_is_cut(tiny_cfg, tmp_path):
    """Random tiny students solve nothing, so PACED drops every problem and only refreshes
    cost FLOPs. With a budget of 2.5 refreshes the third refresh is cut to half the pool (it
    used to run whole and overshoot the budget by 20 %)."""
    first = train(tiny_cfg("weights.method=paced", "budget.steps=4"), tmp_path / "one")
    per_refresh = first["flops"]  # steps 1-4: one refresh at step 0, nothing else paid
    assert per_refresh > 0 and first["steps"] == 4
    cfg = tiny_cfg("weights.method=paced", "budget.steps=1000",
                   f"budget.flops={2.5 * per_refresh}")
    s = train(cfg, tmp_path / "capped")
    # two refreshes (their costs differ a little: sampled completion lengths vary), then
    # the third cut to the problems the budget can pay for at the last refresh's mean cost
    # per problem (so it can overshoot by that cost's spread: 0.1 % seen here, where the
    # uncut refresh overshot by 20 %); three
    # refreshes that keep nothing stop the run (checks the budget cuts to nothing count: the
    # run used to take empty steps up to budget.steps)
    assert 2.2 * per_refresh < s["flops"] <= 1.01 * cfg.budget.flops
    assert s["steps"] == 9 and "stopped" in s
    tight = tiny_cfg("weights.method=paced", "budget.steps=1000",
                     f"budget.flops={2.02 * per_refresh}")
    t = train(tight, tmp_path / "tight")  # the third check can pay for (almost) nothing
    assert t["steps"] <= 12 and "stopped" in t


def test_a_refresh_that_crosses_an_evaluation_boundary_does_not_skip_it(tiny_cfg, tmp_path):
    """Issue 17: the loop took the run's progress after the refresh, so an eval.every_frac
    boundary crossed by a refresh was never evaluated and methods got different chords.
    Here refreshes (K = 64 rollouts of every problem, before every step) cost far more than
    a step, so most boundaries fall inside one; every boundary gets its evaluation, in order,
    one per boundary."""
    over = ["weights.method=paced", "weights.floor=0.05", "rollouts.K=64",
            "rollouts.refresh_every=1", "eval.every_frac=0.1"]
    one = train(tiny_cfg(*over, "budget.steps=1"), tmp_path / "one")
    budget = 15 * one["flops"]  # boundaries every ~1.5 refreshes + steps: one at a time
    cfg = tiny_cfg(*over, "budget.steps=100", f"budget.flops={budget}")
    train(cfg, tmp_path / "run")
    rows = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    buckets = [int(r["flops"] / (0.1 * budget) + 1e-9) for r in rows if r["kind"] == "eval"]
    assert buckets[:-1] == list(range(len(buckets) - 1)), buckets  # 0, 1, 2, ...: none skipped
    assert buckets[-1] >= len(buckets) - 2 and len(buckets) >= 10
