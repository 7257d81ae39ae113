"""The verdict rerun of issue 17: does frontier weighting pay on the demo's testbed once every
weighted method has fresh pass rates? Runs the arms of bench/results/verdict/PLAN.md (written
and committed before these runs) on paired seeds at equal compute, and reports every planned
comparison with a paired t-interval, seeds won and a sign-flip p-value.

  python bench/verdict.py --seeds 10 --jobs 2                 # group A (demo config, lr 3e-3)
  python bench/verdict.py --seeds 10 --jobs 2 --groups A,B    # and B (lr 6e-3)

Group A's directory is the 10-seed demo's compare directory by default
(`paced demo --seeds 10 --out runs/demo10`), so its five demo arms are reused, not retrained;
finished runs are reused and interrupted ones resumed (paced compare's cache), so a killed
call continues. Writes OUT/verdict.json (every group's comparison.json-style summary and the
planned comparisons) and OUT/verdict.md (tables, the checks the plan requires).
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import ExitStack
from pathlib import Path

from paced_theory.jsonable import strict_json
from paced_theory.stats import paired
from paced_train.config import METHOD_OVERRIDES, apply_overrides, load_config
from paced_train.experiments.compare import Group, run_groups, summarise
from paced_train.experiments.demo import QUICK, demo_config_path
from paced_train.experiments.report import ci, pm
from paced_train.experiments.study import POOLS
from paced_train.rundir import lock_dir

# The pre-issue-17 demo policy (bench/passrate_freshness.py's "paced-old": K = 8 rollouts,
# sequential K, refresh every 50 steps cut to 10 % of FLOPs; oldest pass rate ~300 steps).
STALE = ["rollouts.source=rollouts", "rollouts.max_age=0", "rollouts.refresh_every=50",
         "rollouts.max_share=0.1", "rollouts.settled_K=2", "weights.lo=0", "weights.hi=1"]
ARMS_A = {
    "uniform": METHOD_OVERRIDES["uniform"],
    "paced": METHOD_OVERRIDES["paced"],
    "paced-binomial": METHOD_OVERRIDES["paced"] + ["rollouts.likelihood=binomial"],
    "paced-stale": METHOD_OVERRIDES["paced"] + STALE,
    "hard": METHOD_OVERRIDES["hard"],
    "two-stage": METHOD_OVERRIDES["two-stage"],
    "akl": METHOD_OVERRIDES["akl"],
}
ARMS_B = {m: METHOD_OVERRIDES[m] for m in ("uniform", "hard", "paced", "akl")}
FWD = {m: METHOD_OVERRIDES[m] for m in ("uniform", "paced")}
REV = {m: METHOD_OVERRIDES[m] for m in ("uniform-reverse", "reverse")}
GROUPS = {"A": ("lr 3e-3 (the demo)", [], ARMS_A), "B": ("lr 6e-3", ["optim.lr=6e-3"], ARMS_B),
          # group C (PLAN.md addendum): the study's other pools, forward and reverse KL
          "C-frontier": ("frontier pool, forward KL", POOLS["frontier"], FWD),
          "C-hopeless": ("hopeless pool, forward KL", POOLS["hopeless"], FWD),
          "C-hopeless+": ("hopeless+ pool, forward KL", POOLS["hopeless+"], FWD),
          "C-frontier-rev": ("frontier pool, reverse KL", POOLS["frontier"], REV),
          "C-hopeless-rev": ("hopeless pool, reverse KL", POOLS["hopeless"], REV),
          # group D (bench/results/study/PLAN.md addendum 1, exploratory H16): the normaliser
          "D": ("demo, paced-binomial's normaliser", [],
                {"uniform": ARMS_A["uniform"], "paced-binomial": ARMS_A["paced-binomial"],
                 "paced-binomial-mean": ARMS_A["paced-binomial"] + ["weights.normalise=mean"],
                 # addendum 2, H20: candidates from the whole pool, weight-0 ones dropped
                 "paced-binomial-pool": ARMS_A["paced-binomial"] + ["optim.sampler=pool"]}),
          # groups E and F: bench/results/rl_value/PLAN.md (issue 18)
          "E": ("demo, value criteria (forward KL)", [],
                {m: METHOD_OVERRIDES[m] for m in ("uniform", "lp", "maxloss", "rholoss")}),
          "F": ("demo pool, RL from the verifier (lr: --rl-lr)", [],
                {m: METHOD_OVERRIDES[m] for m in ("rl", "paced-rl")})}
# (group, arm, against): the plan's comparisons H1-H9, in its order
COMPARISONS = [("A", "paced", "uniform"), ("A", "paced-binomial", "uniform"),
               ("A", "two-stage", "uniform"), ("A", "hard", "uniform"),
               ("A", "akl", "uniform"), ("A", "paced-binomial", "paced-stale"),
               ("A", "paced", "paced-binomial"), ("A", "paced-stale", "uniform"),
               ("B", "paced", "uniform"), ("B", "hard", "uniform"), ("B", "akl", "uniform"),
               ("C-frontier", "paced", "uniform"), ("C-hopeless", "paced", "uniform"),
               ("C-hopeless+", "paced", "uniform"),
               ("C-frontier-rev", "reverse", "uniform-reverse"),
               ("C-hopeless-rev", "reverse", "uniform-reverse"),
               ("D", "paced-binomial-mean", "paced-binomial"),
               ("D", "paced-binomial-mean", "uniform"),
               ("D", "paced-binomial-pool", "paced-binomial"),
               ("D", "paced-binomial-pool", "uniform"),
               ("E", "lp", "uniform"), ("E", "maxloss", "uniform"), ("E", "rholoss", "uniform"),
               ("E", "rholoss", "maxloss"), ("F", "paced-rl", "rl")]
AGE_LIMIT = 60       # steps: the plan's freshness check (10 % of the 600-step budget)
SHARE_LIMIT = 0.10   # estimation's share of FLOPs


def comparisons(results: dict[str, dict]) -> list[dict]:
    """Every planned comparison: final-accuracy difference and AUC ratio, paired by seed."""
    out = []
    for g, arm, base in COMPARISONS:
        if g not in results:
            continue
        ps = results[g]["methods"]
        a, b = ps[arm]["per_seed"], ps[base]["per_seed"]
        out.append({"group": g, "arm": arm, "against": base,
                    "final_acc": paired(a["final_acc"], b["final_acc"]),
                    "auc_ratio": paired(a["auc"], b["auc"], kind="ratio"),
                    "forgetting_reduction": paired(b["forgetting"], a["forgetting"])})
    return out


def checks(results: dict[str, dict]) -> list[str]:
    """The plan's sanity checks, as lines: uniform learns; fresh arms' ages and shares."""
    lines = []
    for g, res in results.items():
        u = res["methods"][res["baseline"]]["per_seed"]
        gain = paired(u["final_acc"], u["start_acc"])
        lines.append(f"- group {g}: uniform's gain over the start {ci(gain)} "
                     f"({'learns' if gain['verdict'] == 'better' else 'DOES NOT LEARN'}).")
        for m, e in res["methods"].items():
            ages = [a for a in e["per_seed"].get("pass_rate_age_max", []) if a is not None]
            if not ages:
                continue
            share = e["rollout_flops_share"][0]
            stale = m == "paced-stale"  # staleness is the arm: the age limit does not apply
            ok = (max(ages) <= AGE_LIMIT or stale) and share <= SHARE_LIMIT
            limit = "not applied: staleness is the arm" if stale else f"limit {AGE_LIMIT}"
            lines.append(f"- group {g}, {m}: oldest pass rate read {max(ages):.0f} steps "
                         f"({limit}), "
                         f"estimation {share:.3f} of FLOPs, {e['rollout_share'][0]:.3f} of "
                         f"train time: {'ok' if ok else 'CHECK FAILED'}.")
    return lines


def markdown(results: dict[str, dict], comps: list[dict], seeds: int, header: str) -> str:
    lines = [header, "", "## Planned comparisons (bench/results/verdict/PLAN.md)", "",
             "| group | arm | against | Δ final acc | AUC ratio | forgetting reduction |",
             "|---|---|---|---|---|---|"]
    for c in comps:
        lines.append(f"| {c['group']} | {c['arm']} | {c['against']} | {ci(c['final_acc'])} | "
                     f"{ci(c['auc_ratio'], '{:.3f}')} | {ci(c['forgetting_reduction'])} |")
    lines += ["", f"Mean [95 % paired t-interval over {seeds} seeds] seeds won / seeds, "
              "two-sided sign-flip p-value; n.s. where the interval contains 0 (1 for the "
              "ratio). No multiple-comparison correction (the plan says why).", "",
              "## Checks the plan requires", "", *checks(results)]
    for g, res in results.items():
        lines += ["", f"## Group {g}: {GROUPS[g][0]}", "",
                  "| arm | final acc | AUC | forgetting | oldest pass rate (steps) | "
                  "estimation share of FLOPs / time | steps |", "|---|---|---|---|---|---|---|"]
        for m, e in res["methods"].items():
            age = e.get("pass_rate_age_max")
            lines.append(f"| {m} | {pm(e['final_acc'])} | {pm(e['auc'])} | "
                         f"{pm(e['forgetting'])} | {pm(age, '{:.0f}')} | "
                         f"{e['rollout_flops_share'][0]:.3f} / {e['rollout_share'][0]:.3f} | "
                         f"{pm(e['steps'], '{:.0f}')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--groups", default="A", help="comma-separated: A (lr 3e-3), B (lr 6e-3), "
                    "C-frontier, C-hopeless, C-hopeless+, C-frontier-rev, C-hopeless-rev, "
                    "C (all five), D (the normaliser, exploratory), E (value criteria), F (RL)")
    ap.add_argument("--a-dir", default="runs/demo10/compare",
                    help="group A's runs (default: the 10-seed demo's, reused)")
    ap.add_argument("--out", default="runs/verdict")
    ap.add_argument("--quick", action="store_true", help="the demo's --quick sizes (a test)")
    ap.add_argument("--rl-lr", type=float, default=None,
                    help="group F's learning rate (the plan's pilot picks it; required for F)")
    a = ap.parse_args(argv)
    base = load_config(demo_config_path(), ["run.progress=false"] + (QUICK if a.quick else []))
    names = [g.strip() for g in a.groups.split(",") if g.strip()]
    names = [n for g in names for n in ([k for k in GROUPS if k.startswith("C-")]
                                        if g == "C" else [g])]
    out = Path(a.out)
    if "F" in names and a.rl_lr is None:
        ap.error("group F needs --rl-lr (bench/results/rl_value/PLAN.md: the pilot picks it)")
    extra = {"F": [f"optim.lr={a.rl_lr}"]}
    groups = [Group(Path(a.a_dir) if g == "A" else out / g,
                    apply_overrides(base, GROUPS[g][1] + extra.get(g, [])), GROUPS[g][2])
              for g in names]
    t0 = time.time()
    with ExitStack() as held:  # one writer per group directory, as paced compare does
        for g in groups:
            held.enter_context(lock_dir(g.out_dir))
        runs = run_groups(groups, a.seeds, a.jobs)
    results = {g: summarise(r, a.seeds) for g, r in zip(names, runs)}
    comps = comparisons(results)
    cmd = f"python bench/verdict.py --seeds {a.seeds} --jobs {a.jobs} --groups {a.groups}"
    header = (f"# Verdict rerun (issue 17), {a.seeds} paired seeds\n\n`{cmd}` ({a.jobs} runs "
              f"at a time; this call {time.time() - t0:.0f} s, finished runs reused).")
    out.mkdir(parents=True, exist_ok=True)
    (out / "verdict.md").write_text(markdown(results, comps, a.seeds, header))
    (out / "verdict.json").write_text(json.dumps(strict_json(
        {"seeds": a.seeds, "groups": results, "comparisons": comps}), indent=2))
    print((out / "verdict.md").read_text())


if __name__ == "__main__":
    main()
