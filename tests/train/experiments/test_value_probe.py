"""The value probe on tiny models: its per-bin statistics against a slow reference (explicit
per-problem gradients, dot products by hand), its smoothness against the explicit Hessian,
the value-kernel fit on a planted curve, and the command end to end. The pure statistics
(alignment.py, kernel_rank.py) are tested in tests/theory/."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from paced_theory.alignment import bin_value
from paced_train.experiments.value_probe import (
    group_gradients,
    heldout_completions,
    hessian_vector,
    power_iteration,
    value_rows,
)


def _setup(tiny_cfg, *over):
    from paced_train.experiments.snr_probe import probe_params
    from paced_train.loop.distill import load_models
    from paced_train.loop.state import Run
    from paced_train.tasks import build_problems

    cfg = tiny_cfg(*over)
    student, teacher, tok = load_models(cfg, torch.device("cpu"))
    run = Run(cfg, torch.device("cpu"), student, teacher, tok, None, [], [], [])
    train, heldout, _ = build_problems(cfg)
    params, D = probe_params(student, cfg.probe.param_prefix)
    return cfg, run, train, heldout, params, D


def _flat_grad(loss, params, **kw):
    grads = torch.autograd.grad(loss, params, allow_unused=True, **kw)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, params)])


@pytest.mark.parametrize("kind", ["forward", "reverse"])
def test_bin_statistics_match_a_slow_reference(tiny_cfg, kind):
    """A bin's alignment, second moment and value from the probe's pipeline (batched held-out
    gradients per group, value_rows, bin_value) equal the same numbers from explicit
    per-problem gradients of the loss, one autograd call per problem, held-out gradient as
    the plain average of per-problem ones, dot products summed by hand."""
    from paced_train.experiments.value_probe import _groups
    from paced_train.loop import losses
    from paced_train.loop.distill import student_logits, teacher_logits
    from paced_train.tasks import target_text

    cfg, run, train, heldout, params, _ = _setup(tiny_cfg, f"probe.loss={kind}")
    pool = train[:7]
    tok = run.tok
    comps = [tok.encode(target_text(p)) + [tok.eos_id] for p in pool]
    h_comps = heldout_completions(run, heldout, kind)
    groups = _groups(len(heldout), 0)
    H = group_gradients(run, heldout, h_comps, groups, params, kind)
    align, sq, flops, _ = value_rows(run, pool, comps, H, params, kind)
    sizes = np.array([g.size for g in groups], dtype=float)
    eta, L = 0.01, 3.0
    got = bin_value(align, sq, flops, eta, L, sizes, n_boot=0)

    def grad(prob, comp):  # the reference: one problem, its own forward and backward
        t, _ = teacher_logits(run, [prob], [comp])
        s, mask, _ = student_logits(run, [prob], [comp])
        loss = losses.divergence(kind, s, t, mask, cfg.loss)[0]
        return [float(x) for x in _flat_grad(loss, params)]

    h_ref = [grad(p, c) for p, c in zip(heldout, h_comps)]
    n_val = len(heldout)
    h_mean = [sum(h[k] for h in h_ref) / n_val for k in range(len(h_ref[0]))]
    g_ref = [grad(p, c) for p, c in zip(pool, comps)]
    a_ref = [sum(x * y for x, y in zip(g, h_mean)) for g in g_ref]
    m_ref = [sum(x * x for x in g) for g in g_ref]
    A, M = sum(a_ref) / len(pool), sum(m_ref) / len(pool)
    assert abs(A) > 1e-6 and M > 0
    assert got["align"] == pytest.approx(A, rel=1e-3, abs=1e-6 * M)
    assert got["sq"] == pytest.approx(M, rel=1e-4)
    F = float(np.mean(flops))
    assert got["value"] == pytest.approx((eta * A - eta**2 * L * M / 2) / F, rel=1e-3,
                                         abs=1e-6 * eta * M / F)
    assert got["eta_balance"] == pytest.approx(2 * A / (L * M), rel=1e-3, abs=1e-6)
    # FLOPs: the ledger's rule on the tokens the forwards processed
    from paced_train.loop.distill import n_params

    prompt_tokens = [len(tok.encode_prompt(p.prompt)) for p in pool]
    tokens = [a + len(c) - 1 for a, c in zip(prompt_tokens, comps)]
    per_tok = 2 * n_params(run.teacher) + 6 * n_params(run.student) + (
        2 * n_params(run.student) if kind == "reverse" else 0)
    assert flops.tolist() == pytest.approx([per_tok * t for t in tokens])


def test_smoothness_is_the_top_eigenvalue_of_the_explicit_hessian(tiny_cfg):
    """On a 64-parameter slice (the layer norms) the power iteration on the probe's
    Hessian-vector products finds the largest |eigenvalue| of the explicit Hessian of the
    held-out loss (built row by row from per-problem double backward)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from paced_train.loop import losses
    from paced_train.loop.distill import student_logits, teacher_logits

    cfg, run, _, heldout, params, D = _setup(tiny_cfg, "probe.param_prefix=blocks.0.ln")
    assert D == 64
    comps = heldout_completions(run, heldout, "forward")
    with sdpa_kernel(SDPBackend.MATH):
        hess = torch.zeros(D, D, dtype=torch.float64)
        for prob, comp in zip(heldout, comps):
            t, _ = teacher_logits(run, [prob], [comp])
            s, mask, _ = student_logits(run, [prob], [comp])
            g = _flat_grad(losses.divergence("forward", s, t, mask, cfg.loss)[0], params,
                           create_graph=True)
            for k in range(D):
                hess[k] += _flat_grad(g[k], params, retain_graph=True).double()
    hess /= len(heldout)
    hess = (hess + hess.T) / 2
    eig = torch.linalg.eigvalsh(hess)
    top = float(eig.abs().max())
    gap = sorted(eig.abs().tolist())[-2] / top
    res = power_iteration(lambda v: hessian_vector(run, heldout, comps, params, "forward", v),
                          D, 300, 0, torch.device("cpu"))
    assert gap < 0.95  # else 300 iterations could not be expected to converge
    assert res["L"] == pytest.approx(top, rel=1e-2)
    assert len(res["history"]) == 300


def test_value_fit_recovers_a_planted_kernel():
    """Bins whose value weight A/M is a planted p^2 (1-p)^0.5, with second moments that vary
    by a factor 30 across bins: beta_ls and beta_eff fitted by the probe recover it."""
    from paced_train.experiments.value_probe import fit_value

    ps = np.arange(1, 8) / 8
    M = np.linspace(30.0, 1.0, 7)
    bins = [{"p": p, "n": 20, "sq": m, "weight": p**2 * (1 - p) ** 0.5 * 0.1,
             "weight_se": 0.01 * p**2 * (1 - p) ** 0.5} for p, m in zip(ps, M)]
    fit = fit_value(bins)
    for fam in ("beta_ls", "beta_eff"):
        assert fit[fam]["params"]["alpha"] == pytest.approx(2.0, abs=1e-3), fam
        assert fit[fam]["params"]["beta"] == pytest.approx(0.5, abs=1e-3), fam
        assert fit[fam]["efficiency"] == pytest.approx(1.0, abs=1e-6)


def test_value_probe_command_end_to_end(tiny_models, tmp_path, capsys):
    """`paced value-probe` at tiny size, with --study on a planted study.csv: the files, strict
    JSON, the printed tables and the ranking."""
    import csv

    from paced_train.cli import main

    study = tmp_path / "study.csv"
    with open(study, "w", newline="") as f:  # arms like "beta0.5,2" are quoted, as study.py's
        w = csv.writer(f)
        w.writerow(["pool", "loss", "arm", "seed", "auc_ratio"])
        for s in range(3):
            for a in (0.5, 1.0, 2.0):
                for b in (0.5, 1.0, 2.0):
                    arm = "paced" if (a, b) == (1.0, 1.0) else f"beta{a:g},{b:g}"
                    w.writerow(["demo", "forward", arm, s, 1 + 0.01 * (a + b) + 0.001 * s])
    out = tmp_path / "v"
    code = main(["value-probe", "configs/tiny.toml", "--out", str(out), "--study", str(study),
                 f'models.student="{tiny_models["student"]}"',
                 f'models.teacher="{tiny_models["teacher"]}"', "probe.n_problems=20",
                 "probe.sketch_dim=64", "probe.n_boot=20", "probe.min_per_bin=2"])
    assert code == 0
    for name in ("value.csv", "value.png", "value.json", "snr.csv", "snr.png",
                 "ranking.json"):
        assert (out / name).exists(), name
    res = json.loads((out / "value.json").read_text(),
                     parse_constant=lambda c: pytest.fail(f"value.json holds {c}"))
    assert res["value_bins"] and res["smoothness"]["L"] > 0
    assert len(res["smoothness"]["history"]) == 20
    assert sum(b["n"] for b in res["value_bins"]) <= 20
    rank = json.loads((out / "ranking.json").read_text())
    assert rank["seeds"] == [0, 1, 2] and "value curve" in rank["predictions"]
    assert (out / "value.csv").read_text().startswith("p,n,align,align_lo")
    cap = capsys.readouterr()
    assert "p_hat    n     align" in cap.out and "smoothness L =" in cap.out
    assert "held-out gradient: |grad L_val|^2 =" in cap.out
    assert "Spearman's rho" in cap.out
    assert cap.err.startswith("value-probe, 6 steps: 1 models")
    assert all(f"value-probe [{i}/6]" in cap.err for i in range(1, 7))
    # the study file is checked before the probe runs
    code = main(["value-probe", "configs/tiny.toml", "--out", str(tmp_path / "w"),
                 "--study", str(tmp_path / "missing.csv")])
    assert code == 2 and "missing.csv" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_heldout_resolution_is_unbiased_for_the_squared_mean_gradient():
    """signal = |h|^2 - tr Cov(h) is unbiased for |E grad|^2: over 4000 simulated held-out
    sets (10 groups of 30, per-problem noise far above the mean) its average is within 4
    standard errors of the planted |E grad|^2, while |h|^2 alone is biased up by the noise."""
    from paced_train.experiments.value_probe import heldout_resolution

    rng = np.random.default_rng(0)
    mean = np.array([0.3, -0.2, 0.1, 0.0, 0.0])  # |E grad|^2 = 0.14
    sizes = np.full(10, 30.0)
    sig, norm = [], []
    for _ in range(4000):
        H = mean + rng.normal(size=(10, 5)) * 2.0 / np.sqrt(30)  # group means of 30
        r = heldout_resolution(H, sizes)
        sig.append(r["signal"])
        norm.append(r["norm2"])
    se = np.std(sig) / np.sqrt(len(sig))
    assert abs(np.mean(sig) - 0.14) < 4 * se
    assert np.mean(norm) - 0.14 > 10 * se  # the plug-in |h|^2 is not
