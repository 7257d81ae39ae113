"""`make figures`: every figure script in turn. Figures 1-4 and 8 are computed from the
theory in seconds; 5-7 and table 9 read recorded results (runs/demo/compare from `make demo`,
else bench/results/demo: comparison.json and curves.csv; bench/results/snr_* from the SNR
probe), 10 the recorded study. A figure whose recorded data is not in the repository prints
one line saying what to run and is skipped (exit 0); with no comparison.json at all, 6, 7 and
9 are remade at a quick size (`--rerun`; always with `python -m paper_figures.make_all
--rerun`)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from paper_figures.runs import main_or_skip

THEORY = ["fig1_snr_models", "fig2_kernels", "fig3_robustness", "fig4_estimation",
          "fig8_population"]
RUNS = ["fig5_measured_snr", "fig6_learning_curves", "fig7_forgetting", "table9_main"]
STUDY = "fig10_study"  # reads the recorded study (bench/results/study/study.csv)


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    rerun = "--rerun" in sys.argv
    for name in THEORY:
        main_or_skip(name, importlib.import_module(f"paper_figures.{name}").main)
    have_compare = any((root / d / "comparison.json").exists()
                       for d in ("runs/demo/compare", "bench/results/demo"))
    have_probe = (root / "bench/results/snr_shipped/probe.json").exists()
    for name in RUNS:
        needs = have_probe if name == "fig5_measured_snr" else have_compare
        sys.argv = [name] + (["--rerun"] if rerun or not needs else [])
        if name != RUNS[0] and name != "fig6_learning_curves" and (rerun or not needs):
            # the comparison was just remade for fig 6; read it instead of rerunning
            sys.argv = [name, "--compare-dir", str(root / "paper_figures/out/runs/compare")]
        main_or_skip(name, importlib.import_module(f"paper_figures.{name}").main)
    main_or_skip(STUDY, importlib.import_module(f"paper_figures.{STUDY}").main, [])


if __name__ == "__main__":
    main()
