"""The SNR probe: the CountSketch preserves the SNR of exact gradients within a stated
tolerance, stratification, and the command end to end. The per-bin estimator it uses is
tested in tests/theory/test_snr.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paced_theory.snr import bin_snr
from paced_train.experiments.snr_probe import CountSketch, per_problem_gradients


def test_countsketch_is_unbiased_for_inner_products():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(500, generator=g), torch.randn(500, generator=g)
    est = [float(CountSketch(500, 32, seed=s)(x) @ CountSketch(500, 32, seed=s)(y))
           for s in range(400)]
    se = np.std(est) / np.sqrt(len(est))
    assert abs(np.mean(est) - float(x @ y)) < 4 * se


def test_sketch_preserves_snr_of_exact_gradients(tiny_models):
    """Stated tolerance: with sketch_dim = 4096 and 4 hashes the SNR of a bin of real
    per-problem gradients (D ~ 5k) is within 10 % of the exact one."""
    from paced_train.models.model import load_model
    from paced_train.tasks import arithmetic_suite, target_text

    student, tok, _ = load_model(tiny_models["student"])
    teacher, _, _ = load_model(tiny_models["teacher"])
    probs = arithmetic_suite(0, 10, (1, 2), (1,))[:24]
    comps = [tok.encode(target_text(p)) + [tok.eos_id] for p in probs]
    params = list(student.parameters())
    D = sum(p.numel() for p in params)

    from paced_train.config import RunConfig
    from paced_train.loop.state import Run

    run = Run(RunConfig(), torch.device("cpu"), student, teacher, tok, None, [], [], [])
    exact = per_problem_gradients(run, probs, comps, params, None, "forward")
    sk = CountSketch(D, 4096, hashes=4, seed=1)
    sketched = per_problem_gradients(run, probs, comps, params, sk, "forward")
    a, b = bin_snr(exact, 0), bin_snr(sketched, 0)
    assert a["snr"] > 0
    assert abs(b["snr"] - a["snr"]) < 0.10 * a["snr"]
    assert abs(b["noise"] - a["noise"]) < 0.05 * a["noise"]


def test_probe_command_end_to_end(tiny_models, tmp_path, capsys):
    from paced_train.cli import main

    code = main(["snr-probe", "configs/tiny.toml", "--out", str(tmp_path / "p"),
                 f'models.student="{tiny_models["student"]}"',
                 f'models.teacher="{tiny_models["teacher"]}"', "probe.n_problems=20",
                 "probe.sketch_dim=256", "probe.n_boot=20", "probe.min_per_bin=2"])
    assert code == 0
    for name in ("snr.csv", "snr.png", "probe.json"):
        assert (tmp_path / "p" / name).exists()
    header = (tmp_path / "p" / "snr.csv").read_text().splitlines()[0]
    assert header.startswith("p,snr,count,se")
    import json

    json.loads((tmp_path / "p" / "probe.json").read_text(),  # strict: no NaN / Infinity
               parse_constant=lambda c: pytest.fail(f"probe.json holds {c}"))
    cap = capsys.readouterr()
    assert "theory (" in cap.out and "p_hat problems" in cap.out  # labelled table
    assert "kernel fits (eta" in cap.out or "no kernel fit" in cap.out
    assert "0.0000000" not in cap.out  # rounded: no 16-digit floats
    err = cap.err
    assert err.startswith("snr-probe, 5 steps: 1 models")
    assert all(f"snr-probe [{i}/5]" in err for i in range(1, 6))


def test_stratify_caps_each_pass_rate_bin():
    from paced_train.experiments.snr_probe import stratify

    c = np.array([0] * 50 + [1] * 3 + [4] * 20)
    assert (stratify(c, 4, 0, np.random.default_rng(0)) == np.arange(73)).all()
    keep = stratify(c, 4, 10, np.random.default_rng(0))
    assert np.bincount(c[keep], minlength=5).tolist() == [10, 3, 0, 0, 10]
    assert (np.diff(keep) > 0).all()  # sorted, no repeats


def test_probe_fits_agree_with_paced_fit_on_its_csv(tmp_path):
    """probe.json's kernel fits and `paced fit snr.csv` fit the same curve: mu by count,
    log-space weights snr^2 / se^2 (a probe weighting by count gave beta_ls (1.43, 0)
    where `paced fit` gave (2.19, 0.66) on the recorded shipped curve)."""
    import json
    from pathlib import Path

    from paced_theory.fit import fit_family, read_snr_csv
    from paced_train.experiments.snr_probe import fit_and_plot

    rec = Path(__file__).resolve().parents[3] / "bench/results/snr_shipped"
    bins = json.loads((rec / "probe.json").read_text())["bins"]
    fit = fit_and_plot(tmp_path, bins, "forward")
    assert fit["fit_weights"] == "snr^2/se^2"
    for family in ("beta_ls", "beta_linf"):
        cli = fit_family(read_snr_csv(rec / "snr.csv"), family)
        for k, v in cli.params.items():  # the CSV rounds to 6 digits
            assert fit[family]["params"][k] == pytest.approx(v, rel=1e-3, abs=1e-4), family


def test_printed_summary_is_rounded_and_labelled():
    """What `paced snr-probe` prints for the recorded shipped probe: labelled columns, three
    significant digits, the fit weights named, beta_eff's search-cap note, the theory line."""
    import json
    import re
    from pathlib import Path

    from paced_train.experiments.snr_probe import summary

    rec = Path(__file__).resolve().parents[3] / "bench/results/snr_shipped/probe.json"
    text = summary(json.loads(rec.read_text()))
    assert "p_hat problems       SNR  95 % interval" in text
    assert " 0.750       19     0.264  [0.135, 0.475]" in text
    assert "weighted by snr^2/se^2" in text
    assert "beta_ls    eta 0.643   alpha=2.19  beta=0.657" in text
    assert "search cap" in text and "theory (m2): p^2 (1-p)^2, eta 0.243" in text
    assert not re.search(r"\d\.\d{7,}", text) and "{" not in text  # no raw floats or dicts


@pytest.mark.parametrize("drop_se", [False, True])
def test_csv_is_what_the_probe_fits_even_without_a_bootstrap_se(tmp_path, drop_se):
    """snr.csv holds the probe's curve: a bin without a finite SNR is left out, and when a
    bin has no bootstrap se (fewer than 2 finite replicates) the se column is left out and
    both sides weight by count; `paced fit` reads the file and finds the probe's fits."""
    from paced_theory.fit import fit_family, read_snr_csv
    from paced_train.experiments.snr_probe import fit_and_plot, write_csv

    nan = float("nan")
    bins = [{"p": k / 8, "n": 10 + k, "snr": (k / 8 * (1 - k / 8)) ** 2 + 1e-3 * k,
             "se": 0.01 + 0.001 * k, "lo": 0.0, "hi": 1.0, "signal": 1.0, "noise": 2.0}
            for k in range(9)]
    bins.append({"p": 0.3, "n": 1, "snr": nan, "se": nan, "lo": nan, "hi": nan,
                 "signal": nan, "noise": nan})
    if drop_se:
        bins[3]["se"] = nan
    write_csv(tmp_path / "snr.csv", bins)
    curve = read_snr_csv(tmp_path / "snr.csv")
    assert curve.p.tolist() == [k / 8 for k in range(9)]  # the NaN bin is not in the file
    assert (curve.se is None) == drop_se
    fit = fit_and_plot(tmp_path, bins, "forward")
    assert fit["fit_weights"] == ("count" if drop_se else "snr^2/se^2")
    for family in ("beta_ls", "beta_linf"):
        cli = fit_family(curve, family)
        for k, v in cli.params.items():
            assert fit[family]["params"][k] == pytest.approx(v, rel=1e-3, abs=1e-4), family


def test_probe_without_bootstrap_writes_strict_json_and_a_csv_without_se(tiny_models,
                                                                         tmp_path):
    """probe.n_boot = 0: no interval, no se (NaN inside). probe.json still parses as strict
    JSON (NaN -> null) and snr.csv leaves the se column out instead of writing blanks that
    `paced fit` refuses."""
    import json

    from paced_theory.fit import read_snr_csv
    from paced_train.cli import main

    out = tmp_path / "p"
    assert main(["snr-probe", "configs/tiny.toml", "--out", str(out),
                 f'models.student="{tiny_models["student"]}"',
                 f'models.teacher="{tiny_models["teacher"]}"', "probe.n_problems=12",
                 "probe.sketch_dim=64", "probe.n_boot=0", "probe.min_per_bin=2"]) == 0
    probe = json.loads((out / "probe.json").read_text(),
                       parse_constant=lambda c: pytest.fail(f"probe.json holds {c}"))
    assert probe["bins"] and all(b["lo"] is None and b["se"] is None for b in probe["bins"])
    assert (out / "snr.csv").read_text().startswith("p,snr,count,lo,hi")
    assert read_snr_csv(out / "snr.csv").se is None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from paced_train.experiments.snr_probe import draw_snr

    fig, ax = plt.subplots()  # figure 5 draws a probe.json whose bounds are null
    draw_snr(ax, probe["bins"], probe["fit"])
    labels = ax.get_legend_handles_labels()[1]
    assert ax.lines and any(lb.startswith("measured") for lb in labels)
    plt.close(fig)
