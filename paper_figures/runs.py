"""Where figures 5-7 and 9 find their recorded runs, and how `--rerun` remakes them.

Defaults: the demo's comparison (runs/demo/compare, made by `make demo`; missing that, the
recorded one in bench/results/demo) and the committed SNR probes in bench/results/
(snr_shipped; snr_smollm2 when recorded). A comparison's evaluation rows come from its
curves.csv (written by `paced compare` beside comparison.json, small enough to commit); only
when that is missing from the run directories comparison.json names (git-ignored, so absent
in a clone). A figure whose data is in neither raises MissingData, whose message says in one
line what to run; `main_or_skip` prints it and the script exits 0 (make_all goes on).
`--rerun` regenerates them at a quick size into paper_figures/out/runs/ first.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICK_COMPARE = ["budget.steps=30", "eval.every=10", "data.n_train_per_cell=16",
                 "data.n_eval_per_cell=8", "data.n_retention=32", "run.progress=false"]


class MissingData(Exception):
    """A figure's input is not in the repository; the message says what produces it."""


def main_or_skip(name: str, main: Callable, *a) -> object:
    """Run a figure's main: print what it returns, or (MissingData) one line saying what to
    run, and return None; never a traceback for missing data."""
    try:
        out = main(*a)
    except MissingData as exc:
        print(f"{name}: skipped: {exc}", flush=True)
        return None
    print(out, flush=True)
    return out


def args(description: str):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--compare-dir", default=str(ROOT / "runs/demo/compare"))
    ap.add_argument("--probe-dir", default=str(ROOT / "bench/results/snr_shipped"))
    ap.add_argument("--smollm2-dir", default=str(ROOT / "bench/results/snr_smollm2"))
    ap.add_argument("--rerun", action="store_true", help="remake the runs at a quick size")
    return ap.parse_args()


def compare_dir(a) -> Path:
    from paced_train.config import load_config
    from paced_train.experiments.compare import compare
    from paced_train.experiments.demo import DEMO_METHODS, demo_config_path

    out = Path(a.compare_dir)
    recorded = ROOT / "bench/results/demo"  # the recorded demo (eval rows and summaries)
    if not (out / "comparison.json").exists() and out == ROOT / "runs/demo/compare":
        out = recorded
    if a.rerun:
        out = ROOT / "paper_figures/out/runs/compare"
        cfg = load_config(demo_config_path(), QUICK_COMPARE)
        compare(cfg, DEMO_METHODS, seeds=2, out_dir=out)
    if not (out / "comparison.json").exists():
        raise MissingData(f"{out}/comparison.json not found: run `make demo` (or pass --rerun)")
    return out


def comparison(d: Path) -> tuple[dict, dict[str, list[list[dict]]]]:
    """(comparison.json, {method: [eval rows per seed]}) of the comparison in d: the rows from
    d/curves.csv, else from the runs comparison.json names; MissingData when neither is
    there."""
    from paced_train.experiments.compare import CURVES, read_curves
    from paced_train.loop.ledger import read_metrics

    res = json.loads((d / "comparison.json").read_text())
    if (d / CURVES).is_file():
        evals = read_curves(d / CURVES)
        if all(m in evals and len(evals[m]) == res["seeds"] for m in res["methods"]):
            return res, evals
    runs = {m: [Path(r) if Path(r).is_absolute() else ROOT / r for r in v["runs"]]
            for m, v in res["methods"].items()}
    if not all((r / "metrics.jsonl").is_file() for rs in runs.values() for r in rs):
        raise MissingData(f"{d}: no {CURVES} beside comparison.json and its runs are not "
                          "here; run `make demo` (it writes runs/demo/compare/curves.csv, "
                          "read first) or pass --rerun")
    return res, {m: [read_metrics(r, "eval") for r in rs] for m, rs in runs.items()}


def probe_dirs(a) -> list[tuple[str, Path]]:
    """[(label, probe directory)] for figure 5: the shipped student's (always; remade at a
    quick size with --rerun) and SmolLM2's when recorded."""
    from paced_train.config import load_config
    from paced_train.experiments.snr_probe import run_probe

    shipped = Path(a.probe_dir)
    if a.rerun:
        shipped = ROOT / "paper_figures/out/runs/snr"
        run_probe(load_config(ROOT / "configs/probe_shipped.toml",
                              ["probe.n_problems=400", "probe.max_per_bin=20",
                               "probe.n_boot=100"]), shipped, progress=False)
    if not (shipped / "probe.json").exists():
        raise MissingData(f"{shipped}/probe.json not found: run `paced snr-probe "
                         "configs/probe_shipped.toml --out DIR` and pass --probe-dir DIR, "
                         "or pass --rerun")
    found = [("shipped student", shipped)]
    smol = Path(a.smollm2_dir)
    if (smol / "probe.json").exists():
        found.append(("SmolLM2-135M", smol))
    return found
