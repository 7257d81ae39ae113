"""`paced compare`, `paced train` and `paced demo --quick` through the entry function."""

from __future__ import annotations

import json

import numpy as np
import pytest

from paced_train.cli import main
from paced_train.experiments.compare import compute_to_reach


def test_compute_to_reach_interpolates():
    f = np.array([0.0, 10.0, 20.0, 30.0])
    a = np.array([0.1, 0.3, 0.5, 0.4])
    assert compute_to_reach(f, a, 0.4) == pytest.approx(15.0)
    assert compute_to_reach(f, a, 0.5) == pytest.approx(20.0)
    assert compute_to_reach(f, a, 0.05) == 0.0
    assert compute_to_reach(f, a, 0.6) is None


def test_tiny_compare_end_to_end(tiny_models, tmp_path, capsys):
    code = main(["compare", "configs/tiny.toml", "--methods", "uniform,paced,two-stage",
                 "--seeds", "2", "--out", str(tmp_path / "cmp"),
                 f'models.student="{tiny_models["student"]}"',
                 f'models.teacher="{tiny_models["teacher"]}"'])
    out = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert set(out["methods"]) == {"uniform", "paced", "two-stage"} and out["seeds"] == 2
    # random tiny students solve nothing: PACED's runs train nothing, and the command says so
    # on one stderr line and exits 2 (a comparison with such a run is not a result)
    assert code == 2 and {x["method"] for x in out["stopped"]} == {"paced", "two-stage"}
    err = capsys.readouterr().err.splitlines()[-1]
    assert "trained nothing or stopped early" in err and "paced seed 0" in err
    assert (tmp_path / "cmp" / "curves.csv").is_file()
    for m, r in out["methods"].items():
        for key in ("final_acc", "forgetting", "compute_to_uniform_final",
                    "compute_ratio_to_uniform", "wall_s", "rollout_share"):
            assert key in r, (m, key)
        assert len(r["runs"]) == 2
    # equal compute: every method stopped just past the uniform run's FLOPs, or (random tiny
    # students solve nothing, so PACED drops every problem and pays only for refreshes)
    # skipped the refresh it could not pay for and ran out of steps below it
    from paced_train.experiments.compare import STEP_HEADROOM

    budget = out["budget_flops"]
    for m in ("paced", "two-stage"):
        runs = out["methods"][m]["runs"]
        summaries = [json.loads(open(f"{d}/summary.json").read()) for d in runs]
        for s, b in zip(summaries, budget):
            assert s["flops"] <= 1.05 * b
            # (or stopped early: a random student solves nothing, so every weight is 0)
            assert s["flops"] >= b or s["steps"] == 8 * STEP_HEADROOM or "stopped" in s
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert md.startswith("Starting student") and "| method | final acc |" in md
    # the paired statistics are the per-seed differences of the runs' own numbers
    u = out["methods"]["uniform"]["per_seed"]
    for m in ("paced", "two-stage"):
        v = out["methods"][m]
        diffs = [a - b for a, b in zip(v["per_seed"]["final_acc"], u["final_acc"])]
        assert v["vs_uniform"]["final_acc"]["per_seed"] == pytest.approx(diffs)
        lo, hi = v["vs_uniform"]["auc"]["lo"], v["vs_uniform"]["auc"]["hi"]
        assert lo <= v["vs_uniform"]["auc"]["mean"] <= hi
    assert (tmp_path / "cmp" / "accuracy_vs_compute.png").stat().st_size > 1000
    assert "| uniform |" in (tmp_path / "cmp" / "comparison.md").read_text()


def test_train_command_and_errors(tiny_models, tmp_path, capsys):
    args = ["train", "configs/tiny.toml", f'models.student="{tiny_models["student"]}"',
            f'models.teacher="{tiny_models["teacher"]}"', "budget.steps=2",
            "weights.method=uniform", "--out", str(tmp_path / "r")]
    assert main(args) == 0
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["steps"] == 2
    capsys.readouterr()
    assert main(["train", "configs/tiny.toml", "optim.nope=1"]) == 2
    err = capsys.readouterr().err
    assert "optim.nope" in err and err.count("\n") == 1
    assert main(["train", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml" in capsys.readouterr().err
    assert main(["compare", "configs/tiny.toml", "--methods", "uniform,magic"]) == 2
    assert "magic" in capsys.readouterr().err


@pytest.mark.parametrize("trained_nothing, code", [(True, 2), (False, 0)])
def test_compare_exits_2_only_for_a_run_that_trained_nothing(monkeypatch, tmp_path, capsys,
                                                             trained_nothing, code):
    """A run that trained and then stopped early (e.g. the hard filter once every problem has
    left its band) is a result: listed and said on stderr, exit 0. A run that never trained
    makes the comparison no result: exit 2."""
    import paced_train.experiments.compare as cmp

    def fake_compare(cfg, methods, seeds, out, **kw):
        (out / "comparison.md").write_text("table\n")
        return {"stopped": [{"method": "hard", "seed": 3, "run": str(out / "hard/seed3"),
                             "why": "every problem had weight 0",
                             "trained_nothing": trained_nothing}]}

    monkeypatch.setattr(cmp, "compare", fake_compare)
    assert main(["compare", "configs/tiny.toml", "--methods", "uniform,hard",
                 "--out", str(tmp_path / "c")]) == code
    assert "hard seed 3" in capsys.readouterr().err
