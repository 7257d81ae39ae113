"""examples/trl_paced.py runs at tiny size, and the two-stage schedule runs both stages on one
student with one pass-rate table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from trl_helpers import CountingReward, load, problems

ROOT = Path(__file__).resolve().parents[2]


def test_example_runs_at_tiny_size(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("trl_paced", ROOT / "examples" / "trl_paced.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert "accelerate launch --num_processes" in example.__doc__
    assert "accelerate launch --config_file" in example.__doc__
    trainer = example.main(["--tiny", "--out", str(tmp_path / "run")])
    table = trainer._paced.table
    assert trainer.state.global_step == 2
    assert [h["step"] for h in table.history] == [0, 1]  # at the start, then every step
    assert (table.n == 4).all() and 0 < (trainer._paced.current() > 0).sum() < len(table.ids)
    assert (tmp_path / "run" / "student" / "config.json").is_file()
    assert "pass rates" in capsys.readouterr().out


def test_two_stage_runs_forward_then_reverse_on_one_table(pair_dir, tmp_path):
    from datasets import Dataset

    from paced_train.integrations.trl import PacedDistillationTrainer
    from paced_train.integrations.trl_gkd import PacedGKDTrainer, PacedTwoStage

    student, tok = load(pair_dir["student"])
    teacher, _ = load(pair_dir["teacher"])
    before = [p.detach().clone() for p in student.parameters()]
    training = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, bf16=False,
                    use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True,
                    activation_checkpointing=False, learning_rate=1e-3, logging_steps=1)
    two = PacedTwoStage(student, teacher, Dataset.from_list(problems(16, completion=True)), tok,
                        max_steps=5, switch_at=0.4, training=training,
                        reward_func=CountingReward(), refresh=dict(rollouts=4, every=2),
                        forward_args=dict(max_length=64, max_new_tokens=4),
                        reverse_args=dict(max_completion_length=4))
    assert isinstance(two.forward, PacedGKDTrainer)
    assert isinstance(two.reverse, PacedDistillationTrainer)
    assert (two.n_forward, two.n_reverse) == (2, 3)
    assert two.forward.model is two.reverse.model is student
    assert two.forward._paced.table is two.reverse._paced.table is two.table
    assert (two.forward.lmbda, two.forward.beta, two.reverse.beta) == (0.0, 0.0, 1.0)
    two.train()
    assert (two.forward.state.global_step, two.reverse.state.global_step) == (2, 3)
    # refreshes: forward stage at 0 (and not after its last step), reverse at 2 and 4
    assert [h["step"] for h in two.table.history] == [0, 2, 4]
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))


def _example():
    spec = importlib.util.spec_from_file_location("trl_paced", ROOT / "examples" / "trl_paced.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


def test_tiny_fills_in_only_what_the_command_line_leaves_out(monkeypatch):
    ex = _example()
    a = ex.parse(["--tiny", "--steps", "5", "--batch", "3"])
    assert (a.steps, a.batch) == (5, 3) and a.rollouts == ex.TINY["rollouts"] and a.cpu
    a = ex.parse(["--tiny"])
    assert all(getattr(a, k) == v for k, v in ex.TINY.items())
    real = ["--student", "s", "--teacher", "t", "--data", "d.jsonl"]
    a = ex.parse([*real, "--lr", "3e-5"])
    assert a.lr == 3e-5 and a.steps == ex.DEFAULTS["steps"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU machine
    assert ex.parse(real).cpu  # CPU and float32 without being told: no bf16 error
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert not ex.parse(real).cpu and ex.parse([*real, "--cpu"]).cpu


def test_help_is_the_whole_description(capsys):
    ex = _example()
    try:
        ex.parse(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "which K student rollouts measure every N steps." in out  # not cut mid-sentence
    assert "accelerate launch --num_processes" in out and "--tiny: 2" in out


def test_a_bad_path_is_one_line_exit_2(tmp_path):
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "trl_paced.py"),
                           "--student", str(tmp_path / "s"), "--teacher", str(tmp_path / "t"),
                           "--data", str(tmp_path / "missing.jsonl"), "--cpu"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    assert "missing.jsonl" in proc.stderr and "Traceback" not in proc.stderr
