"""`make figures`: every figure script in turn. Figures 1-4 and 8 are computed from the
theory in seconds; 5-7 and table 9 read recorded runs (runs/demo from `make demo`,
bench/results/snr_* from the SNR probe) and are remade at a quick size with `--rerun` when those
are missing (or always, with `python -m paper_figures.make_all --rerun`)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

THEORY = ["fig1_snr_models", "fig2_kernels", "fig3_robustness", "fig4_estimation",
          "fig8_population"]
RUNS = ["fig5_measured_snr", "fig6_learning_curves", "fig7_forgetting", "table9_main"]
STUDY = "fig10_study"  # reads the recorded study (bench/results/study/study.csv)


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    rerun = "--rerun" in sys.argv
    for name in THEORY:
        print(importlib.import_module(f"paper_figures.{name}").main())
    have_compare = any((root / d / "comparison.json").exists()
                       for d in ("runs/demo/compare", "bench/results/demo"))
    have_probe = (root / "bench/results/snr_shipped/probe.json").exists()
    for name in RUNS:
        needs = have_probe if name == "fig5_measured_snr" else have_compare
        sys.argv = [name] + (["--rerun"] if rerun or not needs else [])
        if name != RUNS[0] and name != "fig6_learning_curves" and (rerun or not needs):
            # the comparison was just remade for fig 6; read it instead of rerunning
            sys.argv = [name, "--compare-dir", str(root / "paper_figures/out/runs/compare")]
        print(importlib.import_module(f"paper_figures.{name}").main())
    print(importlib.import_module(f"paper_figures.{STUDY}").main([]))


if __name__ == "__main__":
    main()
