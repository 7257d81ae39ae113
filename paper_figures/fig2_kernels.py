"""Figure 2: the weight-kernel families, each normalised to peak 1.

    python -m paper_figures.fig2_kernels
"""

from __future__ import annotations

import numpy as np

from paced_theory.kernels import beta_kernel, gaussian_bump, hard_band, sqrt_variance_kernel
from paper_figures.style import figure, save

KERNELS = [
    ("Beta(1,1) = p(1-p)", lambda p: beta_kernel(p, 1, 1)),
    ("Beta(2,2)", lambda p: beta_kernel(p, 2, 2)),
    ("Beta(2,1)", lambda p: beta_kernel(p, 2, 1)),
    ("Beta(0.5,2)", lambda p: beta_kernel(p, 0.5, 2)),
    ("hard band (0.1, 0.9)", lambda p: hard_band(p, 0.1, 0.9)),
    ("Gaussian (0.5, 0.2)", lambda p: gaussian_bump(p, 0.5, 0.2)),
    ("sqrt-variance", sqrt_variance_kernel),
]


def main():
    p = np.linspace(0.0, 1.0, 501)
    fig, ax = figure(height=2.9)
    rows = [{"p": float(x)} for x in p]
    for label, f in KERNELS:
        w = f(p)
        w = w / w.max()
        ax.plot(p, w, label=label, ls="--" if "band" in label else "-")
        for r, v in zip(rows, w):
            r[label] = float(v)
    ax.set(xlabel="pass rate p", ylabel="weight w(p) / max w", title="Weight kernels")
    ax.legend(ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
    return save(fig, "fig2_kernels", rows)


if __name__ == "__main__":
    print(main())
