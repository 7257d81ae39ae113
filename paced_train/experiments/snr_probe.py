"""`paced snr-probe`: the empirical cross-problem gradient SNR against pass rate (docs/theory.md
§6), on a real student.

1. Pass rates: K student rollouts per problem of the pool, verified.
2. Per-problem gradients of the configured distillation loss (forward KL on the teacher's
   reference, or reverse KL on one student sample) with respect to the student's
   parameters -- all of them, or those whose name starts with `probe.param_prefix`.
3. A fixed seeded CountSketch S: R^D -> R^d (each coordinate hashed to one of d buckets
   with a random sign; `probe.sketch_hashes` independent hashes averaged). It is linear and
   unbiased for inner products, E <Sx, Sy> = <x, y>, costs O(D) per gradient, and needs no
   d x D matrix. With probe.sketch_dim = 0 the exact gradients are used.
4. Bins by p_hat (with K rollouts the natural bins are the K+1 values c/K); per bin the
   unbiased signal ||E g||^2, noise tr Cov g and their ratio, with bias-corrected bootstrap
   intervals over the bin's problems: paced_theory.snr.bin_snr.
5. Writes snr.csv (p, snr, count, se: the format `paced fit` reads), snr.png with the
   intervals, the fitted kernels and the theory's predicted kernel, and probe.json.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from paced_theory.errors import ConfigError
from paced_theory.jsonable import strict_json
from paced_theory.snr import bin_snr
from paced_train.config import RunConfig
from paced_train.loop import losses
from paced_train.loop.distill import load_models, student_logits, teacher_logits, teacher_view
from paced_train.loop.distributed import resolve_device
from paced_train.loop.rollouts import generate_and_verify
from paced_train.loop.state import Run
from paced_train.tasks import build_problems


class CountSketch:
    """A seeded linear sketch R^D -> R^d: s independent (bucket, sign) hashes, averaged."""

    def __init__(self, D: int, d: int, hashes: int = 1, seed: int = 0, device="cpu"):
        g = torch.Generator().manual_seed(seed)
        self.d, self.hashes = d, hashes
        self.bucket = torch.randint(0, d, (hashes, D), generator=g).to(device)
        self.sign = (torch.randint(0, 2, (hashes, D), generator=g) * 2 - 1).float().to(device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.hashes, self.d, device=x.device)
        for h in range(self.hashes):
            out[h].index_add_(0, self.bucket[h], self.sign[h] * x)
        # averaging s hashes scaled by 1/sqrt(s) keeps E <Sx, Sy> = <x, y>
        return out.reshape(-1) / self.hashes**0.5


def stratify(c: np.ndarray, K: int, max_per_bin: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the problems whose gradients are taken: all of them, or with
    max_per_bin > 0 at most that many (a seeded random subset) from each pass-rate bin c/K,
    so that a pool dominated by p = 0 and p = 1 still fills the frontier bins."""
    if max_per_bin <= 0:
        return np.arange(len(c))
    keep = [rng.permutation(np.flatnonzero(c == k))[:max_per_bin] for k in range(K + 1)]
    return np.sort(np.concatenate(keep)).astype(int)


def problem_loss(run: Run, problems, completions, kind: str):
    """(per-problem losses (B,), student tokens, teacher tokens): the loop's divergence
    `kind` (losses.divergence with the config's [loss] section) on the given completions,
    the teacher reading its view of each problem, and the token positions each model's
    forward processed (what the ledger charges). The one place both probes take a problem's
    loss: a new loss kind goes here."""
    t_logits, n_t = teacher_logits(run, problems, completions)
    s_logits, mask, n_s = student_logits(run, problems, completions)
    return losses.divergence(kind, s_logits, t_logits, mask, run.cfg.loss), n_s, n_t


def problem_gradients(run: Run, problems, completions, params, kind: str, desc: str = "",
                      progress: bool = False):
    """Yield, per problem, (flat gradient (D,) float32 on the run's device, student tokens,
    teacher tokens): the gradient of the problem's distillation loss `kind` (problem_loss
    on its completion) with respect to `params`, and the token positions
    the student and teacher forwards processed (what the ledger would charge). The teacher
    sees its view of each problem (privileged context when configured). A parameter the loss
    does not reach contributes zeros. Shared by the SNR and the value probe.
    progress: a bar on stderr (one tick per problem) labelled `desc`."""
    run.student.train()
    bar = tqdm(zip(problems, completions), total=len(problems), disable=not progress,
               desc=desc, unit="problem", leave=False, file=sys.stderr, dynamic_ncols=True,
               mininterval=1.0)
    for prob, comp in bar:
        loss, n_s, n_t = problem_loss(run, [prob], [comp], kind)
        grads = torch.autograd.grad(loss.sum(), params, allow_unused=True)
        yield (torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                          for g, p in zip(grads, params)]).float().detach(), n_s, n_t)


def per_problem_gradients(run: Run, problems, completions, params, sketch,
                          kind: str, progress: bool = False) -> np.ndarray:
    """One (sketched) gradient of the distillation loss per problem, shape (n, d or D)
    (problem_gradients, each through the sketch when one is given).
    progress: a bar on stderr (one tick per problem)."""
    rows = [(sketch(flat) if sketch is not None else flat).cpu().numpy()
            for flat, _, _ in problem_gradients(
                run, problems, completions, params, kind,
                f"snr-probe [4/{len(STEPS)}] gradients", progress)]
    return np.stack(rows).astype(np.float64)


STEPS = ("models and problem pool", "K student rollouts per problem (pass rates)",
         "completions to score (teacher references for forward KL, the student's samples "
         "for reverse)", "one sketched gradient per problem (a bar)",
         "SNR per pass-rate bin with bootstrap intervals, kernel fits, plot")


@dataclass
class ProbePool:
    """What both probes measure on: the run (models and config), the probed problems, their
    pass-rate counts c out of K, the completion each problem's loss is taken on, and the
    pool's counts per c before stratification."""

    run: Run
    pool: list
    c: np.ndarray
    completions: list
    pool_counts: list[int]
    n_pool: int


def step_printer(name: str, steps: list[str], progress: bool):
    """A legend line of the probe's numbered steps now (stderr), and done(i, what) that
    prints one line per finished step with the seconds since this call (nothing if not
    progress)."""
    t0 = time.time()
    if progress:
        print(f"{name}, {len(steps)} steps: " + "; ".join(
            f"{i} {s}" for i, s in enumerate(steps, 1)) + ". One line per finished step, with "
            "the seconds since the start", file=sys.stderr, flush=True)

    def done(i: int, what: str = "") -> None:
        if progress:
            print(f"{name} [{i}/{len(steps)}] {steps[i - 1].split(' (')[0]}"
                  f"{': ' + what if what else ''}: done at {time.time() - t0:.1f} s",
                  file=sys.stderr, flush=True)

    return done


def probe_pool(cfg: RunConfig, done=lambda i, what="": None) -> ProbePool:
    """Steps 1-3 of the SNR probe, shared with the value probe: load the models, draw
    probe.n_problems training problems (seeded), K student rollouts each (verified: c of K
    correct), stratify by c (probe.max_per_bin), and the completions to score: the teacher's
    greedy references (probe.loss = "forward") or the first of the student's own samples
    ("reverse"). done(i, what) is called after step i."""
    pc = cfg.probe
    device = resolve_device(cfg.run.device)
    torch.manual_seed(cfg.run.seed)
    student, teacher, tok = load_models(cfg, device)
    if teacher is None:
        raise ConfigError("snr-probe needs the teacher (forward KL's references, reverse KL's "
                          "targets), and loss.schedule = 'rl' loads none; set "
                          "loss.schedule = 'forward' for the probe (probe.loss picks its loss)")
    run = Run(cfg, device, student, teacher, tok, None, [], [], [])
    train, _, _ = build_problems(cfg)
    rng = np.random.default_rng([cfg.run.seed, 5])
    pool = [train[i] for i in rng.permutation(len(train))[: pc.n_problems]]
    gen = torch.Generator().manual_seed(cfg.run.seed)
    K = cfg.rollouts.K
    done(1, f"{len(pool)} problems")
    ok, samples, _ = generate_and_verify(student, tok, pool, cfg.rollouts.max_new_tokens, k=K,
                                         temperature=cfg.rollouts.temperature, generator=gen)
    c_all = ok.reshape(len(pool), K).sum(1)
    pool_counts = np.bincount(c_all, minlength=K + 1).tolist()
    keep = stratify(c_all, K, pc.max_per_bin, np.random.default_rng([cfg.run.seed, 7]))
    pool, c = [pool[i] for i in keep], c_all[keep]
    samples = [samples[i * K] for i in keep]  # the first sample of each kept problem
    done(2, f"{len(c_all)} x K = {K}; problems per c/K = {pool_counts}")
    if pc.loss == "forward":
        _, refs, _ = generate_and_verify(teacher, tok, teacher_view(cfg, pool),
                                         cfg.rollouts.max_new_tokens, temperature=0.0)
    else:  # reverse KL on the first of the student's own samples
        refs = samples
    comps = [r if r else [tok.eos_id] for r in refs]
    done(3, f"{len(comps)} problems kept")
    return ProbePool(run, pool, c, comps, pool_counts, len(c_all))


def probe_params(student, prefix: str) -> tuple[list, int]:
    """(the student's parameters whose name starts with probe.param_prefix, their total
    size D); ConfigError when the prefix matches none."""
    named = [(n, p) for n, p in student.named_parameters() if n.startswith(prefix)]
    if not named:
        raise ConfigError(f"probe.param_prefix = {prefix!r} matches no parameter; "
                          f"e.g. {[n for n, _ in student.named_parameters()][:4]}")
    params = [p for _, p in named]
    return params, sum(p.numel() for p in params)


def run_probe(cfg: RunConfig, out_dir: Path, progress: bool = True) -> dict:
    """Measure the SNR curve (module docstring) into out_dir and return probe.json's content.
    progress: a legend line, one line per finished step and a bar for the gradients, on
    stderr."""
    pc = cfg.probe
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    done = step_printer("snr-probe", STEPS, progress)
    pp = probe_pool(cfg, done)
    run, pool, c, comps, pool_counts = pp.run, pp.pool, pp.c, pp.completions, pp.pool_counts
    params, D = probe_params(run.student, pc.param_prefix)
    K = cfg.rollouts.K
    sketch = (CountSketch(D, pc.sketch_dim, pc.sketch_hashes, seed=cfg.run.seed,
                          device=run.device)
              if pc.sketch_dim > 0 else None)
    G = per_problem_gradients(run, pool, comps, params, sketch, pc.loss, progress)
    done(4, f"{len(pool)} gradients of {D} parameters, sketched to {G.shape[1]}")
    boot_rng = np.random.default_rng([cfg.run.seed, 6])
    bins = []
    for k in range(K + 1):
        sel = c == k
        if sel.sum() >= pc.min_per_bin:
            bins.append({"p": k / K, **bin_snr(G[sel], pc.n_boot, boot_rng)})
    write_csv(out_dir / "snr.csv", bins)
    result = {"config": {"loss": pc.loss, "K": K, "n_problems": len(pool),
                         "n_pool": pp.n_pool, "max_per_bin": pc.max_per_bin, "params": D,
                         "param_prefix": pc.param_prefix, "sketch_dim": pc.sketch_dim,
                         "sketch_hashes": pc.sketch_hashes, "student": cfg.models.student,
                         "teacher": cfg.models.teacher, "privileged": cfg.loss.privileged},
              "bins": bins, "pass_rate_counts": pool_counts,
              "probed_counts": np.bincount(c, minlength=K + 1).tolist()}
    result["fit"] = fit_and_plot(out_dir, bins, pc.loss)
    result["wall_s"] = round(time.time() - t0, 1)
    done(5, f"{len(bins)} bins")
    (out_dir / "probe.json").write_text(json.dumps(strict_json(result), indent=2,
                                                     allow_nan=False))
    return result


def _g(x) -> str:
    """A number for a table: 3 significant digits, '-' when missing."""
    return "-" if x is None or not np.isfinite(x) else f"{x:.3g}"


def summary(result: dict) -> str:
    """What `paced snr-probe` prints: the measured curve and the kernel fits, rounded and
    labelled (probe.json holds the full-precision numbers)."""
    cfg, fit = result["config"], result["fit"]
    lines = [f"gradient SNR ||E g||^2 / tr Cov g by pass rate p_hat = c/{cfg['K']} "
             f"({cfg['loss']} KL), 95 % bias-corrected bootstrap interval:",
             f"{'p_hat':>6} {'problems':>8} {'SNR':>9}  {'95 % interval':<18}"]
    for b in result["bins"]:
        lines.append(f"{b['p']:6.3f} {b['n']:8d} {_g(b['snr']):>9}  "
                     f"[{_g(b['lo'])}, {_g(b['hi'])}]")
    fits = {k: v for k, v in fit.items() if isinstance(v, dict) and "params" in v}
    if fits:
        lines += ["", f"kernel fits (eta: efficiency on this curve, 1 = the optimum w ∝ SNR; "
                  f"log-space fits weighted by {fit.get('fit_weights', 'count')}):"]
        for k, v in fits.items():
            prm = "  ".join(f"{a}={_g(x)}" for a, x in v["params"].items()) or "-"
            lines.append(f"  {k:<10} eta {v['efficiency']:.3f}   {prm}")
            lines += [f"             note: {n}" for n in v.get("notes", [])]
    else:
        lines += ["", f"no kernel fit: {fit.get('note', '')}"]
    pr = fit["predicted"]
    eta = f", eta {pr['efficiency']:.3f} on this curve" if "efficiency" in pr else ""
    lines.append(f"theory ({pr['model']}): p^{pr['alpha']:g} (1-p)^{pr['beta']:g}{eta}")
    return "\n".join(lines)


def probe_curve(bins: list[dict]):
    """(usable bins, SNRCurve or None, fit weights) of the measured bins: the curve both the
    probe's fits and `paced fit snr.csv` see. Bins with a finite SNR, the end points
    included (problems at p_hat = 0 or 1 are part of the population a weighting pays for,
    and their near-zero SNR is what pushes alpha, beta above 0); mu by count; log-space fit
    weights snr^2 / se^2 (delta method) when every bin has a usable bootstrap se, else by
    count ("count": the curve then carries no se)."""
    from paced_theory.fit import SNRCurve

    usable = [b for b in bins if np.isfinite(b["snr"])]
    if not usable:
        return usable, None, None
    snr = np.array([max(b["snr"], 0.0) for b in usable])
    se = np.array([b["se"] for b in usable], dtype=float)
    se_ok = bool(np.all(np.isfinite(se)) and not np.any((se == 0) & (snr > 0)))
    curve = SNRCurve(np.array([b["p"] for b in usable]), snr,
                     np.array([b["n"] for b in usable], dtype=float), se if se_ok else None)
    return usable, curve, "snr^2/se^2" if se_ok else "count"


def write_csv(path: Path, bins: list[dict]) -> None:
    """snr.csv: probe_curve's bins (p, snr, count, and se when every bin has one: what
    `paced fit` reads), then the interval and the unbiased signal and noise (context)."""
    usable, curve, _ = probe_curve(bins)
    has_se = curve is not None and curve.se is not None
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["p", "snr", "count", *(["se"] if has_se else []), "lo", "hi", "signal",
                    "noise"])
        for b, snr in zip(usable, curve.snr if curve is not None else []):
            w.writerow([f"{b['p']:.6g}", f"{snr:.6g}", b["n"],
                        *([f"{b['se']:.6g}"] if has_se else []),
                        f"{b['lo']:.6g}", f"{b['hi']:.6g}", f"{b['signal']:.6g}",
                        f"{b['noise']:.6g}"])


def predicted_kernel(loss: str) -> tuple[str, float, float]:
    """The theory's prediction for this loss: M1 (on-policy reverse KL, tau2 = 0) implies
    p(1-p); M2 (teacher-forced forward KL, gamma = 1, noise floor > 0) implies p^2 (1-p)^2."""
    from paced_theory.models import m1, m2

    model = m1() if loss == "reverse" else m2()
    a, b = model.implied_beta()
    return model.name, a, b


def fit_and_plot(out_dir: Path, bins: list[dict], loss: str) -> dict:
    """Fit kernel families to the measured bins, score the theory's kernel on them (its
    achieved efficiency), draw snr.png; returns what probe.json stores under "fit"."""
    from paced_theory.fit import achieved_efficiency, fit_families
    from paced_theory.kernels import beta_kernel

    usable, curve, weights = probe_curve(bins)  # the curve `paced fit snr.csv` reads
    name, a_pred, b_pred = predicted_kernel(loss)
    fit = {"predicted": {"model": name, "alpha": a_pred, "beta": b_pred}}
    if curve is not None:
        fit["fit_weights"] = weights
    if curve is not None and curve.snr.any():
        fit["predicted"]["efficiency"] = achieved_efficiency(
            beta_kernel(curve.p, a_pred, b_pred), curve)
    if sum(b["snr"] > 0 and 0 < b["p"] < 1 for b in usable) >= 3:
        res = fit_families(curve, n_boot=200, seed=0,
                           families=("beta_eff", "beta_ls", "beta_linf", "hard", "uniform"))
        common = [n for n in next(iter(res.values())).notes
                  if all(n in r.notes for r in res.values())]  # about the curve, not a family
        fit["notes"] = common
        fit.update({k: {"params": r.params, "efficiency": r.efficiency,
                        "guaranteed_efficiency": r.guaranteed_efficiency,
                        "intervals": r.intervals,
                        "notes": [n for n in r.notes if n not in common]}
                    for k, r in res.items()})
    else:
        fit["note"] = "fewer than 3 interior bins with positive SNR: no fit"
    _plot(out_dir / "snr.png", bins, fit)
    return fit


def _plot(path: Path, bins: list[dict], fit: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.5))
    draw_snr(ax, bins, fit)
    ax.set(xlabel="pass rate p_hat (K rollouts)", ylabel="gradient SNR ||E g||^2 / tr Cov g",
           title="Cross-problem gradient SNR by pass rate")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


FIT_STYLES = (("beta_eff", "#CC79A7", "-"), ("beta_linf", "#0072B2", "-."),
              ("beta_ls", "#009E73", "--"))


def draw_snr(ax, bins: list[dict], fit: dict, families=FIT_STYLES) -> None:
    """The measured bins with their bootstrap intervals (none drawn where the bounds are
    missing: NaN, or null in a probe.json), the fitted Beta kernels of `families` ((key,
    color, line style)) and the theory's kernel, each scaled to the largest measured SNR.
    Used by snr.png and figure 5."""
    from paced_theory.kernels import beta_kernel

    def col(key):
        return np.array([np.nan if b[key] is None else b[key] for b in bins], dtype=float)

    p, s = col("p"), np.maximum(col("snr"), 0.0)
    lo, hi = np.maximum(col("lo"), 0.0), col("hi")
    yerr = [np.nan_to_num(np.maximum(s - lo, 0)), np.nan_to_num(np.maximum(hi - s, 0))]
    ax.errorbar(p, s, yerr=yerr, fmt="o", ms=3, color="k", capsize=2,
                label="measured, 95 % bootstrap")
    grid = np.linspace(0.0, 1.0, 401)
    finite = s[np.isfinite(s)]
    peak = finite.max() if finite.size and finite.max() > 0 else 1.0
    for key, color, ls in families:
        if key in fit:
            al, be = fit[key]["params"]["alpha"], fit[key]["params"]["beta"]
            w = beta_kernel(grid, al, be)
            ax.plot(grid, w / w.max() * peak, color=color, ls=ls,
                    label=f"{key} ({al:.2f}, {be:.2f}), eta {fit[key]['efficiency']:.2f}")
    pr = fit["predicted"]
    w = beta_kernel(grid, pr["alpha"], pr["beta"])
    eff = pr.get("efficiency")
    ax.plot(grid, w / w.max() * peak, ls=":", color="#D55E00",
            label=f"theory {pr['model']} ({pr['alpha']:g}, {pr['beta']:g})"
            + (f", eta {eff:.2f}" if eff is not None else ""))

