"""Run directories (rundir.py) and the run's ends: one writer at a time, no silent
overwrite, --resume through a torn metrics line, Ctrl-C and NaN stops that say exactly how to
go on, and degenerate runs (nothing to train on) that stop and say why."""

from __future__ import annotations

import json
import os
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
    cfg = tiny_cfg("budget.steps=2", "weights.method=uniform")
    run = tmp_path / "run"
    first = train(cfg, run)
    assert (run / rundir.MARKER).is_file()  # paced marked it as its run
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
    assert stable(again) == stable(first)
    # an empty directory is a fresh one
    (tmp_path / "empty").mkdir()
    train(cfg, tmp_path / "empty")


@pytest.mark.parametrize("foreign", ["notes.txt", "checkpoints/other_model/weights.bin",
                                     "checkpoints/best.safetensors", "data/x.jsonl"])
def test_overwrite_refuses_a_run_directory_holding_anything_else(tiny_cfg, tmp_path, foreign):
    """--overwrite deletes only what paced wrote; a run directory that also holds a file of
    someone else's is refused whole, and nothing in it is deleted."""
    cfg = tiny_cfg("budget.steps=2", "weights.method=uniform")
    run = tmp_path / "run"
    train(cfg, run)
    (run / foreign).parent.mkdir(parents=True, exist_ok=True)
    (run / foreign).write_text("mine")
    before = snapshot(run)
    with pytest.raises(RunDirError, match=r"deletes only a run's own files.*nothing was deleted"):
        train(cfg, run, overwrite=True)
    assert snapshot(run) == before
    # --resume writes only the run's own files: the foreign one is left as it is
    train(tiny_cfg("budget.steps=3", "weights.method=uniform"), run, resume=True)
    assert (run / foreign).read_text() == "mine"


@pytest.mark.parametrize("flag", [{}, {"overwrite": True}, {"resume": True}])
def test_a_project_folder_is_never_written_or_deleted(tiny_cfg, tmp_path, flag):
    """A directory that paced did not mark is not a run, whatever its file names: a project
    folder with its own config.toml and checkpoints/ is refused and left as it was."""
    proj = tmp_path / "project"
    (proj / "checkpoints" / "other_model").mkdir(parents=True)
    (proj / "checkpoints" / "other_model" / "weights.bin").write_bytes(b"\x00" * 8)
    (proj / "config.toml").write_text("[mine]\n")
    (proj / "metrics.jsonl").write_text('{"step": 0}\n')
    before = snapshot(proj)
    with pytest.raises(RunDirError, match=r"no \.paced-run marker"):
        train(tiny_cfg("budget.steps=2"), proj, **flag)
    assert snapshot(proj) == before and not (proj / rundir.MARKER).exists()


def _outside(tmp_path: Path) -> Path:
    victim = tmp_path / "elsewhere"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep")
    (victim / "last.safetensors").write_text("keep")
    return victim


@pytest.mark.parametrize("link", ["summary.json", "config.toml", "metrics.jsonl",
                                  "checkpoints", "checkpoints/last.safetensors",
                                  "metrics.jsonl.tmp", rundir.MARKER])
@pytest.mark.parametrize("how", ["resume", "overwrite"])
def test_no_write_follows_a_symlink_in_a_run_directory(tiny_cfg, tmp_path, link, how):
    """A run directory from someone else may hold links (to files that exist, or dangling):
    --resume and --overwrite refuse it before writing anything, and the targets stay."""
    cfg = tiny_cfg("budget.steps=4", "weights.method=uniform")
    run = tmp_path / "run"
    train(cfg, run)
    victim = _outside(tmp_path)
    target = victim if link == "checkpoints" else victim / "precious.txt"
    if link == "config.toml":
        target = victim / "dangling.toml"  # a dangling link would create a file elsewhere
    path = run / link
    if path.is_dir():
        import shutil
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    path.symlink_to(target)
    outside = snapshot(victim)
    with pytest.raises(RunDirError, match="symbolic link"):
        train(tiny_cfg("budget.steps=8", "weights.method=uniform"), run, **{how: True})
    assert snapshot(victim) == outside and not (victim / "dangling.toml").exists()
    assert path.is_symlink()


def test_out_may_not_be_a_link_nor_inside_the_package(tiny_cfg, tiny_models, tmp_path, capsys):
    assets = ROOT / "paced_train" / "assets"
    before = sorted(p.name for p in assets.iterdir())
    link = tmp_path / "assets_link"
    link.symlink_to(assets)
    for out in (link, assets / "run", ROOT / "paced_theory"):
        assert main(cli_args(tiny_models, out, "budget.steps=2")) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("symbolic link" in err or "installed package" in err)
    assert sorted(p.name for p in assets.iterdir()) == before


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "/tmp/abs", "", "a\\b"])
def test_a_run_name_cannot_leave_runs(tiny_models, tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path)
    args = ["train", str(ROOT / "configs/tiny.toml"),
            f'models.student="{tiny_models["student"]}"',
            f'models.teacher="{tiny_models["teacher"]}"', f"run.name={json.dumps(name)}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run.name" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing created, inside runs/ or out of it
    with pytest.raises(RunDirError):
        rundir.run_dir_for(name, "compare-")
    assert rundir.run_dir_for("ok-name_1.2", "snr-") == Path("runs/snr-ok-name_1.2")


def test_a_compares_lock_covers_its_sub_runs(tiny_cfg, tiny_models, tmp_path, monkeypatch):
    """`paced train --overwrite` into one run of a comparison that another process is writing
    is refused (and changes nothing); the comparison's own runs (this process and the ones it
    spawns, which inherit HELD_ENV) go ahead; a comparison cannot start over a running run."""
    cfg = tiny_cfg("budget.steps=2", "weights.method=uniform")
    cmp_dir = tmp_path / "cmp"
    sub = cmp_dir / "uniform" / "seed0"
    with rundir.lock_dir(cmp_dir):
        train(cfg, sub)  # the comparison's own run
        before = snapshot(cmp_dir)
        shell = {k: v for k, v in os.environ.items() if k != rundir.HELD_ENV}  # another shell
        proc = subprocess.run([sys.executable, "-m", "paced_train.cli",
                               *cli_args(tiny_models, sub, "budget.steps=2", "--overwrite")],
                              capture_output=True, text=True, cwd=ROOT, env=shell)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "another paced process (a compare" in proc.stderr
        with monkeypatch.context() as m:  # as if another process held the comparison
            m.delenv(rundir.HELD_ENV)
            with pytest.raises(RunDirError, match="another paced process"):
                train(cfg, sub, overwrite=True)
        assert snapshot(cmp_dir) == before
    assert rundir.HELD_ENV not in os.environ
    with rundir.claim(sub, resume=True):  # a run inside it is going: no comparison starts
        code = ("from paced_train.rundir import lock_dir\n"
                f"with lock_dir({str(cmp_dir)!r}): pass")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=ROOT)
        assert proc.returncode != 0 and "another paced process" in proc.stderr
    train(cfg, sub, overwrite=True)  # nobody holds it now


def test_a_run_that_trains_nothing_says_so_and_exits_non_zero(tiny_cfg, tiny_models, tmp_path,
                                                              capsys):
    """Random student, real verifier, PACED: every weight 0 for a budget too short for the
    idle stop. The summary, stderr and the exit code say nothing was trained."""
    s = train(tiny_cfg("budget.steps=3"), tmp_path / "r")
    assert s["steps"] == 3 and s["student_fwd_tokens"] == 0
    assert "nothing was trained" in s["stopped"] and "untrained student" in s["stopped"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trained nothing" in err
    assert main(cli_args(tiny_models, tmp_path / "c", "budget.steps=3")) == 2
    # a run that trains (uniform) is not flagged
    assert "stopped" not in train(tiny_cfg("budget.steps=3", "weights.method=uniform"),
                                  tmp_path / "u")


def test_the_readme_first_example_trains_something(tmp_path):
    """configs/tiny.toml on the SHIPPED models (the README's first example): PACED keeps
    problems (the student has a frontier in these cells), processes tokens, exits 0."""
    proc = subprocess.run([sys.executable, "-m", "paced_train.cli", "train", "configs/tiny.toml",
                           "--out", str(tmp_path / "mine")], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "mine" / "summary.json").read_text())
    steps = [r for r in map(json.loads, (tmp_path / "mine" / "metrics.jsonl").read_text()
                            .splitlines()) if r["kind"] == "step"]
    assert summary["student_fwd_tokens"] > 0 and "stopped" not in summary
    assert sum(r["n_kept"] > 0 for r in steps) >= len(steps) // 2


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
    assert main(cli_args(tiny_models, run, "weights.method=uniform")) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "before the first checkpoint" in err and err.strip().endswith("--overwrite")
    monkeypatch.undo()
    _kill_at(monkeypatch, 6)
    assert main(cli_args(tiny_models, run, "weights.method=uniform", "--overwrite")) == 130
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
    assert s["steps"] == 9 and s["student_fwd_tokens"] == 0 and s["trained_nothing"]
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
