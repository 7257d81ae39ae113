"""What changes along a run (paced_train/loop/schedule.py): the learning rate, the evaluation
points, and the two-stage switch from forward to reverse KL."""

from __future__ import annotations

import pytest

from paced_train.config import load_config
from paced_train.loop.schedule import eval_due, loss_kind, lr_at, run_progress


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


def test_eval_due_in_steps_or_in_compute():
    steps = load_config(None, ["eval.every=5", "budget.steps=100"])
    assert [s for s in range(1, 21) if eval_due(steps, s, 0.0, 0.0)] == [5, 10, 15, 20]
    frac = load_config(None, ["eval.every_frac=0.25", "budget.flops=1000",
                              "budget.steps=10000"])
    assert eval_due(frac, 7, 0.24, 260.0) and not eval_due(frac, 8, 0.26, 300.0)
    assert eval_due(frac, 9, 0.45, 760.0)  # crossed 0.5 and 0.75 in one step: one eval


def test_two_stage_switches_once_in_steps_or_in_compute():
    steps = load_config(None, ["loss.schedule=two-stage", "loss.switch_at=0.25",
                               "budget.steps=8"])
    assert [loss_kind(steps, s, 0.0) for s in range(1, 9)] == ["forward"] * 2 + ["reverse"] * 6
    flops = load_config(None, ["loss.schedule=two-stage", "loss.switch_at=0.5",
                               "loss.switch_unit=compute", "budget.flops=1000"])
    assert loss_kind(flops, 99, 499.0) == "forward" and loss_kind(flops, 1, 500.0) == "reverse"
    for kind in ("forward", "reverse", "akl", "jsd", "skew"):  # no schedule: the one kind
        cfg = load_config(None, [f"loss.schedule={kind}"])
        assert {loss_kind(cfg, s, f) for s, f in ((1, 0.0), (10**6, 1e30))} == {kind}
