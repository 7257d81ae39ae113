"""Why Paced loses under reverse KL: the numbers behind bench/results/calibration/README.md's
hypothesis table (ours). Reads recorded verdict runs (weighted arms are read to DIAGNOSE
only; nothing here is fitted) and prints, per group and arm: mean over seeds of the logged
w_mean, pre-clip gradient norm and loss per stretch of steps, the pass-rate shares at the
start and end (p_hat = 0, 0 < p_hat < 1, p_hat = 1), and the per-cell AUC gap Paced - uniform
measured against the v2 model's (params_v2.json; params.json for forward KL).

    PYTHONPATH=$PWD python bench/reverse_diagnosis.py --runs /work/main/runs/verdict
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from paced_theory.cellsim import Arm, Loop, Params, simulate_pool
from paced_theory.predict import SCENARIOS, read_pools

ROOT = Path(__file__).resolve().parents[1]
CAL = ROOT / "bench/results/calibration"
GROUPS = [("C-frontier", "frontier", "forward", "uniform", "paced"),
          ("C-hopeless", "hopeless", "forward", "uniform", "paced"),
          ("C-hopeless+", "hopeless+", "forward", "uniform", "paced"),
          ("C-frontier-rev", "frontier", "reverse", "uniform-reverse", "reverse"),
          ("C-hopeless-rev", "hopeless", "reverse", "uniform-reverse", "reverse")]
STRETCHES = [(0, 30), (30, 100), (100, 200), (200, 300), (300, 400), (400, 600)]


def records(d: Path, kind: str) -> list[list[dict]]:
    return [[r for r in map(json.loads, open(s / "metrics.jsonl")) if r["kind"] == kind]
            for s in sorted(d.glob("seed*"))]


def trapz(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def cell_aucs(d: Path, cells, budgets) -> dict:
    out = {c: [] for c in cells}
    for ev, b in zip(records(d, "eval"), budgets):
        x = [e["flops"] / b for e in ev]
        for c in cells:
            out[c].append(trapz(x, [e["acc_by_difficulty"][c] for e in ev]))
    return {c: float(np.mean(v)) for c, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", required=True, help="the verdict's run root")
    root = Path(ap.parse_args().runs)
    pools = read_pools(CAL / "pools.toml")
    v1 = Params.from_dict(json.loads((CAL / "params.json").read_text()))
    v2 = Params.from_dict(json.loads((CAL / "params_v2.json").read_text()))
    for g, pool, loss, ua, pa in GROUPS:
        print(f"== {g} ({loss} KL)")
        for arm in (ua, pa):
            steps = records(root / g / arm, "step")
            line = []
            for a, b in STRETCHES:
                w, gn = (np.mean([r[k] for ss in steps for r in ss if a <= r["step"] < b])
                         for k in ("w_mean", "grad_norm"))
                line.append(f"{a}-{b}: w {w:.3f} |g| {gn:.1f}")
            print(f"  {arm:16s} " + "; ".join(line))
            summ = [json.loads((s / "summary.json").read_text())
                    for s in sorted((root / g / arm).glob("seed*"))]
            if summ[0].get("pass_rate_shares_start"):
                st = summ[0]["pass_rate_shares_start"]
                en = {k: np.mean([s["pass_rate_shares_end"][k] for s in summ])
                      for k in ("zero", "frontier", "one")}
                print(f"  {'':16s} shares start " + " ".join(f"{k} {v:.2f}" for k, v in
                                                          st.items())
                      + " -> end " + " ".join(f"{k} {v:.2f}" for k, v in en.items()))
        budgets = [json.loads((s / "summary.json").read_text())["flops"]
                   for s in sorted((root / g / ua).glob("seed*"))]
        cells = list(pools[pool])
        mu, mp = cell_aucs(root / g / ua, cells, budgets), cell_aucs(root / g / pa, cells,
                                                                         budgets)
        params, cfg = ((v1, Loop(mode="forward")) if loss == "forward" else
                       (v2, Loop(mode="reverse", clip=True, rev_shared=True)))
        u = simulate_pool(pools[pool], params, Arm(), cfg)
        r = simulate_pool(pools[pool], params, Arm("beta"),
                          dataclasses.replace(cfg, **SCENARIOS["exact"][loss]))
        su = {c: trapz([x["frac"] for x in u["curve"]], [x[f"acc_{c}"] for x in u["curve"]])
              for c in cells}
        sp = {c: trapz([x["frac"] for x in r["curve"]], [x[f"acc_{c}"] for x in r["curve"]])
              for c in cells}
        print("  per-cell AUC, Paced - uniform: " + "; ".join(
            f"{c} measured {mp[c] - mu[c]:+.3f} model {sp[c] - su[c]:+.3f}" for c in cells))


if __name__ == "__main__":
    main()
