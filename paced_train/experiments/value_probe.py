"""`paced value-probe`: the value of a problem by pass-rate bin (docs/theory.md §10.1,
§10.7), beside the gradient SNR, on a real student.

1-3. The SNR probe's pool (snr_probe.probe_pool): probe.n_problems training problems, K
   student rollouts each (bins c/K), the completions their loss is taken on (teacher
   references for probe.loss = "forward", the student's first sample for "reverse").
4. The held-out loss: the SAME loss kind on the run's held-out problems (the ones `paced
   train` evaluates accuracy on), i.e. the mean over them of forward KL to the teacher's
   greedy reference (or reverse KL on one seeded student sample per problem). Its gradient
   h = ∇L_val, exactly (no sketch), as G = min(10, n) group means h_j (a seeded split; the
   bootstrap resamples the groups). Its smoothness: L = the largest |eigenvalue| of the
   Hessian of L_val at the student, by power iteration on exact Hessian-vector products
   (double backward, attention through the math kernel), unless given (--smoothness). A
   local value at the initial student: the descent lemma needs a bound over the step, so L
   is an estimate, stated, not a guarantee.
5. Per training problem (snr_probe.problem_gradients, the SNR probe's gradients): the exact
   <g_i, h_j> and ||g_i||^2, the ledger's FLOPs of one training step on it (2 N_teacher
   tokens for the teacher forward, 6 N_student tokens for the student's forward and
   backward, + 2 N_student tokens of sampling under reverse KL; the teacher's reference,
   generated once per problem, is not charged), and the CountSketch row the SNR probe uses.
6. Per bin: paced_theory.alignment.bin_value (alignment A, second moment M, value weight
   A/M, predicted held-out decrease per FLOP at eta = optim.lr, the balancing eta) and
   paced_theory.snr.bin_snr; Beta kernels fitted to both curves (paced_theory.fit: value by
   alignment.value_curve, SNR as the SNR probe fits it).
Writes value.csv, value.png, value.json (everything) and the SNR probe's snr.csv, snr.png.

Loss kinds: whatever probe.loss names, through the two shared functions of snr_probe
(probe_pool's completions, problem_loss) and heldout_completions below; a new loss kind (RL,
when loss.schedule = "rl" exists) plugs in there.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from paced_theory.alignment import bin_value, value_curve
from paced_theory.errors import ConfigError, InputError
from paced_theory.jsonable import strict_json
from paced_theory.snr import bin_snr
from paced_train.config import RunConfig
from paced_train.experiments.snr_probe import (
    CountSketch,
    fit_and_plot,
    probe_params,
    probe_pool,
    problem_gradients,
    problem_loss,
    step_printer,
    write_csv,
)
from paced_train.loop.distill import n_params, teacher_view
from paced_train.loop.rollouts import generate_and_verify
from paced_train.loop.state import Run
from paced_train.tasks import build_problems

STEPS = ("models and problem pool", "K student rollouts per problem (pass rates)",
         "completions to score (teacher references for forward KL, the student's samples "
         "for reverse)", "held-out gradient and smoothness (power iteration)",
         "per-problem gradients: alignment, second moment, sketch (a bar)",
         "value and SNR per bin with bootstrap intervals, kernel fits, plots")
HELDOUT_GROUPS = 10
POWER_ITERS = 20
CHUNK = 64  # held-out problems per forward/backward


def heldout_completions(run: Run, problems, kind: str) -> list[list[int]]:
    """The completions the held-out loss scores, as the training loss of `kind` does: the
    teacher's greedy references (forward) or one student sample per problem at
    rollouts.temperature, seeded by run.seed (reverse)."""
    cfg, tok = run.cfg, run.tok
    if kind == "forward":
        _, comps, _ = generate_and_verify(run.teacher, tok, teacher_view(cfg, problems),
                                          cfg.rollouts.max_new_tokens, temperature=0.0)
    elif kind == "reverse":
        gen = torch.Generator().manual_seed(cfg.run.seed + 1)
        _, comps, _ = generate_and_verify(run.student, tok, problems,
                                          cfg.rollouts.max_new_tokens, k=1,
                                          temperature=cfg.rollouts.temperature, generator=gen)
    else:
        raise ConfigError(f"probe.loss = {kind!r}: the value probe has no held-out loss for "
                          "it; add one to value_probe.heldout_completions")
    return [c if c else [tok.eos_id] for c in comps]


def _mean_loss(run: Run, problems, comps, kind: str) -> torch.Tensor:
    """The mean per-problem loss over a chunk of held-out problems (one batched forward)."""
    return problem_loss(run, problems, comps, kind)[0].mean()


def heldout_gradient(run: Run, problems, comps, params, kind: str) -> torch.Tensor:
    """∇ of the mean held-out loss over `problems`, flat (D,) float32 (chunks of CHUNK
    problems, each weighted by its share)."""
    n = len(problems)
    total = None
    for i in range(0, n, CHUNK):
        loss = _mean_loss(run, problems[i:i + CHUNK], comps[i:i + CHUNK], kind)
        share = len(problems[i:i + CHUNK]) / n
        grads = torch.autograd.grad(loss * share, params, allow_unused=True)
        flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                          for g, p in zip(grads, params)]).float()
        total = flat if total is None else total + flat
    return total.detach()


def hessian_vector(run: Run, problems, comps, params, kind: str, v: torch.Tensor
                   ) -> torch.Tensor:
    """H v for H the Hessian of the mean held-out loss w.r.t. params (flat), exact: double
    backward with attention on the math kernel (the fused CPU/GPU kernels have no second
    derivative). A model without one raises InputError pointing at --smoothness."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    n = len(problems)
    sizes = [p.numel() for p in params]
    vs = [x.view_as(p) for x, p in zip(torch.split(v, sizes), params)]
    out = torch.zeros_like(v)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            for i in range(0, n, CHUNK):
                loss = _mean_loss(run, problems[i:i + CHUNK], comps[i:i + CHUNK], kind)
                share = len(problems[i:i + CHUNK]) / n
                grads = torch.autograd.grad(loss * share, params, create_graph=True,
                                            allow_unused=True)
                dot = sum((g * x).sum() for g, x in zip(grads, vs) if g is not None)
                hv = torch.autograd.grad(dot, params, allow_unused=True)
                out += torch.cat([(h if h is not None else torch.zeros_like(p)).reshape(-1)
                                  for h, p in zip(hv, params)]).float()
    except RuntimeError as e:
        raise InputError(f"value probe: no Hessian-vector product for this model ({e}); "
                         "give the smoothness instead: --smoothness L") from None
    return out.detach()


def power_iteration(hvp, D: int, iters: int, seed: int, device) -> dict:
    """The largest-|eigenvalue| of a symmetric operator hvp (flat vectors) by power iteration
    from a seeded Gaussian start: {"lambda" (the Rayleigh quotient at the last iterate, with
    its sign), "L" = |lambda|, "iters", "history" (the Rayleigh quotient per iteration),
    "rel_change" (of |lambda| over the last iteration: how far from converged)}. The
    |Rayleigh quotient| <= max |eigenvalue|, so a short run underestimates L."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(D, generator=g).to(device)
    v /= v.norm()
    history: list[float] = []
    for _ in range(iters):
        w = hvp(v)
        history.append(float(v @ w))
        norm = float(w.norm())
        if norm == 0:
            break
        v = w / norm
    lam = history[-1]
    prev = history[-2] if len(history) > 1 else float("nan")
    return {"lambda": lam, "L": abs(lam), "iters": len(history), "history": history,
            "rel_change": abs(abs(lam) - abs(prev)) / abs(lam) if lam else float("nan")}


def group_gradients(run: Run, heldout, comps, groups, params, kind: str) -> torch.Tensor:
    """(G, D): the gradient of the mean held-out loss over each group of held-out problems
    (groups: index arrays into heldout)."""
    return torch.stack([heldout_gradient(run, [heldout[i] for i in g], [comps[i] for i in g],
                                         params, kind) for g in groups])


def value_rows(run: Run, problems, completions, H: torch.Tensor, params, kind: str,
               sketch=None, progress: bool = False):
    """Per training problem, from its gradient g (snr_probe.problem_gradients): the exact
    <g, h_j> for each row h_j of H (n, G), ||g||^2 (n,), the FLOPs of one training step on
    it (n,; module docstring's ledger rule) and the sketched g (n, d; exact g without a
    sketch), all float64 numpy."""
    n_s, n_t = n_params(run.student), n_params(run.teacher)
    align, sq, flops, rows = [], [], [], []
    for g, tok_s, tok_t in problem_gradients(run, problems, completions, params, kind,
                                             f"value-probe [5/{len(STEPS)}] gradients",
                                             progress):
        align.append((H @ g).cpu().numpy())
        sq.append(float(g @ g))
        flops.append(2.0 * n_t * tok_t + 6.0 * n_s * tok_s
                     + (2.0 * n_s * tok_s if kind == "reverse" else 0.0))
        rows.append((sketch(g) if sketch is not None else g).cpu().numpy())
    return (np.asarray(align, dtype=np.float64), np.asarray(sq, dtype=np.float64),
            np.asarray(flops, dtype=np.float64), np.stack(rows).astype(np.float64))


def heldout_resolution(H: np.ndarray, sizes: np.ndarray) -> dict:
    """Is the held-out gradient resolved? From the group gradients H (G, D) with sizes n_j:
    "norm2" = |h|^2 of their weighted mean h, "noise" = tr Cov(h) (the sampling noise in
    it: the groups' spread tr Cov_hat / G, snr.bin_snr's noise / G; exact for equal groups),
    "signal" = norm2 - noise, unbiased for |E grad L_val|^2 over the held-out distribution.
    A signal not clearly above the noise means the alignments measure mostly the held-out
    sample's noise, and a larger held-out set (data.n_eval_per_cell) is needed."""
    G = H.shape[0]
    h = sizes @ H / sizes.sum()
    noise = float(bin_snr(H, 0)["noise"]) / G if G > 1 else float("nan")
    norm2 = float(h @ h)
    return {"norm2": norm2, "noise": noise, "signal": norm2 - noise, "groups": G,
            "group_sizes": sizes.tolist()}


def _groups(n: int, seed: int) -> list[np.ndarray]:
    """A seeded split of n held-out problems into min(HELDOUT_GROUPS, n) near-equal groups."""
    perm = np.random.default_rng([seed, 8]).permutation(n)
    return [g for g in np.array_split(perm, min(HELDOUT_GROUPS, n)) if g.size]


def run_value_probe(cfg: RunConfig, out_dir: Path, smoothness: float | None = None,
                    progress: bool = True) -> dict:
    """Measure value and SNR by pass-rate bin (module docstring) into out_dir; returns
    value.json's content. smoothness: L instead of the power-iteration estimate."""
    pc = cfg.probe
    if smoothness is not None and not (np.isfinite(smoothness) and smoothness > 0):
        raise InputError(f"--smoothness must be a finite number > 0 (got {smoothness})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    done = step_printer("value-probe", STEPS, progress)
    pp = probe_pool(cfg, done)
    run, K = pp.run, cfg.rollouts.K
    params, D = probe_params(run.student, pc.param_prefix)

    # 4. the held-out gradient (per group) and the smoothness
    _, heldout, _ = build_problems(cfg)
    h_comps = heldout_completions(run, heldout, pc.loss)
    groups = _groups(len(heldout), cfg.run.seed)
    H = group_gradients(run, heldout, h_comps, groups, params, pc.loss)
    sizes = np.array([g.size for g in groups], dtype=float)
    h = (torch.from_numpy(sizes).float().to(H.device) @ H) / sizes.sum()
    if smoothness is None:
        curv = power_iteration(lambda v: hessian_vector(run, heldout, h_comps, params,
                                                        pc.loss, v),
                               D, POWER_ITERS, cfg.run.seed, run.device)
        L = curv["L"]
    else:
        curv, L = {"given": smoothness}, float(smoothness)
    done(4, f"{len(heldout)} held-out problems in {len(groups)} groups, |grad L_val| = "
         f"{float(h.norm()):.3g}, L = {L:.3g}")

    # 5. per training problem: <g, h_j>, |g|^2, FLOPs, sketch row
    sketch = (CountSketch(D, pc.sketch_dim, pc.sketch_hashes, seed=cfg.run.seed,
                          device=run.device) if pc.sketch_dim > 0 else None)
    align, sq, flops, G = value_rows(run, pp.pool, pp.completions, H, params, pc.loss, sketch,
                                     progress)
    done(5, f"{len(pp.pool)} gradients of {D} parameters")

    # 6. per bin, fits, outputs
    eta = cfg.optim.lr
    rng_v, rng_s = np.random.default_rng([cfg.run.seed, 9]), np.random.default_rng(
        [cfg.run.seed, 6])
    value_bins, snr_bins = [], []
    for k in range(K + 1):
        sel = pp.c == k
        if sel.sum() >= pc.min_per_bin:
            value_bins.append({"p": k / K, **bin_value(align[sel], sq[sel], flops[sel], eta,
                                                       L, sizes, pc.n_boot, rng_v)})
            snr_bins.append({"p": k / K, **bin_snr(G[sel], pc.n_boot, rng_s)})
    write_csv(out_dir / "snr.csv", snr_bins)
    snr_fit = fit_and_plot(out_dir, snr_bins, pc.loss)
    value_fit = fit_value(value_bins)
    write_value_csv(out_dir / "value.csv", value_bins)
    counts = dict(zip((k / K for k in range(K + 1)), pp.pool_counts))
    result = {
        "config": {"loss": pc.loss, "K": K, "n_problems": len(pp.pool), "n_pool": pp.n_pool,
                   "max_per_bin": pc.max_per_bin, "params": D, "param_prefix": pc.param_prefix,
                   "sketch_dim": pc.sketch_dim, "sketch_hashes": pc.sketch_hashes,
                   "student": cfg.models.student, "teacher": cfg.models.teacher,
                   "privileged": cfg.loss.privileged, "eta": eta, "n_heldout": len(heldout),
                   "heldout_groups": len(groups),
                   "heldout_loss": f"mean {pc.loss} KL over the held-out problems "
                   + ("to the teacher's greedy reference" if pc.loss == "forward"
                      else "on one student sample each")},
        "smoothness": {"L": L, **curv},
        "heldout": heldout_resolution(H.cpu().numpy().astype(np.float64), sizes),
        "value_bins": value_bins, "snr_bins": snr_bins,
        "pass_rate_counts": pp.pool_counts,
        "probed_counts": np.bincount(pp.c, minlength=K + 1).tolist(),
        "bin_pool_counts": [counts[b["p"]] for b in value_bins],
        "fit": {"value": value_fit, "snr": snr_fit},
    }
    _plot(out_dir / "value.png", value_bins, value_fit, snr_fit, result["config"])
    result["wall_s"] = round(time.time() - t0, 1)
    done(6, f"{len(value_bins)} bins")
    (out_dir / "value.json").write_text(json.dumps(strict_json(result), indent=2,
                                                     allow_nan=False))
    return result


def fit_value(bins: list[dict]) -> dict:
    """Beta (and hard, uniform) kernels fitted to the value curve (alignment.value_curve):
    what value.json stores under fit.value, in the SNR probe's layout."""
    from paced_theory.fit import fit_families

    curve = value_curve(bins)
    fit: dict = {"fit_weights": None if curve is None else
                 ("weight^2/se^2" if curve.se is not None else "n M")}
    if curve is not None and sum(t > 0 and 0 < p < 1 for p, t in zip(curve.p, curve.snr)) >= 3:
        res = fit_families(curve, n_boot=200, seed=0,
                           families=("beta_eff", "beta_ls", "beta_linf", "hard", "uniform"))
        fit.update({k: {"params": r.params, "efficiency": r.efficiency,
                        "intervals": r.intervals, "notes": r.notes} for k, r in res.items()})
    else:
        fit["note"] = "fewer than 3 interior bins with a positive value weight: no fit"
    return fit


VALUE_COLUMNS = ("p", "n", "align", "align_lo", "align_hi", "sq", "sq_lo", "sq_hi", "weight",
                 "weight_lo", "weight_hi", "weight_se", "flops", "first", "second", "value",
                 "value_lo", "value_hi", "eta_balance", "eta_balance_lo", "eta_balance_hi",
                 "sq_max_share")


def write_value_csv(path: Path, bins: list[dict]) -> None:
    """value.csv: one row per bin, VALUE_COLUMNS (alignment.bin_value's keys)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(VALUE_COLUMNS)
        for b in bins:
            w.writerow([b[k] if k == "n" else f"{b[k]:.6g}" for k in VALUE_COLUMNS])


def _g(x) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.3g}"


def summary(result: dict) -> str:
    """What `paced value-probe` prints: the value table, the smoothness, and the kernels
    fitted to value beside those fitted to SNR (value.json holds full precision)."""
    cfg, sm = result["config"], result["smoothness"]
    ho = result["heldout"]
    lines = [f"value by pass rate p_hat = c/{cfg['K']} ({cfg['loss']} KL; held-out loss: "
             f"{cfg['heldout_loss']}, {cfg['n_heldout']} problems); step eta = optim.lr = "
             f"{cfg['eta']:g}, smoothness L = {_g(sm['L'])} "
             + ("(given)" if "given" in sm else
                f"(top |eigenvalue| of the held-out Hessian, {sm['iters']} power iterations, "
                f"last relative change {_g(sm['rel_change'])})"),
             f"held-out gradient: |grad L_val|^2 = {_g(ho['norm2'])}, of which sampling noise "
             f"{_g(ho['noise'])} (tr Cov / n, from {ho['groups']} groups): |E grad|^2 = "
             f"{_g(ho['signal'])}"
             + ("" if ho["signal"] > 2 * ho["noise"] else
                " -- NOT resolved (flag: below twice the noise): the alignments below are "
                "mostly the held-out sample's noise; a larger held-out set: "
                "data.n_eval_per_cell"),
             "align = <mean g, grad L_val>; E|g|^2; value/FLOP = (eta align - eta^2 L E|g|^2 "
             "/ 2) / FLOPs; eta_bal = 2 align / (L E|g|^2); max|g|^2: the largest problem's "
             "share of the bin's sum |g|^2; 95 % bootstrap over problems and held-out groups:",
             f"{'p_hat':>6} {'n':>4} {'align':>9} {'[95 %]':<19} {'E|g|^2':>8} {'a/m':>9} "
             f"{'[95 %]':<19} {'value/FLOP':>10} {'eta_bal':>8} {'max|g|^2':>8}"]
    for b in result["value_bins"]:
        lines.append(f"{b['p']:6.3f} {b['n']:4d} {_g(b['align']):>9} "
                     f"{'[' + _g(b['align_lo']) + ', ' + _g(b['align_hi']) + ']':<19} "
                     f"{_g(b['sq']):>8} {_g(b['weight']):>9} "
                     f"{'[' + _g(b['weight_lo']) + ', ' + _g(b['weight_hi']) + ']':<19} "
                     f"{_g(b['value']):>10} {_g(b['eta_balance']):>8} "
                     f"{_g(b['sq_max_share']):>8}")
    lines += ["", "Beta kernels p^alpha (1-p)^beta fitted to value (a/m; mass n E|g|^2) and to "
              "SNR (mass n); eta: efficiency on its own curve:"]
    for key in ("beta_ls", "beta_eff", "beta_linf"):
        cells = []
        for name in ("value", "snr"):
            f = result["fit"][name].get(key)
            cells.append(f"{name} ({_g(f['params']['alpha'])}, {_g(f['params']['beta'])}) "
                         f"eta {f['efficiency']:.2f}" if f else f"{name} -")
        lines.append(f"  {key:<10} " + "   ".join(cells))
    for name in ("value", "snr"):
        if "note" in result["fit"][name]:
            lines.append(f"  {name}: {result['fit'][name]['note']}")
    return "\n".join(lines)


def _plot(path: Path, bins: list[dict], value_fit: dict, snr_fit: dict, cfg: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from paced_theory.kernels import beta_kernel

    def col(key):
        return np.array([np.nan if b[key] is None else b[key] for b in bins], dtype=float)

    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.5))
    p = col("p")
    for ax, key, label in ((axes[0], "align", "alignment <mean g, grad L_val>"),
                           (axes[1], "weight", "value weight align / E|g|^2")):
        y, lo, hi = col(key), col(f"{key}_lo"), col(f"{key}_hi")
        yerr = [np.nan_to_num(np.maximum(y - lo, 0)), np.nan_to_num(np.maximum(hi - y, 0))]
        ax.errorbar(p, y, yerr=yerr, fmt="o", ms=3, color="k", capsize=2,
                    label="measured, 95 % bootstrap")
        ax.axhline(0, color="0.7", lw=0.8)
        ax.set(xlabel="pass rate p_hat (K rollouts)", ylabel=label)
    grid = np.linspace(0, 1, 401)
    y = col("weight")
    peak = np.nanmax(y) if np.any(np.isfinite(y)) and np.nanmax(y) > 0 else 1.0
    for fit, name, color, ls in ((value_fit, "value", "#CC79A7", "-"),
                                 (snr_fit, "SNR", "#0072B2", "--")):
        if "beta_ls" in fit:
            a, b = fit["beta_ls"]["params"]["alpha"], fit["beta_ls"]["params"]["beta"]
            w = beta_kernel(grid, a, b)
            axes[1].plot(grid, w / w.max() * peak, color=color, ls=ls,
                         label=f"beta_ls fitted to {name} ({a:.2f}, {b:.2f})")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"Value of a problem by pass rate ({cfg['loss']} KL, eta = {cfg['eta']:g})",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
