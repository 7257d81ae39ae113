"""Markdown tables and figures for `paced compare` and `paced demo`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Okabe-Ito, colour-blind safe
PALETTE = {"uniform": "#000000", "hard": "#E69F00", "paced": "#0072B2", "akl": "#009E73",
           "two-stage": "#D55E00", "reverse": "#CC79A7", "uniform-reverse": "#56B4E9"}


def _pm(x, fmt="{:.3f}"):
    return "–" if x is None else f"{fmt.format(x[0])} ± {fmt.format(x[1])}"


def comparison_markdown(result: dict) -> str:
    lines = ["| method | held-out acc (greedy) | mean@k | forgetting | compute to reach uniform's "
             "final acc (× uniform) | FLOPs used (× uniform) | steps | wall s | rollout share of "
             "train time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m, r in result["methods"].items():
        ratios = [x for x in r["compute_ratio_to_uniform"] if x is not None]
        reach = (f"{np.mean(ratios):.2f} ({r['reached_uniform_final']}/{result['seeds']} seeds)"
                 if ratios else f"not reached (0/{result['seeds']})")
        lines.append(f"| {m} | {_pm(r['final_acc'])} | {_pm(r['mean_at_k'])} | "
                     f"{_pm(r['forgetting'])} | {reach} | "
                     f"{_pm(r.get('flops_ratio_to_uniform', [1.0, 0.0]), '{:.3f}')} | "
                     f"{_pm(r['steps'], '{:.0f}')} | "
                     f"{_pm(r['wall_s'], '{:.0f}')} | {_pm(r['rollout_share'], '{:.2f}')} |")
    lines.append("")
    budgets = ", ".join(f"{f:.3g}" for f in result["budget_flops"])
    lines.append(f"Equal compute per seed: {budgets} FLOPs (the uniform run's); a run stops "
                 "after the step that crosses it and skips a pass-rate refresh it cannot pay "
                 "for, so 'FLOPs used' is within a step (or a refresh, when a method runs out "
                 "of steps) of 1. ± is the standard deviation over seeds (0 with one seed).")
    return "\n".join(lines)


def plot_comparison(result: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from paced_train.compare import eval_curve

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for m, r in result["methods"].items():
        for i, run in enumerate(r["runs"]):
            f, a = eval_curve(run)
            ax.plot(f, a, color=PALETTE.get(m), alpha=0.9 if i == 0 else 0.4,
                    label=m if i == 0 else None)
    ax.set(xlabel="compute (FLOPs, ledger estimate)", ylabel="held-out accuracy (greedy)",
           title="Accuracy against compute")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(Path(out_dir) / "accuracy_vs_compute.png", dpi=130)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    names = list(result["methods"])
    vals = [result["methods"][m]["forgetting"] for m in names]
    ax.bar(names, [v[0] for v in vals], yerr=[v[1] for v in vals],
           color=[PALETTE.get(m, "#999999") for m in names])
    ax.axhline(0, color="k", lw=0.8)
    ax.set(ylabel="forgetting (retention acc start − end)", title="Forgetting on the retention set")
    fig.tight_layout()
    fig.savefig(Path(out_dir) / "forgetting.png", dpi=130)
    plt.close(fig)
