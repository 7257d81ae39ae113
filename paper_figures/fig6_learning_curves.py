"""Figure 6: held-out accuracy against compute for each method of a recorded comparison:
the mean over seeds with its 95 % t-band, against total FLOPs (rollouts included:
what a method costs) and against training FLOPs (rollouts excluded: what the weighting
alone buys). Compute is a fraction of each seed's budget (the uniform run's FLOPs).

    python -m paper_figures.fig6_learning_curves [--compare-dir DIR] [--rerun]
"""

from __future__ import annotations

from paced_train.experiments.report import plot_curves
from paper_figures.runs import args, compare_dir, comparison, main_or_skip
from paper_figures.style import COLUMN_WIDTH, figure, save


def main():
    res, evals = comparison(compare_dir(args(__doc__)))
    fig, axes = figure(width=2 * COLUMN_WIDTH, height=2.5, ncols=2)
    rows = []
    for ax, axis in zip(axes, ("flops", "train_flops")):
        rows += plot_curves(ax, res, axis, evals)
    axes[1].set_ylabel("")
    axes[0].legend()
    axes[0].set_title(f"Total compute (mean, 95 % band, {res['seeds']} seeds)")
    axes[1].set_title("Training compute only")
    return save(fig, "fig6_learning_curves", rows)


if __name__ == "__main__":
    main_or_skip("fig6_learning_curves", main)
