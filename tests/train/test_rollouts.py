"""The pass-rate refresh: sequential K for settled problems, the floor weight, the pool."""

from __future__ import annotations

import numpy as np
import pytest

from paced_theory.errors import InputError
from paced_train.config import load_config
from paced_train.passrates import PassRateTable, problem_weights
from paced_train.tasks import cell_counts, cell_size, retention_cells
from paced_train.trainer import lr_at, run_progress, settled_counts


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


def test_refresh_takes_per_problem_rollouts_and_records_shares():
    t = PassRateTable(["a", "b", "c", "d"])
    t.refresh(t.ids, [0, 1, 2, 8], [2, 8, 2, 8], step=0)
    assert t.rates().tolist() == [0.0, 0.125, 1.0, 1.0]
    assert t.shares(0) == pytest.approx({"zero": 0.25, "frontier": 0.25, "one": 0.5})
    with pytest.raises(InputError):
        t.refresh(t.ids, [0, 3, 0, 0], [2, 2, 2, 2], step=1)


def test_floor_weight_only_at_zero_successes():
    cfg = load_config(None, ["weights.floor=0.05"]).weights
    t = table_with([0, 1, 4, 8], 8)
    w = problem_weights(cfg, t, t.ids)
    assert w[0] == 0.05 and w[3] == 0.0  # hopeless keeps the floor, solved does not
    assert w[1] == pytest.approx(0.125 * 0.875) and w[2] == pytest.approx(0.25)
    w0 = problem_weights(load_config(None, []).weights, t, t.ids)
    assert w0[0] == 0.0


def test_cosine_schedule_in_compute_and_steps():
    cfg = load_config(None, ["optim.schedule=cosine", "optim.lr=1e-3", "optim.warmup_steps=10",
                             "optim.min_lr_frac=0.1", "budget.steps=100"])
    assert lr_at(5, cfg, 0.0) == pytest.approx(5e-4)        # warmup
    assert lr_at(50, cfg, 0.0) == pytest.approx(1e-3)
    assert lr_at(50, cfg, 0.5) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert lr_at(50, cfg, 1.0) == pytest.approx(1e-4)
    assert run_progress(cfg, 25, 0.0) == 0.25
    by_flops = load_config(None, ["budget.flops=1e9", "budget.steps=100"])
    assert run_progress(by_flops, 90, 2.5e8) == 0.25  # the FLOPs budget decides
    const = load_config(None, ["optim.lr=1e-3"])
    assert lr_at(500, const, 0.9) == 1e-3


def test_cells_are_capped_and_retention_cells_are_distinct():
    counts = cell_counts("add", (1, 3), (600, 600), 48, 20)
    assert counts[("add", 1)] == cell_size("add", 1) == 100  # 80 train + 20 held out
    assert counts[("add", 3)] == 620
    assert cell_counts("mul", (2,), (), 48, 10) == {("mul", 2): 58}
    with pytest.raises(InputError, match="mul1"):
        cell_counts("mul", (1,), (), 10, 80)
    ret = retention_cells(0, 30, (1,), (1,))
    assert len(ret) == 60 and len({p.id for p in ret}) == 60
    assert {p.skill for p in ret} == {"add", "mul"}


def test_config_refuses_bad_counts_and_overlapping_retention():
    from paced_theory.errors import ConfigError

    with pytest.raises(ConfigError, match="data.add_counts"):
        load_config(None, ["data.add_digits=[1,2]", "data.add_counts=[5]"])
    with pytest.raises(ConfigError, match="retention_add_digits"):
        load_config(None, ["data.add_digits=[1,2]", "data.retention_add_digits=[2]"])
    with pytest.raises(ConfigError, match="settled_K"):
        load_config(None, ["rollouts.K=4", "rollouts.settled_K=4"])


def test_refresh_due_spacing_share_cap_and_budget():
    from paced_train.ledger import Ledger
    from paced_train.trainer import State, refresh_due

    cfg = load_config(None, ["rollouts.refresh_every=10", "rollouts.max_share=0.2"])
    st = State(step=0, table=PassRateTable(["a"]), ledger=Ledger(100, 100))
    assert refresh_due(cfg, st)                        # the first refresh: before step 1
    assert not refresh_due(load_config(None, ["weights.method=uniform"]), st)
    st.last_refresh, st.refresh_flops = 0, 1000.0
    st.ledger.rollout(5)                               # 1000 FLOPs of rollouts so far
    st.step = 9
    assert not refresh_due(cfg, st)                    # too soon
    st.step = 10
    st.ledger.flops = 5000.0                           # (1000 + 1000) / 6000 > 0.2: postpone
    assert not refresh_due(cfg, st)
    st.ledger.flops = 9000.0                           # 2000 / 10000 = 0.2: due
    assert refresh_due(cfg, st)
    off = load_config(None, ["rollouts.refresh_every=10"])
    st.ledger.flops = 1001.0                           # no cap: due whatever the share
    assert refresh_due(off, st)
    capped = load_config(None, ["rollouts.refresh_every=10", "budget.flops=1500"])
    assert not refresh_due(capped, st)                 # the budget cannot pay for it


def test_eval_due_in_steps_or_in_compute():
    from paced_train.trainer import eval_due

    steps = load_config(None, ["eval.every=5", "budget.steps=100"])
    assert [s for s in range(1, 21) if eval_due(steps, s, 0.0, 0.0)] == [5, 10, 15, 20]
    frac = load_config(None, ["eval.every_frac=0.25", "budget.flops=1000",
                              "budget.steps=10000"])
    assert eval_due(frac, 7, 0.24, 260.0) and not eval_due(frac, 8, 0.26, 300.0)
    assert eval_due(frac, 9, 0.45, 760.0)  # crossed 0.5 and 0.75 in one step: one eval


def test_kept_sampler_draws_only_positive_weights_and_falls_back():
    from types import SimpleNamespace

    from paced_train.trainer import State, candidates, sampling_pool

    t = table_with([0, 4, 8, 2, 0, 5], 8)
    run = SimpleNamespace(cfg=load_config(None, ["optim.sampler=kept"]), train_set=list(range(6)))
    st = State(step=0, table=t, ledger=None)
    pool = sampling_pool(run, st)
    assert pool.tolist() == [1, 3, 5]
    batch = pool[candidates(len(pool), 2, 0, 1)]
    assert set(batch.tolist()) <= {1, 3, 5}
    run.cfg = load_config(None, [])                       # sampler = pool: everything
    assert sampling_pool(run, st).tolist() == list(range(6))
    run.cfg = load_config(None, ["optim.sampler=kept"])
    st.table = table_with([0, 8, 0, 8, 0, 8], 8)         # nothing kept: the whole pool
    assert sampling_pool(run, st).tolist() == list(range(6))
