"""Figure 8: the population simulator -- compute (rollouts + 3 x updates) to reach the target
held-out accuracy for each weighting, mean and standard deviation over seeds.

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
    ax.bar(names, [m / 1e6 for m in means], yerr=[s / 1e6 for s in sds],
           color=["#000000", "#E69F00", "#0072B2", "#56B4E9", "#009E73"])
    ax.set(ylabel="compute to target (10^6 rollout units)",
           title=f"Population simulator: held-out acc >= {cfg.target}")
    out = [{"method": r["method"], "reached": r["reached"], "seeds": r["seeds"],
            "compute_mean": m, "compute_sd": s,
            "final_accuracy": r["final_accuracy"][0], "forgetting": r["forgetting"][0]}
           for r, m, s in zip(rows, means, sds)]
    return save(fig, "fig8_population", out)


if __name__ == "__main__":
    print(main())
