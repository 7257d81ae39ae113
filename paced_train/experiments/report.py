"""Markdown tables and figures of a `paced compare` result (comparison.json): means over seeds,
paired against uniform with 95 % t-intervals, seeds won and sign-flip p-values
(paced_theory.stats)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from paced_theory.stats import t_interval
from paced_train.loop.ledger import eval_curve

# Okabe-Ito, colour-blind safe
PALETTE = {"uniform": "#000000", "hard": "#E69F00", "paced": "#0072B2", "akl": "#009E73",
           "two-stage": "#D55E00", "reverse": "#CC79A7", "uniform-reverse": "#56B4E9"}
AXES = {"flops": "total FLOPs (estimation incl.)",
        "train_flops": "training FLOPs (estimation excl.)"}


def pm(x, fmt: str = "{:.3f}") -> str:
    """'mean ± sd' of a [mean, sd] pair ('–' for None)."""
    return "–" if x is None else f"{fmt.format(x[0])} ± {fmt.format(x[1])}"


def ci(p: dict | None, fmt: str = "{:+.3f}") -> str:
    """A paced_theory.stats.paired result as text: '+0.031 [-0.010, +0.072] 7/10, p 0.09 n.s.'
    (mean [95 % t-interval] seeds won / seeds, sign-flip p-value, 'n.s.' when not
    significant). One seed has no interval; equal values on every seed say so instead of
    printing a point interval."""
    if p is None or p["n"] == 0:
        return "–"
    tag = " n.s." if p["verdict"] == "not significant" else ""
    mean = fmt.format(p["mean"])
    if p["n"] == 1:
        return f"{mean} (1 seed: no interval)"
    won = f"{p['wins']}/{p['n']}"
    if not p.get("spread", True):
        return f"{mean} on all {p['n']} seeds (no spread), {won}, p {p['p']:.3f}{tag}"
    return (f"{mean} [{fmt.format(p['lo'])}, {fmt.format(p['hi'])}] {won}, "
            f"p {p['p']:.3f}{tag}")


def _ages(r: dict) -> str:
    """'max / mean' pass-rate ages of a method (mean over seeds); '–' where it reads none."""
    top, mean = r.get("pass_rate_age_max"), r.get("pass_rate_age")
    return "–" if top is None or mean is None else f"{top[0]:.0f} / {mean[0]:.1f}"


def comparison_markdown(result: dict) -> str:
    seeds = result["seeds"]
    gain = result["uniform_gain"]
    lines = [
        f"Starting student: held-out accuracy {pm(result['start_acc'])}. Uniform distillation "
        f"changes it by {ci(gain)} (mean over {seeds} seeds [95 % paired t-interval], "
        "seeds won, sign-flip p-value).",
        "",
        "| method | final acc | Δ final vs uniform | AUC (total FLOPs) | Δ AUC vs uniform | "
        "AUC (training FLOPs) | Δ AUC train vs uniform | compute to uniform's final acc "
        "(× uniform) |",
        "|---|---|---|---|---|---|---|---|"]
    for m, r in result["methods"].items():
        vs = r.get("vs_uniform", {})
        reach = (f"{pm(r['compute_ratio_mean'], '{:.2f}')} ({r['reached_uniform_final']}/"
                 f"{seeds} seeds)" if r["reached_uniform_final"] else f"not reached (0/{seeds})")
        lines.append(f"| {m} | {pm(r['final_acc'])} | {ci(vs.get('final_acc'))} | "
                     f"{pm(r['auc'])} | {ci(vs.get('auc'))} | {pm(r['auc_train'])} | "
                     f"{ci(vs.get('auc_train'))} | {reach} |")
    lines += ["", "| method | forgetting (retention start − end) | forgetting reduction vs "
              "uniform | estimation share of FLOPs | estimation share of train time | "
              "pass-rate age max / mean (steps) | steps | FLOPs used (× uniform) | wall s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for m, r in result["methods"].items():
        vs = r.get("vs_uniform", {})
        lines.append(f"| {m} | {pm(r['forgetting'])} | {ci(vs.get('forgetting_reduction'))} | "
                     f"{pm(r['rollout_flops_share'], '{:.2f}')} | "
                     f"{pm(r['rollout_share'], '{:.2f}')} | {_ages(r)} | "
                     f"{pm(r['steps'], '{:.0f}')} | "
                     f"{pm(r['flops_ratio_to_uniform'], '{:.3f}')} | "
                     f"{pm(r['wall_s'], '{:.0f}')} |")
    budgets = ", ".join(f"{f:.3g}" for f in result["budget_flops"])
    lines += ["", f"Equal compute per seed: {budgets} FLOPs (the uniform run's). Values are "
              f"mean ± sd over {seeds} seeds; Δ columns are paired same-seed differences "
              "against uniform: mean [95 % paired t-interval over seeds], seeds won / seeds, "
              "two-sided sign-flip permutation p-value; n.s. (not significant) where the "
              "interval contains 0 (or, with the same value on every seed, where p ≥ 0.05). "
              "A verdict wants ≥ 10 seeds: with 5 the smallest possible p is 0.0625. AUC "
              "is the mean held-out accuracy over the compute axis (total FLOPs: [0, "
              "budget]; training FLOPs: [0, the seed's smallest training total]). "
              "Forgetting reduction > 0: the method forgets less than uniform. Estimation: "
              "pass-rate refresh rollouts and likelihood passes (reverse KL's on-policy "
              "samples are training), and a value criterion's scoring and reference (lp, "
              "rholoss, maxloss: ledger value_flops). Pass-rate age: optimizer updates "
              "since the pass rates a step read were measured, the run's oldest (max) and its "
              "steps' candidates' mean, mean over seeds."]
    return "\n".join(lines)


def banded_curves(result: dict, axis: str = "flops", points: int = 60,
                  evals: dict | None = None):
    """{method: (x, mean, lo, hi)}: held-out accuracy against compute as a fraction of each
    seed's budget, on a common grid, with the mean over seeds and its 95 % t-band.
    evals: {method: [eval rows per seed]} (a comparison's curves.csv, compare.read_curves);
    without it, the runs' metrics.jsonl files."""
    budgets = result["budget_flops"]
    out = {}
    for m, r in result["methods"].items():
        curves = [eval_curve(run, axis) for run in (evals[m] if evals else r["runs"])]
        ends = [x[-1] / b for (x, _), b in zip(curves, budgets)]
        grid = np.linspace(0.0, min(min(ends), 1.0), points)
        ys = np.array([np.interp(grid, x / b, y) for (x, y), b in zip(curves, budgets)])
        band = np.array([t_interval(ys[:, j]) for j in range(points)])
        out[m] = (grid, band[:, 0], band[:, 1], band[:, 2])
    return out


def plot_curves(ax, result: dict, axis: str, evals: dict | None = None) -> list[dict]:
    """Draw banded_curves on ax; returns the plotted rows (for a CSV)."""
    rows = []
    for m, (x, mean, lo, hi) in banded_curves(result, axis, evals=evals).items():
        ax.plot(x, mean, color=PALETTE.get(m), label=m, lw=1.4)
        ax.fill_between(x, lo, hi, color=PALETTE.get(m), alpha=0.15, lw=0)
        rows += [{"method": m, "axis": axis, "compute_frac": float(a), "acc_mean": float(b),
                  "acc_lo": float(c), "acc_hi": float(d)}
                 for a, b, c, d in zip(x, mean, lo, hi)]
    ax.set(xlabel=f"{AXES[axis]}, × uniform's budget", ylabel="held-out accuracy (greedy)")
    return rows


def plot_forgetting(ax, result: dict) -> list[dict]:
    """Forgetting per method: mean over seeds with its 95 % t-interval."""
    names = list(result["methods"])
    stats = [t_interval(result["methods"][m]["per_seed"]["forgetting"]) for m in names]
    mean = np.array([s[0] for s in stats])
    err = np.array([[s[0] - s[1] for s in stats], [s[2] - s[0] for s in stats]])
    ax.bar(names, mean, yerr=err, capsize=3, color=[PALETTE.get(m, "#999999") for m in names])
    ax.axhline(0, color="k", lw=0.6)
    ax.set(ylabel="forgetting (retention start − end)")
    return [{"method": m, "forgetting_mean": s[0], "forgetting_lo": s[1], "forgetting_hi": s[2]}
            for m, s in zip(names, stats)]


def plot_comparison(result: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, axis in zip(axes, AXES):
        plot_curves(ax, result, axis)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Accuracy against compute: mean and 95 % band over {result['seeds']} seeds")
    fig.tight_layout()
    fig.savefig(Path(out_dir) / "accuracy_vs_compute.png", dpi=130)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    plot_forgetting(ax, result)
    ax.set_title("Forgetting on the retention set (95 % interval)")
    fig.tight_layout()
    fig.savefig(Path(out_dir) / "forgetting.png", dpi=130)
    plt.close(fig)
