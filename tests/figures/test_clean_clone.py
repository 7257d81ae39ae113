"""Every figure script runs on a clean clone (tracked files only, nothing in runs/, no earlier
outputs): it writes its outputs or prints ONE line saying what produces its data, exits 0
and never shows a traceback. Figures 6, 7 and table 9 read a comparison's curves.csv (what
`paced compare` writes beside comparison.json), so they need no run directories. Figure
scripts do not rewrite tracked files with float noise (style.write_text, style.same_picture)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import paper_figures.style as style
from paced_train.experiments.compare import CURVES, compare, read_curves
from paced_train.loop.ledger import read_metrics

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["fig1_snr_models", "fig2_kernels", "fig3_robustness", "fig4_estimation",
           "fig5_measured_snr", "fig6_learning_curves", "fig7_forgetting", "fig8_population",
           "table9_main", "fig10_study"]
OUTPUTS = {"fig10_study": ["fig10a_phase.png", "fig10_prediction.json"],
           "table9_main": ["table9_main.md", "table9_main.csv"]}


def tracked(root: Path, dest: Path, dirs: tuple[str, ...]) -> None:
    """Copy the git-tracked files under `dirs` (what a clone has) from root to dest."""
    files = subprocess.run(["git", "ls-files", "-z", *dirs], cwd=root, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / f, dest / f)


def outputs(name: str) -> list[str]:
    return OUTPUTS.get(name, [f"{name}.png", f"{name}.csv"])


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout (git ls-files) to know the tracked files")
    d = tmp_path_factory.mktemp("clone")
    tracked(ROOT, d, ("paced_theory", "paced_train", "paper_figures", "bench/results",
                      "configs", "pyproject.toml"))
    shutil.rmtree(d / "paper_figures" / "out", ignore_errors=True)  # no earlier outputs
    assert not (d / "runs").exists()
    return d


def run_script(clone: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(clone), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", f"paper_figures.{name}", *args], cwd=clone,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_every_figure_script_on_a_clean_clone(clone, name):
    proc = run_script(clone, name)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    skipped = [x for x in proc.stdout.splitlines() if ": skipped: " in x]
    if skipped:  # its data is not committed: one line that names the command to run
        assert len(skipped) == 1 and proc.stdout.strip() == skipped[0], proc.stdout
        assert skipped[0].startswith(f"{name}: skipped: ") and "run `" in skipped[0]
        assert not any((clone / "paper_figures/out" / o).exists() for o in outputs(name))
    else:
        for o in outputs(name):
            assert (clone / "paper_figures/out" / o).stat().st_size > 100, o


@pytest.fixture(scope="module")
def tiny_comparison(tmp_path_factory, tiny_models) -> Path:
    """A real (tiny) comparison whose run directories are then deleted: what a clone holds."""
    from paced_train.config import load_config

    d = tmp_path_factory.mktemp("cmp")
    cfg = load_config(ROOT / "configs/tiny.toml", [
        f'models.student="{tiny_models["student"]}"',
        f'models.teacher="{tiny_models["teacher"]}"', "budget.steps=4", "eval.every=2",
        "run.progress=false"])
    compare(cfg, ["uniform", "akl"], seeds=2, out_dir=d, progress=False)
    return d


def test_curves_csv_holds_every_runs_eval_rows_exactly(tiny_comparison):
    res = json.loads((tiny_comparison / "comparison.json").read_text())
    evals = read_curves(tiny_comparison / CURVES)
    assert set(evals) == set(res["methods"])
    for m, r in res["methods"].items():
        assert len(evals[m]) == res["seeds"] == len(r["runs"])
        for got, run in zip(evals[m], r["runs"]):
            want = read_metrics(run, "eval")
            assert [e["step"] for e in got] == [e["step"] for e in want]
            for k in ("flops", "rollout_flops", "acc", "mean_at_k", "retention", "forgetting"):
                assert [e[k] for e in got] == [e[k] for e in want], k  # repr: exact
            assert [e["acc_by_difficulty"] for e in got] == \
                [e["acc_by_difficulty"] for e in want]


@pytest.mark.parametrize("name", ["fig6_learning_curves", "fig7_forgetting", "table9_main"])
def test_comparison_figures_need_only_the_committable_files(tiny_comparison, tmp_path, name):
    """comparison.json + curves.csv, the run directories gone: the figure is drawn."""
    d = tmp_path / "recorded"
    d.mkdir()
    for f in ("comparison.json", CURVES):
        shutil.copy(tiny_comparison / f, d / f)
    old, argv = style.OUT, sys.argv
    style.OUT, sys.argv = tmp_path / "out", [name, "--compare-dir", str(d)]
    try:
        __import__(f"paper_figures.{name}", fromlist=["main"]).main()
    finally:
        style.OUT, sys.argv = old, argv
    for o in outputs(name):
        assert (tmp_path / "out" / o).stat().st_size > 50, o
    if name == "table9_main":  # the base student and both methods, read from curves.csv
        md = (tmp_path / "out" / "table9_main.md").read_text()
        assert "| base student |" in md and "| unweighted |" in md and "| AKL |" in md
    # without curves.csv and without the runs: one line, not a traceback
    (d / CURVES).unlink()
    res = json.loads((d / "comparison.json").read_text())
    res["methods"]["uniform"]["runs"] = [str(tmp_path / "gone")] * res["seeds"]
    (d / "comparison.json").write_text(json.dumps(res))
    from paper_figures.runs import MissingData, comparison

    with pytest.raises(MissingData, match="make demo"):
        comparison(d)


def test_float_noise_does_not_rewrite_a_file(tmp_path):
    f = tmp_path / "x.csv"
    assert style.write_text(f, "a,b\r\n0.1,2.5e-3\r\n")
    before = f.stat().st_mtime_ns
    assert not style.write_text(f, "a,b\r\n0.10000000000000003,2.5000000000001e-3\r\n")
    assert f.read_bytes() == b"a,b\r\n0.1,2.5e-3\r\n" and f.stat().st_mtime_ns == before
    for changed in ("a,b\r\n0.1001,2.5e-3\r\n", "a,c\r\n0.1,2.5e-3\r\n",
                    "a,b\r\n0.1,2.5e-3\r\n1,2\r\n", "a,b\n0.1,2.5e-3\n"):
        assert style.write_text(f, changed) and f.read_bytes() == changed.encode()
        style.write_text(f, "a,b\r\n0.1,2.5e-3\r\n")


def test_a_png_is_kept_through_antialiasing_noise_but_not_a_real_change(tmp_path):
    import io

    import matplotlib.pyplot as plt

    def png(y) -> bytes:
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot(np.linspace(0, 1, 50), y)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        plt.close(fig)
        return buf.getvalue()

    y = np.sin(np.linspace(0, 3, 50))
    a = png(y)
    assert style.same_picture(a, png(y + 1e-12))
    assert not style.same_picture(a, png(y + 0.05))
    assert not style.same_picture(a, b"not a png")
