"""Predictions of the calibrated cell simulator for a pools file (paced_theory/predict.py)."""

import csv
import json
from pathlib import Path

import pytest

from paced_theory.cellsim import Params
from paced_theory.errors import InputError
from paced_theory.predict import predict, read_pools

ROOT = Path(__file__).resolve().parents[2]
PARAMS = Params(dbar={"add2": -3.0, "add3": 2.0, "mul2": 0.0},
                spread={"add2": 1.5, "add3": 1.0, "mul2": 1.5},
                kappa={"add2": 0.05, "add3": 0.08, "mul2": 0.03},
                kappa_rev={"add2": 0.05, "add3": 0.05, "mul2": 0.03}, phi=0.005, ret0=-2.0)


def test_read_pools_gives_cells_and_counts():
    pools = read_pools(ROOT / "bench/results/calibration/pools.toml")
    assert pools["demo"] == {"add2": 300.0, "add3": 1200.0, "mul2": 600.0}
    assert pools["hopeless+"]["mul3"] == 1200.0


@pytest.mark.parametrize("text, key", [
    ('x = ["data.add_digits=[2,3]", "data.add_counts=[1]"]\n', "x"),
    ('y = ["data.add_digits=[2]"]\n', "y"),
    ('z = ["data.add_digits=two", "data.add_counts=[1]"]\n', "z"),
    ('w = ["optim.lr=0.1"]\n', "w"),
])
def test_bad_pools_name_the_file_and_pool(tmp_path, text, key):
    path = tmp_path / "pools.toml"
    path.write_text(text)
    with pytest.raises(InputError) as e:
        read_pools(path)
    assert str(path) in str(e.value) and f"'{key}'" in str(e.value)


def test_uniform_ratio_is_1_and_every_arm_is_predicted():
    rows = predict(PARAMS, {"demo": {"add2": 300.0, "add3": 1200.0, "mul2": 600.0}},
                   reverse_pools=("demo",))
    uni = [r for r in rows if r["arm"] == "uniform"]
    assert all(r["auc_ratio"] == 1.0 for r in uni)
    arms = {(r["loss"], r["arm"]) for r in rows}
    assert ("forward", "beta2,0.5") in arms and ("reverse", "paced") in arms


def test_cli_predicts_from_saved_parameters(tmp_path, capsys):
    import argparse

    from paced_theory.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))

    def main(argv):
        args = parser.parse_args(argv)
        return args.func(args)

    params = tmp_path / "params.json"
    params.write_text(json.dumps(PARAMS.to_dict()))
    pools = tmp_path / "pools.toml"
    pools.write_text('demo = ["data.add_digits=[2,3]", "data.add_counts=[300,1200]", '
                     '"data.mul_digits=[2]", "data.mul_counts=[600]"]\n')
    out = tmp_path / "pred.csv"
    assert main(["simulate", "--params", str(params), "--pools", str(pools), "--out", str(out),
                 "--commit", "abc123"]) == 0
    rows = list(csv.DictReader(open(out)))
    assert rows and all(r["commit"] == "abc123" for r in rows)
    assert "predicted AUC ratio" in capsys.readouterr().out


def test_read_gradnorm_runs_groups_seeds_and_windows(tmp_path):
    """bench/uniform_gradnorms.py's format: an evaluation row at frac 0 (no norm) and one per
    10 % window; per (pool, loss) every seed's curves and window norms, in window order."""
    from paced_theory.predict import read_gradnorm_runs

    rows = []
    for seed, scale in ((0, 1.0), (1, 2.0)):
        for k in range(11):
            rows.append({"pool": "demo", "loss": "reverse", "seed": seed, "frac": k / 10,
                         "step": 60 * k, "grad_norm": "" if k == 0 else scale * (11 - k),
                         "retention": 1.0, "mean_at_k": 0.5, "acc_add2": 1.0,
                         "acc_add3": k / 10, "acc_mul2": 0.4})
    rows.reverse()  # the reader must sort windows itself
    path = tmp_path / "g.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    pools = read_pools(ROOT / "bench/results/calibration/pools.toml")
    (run,) = read_gradnorm_runs(path, pools)
    assert run["frac"] == pytest.approx([k / 10 for k in range(11)])
    assert len(run["grad_norm"]) == 10
    assert sorted(run["grad_norm"][0]) == [10.0, 20.0]
    assert sorted(run["grad_norm"][-1]) == [1.0, 2.0]
    assert [v[0] for v in run["acc"]["add3"]] == pytest.approx([k / 10 for k in range(11)])
