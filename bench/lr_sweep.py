"""Does Paced's loss to uniform on the demo depend on the learning rate? The demo's
comparison (uniform, hard filter, Paced, AKL) repeated at several peak learning rates.

Each learning rate is its own equal-compute comparison (`paced compare`'s rules: that lr's
uniform run of budget.steps sets each seed's FLOPs budget, every other method stops there;
same seeds, data and cosine schedule), so a method is only ever compared with uniform at
the same lr. Per lr and method it prints the final held-out accuracy and forgetting, and the
paired differences from uniform (final accuracy, AUC against total FLOPs, forgetting
reduction) with 95 % paired t-intervals over seeds ("n.s." when the interval holds 0).

    python bench/lr_sweep.py [--lrs 1e-3,3e-3,1e-2] [--seeds 3] [--jobs 2] [--out runs/lr_sweep]

Finished runs in --out are reused (a killed sweep resumes). Asserts nothing; writes
OUT/lr_sweep.md and OUT/lr_sweep.json (bench/results/lr_sweep/ has a recorded run).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from paced_theory.jsonable import strict_json
from paced_theory.stats import paired
from paced_train.config import METHOD_OVERRIDES, apply_overrides, load_config
from paced_train.experiments.compare import Group, run_groups, summarise
from paced_train.experiments.demo import demo_config_path
from paced_train.experiments.report import ci, pm

METHODS = ("uniform", "hard", "paced", "akl")


def vs_uniform(res: dict, m: str) -> dict | None:
    """The paired comparisons of method m with uniform, recomputed from the per-seed values
    (so the table always uses paced_theory.stats' current intervals); None for uniform."""
    base = res["baseline"]
    if m == base:
        return None
    v, u = res["methods"][m]["per_seed"], res["methods"][base]["per_seed"]
    return {"final_acc": paired(v["final_acc"], u["final_acc"]),
            "auc": paired(v["auc"], u["auc"]),
            "forgetting_reduction": paired(u["forgetting"], v["forgetting"])}


def table(results: dict[str, dict]) -> str:
    """One row per (lr, method): means over seeds and paired differences from uniform."""
    out = ["| lr | method | start → final acc | Δ final vs uniform | Δ AUC vs uniform | "
           "forgetting | Δ forgetting (uniform − method) |", "|---|---|---|---|---|---|---|"]
    for lr, res in results.items():
        start = res["start_acc"][0]
        u = res["methods"][res["baseline"]]["per_seed"]
        gain = paired(u["final_acc"], u["start_acc"])
        for m, e in res["methods"].items():
            vs = vs_uniform(res, m)
            d_final = ci(vs["final_acc"]) if vs else f"(gain {ci(gain)})"
            out.append(f"| {lr} | {m} | {start:.3f} → {pm(e['final_acc'])} | {d_final} | "
                       f"{ci(vs['auc']) if vs else '–'} | {pm(e['forgetting'])} | "
                       f"{ci(vs['forgetting_reduction']) if vs else '–'} |")
    return "\n".join(out)


def best_lr_table(results: dict[str, dict]) -> str:
    """Each method at its own best lr (highest mean final accuracy over the grid) against
    uniform at uniform's best lr, paired by seed. The choice is made on the same seeds it is
    scored on, which flatters every method alike (and a noisy one most)."""
    methods = list(next(iter(results.values()))["methods"])

    def best(m: str) -> str:
        return max(results, key=lambda lr: results[lr]["methods"][m]["final_acc"][0])

    def per_seed(m: str, key: str) -> list[float]:
        return results[best(m)]["methods"][m]["per_seed"][key]

    base = methods[0]
    out = [f"| method | best lr | final acc | AUC | Δ final vs {base} at its best lr "
           f"({best(base)}) | Δ AUC |", "|---|---|---|---|---|---|"]
    for m in methods:
        e = results[best(m)]["methods"][m]
        d = ("–", "–") if m == base else tuple(
            ci(paired(per_seed(m, k), per_seed(base, k))) for k in ("final_acc", "auc"))
        out.append(f"| {m} | {best(m)} | {pm(e['final_acc'])} | {pm(e['auc'])} | {d[0]} | "
                   f"{d[1]} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lrs", default="1e-3,3e-3,1e-2")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="runs/lr_sweep")
    a = ap.parse_args()
    base = load_config(demo_config_path(), ["run.progress=false"])
    lrs = [x.strip() for x in a.lrs.split(",") if x.strip()]
    groups = [Group(Path(a.out) / f"lr{lr}", apply_overrides(base, [f"optim.lr={lr}"]),
                    {m: METHOD_OVERRIDES[m] for m in METHODS}) for lr in lrs]
    t0 = time.time()
    runs = run_groups(groups, a.seeds, a.jobs)
    results = {lr: summarise(r, a.seeds) for lr, r in zip(lrs, runs)}
    n = sum(len(rs) for r in runs for rs in r.values())
    run_s = sum(x["wall_s"] for r in runs for rs in r.values() for x in rs)
    md = (f"# Learning-rate sweep on the demo's testbed ({a.seeds} seeds)\n\n"
          f"{n} runs, {run_s:.0f} s of run time in all ({a.jobs} at a time; this call "
          f"{time.time() - t0:.0f} s, finished runs reused).\n\n"
          f"`python bench/lr_sweep.py --lrs {a.lrs} --seeds {a.seeds} --jobs {a.jobs}`\n\n"
          + table(results) + "\n\n## Each method at its best learning rate\n\n"
          + best_lr_table(results) + "\n\n" + " ".join(best_lr_table.__doc__.split()) + "\n")
    out = Path(a.out)
    (out / "lr_sweep.md").write_text(md)
    (out / "lr_sweep.json").write_text(json.dumps(strict_json(results), indent=2))
    print(md)


if __name__ == "__main__":
    main()
