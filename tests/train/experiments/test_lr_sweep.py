"""bench/lr_sweep.py's recorded result is what its tables make of its own JSON (so every
number in bench/results/lr_sweep/lr_sweep.md and the README can be traced to per-seed
values), and its best-lr table pairs each method with uniform seed by seed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
RECORDED = ROOT / "bench" / "results" / "lr_sweep"


def _load_bench():
    spec = importlib.util.spec_from_file_location("lr_sweep", ROOT / "bench" / "lr_sweep.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_recorded_tables_are_the_scripts_tables_of_the_recorded_json():
    bench = _load_bench()
    results = json.loads((RECORDED / "lr_sweep.json").read_text())
    md = (RECORDED / "lr_sweep.md").read_text()
    assert bench.table(results) in md and bench.best_lr_table(results) in md
    assert list(results) == ["1e-3", "3e-3", "6e-3", "1e-2"]
    demo = json.loads((ROOT / "bench/results/demo_stale_2026-12-03/comparison.json").read_text())
    # the 3e-3 arm is the (pre-issue-17) demo rerun: the same per-seed final accuracies
    for m in ("uniform", "hard", "paced", "akl"):
        assert results["3e-3"]["methods"][m]["per_seed"]["final_acc"] == \
            demo["methods"][m]["per_seed"]["final_acc"], m


def test_best_lr_table_pairs_each_method_at_its_own_best_lr():
    bench = _load_bench()

    def arm(final, auc):
        return {"final_acc": [sum(final) / len(final), 0.0], "auc": [sum(auc) / 2, 0.0],
                "per_seed": {"final_acc": final, "auc": auc}}

    results = {"1e-3": {"methods": {"uniform": arm([0.5, 0.6], [0.4, 0.4]),
                                    "paced": arm([0.9, 0.9], [0.5, 0.5])}},
               "1e-2": {"methods": {"uniform": arm([0.7, 0.8], [0.6, 0.6]),
                                    "paced": arm([0.1, 0.2], [0.1, 0.1])}}}
    rows = bench.best_lr_table(results).splitlines()
    assert "(1e-2)" in rows[0]  # uniform's best lr
    paced = rows[3]
    assert paced.startswith("| paced | 1e-3 |")
    # paired per seed: 0.9 - 0.7 and 0.9 - 0.8, mean +0.15; AUC 0.5 - 0.6 = -0.1
    assert "+0.150" in paced and "-0.100" in paced
