"""Figure 5: the measured gradient-SNR curve of real students with 95 % bootstrap intervals,
the fitted Beta kernels and the theory's predicted kernel: one panel for the shipped
student, and one for SmolLM2-135M-Instruct when its probe has been recorded.

    python -m paper_figures.fig5_measured_snr [--probe-dir DIR ...] [--rerun]

Defaults: the committed probe results in bench/results/snr_shipped (configs/probe_shipped.toml)
and bench/results/snr_smollm2 (configs/smollm2/probe.toml), each used if present.
--rerun remakes the shipped student's probe at a quick size (paper_figures/out/runs/snr).
"""

from __future__ import annotations

import json

import numpy as np

from paced_train.experiments.snr_probe import FIT_STYLES, draw_snr
from paper_figures.runs import args, main_or_skip, probe_dirs
from paper_figures.style import COLUMN_WIDTH, figure, save

FITS = FIT_STYLES[:2]  # beta_eff and beta_linf (snr.png also draws beta_ls)


def panel(ax, res: dict, label: str) -> list[dict]:
    bins, fit, cfg = res["bins"], res["fit"], res["config"]
    draw_snr(ax, bins, fit, FITS)
    teacher = "self + answer" if cfg.get("privileged") == "answer" else "teacher"
    ax.set(xlabel=f"pass rate p_hat (K = {cfg['K']})", ylabel="SNR ||E g||^2 / tr Cov g",
           title=f"{label}: {cfg['loss']} KL ({teacher})")
    ax.legend(loc="upper left")
    return [{"student": label, **{k: b[k] for k in ("p", "n", "snr", "lo", "hi", "signal",
                                                     "noise")}} for b in bins]


def main():
    a = args(__doc__)
    found = probe_dirs(a)
    fig, axes = figure(width=COLUMN_WIDTH * len(found), height=2.6, ncols=len(found))
    axes = np.atleast_1d(axes)
    rows = []
    for ax, (label, d) in zip(axes, found):
        rows += panel(ax, json.loads((d / "probe.json").read_text()), label)
    return save(fig, "fig5_measured_snr", rows)


if __name__ == "__main__":
    main_or_skip("fig5_measured_snr", main)
