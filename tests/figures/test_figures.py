"""The theory figures (1-4, 8) are regenerated from code and plot what their captions say:
checked on the CSV each writes beside its PNG/PDF."""

from __future__ import annotations

import csv
import importlib
import sys

import numpy as np
import pytest

import paper_figures.style as style

THEORY = ["fig1_snr_models", "fig2_kernels", "fig3_robustness", "fig4_estimation",
          "fig8_population"]


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    d = tmp_path_factory.mktemp("figures")
    old, argv = style.OUT, sys.argv
    style.OUT = d
    try:
        for name in THEORY:
            sys.argv = [name]
            png = importlib.import_module(f"paper_figures.{name}").main()
            assert png == d / f"{name}.png"
    finally:
        style.OUT, sys.argv = old, argv
    return d


def rows(out, name):
    with open(out / f"{name}.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", THEORY)
def test_each_figure_writes_png_pdf_csv(out, name):
    for ext in ("png", "pdf", "csv"):
        assert (out / f"{name}.{ext}").stat().st_size > 200, ext
    assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_fig1_monte_carlo_agrees_with_the_closed_form(out):
    r = rows(out, "fig1_snr_models")
    inside = [float(x["lo"]) <= float(x["closed_form"]) <= float(x["hi"]) for x in r
              if x["monte_carlo"]]
    assert len(inside) >= 20 and np.mean(inside) >= 0.85


def test_fig2_kernels_share_one_peak(out):
    r = rows(out, "fig2_kernels")
    for col in r[0]:
        if col != "p":
            assert max(float(x[col]) for x in r) == pytest.approx(1.0, abs=1e-3), col


def test_fig3_worst_case_is_delta_squared(out):
    for x in rows(out, "fig3_robustness"):
        d = float(x["delta"])
        assert float(x["worst_case"]) == pytest.approx(d * d, rel=1e-9)
        assert float(x["worst_case_log_band"]) == pytest.approx(np.tanh(d) ** 2, rel=1e-6)


def test_fig4_unbiased_efficiency_is_k_k1_over_k2_1(out):
    for x in rows(out, "fig4_estimation"):
        if x["kernel"] == "Beta(1,1)" and x["estimator"] == "unbiased":
            K = int(x["K"])
            assert float(x["efficiency"]) == pytest.approx(K * (K - 1) / (K * K + 1), abs=1e-9)


def test_fig8_lists_every_weighting_with_its_compute(out):
    r = {x["method"]: x for x in rows(out, "fig8_population")}
    assert {"uniform", "hard"} <= set(r) and len(r) >= 4
    assert all(float(x["compute_mean"]) > 0 for x in r.values() if x["reached"] != "0")


def test_fig8_oracle_pays_for_every_drawn_problem(out):
    """The caption's explanation of the oracle's higher compute: it updates on all drawn
    problems (its weight of the true p is never 0), Beta's plug-in weight on fewer."""
    r = {x["method"]: x for x in rows(out, "fig8_population")}
    assert float(r["oracle"]["updates_per_step"]) == pytest.approx(256)
    assert float(r["beta"]["updates_per_step"]) < 0.8 * 256
