"""Figure 7: forgetting on the retention set (retention accuracy at the start minus at the
end) for each method of a recorded comparison: mean over seeds with its 95 %
t-interval, and the retention accuracy along the run (mean over seeds).

    python -m paper_figures.fig7_forgetting [--compare-dir DIR] [--rerun]
"""

from __future__ import annotations

import numpy as np

from paced_train.experiments.report import PALETTE, plot_forgetting
from paper_figures.runs import args, compare_dir, comparison, main_or_skip
from paper_figures.style import COLUMN_WIDTH, figure, save


def main():
    res, evals = comparison(compare_dir(args(__doc__)))
    fig, (ax, ax2) = figure(width=2 * COLUMN_WIDTH, height=2.4, ncols=2)
    rows = plot_forgetting(ax, res)
    ax.set_title("Forgetting at the end (95 % interval over seeds)")
    ax.tick_params(axis="x", labelsize=6)
    grid = np.linspace(0, 1, 41)
    for m in res["methods"]:
        curves = []
        for ev, budget in zip(evals[m], res["budget_flops"]):
            curves.append(np.interp(grid, [e["flops"] / budget for e in ev],
                                    [e["retention"] for e in ev]))
        ax2.plot(grid, np.mean(curves, 0), color=PALETTE.get(m), label=m)
    ax2.set(xlabel="total FLOPs, × uniform's budget", ylabel="retention accuracy (mean)",
            title="Retention along the run")
    ax2.legend()
    return save(fig, "fig7_forgetting", rows)


if __name__ == "__main__":
    main_or_skip("fig7_forgetting", main)
