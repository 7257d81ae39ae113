"""report.py: the comparison tables and figures, on a comparison built by compare.summarise
from hand-made runs whose answers are known (one method better than uniform on every seed,
one within noise of it)."""

from __future__ import annotations

import numpy as np
import pytest

from paced_train.experiments.compare import summarise
from paced_train.experiments.report import banded_curves, comparison_markdown, plot_comparison
from paced_train.loop.ledger import MetricsLog

SEEDS = 3
BUDGET = 100.0
# held-out accuracy at flops 0, 50, 100; "paced" is 0.1 above uniform after the start on
# every seed, "hard" differs from uniform by noise of both signs
OFFSET = {"uniform": [0.0, 0.0, 0.0], "paced": [0.1, 0.1, 0.1], "hard": [0.01, -0.01, 0.005]}


def fake_runs(tmp_path) -> dict[str, list[dict]]:
    runs = {}
    for m, offs in OFFSET.items():
        runs[m] = []
        for s in range(SEEDS):
            acc = np.array([0.4, 0.5, 0.6]) + 0.02 * s + np.array([0.0, offs[s], offs[s]])
            d = tmp_path / m / f"seed{s}"
            d.mkdir(parents=True)
            ages = [None, None] if m == "uniform" else [3 + s, 7 + s]  # two steps' max ages
            MetricsLog(d / "metrics.jsonl").start(
                [{"kind": "eval", "step": i, "flops": f, "acc": float(a), "rollout_flops": 0.0}
                 for i, (f, a) in enumerate(zip([0.0, 50.0, BUDGET], acc))]
                + [{"kind": "step", "step": i + 1, "pass_rate_age_max": a,
                    "pass_rate_age": None if a is None else a / 2} for i, a in enumerate(ages)])
            runs[m].append({"run_dir": str(d), "flops": BUDGET, "acc": float(acc[-1]),
                            "forgetting": 0.1 - offs[s], "retention": 0.9, "mean_at_k": 0.5,
                            "rollout_share": 0.0, "steps": 10 + s, "wall_s": 1.0,
                            "acc_by_difficulty": {"add1": float(acc[-1])}})
    return runs


@pytest.fixture
def result(tmp_path):
    return summarise(fake_runs(tmp_path), SEEDS)


def test_tables_have_a_row_per_method_and_mark_noise_as_not_significant(result):
    md = comparison_markdown(result)
    tables = [[line.split("|")[1:-1] for line in block.splitlines()[2:]]
              for block in md.split("\n\n") if block.startswith("| method")]
    assert len(tables) == 2
    for table in tables:  # one row per method, uniform (the baseline) first
        assert [row[0].strip() for row in table] == list(OFFSET)
    accuracy = {row[0].strip(): row for row in tables[0]}
    assert accuracy["uniform"][2].strip() == "–"  # no difference against itself
    # 0.1 on every seed: no point interval; 3 seeds cannot reach p < 0.05 (smallest 2/8)
    assert accuracy["paced"][2].strip() == "+0.100 on all 3 seeds (no spread), 3/3, p 0.250 n.s."
    assert accuracy["hard"][2].strip().endswith("n.s.")  # noise of both signs
    assert accuracy["paced"][7].strip().startswith("0.50")  # reaches uniform's end at half
    assert "Equal compute per seed: 100, 100, 100 FLOPs" in md
    ages = {row[0].strip(): row[5].strip() for row in tables[1]}
    # pass-rate ages: the run's oldest (7 + s: mean over seeds 8) and mean age ((3+7)/4 + s/2)
    assert ages == {"uniform": "–", "paced": "8 / 3.0", "hard": "8 / 3.0"}
    assert result["methods"]["paced"]["pass_rate_age_max"] == [8.0, 1.0]


def test_banded_curves_average_the_seeds_within_their_band(result):
    curves = banded_curves(result, points=11)
    assert set(curves) == set(OFFSET)
    x, mean, lo, hi = curves["uniform"]
    assert x[0] == 0 and x[-1] == pytest.approx(1.0)
    want = np.mean([np.interp(x, [0, 0.5, 1], np.array([0.4, 0.5, 0.6]) + 0.02 * s)
                    for s in range(SEEDS)], axis=0)
    np.testing.assert_allclose(mean, want, atol=1e-12)
    assert np.all(lo <= mean + 1e-12) and np.all(mean <= hi + 1e-12)
    assert np.all(curves["paced"][1][x >= 0.5] > mean[x >= 0.5])


def test_plot_comparison_writes_both_figures(result, tmp_path):
    plot_comparison(result, tmp_path)
    for name in ("accuracy_vs_compute.png", "forgetting.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_no_compute_to_reach_when_uniform_ends_below_its_start(tmp_path):
    """Issue 16: uniform falling 1.0 -> 0.29 made every method 'reach' its final accuracy at
    FLOPs 0 (printed 0.00). A target met at the start measures nothing: None."""
    runs = {}
    for m, curve in {"uniform": [1.0, 0.5, 0.29], "paced": [1.0, 0.8, 0.6]}.items():
        d = tmp_path / m / "seed0"
        d.mkdir(parents=True)
        MetricsLog(d / "metrics.jsonl").start(
            [{"kind": "eval", "step": i, "flops": f, "acc": a, "rollout_flops": 0.0}
             for i, (f, a) in enumerate(zip([0.0, 50.0, BUDGET], curve))])
        runs[m] = [{"run_dir": str(d), "flops": BUDGET, "acc": curve[-1], "forgetting": 0.0,
                    "retention": 1.0, "mean_at_k": 0.5, "rollout_share": 0.0, "steps": 3,
                    "wall_s": 1.0, "acc_by_difficulty": {"add1": curve[-1]}}]
    res = summarise(runs, 1)
    for m in runs:
        assert res["methods"][m]["compute_ratio_to_uniform"] == [None]
        assert res["methods"][m]["reached_uniform_final"] == 0


def test_step_stats_counts_the_steps_that_keep_few_candidates(tmp_path):
    """small_step_share: steps keeping at most 1/8 of their candidates (8 of 64 here)."""
    from paced_train.experiments.compare import step_stats

    kept = [64, 8, 9, 0, 1, 64, 30, 2]  # 8, 0, 1, 2 are small: 4 of 8
    MetricsLog(tmp_path / "metrics.jsonl").start(
        [{"kind": "step", "step": i + 1, "n_kept": k, "n_dropped": 64 - k,
          "pass_rate_age_max": i, "pass_rate_age": i / 2} for i, k in enumerate(kept)])
    oldest, mean, small = step_stats(tmp_path)
    assert (oldest, mean, small) == (7.0, pytest.approx(1.75), 0.5)
