"""The theory walkthrough (first half of `paced demo`'s report) and `paced simulate`."""

from __future__ import annotations

import json

from paced_theory.fit import read_snr_csv
from paced_theory.walkthrough import theory_report
from paced_train.cli import main


def test_theory_report_writes_its_files_and_numbers(tmp_path, capsys):
    md = theory_report(tmp_path)
    err = capsys.readouterr().err.splitlines()  # a legend, then one line per step
    assert err[0].startswith("theory walkthrough, 5 steps (1 gradient SNR")
    assert [x.split("]")[0] for x in err[1:]] == [f"theory [{i}/5" for i in range(1, 6)]
    for name in ("theory.md", "theory_snr.png", "theory_snr.csv"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "theory.md").read_text().strip() == md.strip()
    # the robustness table holds the exact worst case delta^2 at delta = 0.2
    assert "| 0.2 | 0.04 | 0.04 | 0.04 |" in md
    # M1 rows report the derived exponents
    assert "| M1, tau2=0 |" in md and "(1, 1)" in md and "(2, 2)" in md
    # the measured curve is a valid `paced fit` input
    curve = read_snr_csv(tmp_path / "theory_snr.csv")
    assert len(curve.p) == 19 and (curve.snr > 0).all()
    # bell shape: the middle bins carry more SNR than the extreme ones
    assert curve.snr[9] > 3 * max(curve.snr[0], curve.snr[-1])


def test_simulate_cli_json(capsys):
    code = main(["simulate", "--json", "--problems", "1000", "--steps", "100", "--seeds", "2",
                 "--methods", "uniform,beta"])
    cap = capsys.readouterr()
    out = json.loads(cap.out)  # progress goes to stderr, so --json stays parseable
    assert code == 0
    err = cap.err.splitlines()
    assert err[0].startswith("simulate: 2 method(s) x 2 seed(s), 100 steps")
    assert [x.split(",")[0] for x in err[1:]] == [
        "simulate [1/4] uniform", "simulate [2/4] uniform", "simulate [3/4] beta",
        "simulate [4/4] beta"]
    assert [r["method"] for r in out["rows"]] == ["uniform", "beta"]
    assert out["config"]["n_problems"] == 1000


def test_simulate_cli_bad_input(capsys):
    assert main(["simulate", "--K", "0"]) == 2
    assert "K" in capsys.readouterr().err
    assert main(["simulate", "--methods", "median"]) == 2
    assert "simulate [" not in capsys.readouterr().err  # refused before any run
