"""Issue 17's goals for the pass-rate machinery, measured on the demo configuration.

Runs uniform and every weighted method of the demo (hard filter, Paced, two-stage, Paced
under reverse KL) on one seed at the demo's equal compute (each weighted run gets the
uniform run's FLOPs, as `paced compare` does), plus optional variants of Paced (the
rollout-like binomial likelihood; the pre-issue-17 rollout policy), and prints per run:

  age max      the oldest pass rate any step's sampler read (metrics.jsonl pass_rate_age_max),
               over the whole run and, for two-stage, in each half (forward / reverse steps)
  age mean     the mean over steps of the candidates' mean age
  est FLOPs    pass-rate estimation (refresh rollouts + likelihood passes) / all FLOPs
  est time     its wall time / the training phases' (summary rollout_share) and / the
               whole run's wall time
  final acc, AUC   held-out accuracy at the end, mean accuracy over the budget

Goals (issue 17): age max <= 60 steps at every step for every weighted method, in both
halves of two-stage and under reverse KL; estimation <= 10 % of the FLOPs and <= 20 % of
the wall time. Asserts nothing; writes bench/results/passrate_freshness.{json,md}.

    python bench/passrate_freshness.py [--out runs/passrate_freshness] [--jobs 2]
        [--seed 0] [--variants] [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from paced_theory.stats import curve_auc
from paced_train.config import METHOD_OVERRIDES, load_config
from paced_train.experiments.compare import Group, run_groups
from paced_train.experiments.demo import demo_config_path
from paced_train.loop.ledger import eval_curve, read_metrics

ROOT = Path(__file__).resolve().parent
ARMS = {m: METHOD_OVERRIDES[m] for m in ("uniform", "hard", "paced", "two-stage", "reverse")}
VARIANTS = {
    # the rollout-like support: c ~ Binomial(8, P), fresh
    "paced-binomial": [*METHOD_OVERRIDES["paced"], "rollouts.likelihood=binomial"],
    # what the demo shipped before issue 17 (stale pass rates)
    "paced-old": [*METHOD_OVERRIDES["paced"], "rollouts.source=rollouts", "rollouts.max_age=0",
                  "rollouts.refresh_every=50", "rollouts.max_share=0.1",
                  "rollouts.settled_K=2", "weights.lo=0", "weights.hi=1"],
}
AGE_GOAL, FLOPS_GOAL, WALL_GOAL = 60, 0.10, 0.20


def measure(arm: str, summary: dict, budget: float) -> dict:
    steps = read_metrics(summary["run_dir"], "step")
    ages = [r["pass_rate_age_max"] for r in steps if r.get("pass_rate_age_max") is not None]
    halves = {}
    for kind in ("forward", "reverse"):
        a = [r["pass_rate_age_max"] for r in steps
             if r.get("loss_kind") == kind and r.get("pass_rate_age_max") is not None]
        if a:
            halves[kind] = max(a)
    mean = [r["pass_rate_age"] for r in steps if r.get("pass_rate_age") is not None]
    t = summary["timers_s"]
    est_wall = t.get("rollout", 0.0) + t.get("estimate", 0.0)
    return {"arm": arm, "steps": summary["steps"], "age_max": max(ages) if ages else None,
            "age_max_by_loss": halves,
            "age_mean": round(sum(mean) / len(mean), 2) if mean else None,
            "est_flops_share": summary["rollout_flops_share"],
            "est_time_share": summary["rollout_share"],
            "est_wall_share": est_wall / summary["wall_s"] if summary["wall_s"] else 0.0,
            "final_acc": summary["acc"], "auc": curve_auc(*eval_curve(summary["run_dir"]),
                                                          budget),
            "wall_s": summary["wall_s"]}


def table(rows: list[dict]) -> str:
    lines = ["| run | steps | age max (fwd / rev) | age mean | est FLOPs | est time (train "
             "phases / wall) | final acc | AUC | goals met |", "|---|---|---|---|---|---|---|"
             "---|---|"]
    for r in rows:
        by = r["age_max_by_loss"]
        halves = f" ({by.get('forward', '–')} / {by.get('reverse', '–')})" if len(by) > 1 else ""
        weighted = r["age_max"] is not None
        met = "–" if not weighted else (
            "yes" if r["age_max"] <= AGE_GOAL and r["est_flops_share"] <= FLOPS_GOAL
            and r["est_wall_share"] <= WALL_GOAL else "NO")
        lines.append(f"| {r['arm']} | {r['steps']} | "
                     f"{'–' if not weighted else r['age_max']}{halves} | "
                     f"{'–' if r['age_mean'] is None else r['age_mean']} | "
                     f"{r['est_flops_share']:.3f} | {r['est_time_share']:.3f} / "
                     f"{r['est_wall_share']:.3f} | {r['final_acc']:.3f} | {r['auc']:.3f} | "
                     f"{met} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/passrate_freshness")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", action="store_true", help="also run VARIANTS")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace runs in --out made with another config")
    ap.add_argument("--results", default=str(ROOT / "results" / "passrate_freshness"))
    args = ap.parse_args()
    cfg = load_config(demo_config_path(), ["run.progress=false", f"run.seed={args.seed}"])
    arms = {**ARMS, **(VARIANTS if args.variants else {})}
    t0 = time.time()
    runs = run_groups([Group(Path(args.out), cfg, arms)], 1, args.jobs, args.overwrite,
                      progress=False)[0]
    budget = runs["uniform"][0]["flops"]
    rows = [measure(a, rs[0], budget) for a, rs in runs.items()]
    cmd = "python bench/passrate_freshness.py " + " ".join(sys.argv[1:])
    md = (f"`{cmd}` on {platform.node() or 'this machine'} ({os.cpu_count()} CPU cores), "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n\n"
          f"Demo configuration (`paced_train/configs/demo.toml`), seed {args.seed}, every run "
          f"at the uniform run's FLOPs ({budget:.3g}); {time.time() - t0:.0f} s on "
          f"{args.jobs} process(es).\n\n" + table(rows) + "\n\nGoals: age max <= "
          f"{AGE_GOAL} steps, estimation <= {FLOPS_GOAL:.0%} of FLOPs and <= "
          f"{WALL_GOAL:.0%} of wall time (est time / wall).\n")
    print(md)
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"seed": args.seed, "budget_flops": budget,
                                                    "rows": rows}, indent=2))
    out.with_suffix(".md").write_text(md)


if __name__ == "__main__":
    main()
