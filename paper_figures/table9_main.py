"""Table 9: the paper's main-table layout at our scale -- base student, unweighted (uniform),
hard filter, AKL, Paced, two-stage -- with held-out accuracy per skill group and mean@k.
Writes out/table9_main.md and .csv. Methods missing from the comparison are left out.

    python -m paper_figures.table9_main [--compare-dir DIR] [--rerun]
"""

from __future__ import annotations

import json

from paper_figures.runs import args, compare_dir
from paper_figures.style import OUT

ORDER = [("uniform", "unweighted"), ("hard", "hard filter"), ("akl", "AKL"),
         ("paced", "Paced"), ("two-stage", "Paced two-stage")]


def base_row(run_dir: str) -> dict:
    first = json.loads(open(f"{run_dir}/metrics.jsonl").readline())
    return {"acc": first["acc"], "mean_at_k": first["mean_at_k"],
            "by": first["acc_by_difficulty"]}


def main():
    d = compare_dir(args(__doc__))
    res = json.loads((d / "comparison.json").read_text())
    cells = list(res["methods"]["uniform"]["acc_by_difficulty"])
    rows = [{"method": "base student", **{c: v for c, v in base_row(
        res["methods"]["uniform"]["runs"][0])["by"].items()},
        "all (greedy)": base_row(res["methods"]["uniform"]["runs"][0])["acc"],
        "mean@k": base_row(res["methods"]["uniform"]["runs"][0])["mean_at_k"]}]
    for key, label in ORDER:
        if key in res["methods"]:
            r = res["methods"][key]
            rows.append({"method": label, **{c: r["acc_by_difficulty"][c][0] for c in cells},
                         "all (greedy)": r["final_acc"][0], "mean@k": r["mean_at_k"][0]})
    cols = ["method", *cells, "all (greedy)", "mean@k"]
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        md.append("| " + " | ".join(r["method"] if c == "method" else f"{100 * r[c]:.1f}"
                                    for c in cols) + " |")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "table9_main.md").write_text("\n".join(md) + "\n")
    with open(OUT / "table9_main.csv", "w") as f:
        f.write(",".join(cols) + "\n")
        for r in rows:
            f.write(",".join(str(r[c]) for c in cols) + "\n")
    return OUT / "table9_main.md"


if __name__ == "__main__":
    print(open(main()).read())
