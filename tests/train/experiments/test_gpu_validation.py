"""The GPU validation pipeline (bench/gpu_validation.py) at reduced size on CPU: pretrain
the large recipes shrunk, compare all methods, probe, and report."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from paced_train.config import load_config
from paced_train.experiments.pretrain import RECIPES

ROOT = Path(__file__).resolve().parents[3]


def _load_bench():
    spec = importlib.util.spec_from_file_location("gpu_validation",
                                                  ROOT / "bench" / "gpu_validation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_large_recipes_have_tens_of_millions_of_parameters():
    def non_embedding(r):  # 12 L d^2: attention 4 d^2 + MLP 8 d^2 per layer
        return 12 * r.n_layer * r.n_embd**2
    assert 20e6 < non_embedding(RECIPES["teacher-large"]) < 100e6
    assert 10e6 <= non_embedding(RECIPES["student-large"]) < non_embedding(RECIPES["teacher-large"])
    cfg = load_config(ROOT / "configs" / "large.toml")
    assert cfg.models.student.endswith("student.safetensors") and cfg.run.device == "auto"


@pytest.mark.slow
def test_reduced_pipeline_runs_on_cpu(tmp_path):
    report = _load_bench().main(["--reduced", "--out", str(tmp_path)])
    text = report.read_text()
    for phase in ("pretrain teacher", "pretrain student", "compare", "snr-probe"):
        assert f"| {phase} |" in text
    assert "device: CPU" in text
    for m in ("uniform", "hard", "akl", "paced", "two-stage"):
        assert (tmp_path / "compare" / m / "seed0" / "summary.json").exists(), m
    assert (tmp_path / "snr" / "snr.csv").exists()
    assert (tmp_path / "student.safetensors").exists()
