"""Figure 5: the measured gradient-SNR curve of a real student (the shipped student; the
probe's configured loss) with 95 % bootstrap intervals, the fitted Beta kernels and the
theory's predicted kernel.

    python -m paper_figures.fig5_measured_snr [--probe-dir DIR] [--rerun]
"""

from __future__ import annotations

import json

import numpy as np

from paced_theory.kernels import beta_kernel
from paper_figures.runs import args, probe_dir
from paper_figures.style import figure, save


def main():
    a = args(__doc__)
    d = probe_dir(a)
    res = json.loads((d / "probe.json").read_text())
    bins, fit = res["bins"], res["fit"]
    p = np.array([b["p"] for b in bins])
    s = np.array([max(b["snr"], 0.0) for b in bins])
    lo = np.array([max(b["lo"], 0.0) for b in bins])
    hi = np.array([b["hi"] for b in bins])
    fig, ax = figure(height=2.5)
    ax.errorbar(p, s, yerr=[np.maximum(s - lo, 0), np.maximum(hi - s, 0)], fmt="o", ms=3,
                color="k", capsize=2, label="measured, 95 % bootstrap")
    grid = np.linspace(0.005, 0.995, 300)
    peak = s.max() if s.size and s.max() > 0 else 1.0
    for key, color in (("beta_linf", "#0072B2"), ("beta_ls", "#009E73")):
        if key in fit:
            al, be = fit[key]["params"]["alpha"], fit[key]["params"]["beta"]
            w = beta_kernel(grid, al, be)
            ax.plot(grid, w / w.max() * peak, color=color, label=f"{key}: ({al:.2f}, {be:.2f})")
    pr = fit["predicted"]
    w = beta_kernel(grid, pr["alpha"], pr["beta"])
    ax.plot(grid, w / w.max() * peak, ls=":", color="#D55E00",
            label=f"theory {pr['model']}: ({pr['alpha']:g}, {pr['beta']:g})")
    cfg = res["config"]
    ax.set(xlabel=f"pass rate p_hat (K = {cfg['K']} rollouts)",
           ylabel="SNR ||E g||^2 / tr Cov g",
           title=f"Measured SNR, {cfg['student']}, {cfg['loss']} KL")
    ax.legend()
    rows = [{k: b[k] for k in ("p", "n", "snr", "lo", "hi", "signal", "noise")} for b in bins]
    return save(fig, "fig5_measured_snr", rows)


if __name__ == "__main__":
    print(main())
