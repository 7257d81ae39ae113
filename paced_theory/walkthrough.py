"""The theory walkthrough: every number in it is computed here, when the report is made.

`theory_report(out_dir)` writes `theory.md`, `theory_snr.png` and `theory_snr.csv` into
out_dir and returns the markdown. It is the first half of `paced demo`'s report and runs
in a few seconds:

1. SNR(p) of the gradient models (M1 with and without advantage noise, M1 with a
   leave-one-out baseline, M2 for several engagement exponents): closed form, boundary
   exponents, implied Beta kernel, and the efficiency of the default p(1-p).
2. Robustness: the exact worst-case efficiency loss for misspecification bands, next to
   the Kantorovich bound and the two-point witness that attains it.
3. A kernel fit on an SNR curve *measured* by Monte Carlo from M1's gradient sampler
   (per-bin signal ||mean||^2 and noise tr Cov, bias-corrected), as `paced fit` does on a
   real student's curve.
4. Pass-rate estimation from K rollouts: efficiency of the plug-in, unbiased and
   posterior-mean weights.
5. The population simulator: compute to reach a target accuracy per weighting.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np

from paced_theory import robustness as rb
from paced_theory.efficiency import PassRateMeasure, efficiency
from paced_theory.estimation import efficiency_table
from paced_theory.fit import SNRCurve, chebyshev_beta, fit_families
from paced_theory.kernels import beta_kernel
from paced_theory.models import m1, m2
from paced_theory.snr import bin_snr

SNR_MODELS = [
    ("M1, tau2=0", lambda: m1(K=8, sigma2=1.0, tau2=0.0)),
    ("M1, tau2=0.5", lambda: m1(K=8, sigma2=1.0, tau2=0.5)),
    ("M1, leave-one-out", lambda: m1(K=8, sigma2=1.0, tau2=0.0, baseline="leave_one_out")),
    ("M2, gamma=0.5", lambda: m2(gamma=0.5)),
    ("M2, gamma=1", lambda: m2(gamma=1.0)),
    ("M2, gamma=2", lambda: m2(gamma=2.0)),
]


def _md_table(header: list[str], rows: list[list]) -> str:
    def cell(x):
        return f"{x:.4g}" if isinstance(x, float) else str(x)

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
    return "\n".join(out)


def snr_section(mu: PassRateMeasure) -> tuple[str, list]:
    rows, models = [], []
    for label, make in SNR_MODELS:
        model = make()
        a, b = model.exponents("allocation")
        alpha, beta = model.implied_beta("allocation")
        e_default = efficiency(lambda p: beta_kernel(p, 1, 1), mu, rho=model.rho,
                               criterion="allocation")
        e_implied = efficiency(lambda p, al=alpha, be=beta: beta_kernel(p, al, be), mu,
                               rho=model.rho, criterion="allocation")
        cheb = chebyshev_beta(model.rho)
        e_cheb = efficiency(beta_kernel(mu.p, cheb["alpha"], cheb["beta"]), mu,
                            rho=model.rho, criterion="allocation")
        rows.append([label, f"`{model.rho_text()}`", f"({a:g}, {b:g})", e_default, e_implied,
                     f"({cheb['alpha']:.2f}, {cheb['beta']:.2f}): {e_cheb:.4f}"])
        models.append((label, model))
    text = _md_table(["model", "rho(p)", "exponents (0, 1)", "eta of p(1-p)",
                      "eta of implied Beta", "Chebyshev-fit Beta: eta"], rows)
    return text, models


def robustness_section(deltas=(0.05, 0.1, 0.2, 0.3, 0.5)) -> str:
    rows = []
    for d in deltas:
        w = rb.witness(d)
        wl = rb.witness(d, log=True)
        rows.append([d, rb.worst_case_loss(d), 1 - rb.kantorovich_bound(1 - d, 1 + d), w["loss"],
                     rb.worst_case_loss(d, log=True), wl["loss"]])
    return _md_table(["delta", "worst loss [1-d,1+d]", "Kantorovich bound", "witness loss",
                      "worst loss [e^-d,e^d]", "witness loss (log)"], rows)


def measured_curve(model, n_bins: int = 19, n_problems: int = 400, seed: int = 0) -> SNRCurve:
    """Monte Carlo SNR per pass-rate bin from the model's gradient sampler, estimated per
    bin by paced_theory.snr.bin_snr (the estimator the probe uses on real students)."""
    rng = np.random.default_rng(seed)
    ps = np.linspace(0.05, 0.95, n_bins)
    snr = np.empty(n_bins)
    for i, p in enumerate(ps):
        snr[i] = bin_snr(model.sample_gradients(float(p), n_problems, rng), n_boot=0)["snr"]
    return SNRCurve(p=ps, snr=snr, count=np.full(n_bins, n_problems, dtype=float), se=None)


def fit_section(model, out_dir: Path) -> tuple[str, dict, SNRCurve]:
    curve = measured_curve(model)
    with open(out_dir / "theory_snr.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["p", "snr", "count"])
        for p, s, c in zip(curve.p, curve.snr, curve.count):
            wr.writerow([f"{p:.6g}", f"{s:.6g}", int(c)])
    fits = fit_families(curve, n_boot=100, seed=0)
    rows = []
    for name, r in fits.items():
        ps = ", ".join(f"{k}={v:.3g}" for k, v in r.params.items())
        iv = ", ".join(f"{k} in [{lo:.3g}, {hi:.3g}]" for k, (lo, hi) in r.intervals.items())
        rows.append([name, ps or "-", iv or "-", r.efficiency, r.guaranteed_efficiency])
    return _md_table(["family", "params", "bootstrap 95% intervals", "eta achieved",
                      "eta guaranteed"], rows), fits, curve


def estimation_section() -> str:
    rows = efficiency_table([2, 4, 8, 16, 32], 1.0, 1.0, ["plugin", "unbiased", "posterior"])
    table = [[r["K"], r["estimator"], r["efficiency"], r["relative_efficiency"]] for r in rows]
    return _md_table(["K", "estimator", "eta", "eta / eta(true p)"], table)


def population_section() -> str:
    from paced_theory import population as pop

    config = pop.from_overrides({})
    rows = pop.compare(config, ["uniform", "hard", "beta", "oracle"], seeds=2, progress=False)
    return pop.format_table(rows)


def plot(models, fits, curve, out_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = np.linspace(1e-3, 1 - 1e-3, 400)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    for label, model in models:
        r = model.rho(p)
        ax1.plot(p, r / r.max(), label=label)
    ax1.set(xlabel="pass rate p", ylabel="SNR rho(p) / max", title="Model SNR (closed form)")
    ax1.legend(fontsize=7)
    ax2.plot(curve.p, curve.snr, "o", color="k", label="Monte Carlo (M1, tau2=0.5)")
    for name in ("beta_ls", "beta_linf"):
        if name in fits:
            prm = fits[name].params
            w = beta_kernel(p, prm["alpha"], prm["beta"])
            scale = np.max(curve.snr) / np.max(w)
            ax2.plot(p, w * scale, label=f"{name}: a={prm['alpha']:.2f}, b={prm['beta']:.2f}")
    ax2.set(xlabel="pass rate p", ylabel="SNR", title="Measured curve and Beta fits")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)


STEPS = ("gradient SNR of the models", "robustness", "kernel fits on a Monte Carlo curve",
         "K-rollout estimators", "population simulator")


def theory_report(out_dir: Path, progress: bool = True) -> str:
    """Compute the walkthrough; write theory.md, theory_snr.png, theory_snr.csv; return
    markdown. With progress, a legend line and one line per finished step go to stderr."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def done(i: int) -> None:
        if progress:
            print(f"theory [{i}/{len(STEPS)}] {STEPS[i - 1]}: done at "
                  f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    if progress:
        print(f"theory walkthrough, {len(STEPS)} steps (" + "; ".join(
            f"{i} {s}" for i, s in enumerate(STEPS, 1)) + "), about 10 s; one line per step, "
            "with the seconds since the start", file=sys.stderr, flush=True)
    mu = PassRateMeasure.uniform()
    snr_md, models = snr_section(mu)
    done(1)
    robustness_md = robustness_section()
    done(2)
    fit_md, fits, curve = fit_section(m1(K=8, sigma2=1.0, tau2=0.5), out_dir)
    plot(models, fits, curve, out_dir / "theory_snr.png")
    done(3)
    estimation_md = estimation_section()
    done(4)
    population_md = population_section()
    done(5)
    md = "\n\n".join([
        "# Theory walkthrough",
        "All numbers below are computed by `paced_theory` when this report is made "
        "(`paced_theory.walkthrough.theory_report`). Efficiencies use the allocation criterion "
        "(w* proportional to rho) and a uniform pass-rate distribution mu.",
        "## 1. Gradient SNR of the models",
        snr_md,
        "Boundary collapse: every model's SNR vanishes at both ends (positive exponents). "
        "The Beta kernel with those exponents is optimal to leading order at the boundaries, "
        "but not necessarily in the interior: for M2 the (1-p)^2 factor only bites within "
        "sqrt(noise_floor) of p = 1, and the implied kernel can lose to plain p(1-p). The last "
        "column fits log rho over [0.01, 0.99] by Chebyshev (best guaranteed efficiency); it "
        "maximises the worst-case guarantee, not the achieved efficiency, so it need not beat "
        "p(1-p) either.",
        "![SNR](theory_snr.png)",
        "## 2. Robustness to misspecification",
        robustness_md,
        "The worst case is exactly delta^2 (tanh^2 delta for a log band), attained by the "
        "two-point witness: the paper's O(delta^2) with the constant made exact (our derivation).",
        "## 3. Fitting kernels to a measured SNR curve",
        "Curve: Monte Carlo estimates from M1 (K=8, sigma2=1, tau2=0.5) in 19 bins of 400 "
        "problems (`theory_snr.csv`; rerun with `paced fit theory_snr.csv`). Theory predicts "
        "exponents (2, 2).",
        fit_md,
        "The exponents (2, 2) are limits at p -> 0 and p -> 1; on bins in [0.05, 0.95] the "
        "curve is flatter than p^2 (1-p)^2, so the fitted exponents land below 2 -- yet the "
        "fitted kernels lose well under 1 % efficiency. Compare the closed form: "
        "`paced theory snr --model m1 --tau2 0.5`.",
        "## 4. Estimating pass rates from K rollouts",
        "Efficiency of the weight p(1-p) computed from c successes in K rollouts, when the true "
        "optimal weight is p(1-p) (uniform mu).",
        estimation_md,
        "## 5. Population simulator",
        population_md,
    ])
    (out_dir / "theory.md").write_text(md + "\n")
    return md
