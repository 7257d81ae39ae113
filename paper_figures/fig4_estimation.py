"""Figure 4: efficiency of the weight p(1-p) estimated from K rollouts against K, for the
plug-in, unbiased and posterior-mean (Beta(1,1) prior) estimators (uniform mu; true optimal
weight p(1-p)); dotted: the same for the Beta(2,2) kernel. At Beta(1,1) plug-in and unbiased
have equal efficiency (a constant factor apart, docs/theory.md §5): the plug-in line is drawn
thin with crosses on top of the unbiased one, wide and pale.

    python -m paper_figures.fig4_estimation
"""

from __future__ import annotations

from matplotlib.ticker import NullFormatter

from paced_theory.estimation import efficiency_table
from paper_figures.style import figure, save

KS = [2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]


KS_TICKS = [2, 4, 8, 16, 32, 64]


def main():
    fig, ax = figure(height=3.0)
    rows = []
    # At Beta(1, 1) the plug-in weight is (K-1)/K times the unbiased one, so their
    # efficiencies are equal: unbiased is a wide pale line, plug-in a thin line with crosses.
    looks = {"unbiased": dict(color="#E69F00", lw=3.2, alpha=0.55, marker="o", ms=4.5),
             "plugin": dict(color="#0072B2", lw=1.0, marker="x", ms=4),
             "posterior": dict(color="#009E73", lw=1.2, marker="s", ms=2.5)}
    for (a, b), ls in (((1, 1), "-"), ((2, 2), ":")):
        table = efficiency_table(KS, a, b, ["plugin", "unbiased", "posterior"])
        rows += [{**r, "kernel": f"Beta({a},{b})"} for r in table]
        for est in ["unbiased", "plugin", "posterior"]:
            pts = [(r["K"], r["efficiency"]) for r in table
                   if r["estimator"] == est and r["efficiency"] is not None]
            note = " (= unbiased)" if (a, b, est) == (1, 1, "plugin") else ""
            ax.plot([k for k, _ in pts], [e for _, e in pts], ls=ls, **looks[est],
                    label=f"{est}, Beta({a},{b}){note}")
    ax.set(xscale="log", xlabel="rollouts per problem K", ylabel="efficiency eta",
           title="Estimating the weight from K rollouts")
    ax.axvline(8, color="#999999", lw=0.6)
    ax.set_xticks(KS_TICKS, [str(k) for k in KS_TICKS])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
    keep = ["kernel", "K", "estimator", "efficiency", "relative_efficiency", "p_nonzero"]
    return save(fig, "fig4_estimation", [{k: r.get(k) for k in keep} for r in rows])


if __name__ == "__main__":
    print(main())
