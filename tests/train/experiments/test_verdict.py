"""bench/verdict.py (issue 17's planned rerun) end to end at the demo's --quick sizes: every
planned comparison is reported, with the plan's checks, and its arms are the plan's."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def load_bench():
    spec = importlib.util.spec_from_file_location("verdict", ROOT / "bench/verdict.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_verdict_reports_every_planned_comparison(tmp_path):
    bench = load_bench()
    plan = (ROOT / "bench/results/verdict/PLAN.md").read_text()
    for arm in bench.ARMS_A:  # every arm run is an arm the plan describes
        assert f"| {arm} |" in plan, arm
    bench.main(["--quick", "--seeds", "2", "--jobs", "1", "--groups", "A",
                "--a-dir", str(tmp_path / "A"), "--out", str(tmp_path / "v")])
    res = json.loads((tmp_path / "v" / "verdict.json").read_text())
    got = [(c["group"], c["arm"], c["against"]) for c in res["comparisons"]]
    assert got == [c for c in bench.COMPARISONS if c[0] == "A"]
    for c in res["comparisons"]:
        assert c["final_acc"]["n"] == 2 and c["auc_ratio"]["n"] == 2
    md = (tmp_path / "v" / "verdict.md").read_text()
    assert "uniform's gain over the start" in md
    assert md.count("\n| A |") == len(got)
