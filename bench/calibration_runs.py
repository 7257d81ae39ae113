"""Per-cell learning curves of the study's UNIFORM arms, for calibrating the population simulator.

Runs only the uniform arm of every forward-KL pool of `paced study` (and of the reverse-KL
pools) with the same configs as the study (study_groups of the default size, the other arms
removed, so a later `paced study --out OUT` reuses these runs), then writes one CSV row per
evaluation of every run:
    pool, loss, seed, step, flops, acc, mean_at_k, retention, acc_<cell> ...
(acc_<cell>: greedy held-out accuracy of the cell, e.g. acc_add3). No weighted arm is run.

    PYTHONPATH=$PWD python bench/calibration_runs.py --out runs/calibration \
        --csv bench/results/calibration/uniform_curves.csv [--pools FILE] [--seeds 3 --jobs 2]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from paced_train.config import load_config
from paced_train.experiments.compare import Group, run_groups
from paced_train.experiments.demo import demo_config_path
from paced_train.experiments.study import SIZES, load_pools, study_groups


def curve_rows(group: Group, seeds: int) -> list[dict]:
    pool, loss = group.out_dir.name.rsplit("-", 1)
    rows = []
    for s in range(seeds):
        path = group.out_dir / "uniform" / f"seed{s}" / "metrics.jsonl"
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if r.get("kind") != "eval":
                continue
            rows.append({"pool": pool, "loss": loss, "seed": s, "step": r["step"],
                         "flops": r["flops"], "acc": r["acc"], "mean_at_k": r["mean_at_k"],
                         "retention": r["retention"],
                         **{f"acc_{c}": v for c, v in r["acc_by_difficulty"].items()}})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/calibration")
    ap.add_argument("--csv", default="bench/results/calibration/uniform_curves.csv")
    ap.add_argument("--pools", default=None, help="pools TOML (default: the study's)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    cfg = load_config(demo_config_path(), [])
    pools = load_pools(args.pools) if args.pools else None
    groups = study_groups(cfg, Path(args.out), SIZES["default"], pools=pools)
    groups = [Group(g.out_dir, g.cfg, {"uniform": g.arms["uniform"]}) for g in groups]
    run_groups(groups, args.seeds, args.jobs)
    rows = [r for g in groups for r in curve_rows(g, args.seeds)]
    cells = sorted({k for r in rows for k in r if k.startswith("acc_")})
    head = ["pool", "loss", "seed", "step", "flops", "acc", "mean_at_k", "retention", *cells]
    Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=head, restval="")
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {args.csv} ({len(rows)} evaluation rows)")


if __name__ == "__main__":
    main()
