"""Run directories (rundir.py) and the run's ends: one writer at a time, no silent
overwrite, --resume through a torn metrics line, Ctrl-C and NaN stops that say exactly how to
go on, and degenerate runs (nothing to train on) that stop and say why."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import paced_train.loop.rollouts as rollouts_mod
import paced_train.loop.trainer as trainer
from paced_train import rundir
from paced_train.cli import main
from paced_train.loop.ledger import MetricsLog
from paced_train.loop.trainer import NonFiniteError, train
from paced_train.models.checkpoint import read_checkpoint
from paced_train.rundir import RunDirError

ROOT = Path(__file__).resolve().parents[2]
VOLATILE = {"wall_s", "timers_s", "rollout_share", "rollout_share_of_wall"}


@pytest.fixture
def mixed_verifier(monkeypatch):
    """Accept a completion iff its first character's code is divisible by 3: a random
    student's pass rates then spread over 0..1, so PACED keeps some problems."""
    monkeypatch.setattr(rollouts_mod, "verify",
                        lambda p, text: bool(text) and ord(text[0]) % 3 == 0)


def snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def stable(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in VOLATILE}


def rows(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(x).items() if k not in VOLATILE}
            for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def cli_args(tiny_models, out, *more):
    return ["train", "configs/tiny.toml", f'models.student="{tiny_models["student"]}"',
            f'models.teacher="{tiny_models["teacher"]}"', *more, "--out", str(out)]


def test_a_second_writer_is_refused_and_changes_nothing(tiny_cfg, tiny_models, tmp_path):
    cfg = tiny_cfg("budget.steps=2")
    run = tmp_path / "run"
    train(cfg, run)
    before = snapshot(run)
    with rundir.claim(run, resume=True):  # this process is writing there
        for kw in ({"resume": True}, {"overwrite": True}):
            with pytest.raises(RunDirError, match="another paced process"):
                train(cfg, run, **kw)
        # another process too: one line on stderr, exit 2
        proc = subprocess.run([sys.executable, "-m", "paced_train.cli",
                               *cli_args(tiny_models, run, "--overwrite")],
                              capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1
        assert "another paced process" in proc.stderr
    assert snapshot(run) == before
    # the lock is gone with its holder: the run can be continued now
    assert train(tiny_cfg("budget.steps=3"), run, resume=True)["steps"] == 3


def test_an_existing_run_is_refused_unless_resume_or_overwrite(tiny_cfg, tiny_models, tmp_path,
                                                              capsys):
    cfg = tiny_cfg("budget.steps=2")
    run = tmp_path / "run"
    first = train(cfg, run)
    (run / "notes.txt").write_text("mine")  # not the run's: never deleted
    before = snapshot(run)
    with pytest.raises(RunDirError, match="already holds a run.*--resume.*--overwrite"):
        train(cfg, run)
    assert main(cli_args(tiny_models, run, "budget.steps=2")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err
    assert snapshot(run) == before
    with pytest.raises(RunDirError, match="give one of them"):
        train(cfg, run, resume=True, overwrite=True)
    again = train(cfg, run, overwrite=True)
    assert stable(again) == stable(first) and (run / "notes.txt").read_text() == "mine"
    # an empty directory is a fresh one
    (tmp_path / "empty").mkdir()
    train(cfg, tmp_path / "empty")


def test_out_must_be_a_directory(tiny_cfg, tiny_models, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(cli_args(tiny_models, f)) == 2
    err = capsys.readouterr().err
    assert "afile" in err and "not a directory" in err and err.count("\n") == 1
    with pytest.raises(RunDirError, match="no such run directory"):
        train(tiny_cfg(), tmp_path / "nothere", resume=True)
    assert not (tmp_path / "nothere").exists() and f.read_text() == "x"


def _kill_at(monkeypatch, step):
    real = trainer.candidates

    def killed(n, b, seed, s):
        if s == step:
            raise KeyboardInterrupt
        return real(n, b, seed, s)

    monkeypatch.setattr(trainer, "candidates", killed)
    return real


@pytest.mark.parametrize("torn", ['{"kind": "step", "st', "\x00\x00\x00", '{"kind": "eval"}',
                                  "[1, 2"])
def test_resume_survives_a_torn_last_line(tiny_cfg, tmp_path, monkeypatch, mixed_verifier, torn):
    cfg = tiny_cfg("weights.method=paced")
    full = train(cfg, tmp_path / "full")
    real = _kill_at(monkeypatch, 6)  # after the checkpoint at step 4
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "killed")
    monkeypatch.setattr(trainer, "candidates", real)
    with open(tmp_path / "killed" / "metrics.jsonl", "a") as f:
        f.write(torn)  # a write cut short by the kill
    resumed = train(cfg, tmp_path / "killed", resume=True)
    assert stable(resumed) == stable(full)
    assert rows(tmp_path / "killed") == rows(tmp_path / "full")


def test_a_corrupt_middle_line_names_file_and_line(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.path.write_text('{"step": 0}\nnot json\n{"step": 1}\n')
    with pytest.raises(Exception, match=r"metrics.jsonl:2: not a metrics row"):
        log.rows()
    log.path.write_text('{"step": 0}\n{"step": 1}\n{"step"')
    assert log.rows() == [{"step": 0}, {"step": 1}]


def test_ctrl_c_prints_the_exact_resume_command(tiny_models, tmp_path, monkeypatch, capsys):
    run = tmp_path / "my run"  # a space: the command must be quoted
    _kill_at(monkeypatch, 2)  # before the first checkpoint (step 4)
    assert main(cli_args(tiny_models, run)) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "before the first checkpoint" in err and err.strip().endswith("--overwrite")
    monkeypatch.undo()
    _kill_at(monkeypatch, 6)
    assert main(cli_args(tiny_models, run, "--overwrite")) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the last checkpoint is step 4" in err
    cmd = shlex.split(err.split("go on with: ", 1)[1])
    assert cmd[:2] == ["paced", "train"] and cmd[-1] == "--resume"
    monkeypatch.undo()
    assert main(cmd[1:]) == 0  # the printed command, as given, finishes the run
    assert json.loads((run / "summary.json").read_text())["steps"] == 8


def test_nan_stop_names_the_real_checkpoint_and_never_suggests_resume_with_a_new_lr(
        tiny_cfg, tmp_path, monkeypatch):
    real_loss = trainer.losses.weighted_loss
    count = {"n": 0, "at": 1}

    def poisoned(*a, **k):
        count["n"] += 1
        out = real_loss(*a, **k)
        return out * float("nan") if count["n"] == count["at"] else out

    monkeypatch.setattr(trainer.losses, "weighted_loss", poisoned)
    cfg = tiny_cfg("weights.method=uniform", "run.ckpt_every=2")
    with pytest.raises(NonFiniteError) as exc:  # at step 1: no checkpoint yet
        train(cfg, tmp_path / "a")
    msg = str(exc.value)
    assert "step 1" in msg and "No checkpoint was written yet" in msg and ".pt" not in msg
    assert "--overwrite" in msg and "lower optim.lr" in msg and "\n" not in msg
    assert not (tmp_path / "a" / "checkpoints").exists()
    count.update(n=0, at=3)
    with pytest.raises(NonFiniteError) as exc:  # at step 3: the checkpoint of step 2 exists
        train(cfg, tmp_path / "b")
    msg = str(exc.value)
    ckpt = tmp_path / "b" / "checkpoints" / "last.safetensors"
    assert f"{ckpt} holds step 2" in msg and read_checkpoint(ckpt)["step"] == 2
    assert "--resume keeps the run's optim.lr" in msg  # not "lower optim.lr ... --resume"


def test_a_run_with_nothing_to_train_on_stops_and_says_why(tiny_cfg, tiny_models, tmp_path,
                                                           capsys):
    """Random student, real verifier: every p_hat = 0, every PACED weight 0. After
    IDLE_REFRESHES refreshes (steps 0, 4, 8) the run stops, not at budget.steps = 40."""
    cfg = tiny_cfg("weights.method=paced", "budget.steps=40")
    s = train(cfg, tmp_path / "r")
    assert s["steps"] == 9 and s["student_fwd_tokens"] == 0
    assert "hopeless" in s["stopped"] and "weights.method = 'uniform'" in s["stopped"]
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["stopped"] == s["stopped"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("paced: run stopped:")
    # the CLI: exit 2, the reason on one stderr line, strict JSON on stdout
    assert main(cli_args(tiny_models, tmp_path / "c", "budget.steps=40")) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "nothing was trained" in err
    json.loads(out[:out.rindex("}") + 1])
    # resuming changes nothing: the run is still degenerate
    assert train(tiny_cfg("weights.method=paced", "budget.steps=80"), tmp_path / "r",
                 resume=True)["steps"] == 9
    # a run that keeps problems (uniform) is never stopped
    assert train(tiny_cfg("weights.method=uniform", "budget.steps=12"),
                 tmp_path / "u")["steps"] == 12
