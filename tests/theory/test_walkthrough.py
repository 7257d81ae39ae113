"""The theory walkthrough (first half of `paced demo`'s report) and `paced simulate`."""

from __future__ import annotations

import json

from paced_theory.fit import read_snr_csv
from paced_theory.walkthrough import theory_report
from paced_train.cli import main


def test_theory_report_writes_its_files_and_numbers(tmp_path):
    md = theory_report(tmp_path)
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
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [r["method"] for r in out["rows"]] == ["uniform", "beta"]
    assert out["config"]["n_problems"] == 1000


def test_simulate_cli_bad_input(capsys):
    assert main(["simulate", "--K", "0"]) == 2
    assert "K" in capsys.readouterr().err
    assert main(["simulate", "--methods", "median"]) == 2
