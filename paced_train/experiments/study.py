"""`paced study`: where does frontier weighting pay? A grid of equal-compute comparisons.

Axes (each group of arms is a `paced compare` of its own: same seeds, the group's uniform run
sets the FLOPs budget, paired differences against it):
  pool       the training pool's composition, by cell mix (POOLS): from frontier-rich to
             heavy in problems the student cannot solve at the start. The shares of
             hopeless (p_hat = 0), frontier and solved (p_hat = 1) problems are MEASURED by
             the first pass-rate refresh of the weighted runs (K = 8) and reported per run.
  weighting  uniform; Paced p(1-p) on the base config's pass rates (the demo's: the exact
             probability P, fresh); the hard band (weights.lo < p < weights.hi); two-stage
             (forward then reverse KL, Paced weights); Beta kernels w = p^a (1-p)^b over a
             grid of (a, b) (KERNEL_GRID; (1, 1) is "paced"); and on K-quantised pass
             rates (c ~ Binomial(K, P), COUNTS): plain Paced ("paced-binomial"), Paced with
             a floor weight at c = 0 (weights.floor) and the posterior-mean estimator of
             p(1-p) (nonzero at c = 0 and K). CONTRASTS compares the last two with
             "paced-binomial": does a nonzero weight at c = 0 stop the collapse?
  loss       forward KL on teacher references; reverse KL on the student's own samples.
Every run is recorded; study.csv has one row per run (tidy), with the pool's measured
shares, the run's metrics (compare.seed_metrics) and its ratios to the same-seed uniform run.

Resumable: runs live in OUT/<pool>-<loss>/<arm>/seed<s>; a finished run of the same config is
reused and an interrupted one resumed (compare.train_or_reuse), so a killed study continues
where it stopped. Outputs (study_report): study.csv, table.md, phase.png (AUC ratio to
uniform against the measured hopeless share, 95 % paired t-intervals over seeds) and
kernel_map.png (compute to reach uniform's final accuracy over (a, b)).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paced_theory.errors import ConfigError
from paced_theory.jsonable import strict_json
from paced_theory.stats import paired, t_interval
from paced_train.config import RunConfig, apply_overrides
from paced_train.experiments.compare import Group, run_groups, seed_metrics

# Cell mixes of add2 (solved at the start), add3 (~45 % of its problems at p_hat = 0),
# mul2 (mostly frontier), add4 and mul3 (hopeless); training problems per cell.
POOLS: dict[str, list[str]] = {
    "frontier": ["data.add_digits=[2,3]", "data.add_counts=[300,300]", "data.mul_digits=[2]",
                 "data.mul_counts=[1200]"],
    "demo": ["data.add_digits=[2,3]", "data.add_counts=[300,1200]", "data.mul_digits=[2]",
             "data.mul_counts=[600]"],
    "hopeless": ["data.add_digits=[2,3,4]", "data.add_counts=[300,1200,900]",
                 "data.mul_digits=[2]", "data.mul_counts=[600]"],
    "hopeless+": ["data.add_digits=[2,3,4]", "data.add_counts=[300,1200,1200]",
                  "data.mul_digits=[2,3]", "data.mul_counts=[600,1200]"],
}


def load_pools(path: Path | str) -> dict[str, list[str]]:
    """Pool definitions from a TOML file: top-level keys are pool names, each an array of
    `section.key=value` override strings (like POOLS), e.g.
        frontier = ["data.add_digits=[2,3]", "data.add_counts=[300,300]"]
    A missing or unreadable file, a non-list value or an override that does not parse raises
    ConfigError naming the file and the pool (key)."""
    from paced_theory.predict import pool_overrides

    pools = pool_overrides(path, ConfigError)
    base = RunConfig()
    for name, over in pools.items():
        try:
            apply_overrides(base, over, source=str(path))
        except ConfigError as e:
            raise ConfigError(f"{path}: pool '{name}': {e}") from None
    return pools


KERNEL_GRID = [(a, b) for a in (0.5, 1.0, 2.0) for b in (0.5, 1.0, 2.0)]
FLOOR = 0.05  # weight of a p_hat = 0 problem in the "floor" arm (Paced's peak weight is 0.25)
FORWARD = "loss.schedule=forward"
REVERSE = "loss.schedule=reverse"


def beta_arm(a: float, b: float) -> str:
    return f"beta{a:g},{b:g}"


# K-quantised pass rates: c ~ Binomial(K, P) drawn fresh from the exact P (the law of K fresh
# rollouts) where the base config reads P from the likelihood; the floor and the posterior
# estimator act on counts, so they need it (with exact P they would do nothing: config.py
# refuses that). Under a rollouts source the override changes nothing (counts already).
COUNTS = "rollouts.likelihood=binomial"


def forward_arms(kernels: list[tuple[float, float]]) -> dict[str, list[str]]:
    arms = {"uniform": ["weights.method=uniform", FORWARD],
            "paced": ["weights.method=paced", FORWARD],
            "hard": ["weights.method=hard", FORWARD],
            "two-stage": ["weights.method=paced", "loss.schedule=two-stage"],
            "paced-binomial": ["weights.method=paced", COUNTS, FORWARD],
            "floor": ["weights.method=paced", f"weights.floor={FLOOR}", COUNTS, FORWARD],
            "posterior": ["weights.method=paced", "weights.estimator=posterior", COUNTS,
                          FORWARD]}
    for a, b in kernels:
        if (a, b) != (1.0, 1.0):  # (1, 1) is "paced"
            arms[beta_arm(a, b)] = ["weights.method=paced", f"weights.alpha={a}",
                                    f"weights.beta={b}", FORWARD]
    return arms


REVERSE_ARMS = {"uniform": ["weights.method=uniform", REVERSE],
                "paced": ["weights.method=paced", REVERSE],
                "hard": ["weights.method=hard", REVERSE]}


@dataclass(frozen=True)
class StudySize:
    pools: tuple[str, ...]
    seeds: int
    kernel_pool: str           # the pool that gets the whole (a, b) grid
    reverse_pools: tuple[str, ...]
    kernels: tuple[tuple[float, float], ...] = tuple(KERNEL_GRID)
    overrides: tuple[str, ...] = ()
    kernel_seeds: int | None = None  # the Beta grid on the first n seeds only (None: all)


SIZES = {
    # 420 runs at 10 seeds (bench/results/study/README.md has the time)
    "default": StudySize(tuple(POOLS), 10, "demo", ("frontier", "hopeless")),
    # seconds with tiny models: the test suite's
    "quick": StudySize(("frontier", "hopeless"), 1, "frontier", ("frontier",),
                       ((1.0, 1.0), (0.5, 2.0)),
                       ("budget.steps=4", "eval.every_frac=0.5", "data.n_eval_per_cell=2",
                        "data.n_retention=4", "rollouts.K=4", "rollouts.settled_K=2",
                        "rollouts.refresh_every=2", "data.add_counts=[]", "data.mul_counts=[]",
                        "data.n_train_per_cell=6", "eval.mean_at_k=1")),
}


def with_pools(size: StudySize, pools: dict[str, list[str]]) -> StudySize:
    """The size applied to another set of pools (a --pools file): every pool of the file gets
    the forward arms; the Beta grid goes to the size's kernel pool if the file has it (else to
    the file's first pool); reverse KL to those of the size's reverse pools that the file has."""
    names = tuple(pools)
    kernel = size.kernel_pool if size.kernel_pool in pools else names[0]
    return dataclasses.replace(size, pools=names, kernel_pool=kernel,
                               reverse_pools=tuple(p for p in size.reverse_pools if p in pools))


def study_groups(cfg: RunConfig, out: Path, size: StudySize,
                 pools: dict[str, list[str]] | None = None) -> list[Group]:
    """The groups of arms (one equal-compute comparison each) of a study of this size, over
    POOLS or, given, another set of pools (load_pools; the size is adapted by with_pools)."""
    if pools is not None:
        size = with_pools(size, pools)
    pools = POOLS if pools is None else pools
    unknown = [p for p in (*size.pools, size.kernel_pool, *size.reverse_pools) if p not in pools]
    if unknown:
        raise ConfigError(f"study: unknown pool(s) {unknown}; known: {', '.join(pools)}")
    groups = []
    for pool in size.pools:
        kernels = list(size.kernels) if pool == size.kernel_pool else [(1.0, 1.0)]
        # size overrides last: a quick study may shrink the pool's counts
        over = pools[pool] + list(size.overrides)
        arms = forward_arms(kernels)
        # the Beta grid runs after the primary arms (run_groups' `late`)
        groups.append(Group(out / f"{pool}-forward", apply_overrides(cfg, over), arms,
                            late=tuple(a for a in arms if a.startswith("beta")),
                            late_seeds=size.kernel_seeds))
    for pool in size.reverse_pools:
        groups.append(Group(out / f"{pool}-reverse",
                            apply_overrides(cfg, pools[pool] + list(size.overrides)),
                            dict(REVERSE_ARMS)))
    return groups


def arm_params(cfg: RunConfig) -> dict:
    w = cfg.weights
    return {"weighting": w.method, "alpha": w.alpha, "beta": w.beta, "estimator": w.estimator,
            "floor": w.floor, "schedule": cfg.loss.schedule,
            "pass_rates": cfg.rollouts.source if cfg.rollouts.source == "rollouts" else
            f"likelihood-{cfg.rollouts.likelihood}"}


def tidy_rows(group: Group, runs: dict[str, list[dict]]) -> list[dict]:
    """One row per run of a group: pool, arm, seed, measured shares, metrics, ratios. An arm
    run on the first n seeds only (Group.late_seeds) is measured against those n baseline
    runs."""
    base = next(iter(runs))
    seeds = len(runs[base])
    full = {a: rs for a, rs in runs.items() if all(r is not None for r in rs)}
    per = seed_metrics(full)
    for arm, rs in runs.items():
        if arm not in full:
            n = next(i for i, r in enumerate(rs) if r is None)
            per[arm] = seed_metrics({base: runs[base][:n], arm: rs[:n]})[arm] if n else {}
    shares = []
    for s in range(seeds):  # the pool at the start, from any weighted run of this seed
        found = [rs[s].get("pass_rate_shares_start") for rs in runs.values() if rs[s]]
        shares.append(next((x for x in found if x), None) or {})
    pool, loss = group.out_dir.name.rsplit("-", 1)
    rows = []
    for arm, rs in runs.items():
        cfg = apply_overrides(group.cfg, group.arms[arm])
        for s in range(seeds):
            if rs[s] is None:  # a late arm's seeds beyond Group.late_seeds
                continue
            m, u = per[arm], per[base]
            rows.append({
                "pool": pool, "loss": loss, "arm": arm, **arm_params(cfg), "seed": s,
                "hopeless_share": shares[s].get("zero"),
                "frontier_share": shares[s].get("frontier"),
                "solved_share": shares[s].get("one"),
                "start_acc": m["start_acc"][s], "final_acc": m["final_acc"][s],
                "auc": m["auc"][s], "auc_train": m["auc_train"][s],
                "final_diff": m["final_acc"][s] - u["final_acc"][s],
                "auc_ratio": m["auc"][s] / u["auc"][s] if u["auc"][s] else None,
                "compute_ratio_to_uniform": m["compute_ratio_to_uniform"][s],
                "forgetting": m["forgetting"][s],
                "rollout_flops_share": m["rollout_flops_share"][s],
                "small_step_share": m["small_step_share"][s],
                "hopeless_share_end": (rs[s].get("pass_rate_shares_end") or {}).get("zero"),
                "steps": m["steps"][s], "flops": rs[s]["flops"], "wall_s": rs[s]["wall_s"],
                "run_dir": rs[s]["run_dir"]})
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def read_csv(path: Path) -> list[dict]:
    """study.csv back as dicts with numbers parsed (empty cells: None)."""
    def parse(v: str):
        if v == "":
            return None
        try:
            return float(v)
        except ValueError:
            return v

    with open(path, newline="") as f:
        return [{k: parse(v) for k, v in r.items()} for r in csv.DictReader(f)]


def run_study(cfg: RunConfig, out: Path | str, size: str = "default", jobs: int = 2,
              seeds: int | None = None, overwrite: bool = False,
              pools: dict[str, list[str]] | None = None,
              kernel_seeds: int | None = None) -> dict:
    """Run (or continue) a study; writes OUT/study.csv and the report; returns its summary.
    pools: pool definitions (load_pools) instead of POOLS; kernel_seeds: the Beta grid on the
    first n seeds only (it runs after every other arm)."""
    if size not in SIZES:
        raise ConfigError(f"study: unknown size {size!r}; choose from {', '.join(SIZES)}")
    out = Path(out)
    spec = SIZES[size]
    n_seeds = seeds or spec.seeds
    if n_seeds < 1:
        raise ConfigError(f"--seeds must be >= 1 (got {n_seeds})")
    if kernel_seeds is not None:
        if kernel_seeds < 1:
            raise ConfigError(f"--kernel-seeds must be >= 1 (got {kernel_seeds})")
        spec = dataclasses.replace(spec, kernel_seeds=min(kernel_seeds, n_seeds))
    t0 = time.time()
    groups = study_groups(cfg, out, spec, pools=pools)
    runs = run_groups(groups, n_seeds, jobs, overwrite)
    rows = [r for g, rs in zip(groups, runs) for r in tidy_rows(g, rs)]
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "study.csv")
    kernel_pool = spec.kernel_pool if pools is None else with_pools(spec, pools).kernel_pool
    summary = study_report(rows, out, kernel_pool=kernel_pool)
    summary.update(size=size, seeds=n_seeds, kernel_seeds=spec.kernel_seeds, jobs=jobs,
                   wall_s=round(time.time() - t0, 1), runs=len(rows))
    (out / "study.json").write_text(json.dumps(strict_json(summary), indent=2,
                                                allow_nan=False))
    return summary


# ----------------------------------------------------------------------------- report
def _by(rows, **match):
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def arm_table(rows: list[dict]) -> list[dict]:
    """Per (pool, loss, arm): seeds, mean hopeless share, and the paired comparisons with the
    group's uniform arm (AUC ratio, final-accuracy difference: paced_theory.stats.paired;
    compute ratio: its t-interval over the seeds that reached uniform's final accuracy)."""
    out = []
    for pool, loss, arm in dict.fromkeys((r["pool"], r["loss"], r["arm"]) for r in rows):
        rs = sorted(_by(rows, pool=pool, loss=loss, arm=arm), key=lambda r: r["seed"])
        seeds = {r["seed"] for r in rs}  # an arm run on fewer seeds: paired on those
        us = sorted([u for u in _by(rows, pool=pool, loss=loss, arm="uniform")
                     if u["seed"] in seeds], key=lambda r: r["seed"])
        auc = paired([r["auc"] for r in rs], [u["auc"] for u in us], kind="ratio")
        final = paired([r["final_acc"] for r in rs], [u["final_acc"] for u in us])
        comp = t_interval([r["compute_ratio_to_uniform"] for r in rs])
        h = [r["hopeless_share"] for r in rs if r["hopeless_share"] is not None]
        out.append({"pool": pool, "loss": loss, "arm": arm, "n": len(rs),
                    "hopeless_share": float(np.mean(h)) if h else None,
                    "final_acc": float(np.mean([r["final_acc"] for r in rs])),
                    "auc": float(np.mean([r["auc"] for r in rs])),
                    "auc_ratio": auc, "final_diff": final,
                    "compute_ratio": comp,
                    "reached": sum(r["compute_ratio_to_uniform"] is not None for r in rs),
                    "rollout_flops_share": float(np.mean([r["rollout_flops_share"] or 0
                                                          for r in rs]))})
    return out


# (arm, against): paired comparisons beside those with uniform, within each pool and loss
CONTRASTS = [("floor", "paced-binomial"), ("posterior", "paced-binomial"),
             ("paced", "paced-binomial")]


def contrast_table(rows: list[dict]) -> list[dict]:
    """Per pool and loss, each CONTRASTS pair both arms of which ran: final-accuracy
    difference and AUC ratio, paired by seed (paced_theory.stats.paired)."""
    out = []
    for pool, loss in dict.fromkeys((r["pool"], r["loss"]) for r in rows):
        for arm, base in CONTRASTS:
            a = sorted(_by(rows, pool=pool, loss=loss, arm=arm), key=lambda r: r["seed"])
            b = sorted(_by(rows, pool=pool, loss=loss, arm=base), key=lambda r: r["seed"])
            if not a or len(a) != len(b):
                continue
            out.append({"pool": pool, "loss": loss, "arm": arm, "against": base, "n": len(a),
                        "final_diff": paired([r["final_acc"] for r in a],
                                             [r["final_acc"] for r in b]),
                        "auc_ratio": paired([r["auc"] for r in a], [r["auc"] for r in b],
                                            kind="ratio")})
    return out


def contrast_markdown(table: list[dict]) -> str:
    from paced_train.experiments.report import ci

    lines = ["| pool | loss | arm | against | Δ final acc | AUC ratio |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {t['pool']} | {t['loss']} | {t['arm']} | {t['against']} | "
              f"{ci(t['final_diff'])} | {ci(t['auc_ratio'], '{:.3f}')} |" for t in table]
    return "\n".join(lines)


def table_markdown(table: list[dict]) -> str:
    from paced_train.experiments.report import ci

    lines = ["| pool | loss | arm | hopeless share | final acc | Δ final vs uniform | AUC | "
             "AUC ratio to uniform | compute to uniform's final (× uniform) | estimation "
             "FLOPs share |", "|---|---|---|---|---|---|---|---|---|---|"]
    for t in table:
        c = t["compute_ratio"]
        comp = (f"not reached (0/{t['n']})" if not t["reached"] else
                f"{c[0]:.2f} ({t['reached']}/{t['n']})" if t["reached"] == 1 else
                f"{c[0]:.2f} [{c[1]:.2f}, {c[2]:.2f}] ({t['reached']}/{t['n']})")
        h = "–" if t["hopeless_share"] is None else f"{t['hopeless_share']:.2f}"
        lines.append(f"| {t['pool']} | {t['loss']} | {t['arm']} | {h} | {t['final_acc']:.3f} | "
                     f"{ci(t['final_diff'])} | {t['auc']:.3f} | "
                     f"{ci(t['auc_ratio'], '{:.3f}')} | {comp} | {t['rollout_flops_share']:.2f} |")
    return "\n".join(lines)


def study_report(rows: list[dict], out: Path, kernel_pool: str | None = None) -> dict:
    """table.md, phase.png, kernel_map.png from the tidy rows; returns the table."""
    table, contrasts = arm_table(rows), contrast_table(rows)
    text = table_markdown(table) + "\n"
    if contrasts:
        text += "\nOther paired comparisons (CONTRASTS):\n\n" + contrast_markdown(contrasts) + "\n"
    (out / "table.md").write_text(text)
    plot_phase(table, out / "phase.png")
    if kernel_pool:
        plot_kernel_map(table, kernel_pool, out / "kernel_map.png")
    return {"table": table, "contrasts": contrasts}


def plot_phase(table: list[dict], path: Path, prediction: list[dict] | None = None) -> None:
    """AUC ratio (method / uniform, same seeds) against the measured hopeless share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from paced_train.experiments.report import PALETTE

    losses = sorted({t["loss"] for t in table})
    fig, axes = plt.subplots(1, len(losses), figsize=(5.2 * len(losses), 5.0), squeeze=False)
    colors = {**PALETTE, "floor": "#56B4E9", "posterior": "#CC79A7",
              "paced-binomial": "#882255"}
    for ax, loss in zip(axes[0], losses):
        for arm in ("paced", "hard", "two-stage", "paced-binomial", "floor", "posterior"):
            ts = sorted([t for t in table if t["loss"] == loss and t["arm"] == arm
                         and t["hopeless_share"] is not None
                         and t["auc_ratio"]["mean"] is not None],
                        key=lambda t: t["hopeless_share"])
            if not ts:
                continue
            x = [t["hopeless_share"] for t in ts]
            y = [t["auc_ratio"]["mean"] for t in ts]
            # no interval (one seed): no error bar
            err = [[t["auc_ratio"]["mean"] - (t["auc_ratio"]["lo"] or t["auc_ratio"]["mean"])
                    for t in ts],
                   [(t["auc_ratio"]["hi"] or t["auc_ratio"]["mean"]) - t["auc_ratio"]["mean"]
                    for t in ts]]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=arm,
                        color=colors.get(arm, "#999999"))
        for p in prediction or []:
            if p["loss"] == loss:
                ax.plot(p["x"], p["y"], ls=p.get("ls", "--"), marker=p.get("marker"),
                        color=colors.get(p["arm"], "#999999"),
                        label=p.get("label", f"{p['arm']} (simulator)"))
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set(xlabel="hopeless share of the pool at the start (p_hat = 0, K = 8)",
               ylabel="AUC ratio to uniform (same seeds)", title=f"{loss} KL")
        ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    fig.suptitle("Where weighting pays: above 1, the method beats uniform at equal compute")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def kernel_cells(table: list[dict], pool: str) -> dict[tuple[float, float], dict]:
    """{(a, b): table row} of the forward Beta arms of one pool ((1, 1) is "paced")."""
    out = {}
    for t in table:
        if t["pool"] != pool or t["loss"] != "forward":
            continue
        if t["arm"] == "paced":
            out[(1.0, 1.0)] = t
        elif t["arm"].startswith("beta"):
            a, b = (float(x) for x in t["arm"][4:].split(","))
            out[(a, b)] = t
    return out


def plot_kernel_map(table: list[dict], pool: str, path: Path,
                    marks: dict[str, tuple[float, float]] | None = None) -> None:
    """AUC ratio to uniform over the (a, b) grid of one pool, with kernels of interest
    marked (the probe's fit, the theory's), where given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = kernel_cells(table, pool)
    if not cells:
        return
    alphas = sorted({a for a, _ in cells})
    betas = sorted({b for _, b in cells})
    grid = np.full((len(betas), len(alphas)), np.nan)
    for (a, b), t in cells.items():
        mean = t["auc_ratio"]["mean"]
        grid[betas.index(b), alphas.index(a)] = np.nan if mean is None else mean
    fig, ax = plt.subplots(figsize=(4.8, 4.3))
    finite = grid[np.isfinite(grid)]
    lo, hi = (min(0.8, finite.min()), max(1.2, finite.max())) if finite.size else (0.8, 1.2)
    im = ax.imshow(grid, origin="lower", cmap="RdBu", vmin=lo, vmax=hi)
    for (a, b), t in cells.items():
        r = t["auc_ratio"]
        band = "" if r["lo"] is None else f"\n[{r['lo']:.2f}, {r['hi']:.2f}]"
        label = "–" if r["mean"] is None else f"{r['mean']:.3f}{band}"
        ax.text(alphas.index(a), betas.index(b) - 0.22, label, ha="center", va="center",
                fontsize=7)
    for (label, (a, b)), marker in zip((marks or {}).items(), "*Dos^"):
        x = np.interp(np.log(a), np.log(alphas), np.arange(len(alphas)))
        y = np.interp(np.log(max(b, 1e-3)), np.log(betas), np.arange(len(betas)))
        ax.plot(x, y, marker=marker, ms=8, mfc="none", mec="k", ls="none", label=label)
    if marks:
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=2)
    ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
    ax.set_yticks(range(len(betas)), [f"{b:g}" for b in betas])
    ax.set(xlabel="alpha (weight on the pass rate p)", ylabel="beta (weight on 1 - p)",
           title=f"AUC ratio to uniform, w = p^a (1-p)^b ({pool} pool)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
