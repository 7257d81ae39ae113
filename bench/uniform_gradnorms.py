"""Per-window gradient norms (and per-cell curves) of UNIFORM runs, for the reverse-KL stage of
the cell simulator's calibration (paced_theory.cellsim mechanism e; ours).

Reads every run directory under the given roots whose config has weights.method = "uniform"
(a run of any other method is refused, loudly: the calibration must not see a weighted arm),
and writes one row per (run, window of 10 % of the run): pool, loss, seed, frac (window
end), grad_norm (mean of the logged pre-clip norm over the window's steps), and for each
evaluation at the window's end acc_<cell>, retention, mean_at_k.

    PYTHONPATH=$PWD python bench/uniform_gradnorms.py \
        --run frontier:reverse:/work/main/runs/verdict/C-frontier-rev/uniform-reverse \
        --run hopeless:reverse:/work/main/runs/verdict/C-hopeless-rev/uniform-reverse \
        --out bench/results/calibration/uniform_gradnorms.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import tomllib
from pathlib import Path


def rows_of(pool: str, loss: str, run: Path, seed: int) -> list[dict]:
    cfg = tomllib.loads((run / "config.toml").read_text())
    if cfg["weights"]["method"] != "uniform":
        raise SystemExit(f"{run}: weights.method = {cfg['weights']['method']!r}; only uniform "
                         "runs may enter the calibration")
    recs = [json.loads(line) for line in open(run / "metrics.jsonl")]
    steps = [r for r in recs if r["kind"] == "step"]
    evals = [r for r in recs if r["kind"] == "eval"]
    last = max(r["step"] for r in steps)
    out = []
    for k in range(1, 11):
        a, b = (k - 1) * last / 10, k * last / 10
        gn = [r["grad_norm"] for r in steps if a < r["step"] <= b]
        ev = min(evals, key=lambda e: abs(e["step"] - b))
        out.append({"pool": pool, "loss": loss, "seed": seed, "frac": k / 10,
                    "grad_norm": sum(gn) / len(gn), "step": ev["step"],
                    "retention": ev["retention"], "mean_at_k": ev["mean_at_k"],
                    **{f"acc_{c}": v for c, v in ev["acc_by_difficulty"].items()}})
    ev0 = evals[0]
    out.insert(0, {"pool": pool, "loss": loss, "seed": seed, "frac": 0.0, "grad_norm": "",
                   "step": 0, "retention": ev0["retention"], "mean_at_k": ev0["mean_at_k"],
                   **{f"acc_{c}": v for c, v in ev0["acc_by_difficulty"].items()}})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="append", required=True,
                    help="pool:loss:DIR (DIR holds seed<k>/ run directories)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rows = []
    for spec in a.run:
        pool, loss, root = spec.split(":", 2)
        for d in sorted(Path(root).glob("seed*"), key=lambda p: int(p.name[4:])):
            rows.extend(rows_of(pool, loss, d, int(d.name[4:])))
    cols = ["pool", "loss", "seed", "frac", "step", "grad_norm", "retention", "mean_at_k"]
    cols += sorted({k for r in rows for k in r if k.startswith("acc_")})
    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    print(f"wrote {a.out}: {len(rows)} rows")


if __name__ == "__main__":
    main()
