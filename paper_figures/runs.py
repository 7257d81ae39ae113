"""Where figures 5-7 and 9 find their recorded runs, and how `--rerun` remakes them.

Defaults: the demo's comparison (runs/demo/compare, made by `make demo`) and the SNR probe
of the shipped student (runs/snr-demo, made by `paced snr-probe configs/demo.toml`).
`--rerun` regenerates them at a quick size into paper_figures/out/runs/ first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICK_COMPARE = ["budget.steps=30", "eval.every=10", "data.n_train_per_cell=16",
                 "data.n_eval_per_cell=8", "data.n_retention=32", "run.progress=false"]


def args(description: str):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--compare-dir", default=str(ROOT / "runs/demo/compare"))
    ap.add_argument("--probe-dir", default=str(ROOT / "runs/snr-demo"))
    ap.add_argument("--rerun", action="store_true", help="remake the runs at a quick size")
    return ap.parse_args()


def compare_dir(a) -> Path:
    from paced_train.compare import compare
    from paced_train.config import load_config
    from paced_train.demo import DEMO_METHODS, demo_config_path

    out = Path(a.compare_dir)
    if a.rerun:
        out = ROOT / "paper_figures/out/runs/compare"
        cfg = load_config(demo_config_path(), QUICK_COMPARE)
        compare(cfg, ["akl", *DEMO_METHODS], seeds=2, out_dir=out)
    if not (out / "comparison.json").exists():
        raise SystemExit(f"{out}/comparison.json not found: run `make demo` or pass --rerun")
    return out


def probe_dir(a) -> Path:
    from paced_train.config import load_config
    from paced_train.demo import demo_config_path
    from paced_train.snr_probe import run_probe

    out = Path(a.probe_dir)
    if a.rerun:
        out = ROOT / "paper_figures/out/runs/snr"
        run_probe(load_config(demo_config_path(), ["probe.n_problems=200", "probe.n_boot=100"]),
                  out)
    if not (out / "probe.json").exists():
        raise SystemExit(f"{out}/probe.json not found: run `paced snr-probe "
                         "configs/demo.toml --out runs/snr-demo` or pass --rerun")
    return out
