"""Figure 7: forgetting on the retention-only skill (retention accuracy at the start minus at
the end) for each method of a recorded comparison, mean and standard deviation over seeds.

    python -m paper_figures.fig7_forgetting [--compare-dir DIR] [--rerun]
"""

from __future__ import annotations

import json

from paced_train.report import PALETTE
from paper_figures.runs import args, compare_dir
from paper_figures.style import figure, save


def main():
    d = compare_dir(args(__doc__))
    res = json.loads((d / "comparison.json").read_text())
    names = list(res["methods"])
    vals = [res["methods"][m]["forgetting"] for m in names]
    fig, ax = figure(height=2.3)
    ax.bar(names, [v[0] for v in vals], yerr=[v[1] for v in vals],
           color=[PALETTE.get(m, "#999999") for m in names])
    ax.axhline(0, color="k", lw=0.6)
    ax.set(ylabel="forgetting (accuracy points / 100)", title="Forgetting on the retention set")
    rows = [{"method": m, "forgetting_mean": v[0], "forgetting_sd": v[1],
             "retention_mean": res["methods"][m]["retention"][0]} for m, v in zip(names, vals)]
    return save(fig, "fig7_forgetting", rows)


if __name__ == "__main__":
    print(main())
