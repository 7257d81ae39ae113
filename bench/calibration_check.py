"""Calibrated cell simulator against the RECORDED study (stale pass rates), with the ablation.

Calibrates paced_theory.cellsim on the uniform runs' per-cell curves only
(bench/results/calibration/uniform_curves.csv), once per model variant, predicts every (pool,
loss, arm) of the study under the recorded "stale" pass-rate schedule, and compares with
bench/results/study_stale_2026-12-03/study.csv (the study of that date): measured AUC ratio to
uniform (mean over seeds, paired t-interval over the 3 seeds), predicted ratio, error. The
study's weighted arms trained on stale pass rates (issue "A verdict that stands"), so this is a
first check of the model, not the test of its predictions for the reruns (those are in
predictions.csv, committed first).

Variants (which mechanism is needed for the measured sign):
  full          shared skills (c), the stale schedule (a), forgetting (d)
  fresh_rates   as full, but the weighted arms' pass rates refreshed every 50 steps (a off)
  no_shared     the old forward model: constant floor lam = 0.5 instead of (c) (refitted)
  no_forgetting phi = 0 (refitted)
  rl_for_rev    reverse-KL arms simulated in RL mode (b) instead of the reverse assumption

    PYTHONPATH=$PWD python bench/calibration_check.py   # ~1-3 min on one core; prints tables
Writes bench/results/calibration/stale_check.csv and params_<variant>.json.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from scipy.stats import t as student_t

from paced_theory.cellsim import Loop, calibrate
from paced_theory.predict import (
    SCENARIOS,
    calibration_runs,
    predict,
    read_curves,
    read_initial,
    read_pools,
)

ROOT = Path(__file__).resolve().parents[1]
CAL = ROOT / "bench/results/calibration"
VARIANTS = {
    "full": (Loop(), "stale", {}),
    "fresh_rates": (Loop(), "fresh", {}),
    "no_shared": (Loop(shared=False), "stale", {}),
    "no_forgetting": (Loop(forgetting=False), "stale", {}),
    "rl_for_rev": (Loop(), "stale", {"reverse_mode": "rl"}),
}


def measured(study_csv: Path) -> dict:
    rows = list(csv.DictReader(open(study_csv)))
    out: dict = {}
    for r in rows:
        out.setdefault((r["pool"], r["loss"], r["arm"]), []).append(float(r["auc_ratio"]))
    res = {}
    for k, v in out.items():
        v = np.array(v)
        half = (student_t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
                if len(v) > 1 else np.nan)
        res[k] = (float(v.mean()), float(v.mean() - half), float(v.mean() + half), len(v))
    return res


def main() -> None:
    pools = read_pools(CAL / "pools.toml")
    runs = calibration_runs(read_curves(CAL / "uniform_curves.csv"), pools)
    meas = measured(ROOT / "bench/results/study_stale_2026-12-03/study.csv")
    initial = read_initial(CAL / "initial_passrates.csv")
    fits: dict = {}
    rows = []
    for name, (loop, scenario, extra) in VARIANTS.items():
        key = (loop.shared, loop.forgetting)
        t0 = time.time()
        if key not in fits:
            fits[key] = calibrate(runs, loop, initial=initial)
            (CAL / f"params_{name}.json").write_text(json.dumps(fits[key][0].to_dict(), indent=1))
        params, info = fits[key]
        pred = predict(params, pools, loop, scenarios=(scenario,))
        if extra.get("reverse_mode") == "rl":
            rl_loop = dataclasses.replace(loop, mode="rl")
            rl = _predict_mode(params, pools, rl_loop, scenario)
            pred = [p for p in pred if p["loss"] == "forward"] + rl
        print(f"{name}: calibration rmse {info['rmse']:.4f} ({time.time() - t0:.0f} s)")
        for p in pred:
            k = (p["pool"], p["loss"], p["arm"])
            if k not in meas or p["arm"] == "uniform":
                continue
            m, lo, hi, n = meas[k]
            decided = not (lo <= 1 <= hi)
            rows.append({"variant": name, "pool": k[0], "loss": k[1], "arm": k[2],
                         "predicted": round(p["auc_ratio"], 4), "measured": round(m, 4),
                         "lo": round(lo, 4), "hi": round(hi, 4), "seeds": n,
                         "error": round(p["auc_ratio"] - m, 4),
                         "interval_excludes_1": decided,
                         "sign_right": (p["auc_ratio"] - 1) * (m - 1) > 0 if decided else ""})
    params = fits[(True, True)][0]
    for pool in pools:
        t0 = time.process_time()
        n = len(predict(params, {pool: pools[pool]}, reverse_pools=(pool,)))
        print(f"speed: {pool}: {n} predictions (every arm, loss, scenario) in "
              f"{time.process_time() - t0:.2f} s of CPU")
    with open(CAL / "stale_check.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print("\n| variant | cells | MAE of AUC ratio | signs right where the interval excludes 1 |")
    print("|---|---|---|---|")
    for name in VARIANTS:
        rs = [r for r in rows if r["variant"] == name]
        dec = [r for r in rs if r["interval_excludes_1"]]
        print(f"| {name} | {len(rs)} | {np.mean([abs(r['error']) for r in rs]):.3f} | "
              f"{sum(r['sign_right'] for r in dec)}/{len(dec)} |")
    print("\n| pool | loss | arm | measured (stale) [95 % t-interval] | predicted (full) | error |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if r["variant"] == "full":
            print(f"| {r['pool']} | {r['loss']} | {r['arm']} | {r['measured']:.3f} "
                  f"[{r['lo']:.2f}, {r['hi']:.2f}] | {r['predicted']:.3f} | {r['error']:+.3f} |")


def _predict_mode(params, pools, loop, scenario):
    """Reverse-KL arms with another gradient mode (the ablation's rl_for_rev)."""
    from paced_theory.cellsim import Arm, simulate_pool
    from paced_theory.predict import REVERSE_ARMS

    out = []
    for pool in ("frontier", "hopeless"):
        counts = pools[pool]
        uni = simulate_pool(counts, params, Arm(), loop)
        for name, arm in REVERSE_ARMS.items():
            cfg = dataclasses.replace(loop, **SCENARIOS[scenario]["reverse"])
            r = uni if name == "uniform" else simulate_pool(counts, params, arm, cfg)
            out.append({"pool": pool, "loss": "reverse", "arm": name,
                        "auc_ratio": r["auc"] / uni["auc"]})
    return out


if __name__ == "__main__":
    main()
