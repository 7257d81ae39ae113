"""bench/smollm2_verdict.py (issue 20's SmolLM2 comparison and its GPU preset) end to end on a
tiny random Llama on CPU (--tiny): every arm of the plan runs, on paired seeds at equal FLOPs,
with the plan's checks and paired intervals in the report; the GPU preset resolves to a
config the loop accepts (its timing needs a GPU and is not tested here)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[3]


def load_bench():
    spec = importlib.util.spec_from_file_location("smollm2_verdict",
                                                  ROOT / "bench/smollm2_verdict.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_arms_are_the_plans():
    bench = load_bench()
    plan = (ROOT / "bench/results/smollm2_verdict/PLAN.md").read_text()
    for arm in [*bench.ARMS, *bench.RL_ARMS]:
        assert f"| {arm} |" in plan, arm


def test_gpu_preset_resolves(capsys):
    bench = load_bench()
    bench.main(["--preset", "gpu", "--dry-run", "--out", "unused"])
    out = capsys.readouterr().out
    assert out.count("device cuda") == len(bench.ARMS) + len(bench.RL_ARMS)
    assert "trainable all" in out
    from paced_train.config import load_config

    cfg = load_config(bench.CONFIG, bench.PRESETS["gpu"])
    assert cfg.optim.batch_size > load_config(bench.CONFIG).optim.batch_size


@pytest.mark.slow
def test_tiny_comparison_runs_and_reports(tmp_path):
    bench = load_bench()
    bench.main(["--tiny", "--seeds", "2", "--jobs", "1", "--out", str(tmp_path)])
    res = json.loads((tmp_path / "verdict.json").read_text())["groups"]["distill"]
    assert list(res["methods"]) == list(bench.ARMS)
    for m, e in res["methods"].items():
        assert len(e["per_seed"]["final_acc"]) == 2
        if m != "uniform":  # equal compute: no arm goes past its seed's uniform FLOPs
            assert e["vs_uniform"]["final_acc"]["n"] == 2
            assert all(r <= 1.2 for r in e["per_seed"]["flops_ratio_to_uniform"])
    md = (tmp_path / "verdict.md").read_text()
    assert md.count("\n| distill |") == len(bench.ARMS) - 1
    assert "gain / sd" in md and "oldest pass rate read" in md
    # every arm trained (Paced through the tiny preset's floor), the top block only
    for arm in bench.ARMS:
        run = tmp_path / "distill" / arm / "seed0"
        assert json.loads((run / "summary.json").read_text())["student_bwd_tokens"] > 0, arm
        cfg = (run / "config.toml").read_text()
        assert 'mode = "top"' in cfg and 'schedule = "reverse"' in cfg
        assert f'method = "{ {"uniform": "uniform", "paced": "paced", "hard": "hard"}[arm]}"' \
            in cfg
    assert "uniform's gain over the start" in md and "CHECK FAILED" in md  # nothing learnt


@pytest.mark.slow
def test_gpu_script_runs_at_tiny_size_on_cpu(tmp_path):
    """bench/gpu_smollm2.sh --tiny: the GPU script's own path (its preset, then --tiny's CPU
    sizes), one seed, through to the report."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHON": sys.executable, "LIMIT": "300"}
    proc = subprocess.run(["bash", str(ROOT / "bench/gpu_smollm2.sh"), "--tiny", "--seeds", "1",
                           "--jobs", "1", "--out", str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "gpu_smollm2:" in proc.stderr and (tmp_path / "verdict.md").is_file()
    cfg = (tmp_path / "distill" / "uniform" / "seed0" / "config.toml").read_text()
    assert "batch_size = 4" in cfg and 'device = "cpu"' in cfg  # --tiny's sizes won
