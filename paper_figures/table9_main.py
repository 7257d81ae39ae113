"""Table 9: the paper's main-table layout at our scale -- base student, unweighted (uniform),
hard filter, AKL, Paced, two-stage -- with held-out accuracy per skill group and mean@k: the
mean over seeds and its 95 % t-interval. Writes out/table9_main.md and .csv.
Methods missing from the comparison are left out.

    python -m paper_figures.table9_main [--compare-dir DIR] [--rerun]
"""

from __future__ import annotations

from paced_theory.stats import t_interval
from paper_figures import style
from paper_figures.runs import args, compare_dir, comparison, main_or_skip

ORDER = [("uniform", "unweighted"), ("hard", "hard filter"), ("akl", "AKL"),
         ("paced", "Paced"), ("two-stage", "Paced two-stage")]


def seed_values(evals: list[list[dict]], first: bool) -> list[dict]:
    """Per seed: {cell: acc, "all (greedy)": acc, "mean@k": ...} at the start (first eval of
    the run) or at the end (its last eval, the one its summary reports)."""
    out = []
    for ev in evals:
        r = ev[0] if first else ev[-1]
        out.append({**r["acc_by_difficulty"], "all (greedy)": r["acc"],
                    "mean@k": r["mean_at_k"]})
    return out


def main():
    res, evals = comparison(compare_dir(args(__doc__)))
    cells = list(res["methods"]["uniform"]["acc_by_difficulty"])
    cols = [*cells, "all (greedy)", "mean@k"]
    blocks = [("base student", seed_values(evals["uniform"], True))]
    blocks += [(label, seed_values(evals[key], False))
               for key, label in ORDER if key in res["methods"]]
    rows = []
    for label, per_seed in blocks:
        row = {"method": label}
        for c in cols:
            row[c], row[f"{c} lo"], row[f"{c} hi"] = t_interval([v[c] for v in per_seed])
        rows.append(row)
    md = [f"Held-out accuracy (%), mean over {res['seeds']} seeds [95 % t-interval, shown "
          "clipped to [0, 100]: with bimodal seeds (add3 clicks or not) the t-interval of an "
          "accuracy can pass 100].",
          "", "| method | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for r in rows:
        md.append(f"| {r['method']} | " + " | ".join(
            f"{100 * r[c]:.1f} [{max(100 * r[c + ' lo'], 0):.0f}, "
            f"{min(100 * r[c + ' hi'], 100):.0f}]"
            for c in cols) + " |")
    out = style.OUT
    out.mkdir(parents=True, exist_ok=True)
    style.write_text(out / "table9_main.md", "\n".join(md) + "\n")
    style.write_csv(out / "table9_main.csv", rows, lineterminator="\n")
    return out / "table9_main.md"


if __name__ == "__main__":
    if main_or_skip("table9_main", main):
        print(open(style.OUT / "table9_main.md").read())
