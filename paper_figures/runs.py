"""Where figures 5-7 and 9 find their recorded runs, and how `--rerun` remakes them.

Defaults: the demo's comparison (runs/demo/compare, made by `make demo`; missing that, the
recorded one in bench/results/demo) and the committed SNR probes in bench/results/
(snr_shipped; snr_smollm2 when recorded).
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
        raise SystemExit(f"{out}/comparison.json not found: run `make demo` or pass --rerun")
    return out


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
        raise SystemExit(f"{shipped}/probe.json not found: run `paced snr-probe "
                         "configs/probe_shipped.toml --out DIR` and pass --probe-dir DIR, "
                         "or pass --rerun")
    found = [("shipped student", shipped)]
    smol = Path(a.smollm2_dir)
    if (smol / "probe.json").exists():
        found.append(("SmolLM2-135M", smol))
    return found
