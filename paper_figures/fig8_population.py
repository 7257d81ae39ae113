"""Figure 8: the population simulator -- compute (rollouts + 3 x updates) to reach the target
held-out accuracy for each weighting, mean and standard deviation over seeds; each bar is
labelled with the problems it updates on per step (of 256 drawn).

Why the oracle needs more compute than Beta (docs/theory.md §4.3): its weight rho(p) of the
TRUE pass rate is never 0, so it drops nothing and pays for all 256 updates per step, and it
keeps the problems whose K rollouts all agree (c = 0 or K), whose group-mean gradient has no
reward signal. The plug-in Beta weight is computed from those same rollouts and drops exactly
them (about 142 updates per step). Masked by 1{0 < c < K}, the oracle needs 0.73 M units,
below Beta's 0.75 M.

    python -m paper_figures.fig8_population
"""

from __future__ import annotations

from paced_theory.population import PopulationConfig, compare
from paper_figures.style import figure, save

METHODS = ["uniform", "hard", "beta", "beta:2,2", "oracle"]


def main(seeds: int = 3):
    cfg = PopulationConfig()
    rows = compare(cfg, METHODS, seeds=seeds)
    fig, ax = figure(height=2.3)
    names = [r["method"] for r in rows]
    means = [r["compute_to_target"][0] if r["compute_to_target"] else float("nan") for r in rows]
    sds = [r["compute_to_target"][1] if r["compute_to_target"] else 0 for r in rows]
    kept = [r["updates"][0] / cfg.steps for r in rows]  # every run takes cfg.steps steps
    bars = ax.bar(names, [m / 1e6 for m in means], yerr=[s / 1e6 for s in sds],
                  color=["#000000", "#E69F00", "#0072B2", "#56B4E9", "#009E73"])
    ax.bar_label(bars, labels=[f"{k:.0f}/step" for k in kept], label_type="center",
                 color="white", fontsize=6)
    ax.set(ylabel="compute to target (10^6 rollout units)",
           title=f"Population simulator: held-out acc >= {cfg.target}\n(bar label: problems "
                 f"updated per step, of {min(cfg.batch_size, cfg.n_problems)} drawn)")
    out = [{"method": r["method"], "reached": r["reached"], "seeds": r["seeds"],
            "compute_mean": m, "compute_sd": s, "updates_per_step": k,
            "final_accuracy": r["final_accuracy"][0], "forgetting": r["forgetting"][0]}
           for r, m, s, k in zip(rows, means, sds, kept)]
    return save(fig, "fig8_population", out)


if __name__ == "__main__":
    print(main())
