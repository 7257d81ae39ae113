"""Fuzz: every `paced` subcommand, in-process, on argument vectors and input files drawn by
hypothesis (random bytes, wrong types, extreme and non-finite numbers, huge sizes, paths that
are directories or files). Every case must

  - exit 0 or 2 (argparse's usage errors are SystemExit(2), --help SystemExit(0)),
  - print no traceback (an exception escaping `main` fails the test with its own),
  - write nothing outside its working directory (where its --out and default outputs go):
    the input files, the shipped weights and the configs/ directory stay byte-identical;
    inside it, nothing beyond runs/, out/ and the cache (a run.name that is a path stays in
    runs/), no planted project folder, foreign file or symlink target is touched and no
    dangling link is followed (plant_run_dirs),
  - stay within a memory cap (RLIMIT_AS: what the process has mapped + MEMORY_HEADROOM), so
    an allocation sized by an input fails here instead of swapping the machine.

Runs stay tiny: valid training runs take one step of the tiny random GPTs; commands whose
valid runs are long (demo, study, snr-probe, value-probe, pretrain, models fetch) are
drawn invalid.
The draws are derandomized (the same cases every run, so the suite is deterministic); set
PACED_FUZZ_EXAMPLES=500 to run more, freshly random, cases. Ours.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paced_train.cli import main
from paced_train.config import SECTIONS, config_value
from paced_train.models.model import shipped_path

ROOT = Path(__file__).resolve().parents[1]
MEMORY_HEADROOM = 3 * 2**30
EXTRA = int(os.environ.get("PACED_FUZZ_EXAMPLES", "0"))


def fuzz_settings(n: int):
    return settings(max_examples=EXTRA or n, derandomize=not EXTRA, deadline=None,
                    database=None, suppress_health_check=list(HealthCheck))


# ----------------------------------------------------------------------------- values
INTS = st.sampled_from([-(2**63), -1, 0, 1, 2, 3, 17, 10**7, 2**62, 2**63, 10**30])
FLOATS = st.one_of(st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, -1.0,
                                    1e-320, 1e-9, 0.5, 1.0, 2.0, 800.0, 1e308]),
                   st.floats(allow_nan=True, allow_infinity=True, width=64))
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
NUMBER_TEXT = st.one_of(INTS.map(str), FLOATS.map(repr), TEXT, st.sampled_from(
    ["nan", "inf", "-inf", "1e999", "0x10", "", " ", "1,2", "[1,2]", '"x"', "true"]))
TOML_VALUES = st.one_of(
    INTS.map(str), FLOATS.map(lambda x: config_value(x)), st.sampled_from(
        ['"x"', "true", "[1, 2]", "[]", "[1e308]", "{a = 1}", '"shipped:student"', '"self"',
         "1979-05-27", '"\\u00e9"', "[-1]", "[19]", "[10000000]", '""']))
CONFIG_KEYS = [f"{s}.{f}" for s, kind in SECTIONS.items() for f in kind.__dataclass_fields__]
# keys whose large valid values make a run long, not wrong: drawn small or invalid only
LONG = {"budget.steps", "run.log_every", "eval.every"}


@contextlib.contextmanager
def memory_cap():
    """RLIMIT_AS = what this process maps now + MEMORY_HEADROOM, restored afterwards."""
    if not sys.platform.startswith("linux"):
        yield
        return
    with open("/proc/self/status") as f:
        vm = next(int(x.split()[1]) * 1024 for x in f if x.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = vm + MEMORY_HEADROOM
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def digest(paths) -> dict:
    out = {}
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def guarded():
    """Shipped weights and configs: byte-identical after the whole module."""
    paths = [shipped_path("student").parent, ROOT / "configs"]
    before = digest(paths)
    yield
    assert digest(paths) == before


WORK_ENTRIES = {"adir", "afile", "proj", "foreign", "linked", "assets_link"}


def plant_run_dirs(sandbox: Path, work: Path) -> None:
    """Directories an attacker or an accident leaves for --out: a project folder with its own
    config.toml and checkpoints/ (no marker: not a run), a marked run that also holds a file
    of someone else's, a marked run whose summary.json links to an input file and whose
    config.toml is a dangling link out of the sandbox's work/, and a link to the shipped
    weights' directory."""
    from paced_train.rundir import MARKER

    (work / "proj" / "checkpoints" / "other_model").mkdir(parents=True)
    (work / "proj" / "checkpoints" / "other_model" / "weights.bin").write_bytes(b"\x00" * 8)
    (work / "proj" / "config.toml").write_text("[mine]\n")
    for d in ("foreign", "linked"):
        (work / d).mkdir()
        (work / d / MARKER).write_text("{}")
        (work / d / "metrics.jsonl").write_text('{"step": 0}\n')
    (work / "foreign" / "notes.txt").write_text("mine")
    (sandbox / "in" / "victim.txt").write_text("do not overwrite")
    (work / "linked" / "summary.json").symlink_to(sandbox / "in" / "victim.txt")
    (work / "linked" / "config.toml").symlink_to(sandbox / "dangling.toml")
    (work / "assets_link").symlink_to(shipped_path("student").parent)


def run_case(argv: list, inputs: dict[str, bytes], monkeypatch, capsys) -> None:
    """Write `inputs` (name -> bytes; a name ending in / is a directory) under sandbox/in,
    run `paced ARGV` (with {in} and {work} substituted) in sandbox/work, and check the
    contract of the module docstring."""
    with tempfile.TemporaryDirectory(prefix="paced-fuzz-") as tmp:
        sandbox = Path(tmp)
        (sandbox / "in").mkdir()
        work = sandbox / "work"
        work.mkdir()
        (work / "adir").mkdir()
        (work / "adir" / "keep.txt").write_text("not the run's")
        (work / "afile").write_text("a file, not a directory")
        plant_run_dirs(sandbox, work)
        for name, data in inputs.items():
            path = sandbox / "in" / name
            if name.endswith("/"):
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.write_bytes(data)
        argv = [str(a).replace("{in}", str(sandbox / "in")).replace("{work}", str(work))
                for a in argv]
        before = digest([sandbox / "in"])
        planted = digest([work / "proj"])
        monkeypatch.chdir(work)
        monkeypatch.setenv("PACED_CACHE", str(work / "cache"))
        threads = torch.get_num_threads()  # run.threads may change it: keep the suite's
        try:
            with memory_cap():
                try:
                    code = main(argv)
                except SystemExit as exc:  # argparse: usage errors 2, --help 0
                    code = exc.code
        finally:
            monkeypatch.chdir(ROOT)
            torch.set_num_threads(threads)
        out, err = capsys.readouterr()
        assert code in (0, 2), (argv, code, err[-2000:])
        assert "Traceback" not in out + err, (argv, err[-2000:])
        if code == 2 and "usage:" not in err:
            line = [x for x in err.splitlines() if x.startswith("paced:")]
            assert line, (argv, err[-2000:])  # the error, on one line of its own
        assert digest([sandbox / "in"]) == before, argv  # inputs are only read
        assert (work / "adir" / "keep.txt").read_text() == "not the run's", argv
        assert digest([work / "proj"]) == planted, argv  # a folder paced did not mark
        assert (work / "foreign" / "notes.txt").read_text() == "mine", argv
        assert (work / "linked" / "summary.json").is_symlink(), argv
        outside = {p.name for p in sandbox.iterdir()}
        assert outside == {"in", "work"}, (argv, outside)  # no dangling link was written
        new = {p.name for p in work.iterdir()} - WORK_ENTRIES
        assert new <= {"out", "runs", "cache"}, (argv, new)  # run.name stays inside runs/


# --------------------------------------------------------------------------- theory
@fuzz_settings(60)
@given(data=st.data())
def test_theory_commands(data, monkeypatch, capsys, guarded):
    which = data.draw(st.sampled_from(["snr", "robustness", "fit", "simulate", "junk"]))
    inputs: dict[str, bytes] = {}
    if which == "snr":
        argv = ["theory", "snr"]
        for flag in data.draw(st.lists(st.sampled_from(
                ["--K", "--sigma2", "--tau2", "--Delta", "--gamma", "--noise-floor", "--kappa",
                 "--model", "--baseline", "--criterion", "--mu"]), max_size=4)):
            if flag == "--K":
                argv += [flag, data.draw(st.one_of(INTS.map(str), NUMBER_TEXT))]
            elif flag in ("--model", "--baseline", "--criterion"):
                argv += [flag, data.draw(st.sampled_from(
                    ["m1", "m2", "true_mean", "leave_one_out", "group_mean", "allocation",
                     "progress", "x"]))]
            elif flag == "--mu":
                a, b = data.draw(FLOATS), data.draw(FLOATS)
                argv += [flag, data.draw(st.sampled_from(
                    ["uniform", f"beta:{a!r},{b!r}", f"beta:{a!r}", "beta:", "x"]))]
            else:
                argv += [flag, data.draw(st.one_of(FLOATS.map(repr), NUMBER_TEXT))]
    elif which == "robustness":
        argv = ["theory", "robustness", "--delta", data.draw(st.one_of(FLOATS.map(repr),
                                                                       NUMBER_TEXT))]
        argv += data.draw(st.lists(st.sampled_from(["--log", "--json"]), max_size=2))
    elif which == "fit":
        header = data.draw(st.sampled_from(["p,snr", "p,snr,count", "p,snr,se", "snr,p", "x",
                                            ""]))
        rows = data.draw(st.lists(st.lists(st.one_of(FLOATS.map(repr), NUMBER_TEXT),
                                           min_size=1, max_size=3), max_size=8))
        text = header + "\n" + "\n".join(",".join(r) for r in rows)
        inputs["curve.csv"] = data.draw(st.one_of(st.just(text.encode()), st.binary(max_size=64),
                                                  st.just(b"p,snr\n0.2,1\n0.5,2\n0.8,1\n")))
        inputs["dir/"] = b""
        argv = ["fit", data.draw(st.sampled_from(["{in}/curve.csv", "{in}/dir", "{in}/none"]))]
        argv += ["--n-boot", data.draw(st.sampled_from(["0", "2", "-1", "x", str(10**9)]))]
        argv += data.draw(st.sampled_from([[], ["--families", "beta_ls,hard"],
                                           ["--families", "x"], ["--families", ","],
                                           ["--seed", "-1"], ["--json"]]))
    elif which == "simulate":
        argv = ["simulate", "--problems", "30", "--steps", "2", "--seeds", "1", "--methods",
                "uniform,beta"]
        for flag in data.draw(st.lists(st.sampled_from(
                ["--problems", "--steps", "--K", "--seeds", "--methods", "--json"]), max_size=3)):
            if flag == "--methods":
                a = data.draw(FLOATS)
                argv += [flag, data.draw(st.sampled_from(
                    ["oracle", "hard", f"beta:{a!r},1", "beta:1", "x", ",", "beta"]))]
            elif flag == "--json":
                argv.append(flag)
            else:  # small valid values, invalid ones, huge ones (must be refused, not run)
                argv += [flag, data.draw(st.sampled_from(
                    ["-1", "0", "1", "2", "x", "1e3", str(10**9), str(2**63), str(10**30)]))]
    else:
        argv = data.draw(st.lists(st.one_of(TEXT, st.sampled_from(
            ["theory", "snr", "fit", "--json", "--help", "-h", "--", "=", "a.b=1"])),
            max_size=4))
    run_case(argv, inputs, monkeypatch, capsys)


# ------------------------------------------------------------------------- training
def config_text(models: dict, changes: list[tuple[str, str]]) -> str:
    """The tiny config at one step with the tiny models, then `section.key = value` (raw
    TOML values) set for each change."""
    data = tomllib.loads((ROOT / "configs" / "tiny.toml").read_text())
    data["models"] = {"student": models["student"], "teacher": models["teacher"]}
    data["budget"]["steps"] = 1
    raw = {s: {k: config_value(v) for k, v in body.items()} for s, body in data.items()}
    for dotted, value in changes:
        section, _, key = dotted.partition(".")
        raw.setdefault(section, {})[key] = value
    return "\n".join(f"[{s}]\n" + "".join(f"{k} = {v}\n" for k, v in body.items())
                     for s, body in raw.items())


def is_long(key: str, value: str) -> bool:
    return key in LONG and value.lstrip("-").isdigit() and int(value) > 3


def config_inputs(data, models) -> dict[str, bytes]:
    """A config file: the tiny one at one step (valid), with drawn keys changed (wrong types,
    non-finite and huge numbers, unknown keys), or random bytes; and a drawn JSONL file."""
    keys = st.one_of(st.sampled_from(CONFIG_KEYS), st.sampled_from(["run.nope", "nope.x"]))
    changes = [(k, v) for k, v in data.draw(st.lists(st.tuples(keys, TOML_VALUES), max_size=2))
               if not is_long(k, v)]
    kind = data.draw(st.sampled_from(["mutated", "mutated", "mutated", "bytes", "latin-1"]))
    if kind == "bytes":
        cfg = data.draw(st.binary(max_size=200))
    elif kind == "latin-1":
        cfg = config_text(models, [("run.name", '"caf\xe9"')]).encode("latin-1")
    else:
        cfg = config_text(models, changes).encode()
    line = st.one_of(
        st.fixed_dictionaries({"prompt": TEXT, "answer": st.one_of(TEXT, INTS, FLOATS)}),
        st.fixed_dictionaries({"question": TEXT, "answer": TEXT, "id": st.sampled_from(["a", 1])}),
        st.sampled_from(['{"prompt": "1+1=", "answer": "2"}', '{"prompt": "2+2=", "answer": 4}',
                         "[]", "{", '{"prompt": "caf\u00e9", "answer": "1"}', ""]))
    lines = data.draw(st.lists(line, max_size=5))
    jsonl = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines).encode()
    return {"run.toml": cfg, "data.jsonl": data.draw(st.one_of(st.just(jsonl),
                                                               st.binary(max_size=40))),
            "dir/": b""}


OVERRIDES = st.one_of(
    st.tuples(st.sampled_from(CONFIG_KEYS), NUMBER_TEXT).filter(
        lambda kv: not is_long(*kv)).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.sampled_from(["data.jsonl={in}/data.jsonl", "data.jsonl={in}/dir", "data.jsonl={in}/no",
                     "data.retention_jsonl={in}/data.jsonl", "models.student={in}/run.toml",
                     "models.teacher={in}/dir", "models.student=shipped:nope",
                     "models.teacher=self", "x", "a.b=1", "run=1", "=", "optim.lr"]))
OUTS = st.sampled_from(["{work}/out", "{work}/runs/x", "{work}/afile", "{work}/adir",
                        "{in}/run.toml", "{work}/afile/sub", "{work}/proj", "{work}/foreign",
                        "{work}/linked", "{work}/assets_link", "{work}/assets_link/run"])
# run names that are paths: the default --out (runs/<run.name>) must stay inside runs/
PATH_NAMES = st.sampled_from(['run.name="../x"', 'run.name="a/b"', 'run.name=".."',
                              'run.name="/tmp/paced-fuzz-abs"', 'run.name=""',
                              'run.name="..\\\\x"'])


@fuzz_settings(30)
@given(data=st.data())
def test_train_and_compare(data, tiny_models, monkeypatch, capsys, guarded):
    inputs = config_inputs(data, tiny_models)
    which = data.draw(st.sampled_from(["train", "train", "compare"]))
    config = data.draw(st.sampled_from(["{in}/run.toml", "{in}/run.toml", "{in}/dir",
                                        "{in}/missing.toml", "{in}/data.jsonl"]))
    argv = [which, config, *data.draw(st.lists(st.one_of(OVERRIDES, PATH_NAMES),
                                               max_size=2))]
    if data.draw(st.booleans()):
        argv += ["--out", data.draw(OUTS)]
    if which == "train":
        argv += data.draw(st.lists(st.sampled_from(["--resume", "--overwrite", "--device=cpu",
                                                    "--bogus"]), max_size=2, unique=True))
    else:
        argv += ["--methods", data.draw(st.sampled_from(["uniform", "x", "", "uniform,,"]))]
        argv += ["--seeds", data.draw(st.sampled_from(["1", "0", "-3", "x"]))]
    run_case(argv, inputs, monkeypatch, capsys)


@fuzz_settings(40)
@given(data=st.data())
def test_other_commands_with_bad_inputs(data, tiny_models, monkeypatch, capsys, guarded):
    """demo, study, snr-probe, value-probe, pretrain, models: drawn so that each case is
    refused before any long work starts (their valid runs are tested elsewhere)."""
    inputs = config_inputs(data, tiny_models)
    which = data.draw(st.sampled_from(["demo", "study", "snr-probe", "value-probe", "pretrain",
                                       "models"]))
    if which == "demo":
        argv = ["demo", "--quick", *data.draw(st.sampled_from(
            [["--seeds", "0"], ["--seeds", "-1"], ["--seeds", "x"], ["--out", "{work}/afile"],
             ["--out", "{in}/run.toml"], ["--bogus"]]))]
    elif which == "study":
        argv = ["study", data.draw(st.sampled_from(["{in}/dir", "{in}/missing.toml",
                                                    "{in}/data.jsonl"])), "--size", "quick"]
    elif which in ("snr-probe", "value-probe"):
        argv = [which, data.draw(st.sampled_from(["{in}/dir", "{in}/missing.toml",
                                                  "{in}/data.jsonl"])),
                *data.draw(st.lists(OVERRIDES, max_size=1))]
        if data.draw(st.booleans()):
            argv += ["--out", "{work}/afile"]
        if which == "value-probe" and data.draw(st.booleans()):
            argv += ["--study", data.draw(st.sampled_from(["{in}/missing.csv",
                                                           "{in}/run.toml"]))]
    elif which == "pretrain":
        argv = ["pretrain", data.draw(st.sampled_from(["student", "teacher", "student-large",
                                                       "oracle"]))]
        argv += data.draw(st.sampled_from(
            [["--steps", "0"], ["--steps", "-5"], ["--seed", "-1"], ["--steps", "x"],
             ["--out", str(shipped_path("student"))], ["--out", str(shipped_path("teacher"))],
             ["--out", "{work}/afile"], ["--out", "{work}/adir"], ["--out", "{in}/run.toml"],
             ["--out", str(shipped_path("student")), "--overwrite"]]))
    else:
        argv = ["models", data.draw(st.sampled_from(["path", "fetch", "x"])), "smollm2",
                "--cache-dir", data.draw(st.sampled_from(["{work}/afile", "{work}/afile/x",
                                                          "{in}/run.toml"]))]
        if argv[1] == "path" and data.draw(st.booleans()):
            argv[-1] = data.draw(st.sampled_from(["{work}/adir", "{work}/none"]))
    run_case(argv, inputs, monkeypatch, capsys)
