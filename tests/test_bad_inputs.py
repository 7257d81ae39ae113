"""The bad inputs and faults of issue 11, one test each: every one ends in one line naming
the file, line, key or flag, with exit status 2 (through `paced_train.cli.main`, what the
console script calls), and the shipped weights are read-only to every command."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

import paced_train.experiments.pretrain as pretrain_mod
from paced_theory.errors import ConfigError, InputError
from paced_train.cli import main
from paced_train.config import load_config
from paced_train.models.model import shipped_path

ROOT = Path(__file__).resolve().parents[1]
TINY_RECIPE = pretrain_mod.Recipe(n_layer=1, n_head=2, n_embd=16, steps=3, batch_size=8,
                                  lr=1e-2, mixture={"add:1": 1.0})


def fails_in_one_line(capsys, argv, *needles) -> str:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert err.count("\n") == 1 and err.startswith("paced: ") and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)
    return err


def models_args(tiny_models):
    return [f'models.student="{tiny_models["student"]}"',
            f'models.teacher="{tiny_models["teacher"]}"']


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------------------- configs
def test_a_config_that_is_not_utf8_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'[run]\nname = "ok"\n[optim]\nlr = 0.1 # caf\xe9\n')
    with pytest.raises(ConfigError, match=r"bad.toml:4: not UTF-8"):
        load_config(bad)
    fails_in_one_line(capsys, ["train", bad], "bad.toml:4", "UTF-8")


@pytest.mark.parametrize("override", ["optim.lr=inf", "weights.alpha=inf", "weights.beta=nan",
                                      "budget.flops=inf", "loss.temperature=-inf"])
def test_non_finite_numbers_are_config_errors(override, capsys):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=f"'{key}' must be a finite number"):
        load_config(ROOT / "configs" / "tiny.toml", [override])
    fails_in_one_line(capsys, ["train", "configs/tiny.toml", override], key)


def test_inf_in_a_toml_file_names_the_key(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[optim]\nlr = inf\n")
    with pytest.raises(ConfigError, match=r"c.toml: 'optim.lr' must be a finite number"):
        load_config(f)


@pytest.mark.parametrize("override,needle", [
    ("data.n_train_per_cell=1000000000000", "data.n_train_per_cell"),
    ("rollouts.K=100000", "rollouts.K"), ("data.add_digits=[40]", "data.add_digits"),
    ("run.seed=-1", "run.seed"), ("optim.batch_size=99999999999999999999", "optim.batch_size")])
def test_sizes_no_machine_could_allocate_are_refused_up_front(override, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(ROOT / "configs" / "tiny.toml", [override])


# -------------------------------------------------------------------- models and data
def test_a_corrupt_safetensors_model_is_one_line(tmp_path, tiny_models, capsys):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\xff" * 8 + b"not a header")
    fails_in_one_line(capsys, ["train", "configs/tiny.toml", f'models.student="{bad}"',
                               "--out", tmp_path / "r"], "broken.safetensors")
    hf_dir = tmp_path / "hf"  # an HF-looking directory with a corrupt weights file
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text("{}")
    (hf_dir / "model.safetensors").write_bytes(b"\x00" * 3)
    fails_in_one_line(capsys, ["train", "configs/tiny.toml",
                               f'models.teacher="{hf_dir / "model.safetensors"}"',
                               *models_args(tiny_models)[:1], "--out", tmp_path / "r2"])


def test_a_prompt_the_tokenizer_cannot_read_names_file_and_line(tmp_path, tiny_models,
                                                                capsys):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "1+1=", "answer": "2"}\n\n{"prompt": "caf\u00e9 1+2=", '
                 '"answer": "3"}\n{"prompt": "2+2=", "answer": "4"}\n', encoding="utf-8")
    fails_in_one_line(capsys, ["train", "configs/tiny.toml", *models_args(tiny_models),
                               f'data.jsonl="{f}"', "data.n_eval_per_cell=1",
                               "--out", tmp_path / "r"], f"{f}:3", "'\u00e9'")


def test_a_one_problem_jsonl_is_a_config_error_not_nan(tmp_path, tiny_models, capsys):
    f = tmp_path / "one.jsonl"
    f.write_text('{"prompt": "1+1=", "answer": "2"}\n')
    fails_in_one_line(capsys, ["train", "configs/tiny.toml", *models_args(tiny_models),
                               f'data.jsonl="{f}"', "--out", tmp_path / "r"],
                      "one.jsonl", "no held-out problem", "data.n_eval_per_cell")


def test_printed_json_is_strict(tiny_models, tmp_path, capsys, monkeypatch):
    """NaN is never printed as JSON: the train summary and the theory --json output."""
    import paced_train.loop.trainer as trainer

    real = trainer._summary
    monkeypatch.setattr(trainer, "_summary",
                        lambda run, st: {**real(run, st), "acc": float("nan")})
    assert main(["train", "configs/tiny.toml", *models_args(tiny_models), "budget.steps=1",
                 "weights.method=uniform", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out and json.loads(out[:out.rindex("}") + 1])["acc"] is None
    assert main(["theory", "robustness", "--delta", "0.1", "--json"]) == 0
    json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(c))


def test_models_path_before_a_fetch_is_an_error_on_stderr(tmp_path, capsys):
    err = fails_in_one_line(capsys, ["models", "path", "smollm2", "--cache-dir",
                                     tmp_path / "cache"], "models fetch smollm2")
    assert str(tmp_path / "cache") in err
    afile = tmp_path / "afile"
    afile.write_text("x")
    fails_in_one_line(capsys, ["models", "fetch", "smollm2", "--cache-dir", afile], "afile")


# ---------------------------------------------------------------------------- pretrain
def test_pretrain_writes_outside_the_package_and_says_where(tmp_path, monkeypatch, capsys):
    shipped = {r: sha(shipped_path(r)) for r in ("teacher", "student")}
    monkeypatch.setitem(pretrain_mod.RECIPES, "student", TINY_RECIPE)
    monkeypatch.chdir(tmp_path)
    assert main(["pretrain", "student", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    want = Path("runs") / "pretrain" / "student.safetensors"
    assert out.strip().endswith(f"wrote {want}") and (tmp_path / want).is_file()
    # a second run does not silently replace it; --overwrite does
    fails_in_one_line(capsys, ["pretrain", "student"], "already exists", "--overwrite")
    assert main(["pretrain", "student", "--overwrite", "--steps", "2"]) == 0
    capsys.readouterr()
    # the shipped weights are read-only to every command, --overwrite or not
    for role in ("teacher", "student"):
        for extra in ([], ["--overwrite"]):
            fails_in_one_line(capsys, ["pretrain", role, "--out", shipped_path(role), *extra],
                              "shipped model directory")
    with pytest.raises(InputError, match="shipped model directory"):
        pretrain_mod.pretrain("student", shipped_path("student"), recipe=TINY_RECIPE,
                              progress=False)
    fails_in_one_line(capsys, ["pretrain", "student", "--seed", "-1"], "--seed")
    fails_in_one_line(capsys, ["pretrain", "student", "--out", tmp_path], "is a directory")
    assert {r: sha(shipped_path(r)) for r in ("teacher", "student")} == shipped


def test_pretrain_api_default_is_runs_pretrain(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    meta = pretrain_mod.pretrain("student", recipe=replace(TINY_RECIPE, steps=2),
                                 progress=False)
    assert meta["path"] == str(Path("runs") / "pretrain" / "student.safetensors")
    assert (tmp_path / meta["path"]).is_file()


# ------------------------------------------------------------------------------ theory
def test_theory_edge_inputs_are_one_line_errors(capsys):
    fails_in_one_line(capsys, ["theory", "robustness", "--delta", "800", "--log"],
                      "--delta", "709")
    # --Delta 0 and -1 get the same message (they used to contradict each other)
    a = fails_in_one_line(capsys, ["theory", "snr", "--Delta", "0"], "--Delta")
    b = fails_in_one_line(capsys, ["theory", "snr", "--Delta", "-1"], "--Delta")
    assert a.split("(got")[0] == b.split("(got")[0]
    fails_in_one_line(capsys, ["simulate", "--problems", "1000000000"], "n_problems", "GiB")
    fails_in_one_line(capsys, ["simulate", "--K", "100000000"], "K")
    fails_in_one_line(capsys, ["fit", "nothere.csv", "--seed", "-1"], "--seed")


@pytest.mark.parametrize("argv", [["demo", "--quick", "--seeds", "0"],
                                  ["demo", "--quick", "--jobs", "0"],
                                  ["study", "--size", "quick", "--seeds", "0"],
                                  ["study", "--size", "quick", "--jobs", "-1"],
                                  ["compare", "configs/tiny.toml", "--seeds", "0"],
                                  ["compare", "configs/tiny.toml", "--jobs", "0"]])
def test_zero_seeds_or_jobs_is_an_error_not_the_default(capsys, tmp_path, argv):
    """demo --seeds 0 used to run the full demo (seeds or default); nothing is created."""
    flag = next(a for a in argv if a in ("--seeds", "--jobs"))
    fails_in_one_line(capsys, [*argv, "--out", tmp_path / "d"], flag)
    assert not (tmp_path / "d").exists()


def test_a_reader_that_leaves_early_gets_no_traceback():
    """`paced theory snr | head -1`: when stdout's reader closes the pipe, paced stops
    quietly (exit 141, as a process killed by SIGPIPE), with nothing on stderr."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "paced_train.cli", "theory", "snr"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.close()  # the reader is gone before paced writes a line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == "", err[-2000:]


def test_an_oversized_prompt_names_file_and_line_and_leaves_nothing(tmp_path, tiny_models,
                                                                    capsys):
    """A 1e6-character prompt: one line naming the file and line, before anything is written,
    so the same command with the file fixed just runs (no --overwrite needed)."""
    f = tmp_path / "p.jsonl"
    good = [json.dumps({"prompt": f"{i}+1=", "answer": str(i + 1)}) for i in range(8)]
    f.write_text("\n".join([good[0], json.dumps({"prompt": "1" * 10**6 + "+1=",
                                                 "answer": "2"}), *good[1:]]) + "\n")
    out = tmp_path / "r"
    argv = ["train", "configs/tiny.toml", *models_args(tiny_models), f'data.jsonl="{f}"',
            "data.n_eval_per_cell=1", "budget.steps=1", "weights.method=uniform", "--out", out]
    fails_in_one_line(capsys, argv, f"{f}:2", "tokens long")
    assert not out.exists()
    f.write_text("\n".join(good) + "\n")
    assert main([str(a) for a in argv]) == 0


def test_a_failed_start_leaves_nothing_that_blocks_a_retry(tmp_path, tiny_models, capsys,
                                                           monkeypatch):
    """An error found after the run wrote config.toml but before its first metrics row."""
    import paced_train.loop.trainer as trainer

    def broken(run, st):
        raise InputError("planted: the first evaluation failed")

    monkeypatch.setattr(trainer, "_eval", broken)
    out = tmp_path / "r"
    argv = ["train", "configs/tiny.toml", *models_args(tiny_models), "budget.steps=1",
            "weights.method=uniform", "--out", out]
    fails_in_one_line(capsys, argv, "planted")
    assert not out.exists()
    monkeypatch.undo()
    assert main([str(a) for a in argv]) == 0


def pickled_model_dir(path: Path, marker: Path) -> Path:
    """A Hugging Face-style directory whose weights are a pytorch_model.bin pickle that, if
    ever unpickled, creates `marker`."""
    import pickle

    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 8}))

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (path / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))
    return path


def test_a_pickled_pytorch_model_bin_is_refused_in_one_line(tmp_path, capsys):
    pytest.importorskip("transformers")
    marker = tmp_path / "pwned"
    d = pickled_model_dir(tmp_path / "model", marker)
    fails_in_one_line(capsys, ["train", "configs/tiny.toml", f'models.student="{d}"',
                               "--out", tmp_path / "r"], str(d), "pytorch_model.bin",
                      "never unpickles")
    assert not marker.exists() and not (tmp_path / "r").exists()


@pytest.mark.parametrize("case", ["project folder", "foreign file", "symlinked summary",
                                  "path name", "package assets"])
def test_run_directory_attacks_are_one_line_errors(tmp_path, tiny_models, capsys, monkeypatch,
                                                   case):
    from paced_train.rundir import MARKER

    out, flag, extra = tmp_path / "r", "--overwrite", []
    out.mkdir()
    if case == "project folder":  # no marker: not a run, whatever its file names
        (out / "checkpoints" / "other").mkdir(parents=True)
        (out / "checkpoints" / "other" / "weights.bin").write_text("x")
        (out / "config.toml").write_text("[mine]\n")
        needle = "no .paced-run marker"
    elif case == "foreign file":
        (out / MARKER).write_text("{}")
        (out / "config.toml").write_text("")
        (out / "notes.txt").write_text("mine")
        needle = "notes.txt"
    elif case == "symlinked summary":
        (out / MARKER).write_text("{}")
        (out / "config.toml").write_text("")
        victim = tmp_path / "victim.json"
        victim.write_text("keep")
        (out / "summary.json").symlink_to(victim)
        flag, needle = "--resume", "symbolic link"
    elif case == "path name":
        monkeypatch.chdir(tmp_path)
        out, flag, extra, needle = None, None, ['run.name="../escaped"'], "run.name"
    else:
        out, flag, needle = shipped_path("student").parent, None, "installed package"
    before = {str(p): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    argv = ["train", str(ROOT / "configs/tiny.toml"), *models_args(tiny_models), *extra,
            *([] if out is None else ["--out", out]), *([flag] if flag else [])]
    fails_in_one_line(capsys, argv, needle)
    after = {str(p): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before and not (tmp_path / "escaped").exists()
