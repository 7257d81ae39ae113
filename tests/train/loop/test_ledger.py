"""The compute ledger (2N per forward token, 4N per backward token, cumulative, state round
trip) and the one metrics.jsonl reader, read_metrics."""

from __future__ import annotations

import json

import pytest

from paced_train.loop.ledger import Ledger, MetricsLog, read_metrics


def test_ledger_arithmetic():
    led = Ledger(n_student=10, n_teacher=100)
    led.rollout(5)
    led.teacher(3)
    led.student_step(2)
    led.student_forward(1)  # e.g. a forward-only pass
    assert led.flops == 2 * 10 * 5 + 2 * 100 * 3 + (2 + 4) * 10 * 2 + 2 * 10 * 1
    assert led.row() == {"rollout_tokens": 5, "estimate_tokens": 0, "sample_tokens": 0,
                         "teacher_tokens": 3, "student_fwd_tokens": 3,
                         "student_bwd_tokens": 2, "flops": led.flops, "value_tokens": 0,
                         "value_flops": 0.0}
    led.rollout(5)  # cumulative
    assert led.rollout_tokens == 10 and led.flops == pytest.approx(840 + 100)
    led.estimate(4)  # a likelihood pass: estimation, 2N per token
    led.sample(7)    # on-policy samples: 2N per token, training compute
    assert led.flops == pytest.approx(940 + 2 * 10 * 11)
    assert led.rollout_flops == 2 * 10 * 10 and led.estimation_flops == 2 * 10 * (10 + 4)
    # a value criterion's work (value.py): teacher 2 N_T, a student-sized forward 2 N_S, a
    # reference training token 6 N_S; all of it estimation, none of it training
    flops = led.flops
    led.value(3, teacher=True)
    led.value(5)
    led.value(7, backward=True)
    spent = 2 * 100 * 3 + 2 * 10 * 5 + 6 * 10 * 7
    assert led.value_tokens == 15 and led.value_flops == spent
    assert led.flops == pytest.approx(flops + spent)
    assert led.estimation_flops == 2 * 10 * (10 + 4) + spent
    other = Ledger(10, 100)
    other.load(led.state())
    assert other == led


def test_read_metrics_is_the_log_read_back_with_a_kind_filter(tmp_path):
    rows = [{"kind": "eval", "step": 0, "acc": 0.5, "flops": 0.0},
            {"kind": "step", "step": 1, "loss": 0.25, "flops": 10.0},
            {"kind": "step", "step": 2, "loss": float("nan"), "flops": 20.0},
            {"kind": "eval", "step": 2, "acc": 0.75, "flops": 20.0}]
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.start(rows[:1])
    log.append(rows[1:])
    got = read_metrics(tmp_path)  # a run directory ...
    assert got == read_metrics(tmp_path / "metrics.jsonl")  # ... or the file itself
    assert [r["step"] for r in got] == [0, 1, 2, 2]
    assert got[2]["loss"] is None  # NaN is written as null (strict JSON)
    assert [r["acc"] for r in read_metrics(tmp_path, "eval")] == [0.5, 0.75]
    assert [r["step"] for r in read_metrics(tmp_path, "step")] == [1, 2]
    for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
        json.loads(line)  # every line is plain JSON
    log.truncate(1)
    assert [r["step"] for r in read_metrics(tmp_path)] == [0, 1]
    assert read_metrics(tmp_path / "nothing_here.jsonl") == []
