"""Pass rates of the shipped student at the start, per cell (no training, no run of any arm).

For each cell of the study's pools, K = 8 temperature-1 rollouts on 200 fresh problems
(tasks.make_problems, seed 0): mean p_hat, share of p_hat = 0 and of p_hat = 1. A property of
the initial student and the cell, which the cell simulator's calibration uses to pin the
pass-rate scale (greedy accuracy alone does not).

    PYTHONPATH=$PWD python bench/initial_passrates.py   # ~1 min on one core
Writes bench/results/calibration/initial_passrates.csv.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from paced_train.loop.rollouts import generate_and_verify
from paced_train.models.hf import load_any
from paced_train.tasks import make_problems

CELLS = [("add", 2), ("add", 3), ("add", 4), ("mul", 2), ("mul", 3)]
OUT = Path(__file__).resolve().parent / "results/calibration/initial_passrates.csv"


def main(n: int = 200, K: int = 8) -> None:
    torch.set_num_threads(1)
    model, tok, _ = load_any("shipped:student")
    model.eval()
    rows = []
    for skill, d in CELLS:
        probs = make_problems(skill, d, n, seed=0)
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            ok, _, _ = generate_and_verify(model, tok, probs, 7, K, 1.0, 1.0, gen)
        p = ok.reshape(n, K).mean(1)
        rows.append({"cell": f"{skill}{d}", "n": n, "K": K, "mean_p_hat": float(p.mean()),
                     "share_0": float(np.mean(p == 0)), "share_1": float(np.mean(p == 1))})
        print(rows[-1], flush=True)
    with open(OUT, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
