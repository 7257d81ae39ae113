"""The rollout stage (paced_train/loop/rollouts.py): generation and verification, sequential K
for settled problems, when a refresh is due, and on-policy samples as rollouts."""

from __future__ import annotations

import numpy as np
import torch
from scripted import ScriptedModel

from paced_train.config import load_config
from paced_train.loop.ledger import Ledger
from paced_train.loop.passrates import PassRateTable
from paced_train.loop.rollouts import (
    generate_and_verify,
    on_policy_samples,
    refresh_rows,
    settled_counts,
)
from paced_train.loop.state import Run, State
from paced_train.models.tokenizer import default_tokenizer
from paced_train.tasks import arithmetic_suite


class FakeRoller:
    """roll(idx, k, phase) with a fixed pass rate per row: succeeds on the first
    round(p * k) rollouts; records every call."""

    def __init__(self, p):
        self.p, self.calls = np.asarray(p), []

    def __call__(self, idx, k, phase):
        idx = np.asarray(idx)
        self.calls.append((idx.tolist(), k, phase))
        return np.round(self.p[idx] * k).astype(np.int64)


def table_with(rates_c, rates_n):
    t = PassRateTable([f"q{i}" for i in range(len(rates_c))])
    t.refresh(t.ids, rates_c, rates_n, step=0)
    return t


def test_settled_problems_get_settled_k_first_and_the_rest_only_when_they_moved():
    # problems 0,1 settled at 0; 2,3 settled at 1; 4 frontier. Now: 0 still 0, 1 moved to
    # 0.5, 2 still 1, 3 moved to 0.5, 4 at 0.5.
    t = table_with([0, 0, 8, 8, 4], 8)
    roll = FakeRoller([0.0, 0.5, 1.0, 0.5, 0.5])
    c, n = settled_counts(t, t.ids, np.arange(5), K=8, settled_K=2, roll=roll)
    assert n.tolist() == [2, 8, 2, 8, 8]
    assert c.tolist() == [0, 1 + 3, 2, 1 + 3, 4]
    calls = {phase: (idx, k) for idx, k, phase in roll.calls}
    assert calls[(0,)] == ([4], 8)            # unsettled: K at once
    assert calls[(1,)] == ([0, 1, 2, 3], 2)   # settled: settled_K first
    assert calls[(2,)] == ([1, 3], 6)         # the ones that moved: the other K - settled_K
    # rollouts spent: 8 + 4 * 2 + 2 * 6 = 28 instead of 40
    assert sum(len(idx) * k for idx, k, _ in roll.calls) == 28


def test_settled_k_off_and_unmeasured_problems_get_k():
    t = PassRateTable(["a", "b"])  # never measured
    roll = FakeRoller([0.0, 1.0])
    c, n = settled_counts(t, t.ids, np.arange(2), K=8, settled_K=2, roll=roll)
    assert n.tolist() == [8, 8] and c.tolist() == [0, 8] and len(roll.calls) == 1
    t = table_with([0, 8], 8)
    roll = FakeRoller([0.0, 1.0])
    _, n = settled_counts(t, t.ids, np.arange(2), K=8, settled_K=0, roll=roll)
    assert n.tolist() == [8, 8] and len(roll.calls) == 1


def test_refresh_rows_spacing_age_share_cap_and_budget():
    cfg = load_config(None, ["rollouts.refresh_every=10"])
    ids = [f"q{i}" for i in range(10)]
    st = State(step=0, table=PassRateTable(ids), ledger=Ledger(100, 100))
    assert refresh_rows(cfg, st).tolist() == list(range(10))  # the first: every problem
    assert refresh_rows(load_config(None, ["weights.method=uniform"]), st) is None
    st.table.refresh(ids[:5], [1] * 5, 8, step=0)
    st.table.refresh(ids[5:], [1] * 5, 8, step=7)
    st.last_refresh, st.refresh_flops, st.refresh_rows = 0, 1000.0, 10  # 100 FLOPs a problem
    st.ledger.rollout(5)                                # 1000 FLOPs of estimation so far
    st.step = 9
    assert refresh_rows(cfg, st) is None                # too soon
    st.step = 10
    assert refresh_rows(cfg, st).tolist() == list(range(10))  # max_age 0: every problem
    aged = load_config(None, ["rollouts.refresh_every=10", "rollouts.max_age=15"])
    # ages at step 10: 10 (q0-4), 3 (q5-9); 10 + 9 > 15 is due, 3 + 9 is not
    assert refresh_rows(aged, st).tolist() == [0, 1, 2, 3, 4]
    # a share cap cuts the refresh, oldest first, never postpones it as a whole:
    # x <= (0.2 * 1800 - 1000) / 0.8 < 0 -> nothing; at 9000 FLOPs x <= 1000: 10 problems
    capped = load_config(None, ["rollouts.refresh_every=10", "rollouts.max_share=0.2"])
    st.ledger.flops = 1800.0
    assert refresh_rows(capped, st).tolist() == []
    st.first_refresh_flops = 1000.0  # the first refresh is exempt: x <= 0.2 * 800 / 0.8
    assert refresh_rows(capped, st).tolist() == [0, 1]
    st.first_refresh_flops = 0.0
    st.ledger.flops = 5500.0                            # x <= 125: one problem, the oldest
    assert refresh_rows(capped, st).tolist() == [0]
    st.ledger.flops = 9000.0
    assert refresh_rows(capped, st).tolist() == list(range(10))
    budget = load_config(None, ["rollouts.refresh_every=10", "budget.flops=9350"])
    assert refresh_rows(budget, st).tolist() == [0, 1, 2]  # what the budget can pay for


def test_sequential_k_is_sticky_at_zero():
    """Issue 17's measurement, by Monte Carlo through settled_counts: a problem settled at
    p_hat = 0 whose true pass rate is 0.2 re-enters (p_hat > 0) with probability
    1 - 0.8^2 = 0.36 under settled_K = 2, and 1 - 0.8^8 = 0.83 with all K = 8."""
    rng = np.random.default_rng(0)

    def roll(idx, k, phase):
        return rng.binomial(k, 0.2, size=len(idx))

    reps = 4000
    t = table_with([0] * reps, [8] * reps)
    for settled_K, want in ((2, 1 - 0.8**2), (0, 1 - 0.8**8)):
        c, _ = settled_counts(t, t.ids, np.arange(reps), K=8, settled_K=settled_K, roll=roll)
        se = np.sqrt(want * (1 - want) / reps)
        assert abs(np.mean(c > 0) - want) < 5 * se, settled_K


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


def test_on_policy_samples_are_training_compute_recorded_in_the_table():
    """One sample per problem, verified into the table (the stamp stays: an add is not a
    measurement), charged as sample tokens (training), not as rollouts (estimation); an
    empty sample is scored as a lone eos."""
    tok = default_tokenizer()
    probs = arithmetic_suite(0, 2, (1,), (1,))  # add1 x2 (solved), mul1 x2 (not)
    model = ScriptedModel(tok, probs)
    run = Run(load_config(None, []), torch.device("cpu"), model, model, tok, None, probs, [], [])
    st = State(step=3, table=PassRateTable([p.id for p in probs]), ledger=Ledger(10, 10))
    comps = on_policy_samples(run, st, probs[1:])
    assert len(comps) == 3 and len(model.calls) == 1 and len(model.calls[0]) == 3
    assert st.table.n.tolist() == [0, 1, 1, 1] and st.table.c.tolist() == [0, 1, 0, 0]
    assert st.table.step.tolist() == [-1, -1, -1, -1]
    assert st.ledger.rollout_tokens == 0 and st.ledger.estimation_flops == 0
    assert st.ledger.sample_tokens == sum(len(tok.encode_prompt(p.prompt)) for p in probs[1:]) \
        + sum(map(len, comps))
    model.generate = lambda prompts, *a, **k: [[] for _ in prompts]
    assert on_policy_samples(run, st, probs[:1]) == [[tok.eos_id]]
    assert on_policy_samples(run, st, []) == []
