"""Rollout policies for Paced at K = 8, at the demo's equal-compute budgets.

Runs Paced under each refresh policy on the demo's seeds, each with the FLOPs budget of that
seed's uniform run (read from a recorded `paced demo` comparison), and prints, per policy,
the rollouts' share of FLOPs and of training wall time, final held-out accuracy and AUC,
with paired differences against the demo's own Paced runs (the policy the demo ships):

  full         K = 8 for every problem every 50 steps (no cap)
  sequential   settled_K = 2: settled problems get 2 rollouts first (no cap)
  demo         sequential K and refreshes postponed above 10 % of the FLOPs (the shipped
               policy: these are the demo's Paced runs, reused, not rerun)

    python bench/rollout_policy.py [--demo-dir runs/demo/compare] [--jobs 2]

Asserts nothing; prints a markdown table (bench/results/rollout_policy.md has a recorded run).
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from paced_theory.stats import curve_auc, mean_sd, paired
from paced_train.config import METHOD_OVERRIDES, apply_overrides, load_config
from paced_train.experiments.compare import run_config, train_or_reuse
from paced_train.experiments.demo import demo_config_path
from paced_train.loop.ledger import eval_curve

# rollouts, as the demo measured pass rates before issue 17 (its config now uses the
# likelihood source: bench/passrate_freshness.py)
ROLLOUTS = ["rollouts.source=rollouts", "rollouts.max_age=0", "rollouts.refresh_every=50",
            "weights.lo=0", "weights.hi=1"]
POLICIES = {"full": [*ROLLOUTS, "rollouts.settled_K=0", "rollouts.max_share=1.0"],
            "sequential": [*ROLLOUTS, "rollouts.settled_K=2", "rollouts.max_share=1.0"]}


def _one(args):
    cfg, run_dir = args
    return train_or_reuse(cfg, Path(run_dir))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--demo-dir", default="runs/demo/compare")
    ap.add_argument("--out", default="runs/rollout_policy")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    demo = json.loads((Path(a.demo_dir) / "comparison.json").read_text())
    budgets = demo["budget_flops"]
    base = load_config(demo_config_path(), ["run.progress=false"])
    jobs = []
    for name, over in POLICIES.items():
        cfg = apply_overrides(base, over)
        for s, b in enumerate(budgets):
            jobs.append((run_config(cfg, METHOD_OVERRIDES["paced"], "paced", s, b),
                         str(Path(a.out) / name / f"seed{s}")))
    t0 = time.time()
    with ProcessPoolExecutor(a.jobs, mp_context=get_context("spawn")) as pool:
        summaries = list(pool.map(_one, jobs))
    per = {"demo": [json.loads((Path(d) / "summary.json").read_text()) | {"run_dir": d}
                    for d in demo["methods"]["paced"]["runs"]]}
    for i, name in enumerate(POLICIES):
        per[name] = [s | {"run_dir": j[1]} for s, j in
                     zip(summaries[i * len(budgets):(i + 1) * len(budgets)],
                         jobs[i * len(budgets):(i + 1) * len(budgets)])]
    uni = [json.loads((Path(d) / "summary.json").read_text())["acc"]
           for d in demo["methods"]["uniform"]["runs"]]

    def auc(rs):
        return [curve_auc(*eval_curve(r["run_dir"]), b) for r, b in zip(rs, budgets)]

    print(f"Paced at the demo's budgets, {len(budgets)} seeds ({time.time() - t0:.0f} s, "
          f"{a.jobs} processes)\n")
    print("| policy | rollout share of FLOPs | of train time | refreshes | final acc | "
          "Δ final vs demo policy | AUC | Δ AUC vs demo policy | Δ final vs uniform |")
    print("|---|---|---|---|---|---|---|---|---|")
    d_acc, d_auc = [r["acc"] for r in per["demo"]], auc(per["demo"])
    for name in ("full", "sequential", "demo"):
        rs = per[name]
        acc, au = [r["acc"] for r in rs], auc(rs)
        refreshes = [r.get("refreshes") for r in rs]

        def ms(x, f="{:.3f}"):
            m = mean_sd(x)
            return "–" if m is None else f"{f.format(m[0])} ± {f.format(m[1])}"

        def ci(p):
            tag = " n.s." if p["verdict"] == "not significant" else ""
            return f"{p['mean']:+.3f} [{p['lo']:+.3f}, {p['hi']:+.3f}]{tag}"

        same = name == "demo"
        print(f"| {name} | {ms([r['rollout_flops_share'] for r in rs], '{:.2f}')} | "
              f"{ms([r['rollout_share'] for r in rs], '{:.2f}')} | {ms(refreshes, '{:.0f}')} | "
              f"{ms(acc)} | {'–' if same else ci(paired(acc, d_acc))} | {ms(au)} | "
              f"{'–' if same else ci(paired(au, d_auc))} | {ci(paired(acc, uni))} |")


if __name__ == "__main__":
    main()
