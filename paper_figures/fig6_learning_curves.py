"""Figure 6: held-out accuracy against compute for each method of a recorded comparison
(every seed drawn; the first seed solid).

    python -m paper_figures.fig6_learning_curves [--compare-dir DIR] [--rerun]
"""

from __future__ import annotations

import json

from paced_train.compare import eval_curve
from paced_train.report import PALETTE
from paper_figures.runs import args, compare_dir
from paper_figures.style import figure, save


def main():
    d = compare_dir(args(__doc__))
    res = json.loads((d / "comparison.json").read_text())
    fig, ax = figure(height=2.5)
    rows = []
    for m, r in res["methods"].items():
        for i, run in enumerate(r["runs"]):
            f, acc = eval_curve(run)
            ax.plot(f, acc, color=PALETTE.get(m), alpha=1.0 if i == 0 else 0.35,
                    label=m if i == 0 else None)
            rows += [{"method": m, "seed": i, "flops": float(x), "acc": float(y)}
                     for x, y in zip(f, acc)]
    ax.set(xlabel="compute (FLOPs, ledger estimate)", ylabel="held-out accuracy (greedy)",
           title="Learning curves at equal compute")
    ax.legend()
    return save(fig, "fig6_learning_curves", rows)


if __name__ == "__main__":
    print(main())
