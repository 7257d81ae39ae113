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

from paced_theory.kernels import beta_kernel
from paper_figures.runs import args, probe_dirs
from paper_figures.style import COLUMN_WIDTH, figure, save

FITS = (("beta_eff", "#CC79A7", "-"), ("beta_linf", "#0072B2", "-."))


def panel(ax, res: dict, label: str) -> list[dict]:
    bins, fit, cfg = res["bins"], res["fit"], res["config"]
    p = np.array([b["p"] for b in bins])
    s = np.array([max(b["snr"], 0.0) for b in bins])
    lo = np.array([max(b["lo"], 0.0) for b in bins])
    hi = np.array([b["hi"] for b in bins])
    ax.errorbar(p, s, yerr=[np.maximum(s - lo, 0), np.maximum(hi - s, 0)], fmt="o", ms=3,
                color="k", capsize=2, label="measured, 95 % bootstrap")
    grid = np.linspace(0.0, 1.0, 401)
    peak = s.max() if s.size and s.max() > 0 else 1.0
    for key, color, ls in FITS:
        if key in fit:
            al, be = fit[key]["params"]["alpha"], fit[key]["params"]["beta"]
            w = beta_kernel(grid, al, be)
            ax.plot(grid, w / w.max() * peak, color=color, ls=ls,
                    label=f"{key} ({al:.1f}, {be:.1f}), eta {fit[key]['efficiency']:.2f}")
    pr = fit["predicted"]
    w = beta_kernel(grid, pr["alpha"], pr["beta"])
    eff = pr.get("efficiency")
    ax.plot(grid, w / w.max() * peak, ls=":", color="#D55E00",
            label=f"theory {pr['model']} ({pr['alpha']:g}, {pr['beta']:g})"
            + (f", eta {eff:.2f}" if eff is not None else ""))
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
    print(main())
