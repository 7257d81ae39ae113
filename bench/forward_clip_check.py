"""Item 3 of the reverse-KL follow-up (ours): does mechanism (e) also explain the forward-KL
errors (hopeless+: predicted 0.868, measured 0.693)? A RETRODICTION check of cells already
measured, not a prediction; predictions_v2.csv keeps the forward rows of predictions.csv.

Stage as bench/predictions_v2.py, for forward KL: params_v2.json fixed but kappa; the moment
shape from grad_moments.csv (forward rows); calibrate_noise(mode="forward") on the uniform
forward runs of the verdict (demo, frontier, hopeless, hopeless+; 10 seeds each,
uniform_gradnorms.csv). Prints Paced/uniform (exact P) with and without (e) against the
verdict's measured ratios, and the simulated gradient norms.

    PYTHONPATH=$PWD python bench/forward_clip_check.py   # ~30 s on one core
Writes bench/results/calibration/forward_clip_check.csv.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np

from paced_theory.cellsim import (
    Arm,
    Loop,
    Params,
    calibrate_noise,
    fit_moment_shape,
    simulate_pool,
    window_grad_norms,
)
from paced_theory.predict import SCENARIOS, read_gradnorm_runs, read_pools

ROOT = Path(__file__).resolve().parents[1]
CAL = ROOT / "bench/results/calibration"
MEASURED = {"demo": 0.973, "frontier": 0.995, "hopeless": 0.810, "hopeless+": 0.693}


def main() -> None:
    pools = read_pools(CAL / "pools.toml")
    v1 = Params.from_dict(json.loads((CAL / "params.json").read_text()))
    base = Params.from_dict(json.loads((CAL / "params_v2.json").read_text()))
    gm = [r for r in csv.DictReader(open(CAL / "grad_moments.csv")) if r["loss"] == "forward"]
    s2, shape = fit_moment_shape([float(r["p"]) for r in gm],
                                 [float(r["second_moment"]) for r in gm],
                                 [float(r["n"]) for r in gm])
    base = dataclasses.replace(base, sigma={**base.sigma, "forward": s2 ** 0.5},
                               vshape={**base.vshape, "forward": shape})
    runs = [r for r in read_gradnorm_runs(CAL / "uniform_gradnorms.csv", pools)
            if r["loss"] == "forward"]
    clip = Loop(mode="forward", clip=True)
    fitted, info = calibrate_noise(runs, base, clip, mode="forward")
    print(f"moment at p=0 (probe) {s2 ** 0.5:.2f}; fit {info}; sigma "
          f"{fitted.sigma['forward']:.2f}, delta {fitted.delta['forward']:.2g}")
    rows = []
    for name, params, cfg in (("v1", v1, Loop(mode="forward")), ("v2_fwd_clip", fitted, clip)):
        for pool, meas in MEASURED.items():
            u = simulate_pool(pools[pool], params, Arm(), cfg)
            r = simulate_pool(pools[pool], params, Arm("beta"),
                              dataclasses.replace(cfg, **SCENARIOS["exact"]["forward"]))
            gu = window_grad_norms(u, 10) if cfg.clip else np.full(10, np.nan)
            gp = window_grad_norms(r, 10) if cfg.clip else np.full(10, np.nan)
            rows.append({"variant": name, "pool": pool, "predicted": r["auc"] / u["auc"],
                         "measured": meas, "error": r["auc"] / u["auc"] - meas,
                         "gn_uniform_first_last": f"{gu[0]:.2f}/{gu[-1]:.2f}",
                         "gn_paced_first_last": f"{gp[0]:.2f}/{gp[-1]:.2f}"})
    with open(CAL / "forward_clip_check.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{x:.4g}" if isinstance(x, float) else x) for k, x in r.items()})
    for name in ("v1", "v2_fwd_clip"):
        sel = [r for r in rows if r["variant"] == name]
        print(name, " ".join(f"{r['pool']} {r['predicted']:.3f}" for r in sel),
              f"MAE {np.mean([abs(r['error']) for r in sel]):.3f}")


if __name__ == "__main__":
    main()
