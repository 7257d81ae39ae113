"""predictions_v2.csv: the cell simulator with mechanism (e) for reverse KL (ours), calibrated
on UNIFORM runs only, and its predictions for cells not yet run.

Mechanism (e) (paced_theory.cellsim.batch_grad_norm): the loop clips every step to
optim.grad_clip = 1; a reverse-KL batch gradient is 3-30 times that, so a step moves the
skills by the batch's mean gradient over its norm. Paced's sum-normalised weights leave an
effective batch of B wbar^2 / E[w^2] problems, and put it on the problems whose reverse-KL
gradient is the noisiest (one problem's second moment peaks at p ~ 0.6, bench/grad_moments.py),
so its step is mostly noise: the mean part shrinks, while the noise still damages the skills
(delta, second order in the learning rate).

Stages, none of which sees a weighted run:
  1. base: params.json (the committed calibration of dd3e572: every forward-KL parameter, the
     cells' difficulties, forgetting, retention), unchanged.
  2. shape: fit_moment_shape of the initial student's per-bin reverse-KL gradient second moments
     (grad_moments.csv: the shipped student, no training).
  3. calibrate_noise: kappa_rev per cell, the moment's scale sigma and the damage delta, on the
     10 seeds of the verdict's uniform-reverse runs (frontier, hopeless): per-cell curves,
     retention, mean@k and the logged gradient norms (uniform_gradnorms.csv).
Then every reverse cell is simulated with the `exact` scenario (the verdict's fresh
likelihood pass rates). Forward-KL rows are copied unchanged from predictions.csv (the model
of dd3e572 with its commit stamp).

    PYTHONPATH=$PWD python bench/predictions_v2.py [--predictions] [--commit C]  # ~1 min
Writes bench/results/calibration/ablation_v2.csv, and with --predictions params_v2.json and
predictions_v2.csv (the committed record: commit 278f9ff, rows stamped 692df20).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import subprocess
from pathlib import Path

import numpy as np

from paced_theory.cellsim import (
    Arm,
    Loop,
    Params,
    calibrate_noise,
    fit_moment_shape,
    simulate_pool,
)
from paced_theory.predict import SCENARIOS, read_gradnorm_runs, read_pools

ROOT = Path(__file__).resolve().parents[1]
CAL = ROOT / "bench/results/calibration"
# measured reverse cells (bench/results/verdict/verdict.md, 10 paired seeds, exact P): the
# cells whose predictions are retrodictions (the mechanism was chosen knowing them)
MEASURED = {("frontier", "reverse", "paced"): 0.791, ("hopeless", "reverse", "paced"): 0.499,
            ("frontier", "reverse", "uniform"): 1.0, ("hopeless", "reverse", "uniform"): 1.0}
REV_POOLS = ("frontier", "hopeless", "demo", "hopeless+")
# the loop's arms (paced_train/configs/demo.toml: the hard band keeps 1/16 < P < 15/16, which
# with exact pass rates drops the near-hopeless and near-solved problems; predictions.csv's
# hard arms assumed the band (0, 1), under which exact rates keep every problem)
REVERSE_ARMS = {"uniform": Arm(), "paced": Arm("beta"),
                "hard": Arm("hard", lo=1 / 16, hi=15 / 16)}
# variants for the ablation: (loop for reverse KL, refit?)
VARIANTS = {
    "v2": dict(clip=True, rev_shared=True),
    "v2_own_signal": dict(clip=True, rev_shared=False),
    "v2_no_damage": dict(clip=True, rev_shared=True, delta0=True),
    # the shared signal without (e): a clip threshold no gradient reaches (refit)
    "shared_no_clip": dict(clip=True, rev_shared=True, grad_clip=1e9),
    "v1_no_clip": dict(clip=False, rev_shared=False),
}


def fit_variant(base: Params, runs, v: dict) -> Params:
    if not v["clip"]:
        return base
    cfg = Loop(mode="reverse", clip=True, rev_shared=v["rev_shared"],
               grad_clip=v.get("grad_clip", 1.0))
    p, info = calibrate_noise(runs, base, cfg)
    if v.get("delta0"):  # ablation: the fitted model with the damage switched off, not refit
        p = dataclasses.replace(p, delta={**p.delta, "reverse": 0.0})
    print(f"  fit: {info}", flush=True)
    return p


def mul3_kappa(p: Params) -> Params:
    """No reverse-KL uniform run has mul3: ASSUMPTION, its reverse learnability is its forward
    one times the median reverse/forward ratio of the cells that have both."""
    if "mul3" in p.kappa_rev or "mul3" not in p.kappa:
        return p
    both = [c for c in p.kappa_rev if c in p.kappa and p.kappa[c] > 0]
    ratio = float(np.median([p.kappa_rev[c] / p.kappa[c] for c in both]))
    return dataclasses.replace(p, kappa_rev={**p.kappa_rev, "mul3": p.kappa["mul3"] * ratio})


def reverse_rows(p: Params, pools, v: dict) -> list[dict]:
    base = Loop(mode="reverse", clip=v["clip"], rev_shared=v["rev_shared"],
                grad_clip=v.get("grad_clip", 1.0))
    rows = []
    for pool in REV_POOLS:
        counts = pools[pool]
        uni = simulate_pool(counts, p, Arm(), base)
        for name, arm in REVERSE_ARMS.items():
            cfg = dataclasses.replace(base, **SCENARIOS["exact"]["reverse"])
            r = uni if name == "uniform" else simulate_pool(counts, p, arm, cfg)
            rows.append({"pool": pool, "loss": "reverse", "arm": name, "scenario": "exact",
                         "auc": r["auc"], "final_acc": r["final_acc"],
                         "auc_ratio": r["auc"] / uni["auc"],
                         "final_diff": r["final_acc"] - uni["final_acc"], "steps": r["steps"]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commit", default=None, help="stamp (default: git HEAD, tree clean)")
    ap.add_argument("--predictions", action="store_true",
                    help="also rewrite predictions_v2.csv and params_v2.json (the committed "
                         "record was made at 692df20; without this flag only the ablation)")
    a = ap.parse_args()
    commit = a.commit or subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                        capture_output=True, text=True).stdout.strip()
    pools = read_pools(CAL / "pools.toml")
    base = Params.from_dict(json.loads((CAL / "params.json").read_text()))
    gm = [r for r in csv.DictReader(open(CAL / "grad_moments.csv")) if r["loss"] == "reverse"]
    s2, shape = fit_moment_shape([float(r["p"]) for r in gm],
                                 [float(r["second_moment"]) for r in gm],
                                 [float(r["n"]) for r in gm])
    print(f"moment shape: sigma at p=0 {s2 ** 0.5:.1f} (probe), [A, a, b] = {shape}")
    base = dataclasses.replace(base, sigma={"reverse": s2 ** 0.5}, vshape={"reverse": shape})
    runs = [r for r in read_gradnorm_runs(CAL / "uniform_gradnorms.csv", pools)
            if r["loss"] == "reverse"]
    abl = []
    main_rows = None
    for name, v in VARIANTS.items():
        print(f"variant {name}", flush=True)
        p = mul3_kappa(fit_variant(base, runs, v))
        rows = reverse_rows(p, pools, v)
        for r in rows:
            key = (r["pool"], r["loss"], r["arm"])
            abl.append({"variant": name, **{k: r[k] for k in ("pool", "arm", "auc_ratio")},
                        "measured": MEASURED.get(key, "")})
        if name == "v2":
            main_rows = rows
            if a.predictions:
                (CAL / "params_v2.json").write_text(json.dumps(p.to_dict(), indent=1))
    with open(CAL / "ablation_v2.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(abl[0]))
        w.writeheader()
        for r in abl:
            w.writerow({k: (f"{x:.4g}" if isinstance(x, float) else x) for k, x in r.items()})
    for name in VARIANTS:
        print(name, " ".join(f"{r['pool']}/{r['arm']}={r['auc_ratio']:.3f}" for r in abl
                             if r["variant"] == name and r["arm"] != "uniform"))
    if not a.predictions:
        return
    fwd = [r for r in csv.DictReader(open(CAL / "predictions.csv")) if r["loss"] == "forward"]
    cols = ["kind", *fwd[0].keys()]
    with open(CAL / "predictions_v2.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in fwd:  # copied unchanged: committed (dd3e572) before any of their runs
            w.writerow({"kind": "prediction", **r})
        for r in main_rows:
            key = (r["pool"], r["loss"], r["arm"])
            w.writerow({"kind": "retrodiction" if key in MEASURED else "prediction",
                        "commit": commit, "calibration": "params_v2.json",
                        **{k: (f"{x:.6g}" if isinstance(x, float) else x)
                           for k, x in r.items()}})


if __name__ == "__main__":
    main()
