"""Value criteria (loop/value.py: weights.method = lp | rholoss | maxloss) against slower,
obviously correct references: the learning-progress moving averages and sampling
distribution by hand, top-k by brute force, the reducible-loss ranking from one-problem-at-a-
time forward passes of the captured reference; the costs charged token by token; no
refreshes; resume equal to an uninterrupted run; config errors naming the key."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from runlog import ckpt, killed_and_resumed, rows

import paced_train.loop.trainer as trainer
import paced_train.loop.value as value
from paced_theory.errors import ConfigError
from paced_train.config import METHOD_OVERRIDES
from paced_train.loop import losses
from paced_train.loop.batching import candidates
from paced_train.loop.distill import completion_logits, n_params, teacher_view
from paced_train.loop.seeding import seed_for
from paced_train.loop.trainer import setup, train
from paced_train.models.model import GPT


# ------------------------------------------------------------------ learning progress
def hand_ema(observations, n_groups, a_fast, a_slow):
    """The moving averages written out plainly: per step, per group, the mean of the
    losses it got; the first sets both averages, later ones move each by its rate."""
    fast, slow = [None] * n_groups, [None] * n_groups
    for step in observations:
        for g in range(n_groups):
            xs = [x for gg, x in step if gg == g]
            if not xs:
                continue
            m = sum(xs) / len(xs)
            if fast[g] is None:
                fast[g], slow[g] = m, m
            else:
                fast[g] = (1 - a_fast) * fast[g] + a_fast * m
                slow[g] = (1 - a_slow) * slow[g] + a_slow * m
    nan = float("nan")
    return (np.array([nan if v is None else v for v in fast]),
            np.array([nan if v is None else v for v in slow]))


def test_lp_moving_averages_match_a_hand_loop():
    rng = np.random.default_rng(0)
    obs = []
    for _ in range(12):  # groups 0..3, group 3 never observed, repeats within a step
        g = rng.integers(0, 3, size=rng.integers(1, 6))
        obs.append(list(zip(g.tolist(), rng.random(len(g)).tolist())))
    fast, slow = np.full(4, np.nan), np.full(4, np.nan)
    for step in obs:
        g, x = (np.array(v) for v in zip(*step))
        fast, slow = value.lp_update(fast, slow, g, x, 0.3, 0.05)
    want_f, want_s = hand_ema(obs, 4, 0.3, 0.05)
    np.testing.assert_allclose(fast, want_f, rtol=1e-12)
    np.testing.assert_allclose(slow, want_s, rtol=1e-12)
    assert np.isnan(fast[3]) and not np.isnan(fast[:3]).any()


def test_lp_sampling_distribution_by_hand():
    group_of = np.array([0, 0, 1, 1, 1, 2])  # sizes 2, 3, 1
    fast = np.array([1.0, 0.5, np.nan])      # group 2 never observed
    slow = np.array([0.8, 0.45, np.nan])
    lp = value.lp_values(fast, slow)
    np.testing.assert_allclose(lp, [0.2, 0.05, 0.2])  # optimistic: the largest observed
    p = value.lp_probs(lp, group_of, tau=0.5, eps=0.2)
    # per problem, its group's LP / (0.5 * 0.2): 2, 2, 0.5, 0.5, 0.5, 2; then softmax
    e = [math.exp(2)] * 2 + [math.exp(0.5)] * 3 + [math.exp(2)]
    want = [0.8 * v / sum(e) + 0.2 / 6 for v in e]
    np.testing.assert_allclose(p, want, rtol=1e-12)
    assert p.sum() == pytest.approx(1.0)
    # nothing observed: every LP is 0, uniform; eps = 1 is uniform whatever LP says
    none = value.lp_values(np.full(3, np.nan), np.full(3, np.nan))
    np.testing.assert_allclose(value.lp_probs(none, group_of, 0.5, 0.2), [1 / 6] * 6)
    np.testing.assert_allclose(value.lp_probs(lp, group_of, 0.5, 1.0), [1 / 6] * 6)


def test_lp_draws_the_batch_from_that_distribution(tiny_cfg):
    """pick() draws batch_size distinct problems without replacement from P computed by hand
    over the run's cells, from the stream (seed, step, 'lp')."""
    run, st = setup(tiny_cfg("weights.method=lp", "weights.lp_tau=0.5", "weights.lp_eps=0.2",
                             "optim.batch_size=20"))  # 20 of 24: with replacement, repeats
    cells = sorted({(p.skill, p.difficulty) for p in run.train_set})
    assert len(cells) == 3
    st.value = {"fast": np.array([0.9, 0.3, np.nan]), "slow": np.array([0.5, 0.2, np.nan])}
    st.step = 3
    idx, row = value.pick(run, st)
    lp = {cells[0]: 0.4, cells[1]: 0.1, cells[2]: 0.4}
    e = [math.exp(lp[(p.skill, p.difficulty)] / (0.5 * 0.4)) for p in run.train_set]
    n = len(run.train_set)
    want = np.array([0.8 * v / sum(e) + 0.2 / n for v in e])
    rng = np.random.default_rng(seed_for(run.cfg.run.seed, 3, "lp"))
    expect = rng.choice(n, size=run.cfg.optim.batch_size, replace=False, p=want / want.sum())
    assert idx.tolist() == expect.tolist() and len(set(idx.tolist())) == len(idx)
    assert row["lp_seen"] == 2 and row["lp_max"] == pytest.approx(0.4)
    assert row["lp_min"] == pytest.approx(0.1)
    assert row["lp_p_max"] == pytest.approx(want.max() / want.sum() * n, rel=1e-3)


@pytest.mark.parametrize("source", ["rollouts", "likelihood"])
def test_lp_learns_from_the_step_losses_with_no_extra_forward_and_no_refresh(
        tiny_cfg, tmp_path, monkeypatch, source):
    """The EMAs in the checkpoint are the hand loop over the losses each step trained on;
    the student runs one forward per step (the training one) and nothing is rolled out."""
    seen, forwards = [], []
    real_observe, real_forward = value.observe, GPT.forward

    def observe(run, st, batch, per_seq):
        seen.append([(p.skill, p.difficulty, float(x))
                     for p, x in zip(batch, per_seq.detach())])
        return real_observe(run, st, batch, per_seq)

    def forward(self, idx, attn_mask=None, pos=None, caches=None, positions=None):
        if caches is None and any(p.requires_grad for p in self.parameters()):
            forwards.append(idx.shape[0])
        return real_forward(self, idx, attn_mask, pos, caches, positions)

    monkeypatch.setattr(value, "observe", observe)
    monkeypatch.setattr(GPT, "forward", forward)
    cfg = tiny_cfg("weights.method=lp", f"rollouts.source={source}")
    s = train(cfg, tmp_path / "r")
    assert len(seen) == s["steps"] == 8 and forwards == [8] * 8
    assert s["rollout_tokens"] == s["estimate_tokens"] == s["value_tokens"] == 0
    assert s["value_flops"] == 0 and s["refreshes"] == 0
    cells = sorted({(a, b) for step in seen for a, b, _ in step})
    obs = [[(cells.index((a, b)), x) for a, b, x in step] for step in seen]
    fast, slow = hand_ema(obs, len(cells), cfg.weights.lp_fast, cfg.weights.lp_slow)
    saved = ckpt(tmp_path / "r")["extra"]["value"]
    np.testing.assert_allclose(saved["fast"], fast, rtol=1e-6)
    np.testing.assert_allclose(saved["slow"], slow, rtol=1e-6)
    steps = rows(tmp_path / "r", "step")
    assert steps[0]["lp_seen"] == 0 and steps[-1]["lp_seen"] == 3
    assert set(steps[-1]["lp_by_cell"]) == {"add2", "add3", "mul2"}
    assert all(r["pass_rate_age"] is None and r["n_kept"] == 8 for r in steps)


def test_lp_per_problem_groups(tiny_cfg, tmp_path):
    train(tiny_cfg("weights.method=lp", "weights.lp_group=problem"), tmp_path / "r")
    steps = rows(tmp_path / "r", "step")
    saved = ckpt(tmp_path / "r")["extra"]["value"]
    assert len(saved["fast"]) == 24 and "lp_by_cell" not in steps[-1]
    assert steps[-1]["lp_seen"] == int((~np.isnan(saved["fast"])).sum()) > 8


# ------------------------------------------------------------ reducible loss, max loss
def test_select_top_is_brute_force_top_k():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        score = rng.integers(0, 4, size=n).astype(float)  # many ties
        k = int(rng.integers(0, n + 1))
        brute = sorted(sorted(range(n), key=lambda i: (-score[i], i))[:k])
        assert value.select_top(score, k).tolist() == brute


def one_at_a_time(run, model, problem, completion):
    """KL(teacher || model) of one problem, alone in its batch: no chunks, cache or padding."""
    with torch.no_grad():
        t, _, _ = completion_logits(run.teacher, run.tok,
                                    [run.tok.encode_prompt(teacher_view(run.cfg, [problem])[0]
                                                           .prompt)], [completion], run.device)
        was = model.training
        model.eval()
        s, mask, _ = completion_logits(model, run.tok, [run.tok.encode_prompt(problem.prompt)],
                                       [completion], run.device)
        model.train(was)
    return float(losses.token_kl(s, t, mask, "forward")[0])


@pytest.mark.parametrize("method", ["rholoss", "maxloss"])
def test_the_batch_is_the_top_scores_of_the_candidates(tiny_cfg, monkeypatch, method):
    """rholoss trains the candidates of the largest L - IL, maxloss of the largest L, with
    L and IL recomputed here one problem at a time (IL from the captured reference)."""
    captured = {}
    real = value.train_reference

    def keep(run, st):
        captured["ref"] = real(run, st)
        return captured["ref"]

    monkeypatch.setattr(value, "train_reference", keep)
    run, st = setup(tiny_cfg(f"weights.method={method}", "weights.ref_steps=3",
                             "weights.candidates=3", "data.n_train_per_cell=12"))
    st.step = 1
    idx, row = value.pick(run, st)
    n, B = len(run.train_set), run.cfg.optim.batch_size
    cand = candidates(n, 3 * B, run.cfg.run.seed, 1)
    assert len(cand) == 24 and set(idx.tolist()) <= set(cand.tolist()) and len(idx) == B
    cur = np.array([one_at_a_time(run, run.student, run.train_set[i],
                                  st.references[run.train_set[i].id]) for i in cand])
    score = cur
    if method == "rholoss":
        ref = captured["ref"]
        irr = np.array([one_at_a_time(run, ref, p, st.references[p.id]) for p in run.train_set])
        np.testing.assert_allclose(st.value["irreducible"], irr, rtol=1e-4, atol=1e-7)
        score = cur - irr[cand]
        assert row["reference_age"] == 0
        assert row["sel_reducible"] >= score.mean() - 1e-7
    else:
        assert "rholoss" not in captured and "irreducible" not in st.value
    chosen = np.isin(cand, idx)
    # every chosen candidate scores at least as high as every one left out (up to rounding)
    assert score[chosen].min() >= score[~chosen].max() - 1e-6
    assert score[chosen].min() > score[~chosen].min()  # and the ranking is not trivial
    assert row["sel_loss"] >= row["cand_loss"] - 1e-7


def test_the_reference_split_is_never_trained_on(tiny_cfg, tmp_path, monkeypatch):
    trained = []
    real = trainer.distill_step

    def step(run, st, batch, w, norm):
        trained.extend(p.id for p in batch)
        return real(run, st, batch, w, norm)

    monkeypatch.setattr(trainer, "distill_step", step)
    cfg = tiny_cfg("weights.method=rholoss", "weights.ref_steps=2", "weights.ref_frac=0.25")
    s = train(cfg, tmp_path / "r")
    run, _ = setup(cfg)
    split = run.value["reference_split"]
    assert len(split) == 6 and s["n_train"] == 18  # 2 of each cell of 8
    assert {p.id for p in split}.isdisjoint(trained) and trained
    assert {p.id for p in split}.isdisjoint(p.id for p in run.train_set)


def tokens(run, problems, comps, teacher: bool) -> int:
    """Positions a forward over prompt + completion processes, per problem, summed."""
    view = teacher_view(run.cfg, problems) if teacher else problems
    return sum(len(run.tok.encode_prompt(p.prompt)) + len(c) - 1 for p, c in zip(view, comps))


@pytest.mark.parametrize("method", ["rholoss", "maxloss"])
@pytest.mark.parametrize("cached", [True, False])
def test_every_value_token_is_charged(tiny_cfg, monkeypatch, method, cached):
    """After the first pick: the reference split's teacher references and logits, the
    reference's training (6 N per token), the pool's teacher logits and reference forward
    (rholoss), and the candidates' student forward (2 N per token); with no cache the
    candidates' teacher forward too. The pool's teacher references are training."""
    gen = {}
    real_gen = value.generate_and_verify

    def spy(*a, **k):
        out = real_gen(*a, **k)
        gen["comps"], gen["tokens"] = out[1], out[2]
        return out

    monkeypatch.setattr(value, "generate_and_verify", spy)
    if not cached:
        monkeypatch.setattr(value, "CACHE_BYTES", 0)
    run, st = setup(tiny_cfg(f"weights.method={method}", "weights.ref_steps=3"))
    st.step = 1
    value.pick(run, st)
    led = st.ledger
    n_s, n_t = n_params(run.student), n_params(run.teacher)
    pool = run.train_set
    refs = [st.references[p.id] for p in pool]
    B = run.cfg.optim.batch_size
    cand = candidates(len(pool), 2 * B, run.cfg.run.seed, 1)
    cand_p, cand_c = [pool[i] for i in cand], [refs[i] for i in cand]
    want = 2 * n_t * tokens(run, pool, refs, True) + 2 * n_s * tokens(run, cand_p, cand_c, False)
    if not cached:
        want += 2 * n_t * tokens(run, cand_p, cand_c, True)
    if method == "rholoss":
        split = run.value["reference_split"]
        comps = [c or [run.tok.eos_id] for c in gen["comps"]]
        seed, b = seed_for(run.cfg.run.seed, 0, "reference"), min(B, len(split))
        trained = sum(tokens(run, [split[i] for i in candidates(len(split), b, seed, s)],
                             [comps[i] for i in candidates(len(split), b, seed, s)], False)
                      for s in (1, 2, 3))
        want += (2 * n_t * (gen["tokens"] + tokens(run, split, comps, True))
                 + 6 * n_s * trained + 2 * n_s * tokens(run, pool, refs, False))
    else:
        assert not gen
    assert led.value_flops == pytest.approx(want, rel=1e-12)
    assert led.flops == pytest.approx(want + 2 * n_t * led.teacher_tokens)
    assert led.teacher_tokens > 0 and led.student_fwd_tokens == 0  # references: training
    assert led.estimation_flops == led.value_flops


def test_maxloss_over_one_candidate_batch_trains_exactly_like_uniform(tiny_cfg, tmp_path):
    """weights.candidates = 1: the top batch_size of batch_size candidates is all of them,
    uniform's batch; the weights end equal and the ledger differs by the scoring alone."""
    u = train(tiny_cfg("weights.method=uniform"), tmp_path / "u")
    m = train(tiny_cfg("weights.method=maxloss", "weights.candidates=1"), tmp_path / "m")
    cu, cm = ckpt(tmp_path / "u"), ckpt(tmp_path / "m")
    assert all(torch.equal(cu["model"][k], cm["model"][k]) for k in cu["model"])
    assert m["acc"] == u["acc"] and m["student_fwd_tokens"] == u["student_fwd_tokens"]
    assert m["value_flops"] > 0 and m["flops"] == pytest.approx(u["flops"] + m["value_flops"])
    assert m["value_flops_share"] > 0
    assert m["rollout_flops_share"] == pytest.approx(m["value_flops_share"])


@pytest.mark.parametrize("method", ["lp", "rholoss", "maxloss"])
def test_resume_reaches_the_same_final_metrics_and_weights(tiny_cfg, tmp_path, monkeypatch,
                                                           method):
    cfg = tiny_cfg(*METHOD_OVERRIDES[method], "weights.ref_steps=3")
    c1, c2 = killed_and_resumed(cfg, tmp_path, monkeypatch, value, "pick",
                                lambda run, st: st.step)
    v1, v2 = c1["extra"]["value"], c2["extra"]["value"]
    assert set(v1) == set(v2) and v1
    for k in v1:
        np.testing.assert_array_equal(v1[k], v2[k])


# ------------------------------------------------------------------------ config errors
@pytest.mark.parametrize("item,needle", [
    ("weights.lp_group=cells", "'weights.lp_group'"),
    ("weights.lp_slow=0.3", "'weights.lp_slow'"),
    ("weights.lp_fast=1.5", "'weights.lp_slow' and 'weights.lp_fast'"),
    ("weights.lp_tau=0.001", "'weights.lp_tau' must be >= 0.01"),
    ("weights.lp_eps=1.5", "'weights.lp_eps'"),
    ("weights.candidates=0", "'weights.candidates' must be >= 1"),
    ("weights.ref_frac=1.0", "'weights.ref_frac'"),
    ("weights.ref_steps=0", "'weights.ref_steps' must be >= 1"),
])
def test_bad_value_keys_name_the_key(tiny_cfg, item, needle):
    with pytest.raises(ConfigError) as exc:
        tiny_cfg("weights.method=lp", item)
    assert needle in str(exc.value)


def test_a_split_that_holds_out_nothing_and_torchrun_are_refused(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="weights.ref_frac = 0.01 holds out no problem"):
        train(tiny_cfg("weights.method=rholoss", "weights.ref_frac=0.01"), tmp_path / "r")
    cfg = tiny_cfg("weights.method=lp")
    with pytest.raises(ConfigError, match="weights.method = 'lp' runs in one process"):
        value.split_reference(cfg, 2, [])
    assert value.split_reference(tiny_cfg("weights.method=paced"), 2, [1, 2]) == ([1, 2], [])
