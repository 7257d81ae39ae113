"""Figure 3: efficiency loss against delta -- the exact worst case (delta^2; tanh^2 delta for
the log band), the Kantorovich bound, and the losses of random admissible misspecifications
(random m in the band on random measures nu: a cloud under the curve). Linear and log axes.
The bound is attained (docs/theory.md §3), so worst case, bound and witness coincide: they
are drawn as a wide pale line, dashes on it and open markers, so that all three show.

    python -m paper_figures.fig3_robustness
"""

from __future__ import annotations

import numpy as np

from paced_theory import robustness as rb
from paper_figures.style import COLUMN_WIDTH, figure, save


def main(n_random: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    deltas = np.linspace(0.01, 0.9, 40)  # an array: deltas[every] below
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
    every = slice(1, None, 4)  # witness markers on every 4th delta
    for ax, log in zip(axes, (False, True)):
        ax.scatter(cloud_d, np.maximum(cloud_l, 1e-12), s=2, color="#999999", alpha=0.4,
                   label="random admissible m", rasterized=True)
        # the bound is attained, so these three coincide: a wide pale line, dashes on top of
        # it, and the witness's losses as open markers
        ax.plot(deltas, [r["worst_case"] for r in rows], color="#56B4E9", lw=4.5, alpha=0.6,
                solid_capstyle="butt", label="exact worst case δ² (wide line)")
        ax.plot(deltas, [r["kantorovich_bound"] for r in rows], ls=(0, (4, 2)), lw=1.2,
                color="#000000", label="Kantorovich bound (dashes): attained")
        ax.plot(deltas[every], [r["witness"] for r in rows][every], ls="none", marker="o",
                ms=4, mfc="none", mec="#D55E00", mew=1.0, label="two-point witness's loss")
        ax.plot(deltas, [r["worst_case_log_band"] for r in rows], ls="-.", color="#E69F00",
                label="log band [e^-δ, e^δ]: tanh²δ")
        ax.set(xlabel="misspecification δ (m in [1-δ, 1+δ])", ylabel="efficiency loss 1 - η")
        if log:
            ax.set(xscale="log", yscale="log", ylim=(1e-6, 1), title="log-log: slope 2")
        else:
            ax.set(title="linear axes")
            ax.legend()  # one legend: in the log panel it would cover the curves
    return save(fig, "fig3_robustness", rows)


if __name__ == "__main__":
    print(main())
