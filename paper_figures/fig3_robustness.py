"""Figure 3: efficiency loss against delta -- the exact worst case (delta^2; tanh^2 delta for
the log band), the Kantorovich bound, and the losses of random admissible misspecifications
(random m in the band on random measures nu: a cloud under the curve). Linear and log axes.

    python -m paper_figures.fig3_robustness
"""

from __future__ import annotations

import numpy as np

from paced_theory import robustness as rb
from paper_figures.style import COLUMN_WIDTH, figure, save


def main(n_random: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    deltas = np.linspace(0.01, 0.9, 40)
    rows = []
    cloud_d, cloud_l = [], []
    for d in deltas:
        bound = 1 - rb.kantorovich_bound(1 - d, 1 + d)
        rows.append({"delta": d, "worst_case": rb.worst_case_loss(d),
                     "kantorovich_bound": bound, "witness": rb.witness(d)["loss"],
                     "worst_case_log_band": rb.worst_case_loss(d, log=True)})
        for _ in range(n_random):
            k = int(rng.integers(2, 12))
            m = rng.uniform(1 - d, 1 + d, k)
            cloud_d.append(d)
            cloud_l.append(1 - rb.misspecified_efficiency(m, rng.dirichlet(np.ones(k))))
    fig, axes = figure(width=2 * COLUMN_WIDTH, height=2.4, ncols=2)
    for ax, log in zip(axes, (False, True)):
        ax.scatter(cloud_d, np.maximum(cloud_l, 1e-12), s=2, color="#999999", alpha=0.4,
                   label="random admissible m", rasterized=True)
        ax.plot(deltas, [r["worst_case"] for r in rows], label="exact worst case delta^2")
        ax.plot(deltas, [r["kantorovich_bound"] for r in rows], ls=":", color="#D55E00",
                label="Kantorovich bound")
        ax.plot(deltas, [r["worst_case_log_band"] for r in rows], ls="--",
                label="log band: tanh^2 delta")
        ax.set(xlabel="misspecification delta", ylabel="efficiency loss 1 - eta")
        if log:
            ax.set(xscale="log", yscale="log", ylim=(1e-6, 1), title="log-log: slope 2")
        else:
            ax.set(title="linear axes")
        ax.legend()
    return save(fig, "fig3_robustness", rows)


if __name__ == "__main__":
    print(main())
