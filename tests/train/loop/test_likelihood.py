"""The likelihood pass-rate source (paced_train/loop/likelihood.py): exact against Monte Carlo
rollouts, refused where a task has no canonical answer, read free from the training forward,
and a loop that uses it keeps every pass rate young."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from paced_theory.errors import ConfigError
from paced_train import tasks
from paced_train.config import load_config
from paced_train.loop import likelihood
from paced_train.loop.distill import load_models, student_logits
from paced_train.loop.ledger import Ledger
from paced_train.loop.passrates import PassRateTable
from paced_train.loop.rollouts import generate_and_verify
from paced_train.loop.seeding import torch_gen
from paced_train.loop.state import Run, State
from paced_train.loop.trainer import train
from paced_train.models.tokenizer import default_tokenizer


def shipped_run(n: int = 48, overrides=()) -> Run:
    """The shipped student on add2/add3/mul2 problems: their pass rates spread over (0, 1)."""
    cfg = load_config(None, ["data.add_digits=[2,3]", "data.mul_digits=[2]",
                             "data.n_train_per_cell=16", "rollouts.max_new_tokens=7",
                             *overrides])
    student, teacher, tok = load_models(cfg, torch.device("cpu"))
    train_set, _, _ = tasks.build_problems(cfg)
    return Run(cfg, torch.device("cpu"), student, teacher, tok, None, train_set[:n], [], [])


def test_the_likelihood_is_the_pass_probability_of_sampling():
    """p_hat from K = 64 rollouts differs from P = prod softmax(logits)[canonical answer + eos]
    by binomial noise only: sum over problems of (c - K P)^2 / (K P (1 - P)) is chi-square with
    one degree of freedom per problem (mean N, sd sqrt(2N)). A deliberately wrong P (the
    answer's digits in the usual order instead of the reversed order the verifier accepts)
    fails it. (Dropping the eos factor, or the softmax at temperature 1.25, would not fail
    it: the shipped student ends an answer with eos with probability ~1, and 64 rollouts do
    not see a 25 % temperature error.)"""
    run = shipped_run(96)
    K = 64
    P, tokens = likelihood.likelihoods(run, run.train_set)
    assert tokens > 0 and ((P > 0.05) & (P < 0.95)).sum() >= 10  # a spread, not all settled
    ok, _, _ = generate_and_verify(run.student, run.tok, run.train_set, 7, k=K,
                                   generator=torch_gen(0, 0, "refresh", 0))
    c = ok.reshape(-1, K).sum(1)

    def chi2(p):
        live = (p > 1e-3) & (p < 1 - 1e-3)  # settled ones: c must agree exactly
        if not ((c[p <= 1e-4] == 0).all() and (c[p >= 1 - 1e-4] == K).all()):
            return np.inf, int(live.sum())
        return float(((c[live] - K * p[live]) ** 2 / (K * p[live] * (1 - p[live]))).sum()), \
            int(live.sum())

    stat, n = chi2(P)
    assert stat < n + 5 * np.sqrt(2 * n), (stat, n)
    run.prompt_cache["canonical"] = {p.id: run.tok.encode(p.answer) + [run.tok.eos_id]
                                     for p in run.train_set}
    wrong, _ = likelihood.likelihoods(run, run.train_set)
    assert chi2(wrong)[0] > n + 5 * np.sqrt(2 * n)


def test_a_task_without_one_canonical_answer_is_refused_by_name(tmp_path):
    cfg = load_config(None, ["rollouts.source=likelihood"])
    tok = default_tokenizer()
    add = tasks.make_problems("add", 2, 3, 0)
    likelihood.check_source(cfg, add, tok)  # add qualifies
    cmp = tasks.make_problems("compare", 2, 2, 0)
    with pytest.raises(ConfigError, match=cmp[0].id):
        likelihood.check_source(cfg, add + cmp, tok)
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "2+2=", "answer": "4"}\n')
    with pytest.raises(ConfigError, match="p.jsonl:1"):
        likelihood.check_source(cfg, tasks.load_jsonl(path), tok)
    short = load_config(None, ["rollouts.source=likelihood", "rollouts.max_new_tokens=2"])
    with pytest.raises(ConfigError, match="max_new_tokens"):
        likelihood.check_source(short, tasks.make_problems("add", 3, 3, 0), tok)
    with pytest.raises(ConfigError, match="top_p"):
        load_config(None, ["rollouts.source=likelihood", "rollouts.top_p=0.9"])
    with pytest.raises(ConfigError, match="estimator"):
        load_config(None, ["rollouts.source=likelihood", "rollouts.likelihood=exact",
                           "weights.estimator=posterior"])
    with pytest.raises(ConfigError, match="weights.floor"):  # a floor on counts exact P lacks
        load_config(None, ["rollouts.source=likelihood", "rollouts.likelihood=exact",
                           "weights.floor=0.05"])
    load_config(None, ["rollouts.source=likelihood", "rollouts.likelihood=binomial",
                       "weights.floor=0.05"])  # counts: the floor applies


def test_free_reads_equal_a_likelihood_pass_where_the_step_scores_the_canonical_answer():
    """The training forward on a completion equal to the canonical answer gives the same P as
    a separate likelihood pass; a problem whose completion is another string is not read."""
    run = shipped_run(8)
    batch = run.train_set
    comps = [likelihood.canonical_tokens(run, p) for p in batch]
    comps[3] = [run.tok.encode("9")[0], run.tok.eos_id]  # a wrong reference: not read
    run.student.eval()
    with torch.no_grad():
        logits, _, _ = student_logits(run, batch, comps)
    ids, P = likelihood.free_reads(run, batch, comps, logits)
    want, _ = likelihood.likelihoods(run, batch)
    assert ids == [p.id for i, p in enumerate(batch) if i != 3]
    np.testing.assert_allclose(P, np.delete(want, 3), rtol=1e-5)


def test_binomial_counts_have_the_distribution_of_k_rollouts():
    """rollouts.likelihood = "binomial": c ~ Binomial(K, P) per problem, so over many problems
    of one P the counts' mean and variance are K P and K P (1 - P) (standard errors bound
    the check); "exact" stores P itself."""
    run = shipped_run(1, ["rollouts.source=likelihood"])
    ids = [f"q{i}" for i in range(4000)]
    st = State(step=5, table=PassRateTable(ids), ledger=Ledger(1, 1))
    likelihood._store(run, st, np.arange(4000), np.full(4000, 0.3), "likelihood-refresh", True)
    c, K = st.table.c, run.cfg.rollouts.K
    assert (st.table.n == K).all() and (st.table.step == 5).all()
    mean, var = K * 0.3, K * 0.3 * 0.7
    assert abs(c.mean() - mean) < 5 * np.sqrt(var / 4000)
    assert abs(c.var() - var) < 5 * var * np.sqrt(2 / 4000)
    exact = shipped_run(1, ["rollouts.source=likelihood", "rollouts.likelihood=exact"])
    likelihood._store(exact, st, np.arange(3), np.array([0.1, 0.2, 0.3]), "likelihood-free",
                      False, stamp=4)
    np.testing.assert_allclose(st.table.rates(ids[:3]), [0.1, 0.2, 0.3])
    assert st.table.step[:3].tolist() == [4, 4, 4] and len(st.table.history) == 1


def _steps(run_dir) -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if r["kind"] == "step"]


@pytest.mark.parametrize("mode", ["binomial", "exact"])
def test_a_likelihood_run_keeps_its_pass_rates_young_and_charges_them(tiny_cfg, tmp_path, mode):
    """Every step row logs the ages; with max_age = A every entry the sampler reads is at most
    A updates old; the likelihood passes are charged as estimate tokens, not rollouts."""
    floor = ["weights.floor=0.1"] if mode == "binomial" else []  # exact P has no count c = 0
    cfg = tiny_cfg("weights.method=paced", *floor, "optim.sampler=kept",
                   "rollouts.source=likelihood", f"rollouts.likelihood={mode}",
                   "rollouts.refresh_every=2", "rollouts.max_age=3", "budget.steps=10")
    s = train(cfg, tmp_path / mode)
    rows = _steps(tmp_path / mode)
    assert len(rows) == 10
    assert all(r["pass_rate_age_max"] is not None and r["pass_rate_age_max"] <= 3 for r in rows)
    assert all(0 <= r["pass_rate_age"] <= r["pass_rate_age_max"] for r in rows)
    assert s["estimate_tokens"] > 0 and s["rollout_tokens"] == 0
    assert 0 < s["rollout_flops_share"] < 1  # estimation's share, likelihood passes included
    u = train(tiny_cfg("weights.method=uniform", "rollouts.source=likelihood",
                       "budget.steps=2"), tmp_path / "u")
    assert u["estimate_tokens"] == 0
    assert all(r["pass_rate_age_max"] is None for r in _steps(tmp_path / "u"))


def test_rollout_runs_log_ages_that_follow_the_refreshes(tiny_cfg, tmp_path):
    """refresh_every = 3, max_age = 0: the whole pool is measured before steps 1, 4, 7, so
    the oldest entry the kept sampler reads is 0, 1, 2, 0, 1, 2, ... updates old."""
    cfg = tiny_cfg("weights.method=paced", "weights.floor=0.1", "optim.sampler=kept",
                   "rollouts.refresh_every=3", "budget.steps=8")
    train(cfg, tmp_path / "r")
    assert [r["pass_rate_age_max"] for r in _steps(tmp_path / "r")] == [0, 1, 2] * 2 + [0, 1]
