"""The theory command line: the JSON contract of issue #2 and one-line errors on bad input.

Run through the entry function (`paced_train.cli.main`), which is what the console script
calls, plus one real subprocess to check the installed `paced` command and its exit status.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from paced_train.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv: str) -> dict:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


# ------------------------------------------------------------------ robustness
def test_robustness_linear_band_is_delta_squared(capsys):
    r = run_json(capsys, "theory", "robustness", "--delta", "0.2")
    assert abs(r["worst_case_loss"] - 0.04) < 1e-9
    assert abs(r["bound"] - 0.04) < 1e-9
    w = r["witness"]
    assert sorted(w["values"]) == pytest.approx([0.8, 1.2])
    # attaining masses are (1+d)/2 on 1-d and (1-d)/2 on 1+d (masses 1/2 give d^2/(1+d^2))
    assert w["masses"] == pytest.approx([0.6, 0.4])
    # the witness attains the worst case: recompute its loss from its own values/masses
    m, nu = w["values"], w["masses"]
    e1 = sum(a * b for a, b in zip(m, nu))
    e2 = sum(a * a * b for a, b in zip(m, nu))
    assert abs((1 - e1 * e1 / e2) - 0.04) < 1e-9
    assert abs(w["loss"] - 0.04) < 1e-9


def test_robustness_log_band_is_tanh_squared(capsys):
    r = run_json(capsys, "theory", "robustness", "--delta", "0.2", "--log")
    assert abs(r["worst_case_loss"] - math.tanh(0.2) ** 2) < 1e-9
    w = r["witness"]
    assert sorted(w["values"]) == pytest.approx([math.exp(-0.2), math.exp(0.2)])
    assert abs(w["loss"] - math.tanh(0.2) ** 2) < 1e-9


@pytest.mark.parametrize("delta", ["1.0", "1.5", "-0.1", "nan"])
def test_robustness_rejects_bad_delta(capsys, delta):
    code, out, err = run(capsys, "theory", "robustness", "--delta", delta)
    assert code == 2
    assert "--delta" in err and err.count("\n") == 1
    assert out == ""


def test_robustness_log_band_accepts_large_delta(capsys):
    r = run_json(capsys, "theory", "robustness", "--delta", "1.5", "--log")
    assert abs(r["worst_case_loss"] - math.tanh(1.5) ** 2) < 1e-9


# ------------------------------------------------------------------------- snr
def test_snr_m1_exponents_tau0_and_tau_positive(capsys):
    r0 = run_json(capsys, "theory", "snr", "--model", "m1", "--tau2", "0")
    assert r0["exponents"] == pytest.approx([1, 1])
    assert r0["beta_kernel"] == pytest.approx({"alpha": 1, "beta": 1})
    # rho = K p(1-p)/((1-2p)^2 + sigma2): p(1-p) is not exactly optimal, but close
    assert 0.9 < r0["efficiency"]["p(1-p)"] <= 1 + 1e-12
    r5 = run_json(capsys, "theory", "snr", "--model", "m1", "--tau2", "0.5")
    assert r5["exponents"] == pytest.approx([2, 2])
    assert r5["beta_kernel"] == pytest.approx({"alpha": 2, "beta": 2})
    # with advantage noise the implied Beta(2,2) kernel beats the default p(1-p)
    assert r5["efficiency"]["implied_beta"] > r5["efficiency"]["p(1-p)"]
    assert isinstance(r5["rho"], str) and "p" in r5["rho"]


def test_snr_m2_exponents_follow_gamma(capsys):
    r = run_json(capsys, "theory", "snr", "--model", "m2", "--gamma", "1.5")
    assert r["exponents"] == pytest.approx([3, 2])


@pytest.mark.parametrize("argv", [["--K", "0"], ["--sigma2", "-1"], ["--tau2", "-0.5"],
                                  ["--mu", "beta:0,1"], ["--mu", "triangle"]])
def test_snr_rejects_bad_input(capsys, argv):
    code, out, err = run(capsys, "theory", "snr", "--model", "m1", *argv)
    assert code == 2
    assert err.startswith("paced: error:") and err.count("\n") == 1


# ------------------------------------------------------------------------- fit
def _write_curve(path, alpha, beta, header="p,snr,count"):
    lines = [header]
    for i in range(1, 20):
        p = i / 20
        lines.append(f"{p},{p**alpha * (1 - p) ** beta},100")
    path.write_text("\n".join(lines) + "\n")


def test_fit_recovers_exact_beta_curve(capsys, tmp_path):
    f = tmp_path / "snr.csv"
    _write_curve(f, 2.0, 1.0)
    r = run_json(capsys, "fit", str(f), "--families", "beta_ls,beta_linf,uniform",
                 "--n-boot", "20")
    for fam in ("beta_ls", "beta_linf"):
        res = r["families"][fam]
        assert res["params"]["alpha"] == pytest.approx(2.0, abs=1e-6)
        assert res["params"]["beta"] == pytest.approx(1.0, abs=1e-6)
        assert res["efficiency"] == pytest.approx(1.0, abs=1e-9)
        assert res["guaranteed_efficiency"] <= res["efficiency"] + 1e-12
    assert r["families"]["uniform"]["efficiency"] < 0.95


@pytest.mark.parametrize("body,needle", [
    ("p,count\n0.5,3\n", "snr"),                 # missing column
    ("p,snr\n0.5,1\n1.5,2\n", "line 3"),         # p outside [0, 1]
    ("p,snr\n0.5,-1\n", "line 2"),               # negative SNR
])
def test_fit_rejects_bad_csv(capsys, tmp_path, body, needle):
    f = tmp_path / "bad.csv"
    f.write_text(body)
    code, out, err = run(capsys, "fit", str(f))
    assert code == 2
    assert "bad.csv" in err and needle in err and err.count("\n") == 1


def test_fit_missing_file(capsys, tmp_path):
    code, _, err = run(capsys, "fit", str(tmp_path / "nope.csv"))
    assert code == 2 and "nope.csv" in err


# ------------------------------------------------------------------- installed
def test_console_script_exit_status():
    """The installed `paced` command: JSON on stdout, exit 2 and one line on bad input."""
    exe = [sys.executable, "-m", "paced_train.cli"]
    ok = subprocess.run(exe + ["theory", "robustness", "--delta", "0.2", "--json"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert abs(json.loads(ok.stdout)["worst_case_loss"] - 0.04) < 1e-9
    bad = subprocess.run(exe + ["theory", "robustness", "--delta", "1"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--delta" in bad.stderr
