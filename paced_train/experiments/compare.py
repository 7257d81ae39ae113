"""`paced compare`: methods side by side on paired seeds, at equal compute, with intervals.

Equal compute: unless the config sets budget.flops, each seed's uniform run is trained for
budget.steps steps first, and every method of that seed then gets exactly the FLOPs the
uniform run used (budget.steps is raised so that the compute cap is what stops a run, the
two-stage switch and a cosine lr schedule are placed in compute). Methods that drop
problems therefore take more, cheaper steps; methods that pay for rollouts take fewer.

Per method and seed it measures, from the run's metrics.jsonl:
  final_acc    held-out greedy accuracy at the end
  auc          normalised area under accuracy against TOTAL FLOPs (rollouts included) over
               [0, the seed's budget]: the mean accuracy over the run, so a method that gets
               there sooner scores higher even when all end at the same place
  auc_train    the same against TRAINING FLOPs (teacher + student, rollouts excluded: what the
               weighting alone buys) over [0, the smallest training-FLOPs total of the seed]
  compute_to_uniform_final   FLOPs to first reach the same seed's uniform final accuracy
  forgetting   retention accuracy at the start minus at the end
  pass_rate_age_max, pass_rate_age   the oldest pass rate any step's sampler read, and the
               mean age of the steps' candidates' pass rates, in optimizer updates
               (metrics.jsonl's step rows; None for uniform weighting, which reads none)
and compares each method with uniform on the same seeds: the per-seed difference with a 95 %
paired t-interval, the seeds won and a sign-flip p-value (paced_theory.stats.paired), saying
"not significant" when the interval contains 0. compute_to_uniform_final is None where a
run never reaches the target, and for every method of a seed whose uniform run ends at or
below its own start (the target is met at step 0, which says nothing).

Runs are independent given their seed's budget, so `jobs` > 1 trains them in that many
processes (the uniform runs first). A run directory already holding a finished run of the
same config is reused and an interrupted one is resumed, so a killed comparison continues.
"""

from __future__ import annotations

import csv
import heapq
import json
import sys
import time
import tomllib
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from paced_theory.errors import ConfigError, InputError
from paced_theory.jsonable import strict_json
from paced_theory.stats import curve_auc, mean_sd, paired
from paced_train.config import METHOD_OVERRIDES, RunConfig, apply_overrides, from_dict
from paced_train.experiments.report import comparison_markdown, plot_comparison
from paced_train.loop.ledger import eval_curve, read_metrics
from paced_train.loop.trainer import train
from paced_train.rundir import existing_run

STEP_HEADROOM = 20
CURVES = "curves.csv"  # every run's evaluation rows, beside comparison.json (committable)
CURVE_FIELDS = ("method", "seed", "step", "flops", "rollout_flops", "acc", "mean_at_k",
                "retention", "forgetting")


def compute_to_reach(flops: np.ndarray, acc: np.ndarray, target: float) -> float | None:
    """FLOPs at which the accuracy curve first reaches target, linearly interpolated between
    evaluations; None if it never does."""
    for i in range(len(acc)):
        if acc[i] >= target:
            if i == 0:
                return float(flops[0])
            f0, f1, a0, a1 = flops[i - 1], flops[i], acc[i - 1], acc[i]
            return float(f0 + (target - a0) / (a1 - a0) * (f1 - f0)) if a1 > a0 else float(f1)
    return None


# --------------------------------------------------------------------------- running
@dataclass
class Group:
    """Arms compared on the same seeds at equal compute: arms maps a name to its config
    overrides, and the FIRST arm is the baseline whose run of budget.steps sets each seed's
    FLOPs budget (unless cfg.budget.flops is set). Runs go to out_dir/<arm>/seed<s>.
    `late` arms start only when no other run of any group is waiting (run_groups), and run
    on the first `late_seeds` seeds only if that is set (their lists hold None after it)."""

    out_dir: Path
    cfg: RunConfig
    arms: dict[str, list[str]]
    late: tuple[str, ...] = ()
    late_seeds: int | None = None


def run_config(cfg: RunConfig, overrides: list[str], name: str, seed: int,
               budget: float) -> RunConfig:
    """The config of one run: the arm's overrides, the seed, and (budget > 0) the FLOPs cap
    with the two-stage switch and the lr schedule placed in compute."""
    over = list(overrides) + [f"run.seed={cfg.run.seed + seed}", f'run.name="{name}"']
    if budget > 0:
        over += [f"budget.flops={budget}", "loss.switch_unit=compute",
                 f"budget.steps={cfg.budget.steps * STEP_HEADROOM}"]
    return apply_overrides(cfg, over)


def same_config(saved: Path, cfg: RunConfig) -> bool:
    """Whether the run config saved at `saved` equals cfg: compared as configs, not as text,
    so a run recorded before a key existed (its behaviour is the key's default) is still the
    same run. A file that does not parse as a config (a key since removed) differs."""
    try:
        return from_dict(tomllib.loads(saved.read_text()), str(saved)) == cfg
    except (ConfigError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False


def train_or_reuse(cfg: RunConfig, run_dir: Path, overwrite: bool = False) -> dict:
    """Train cfg into run_dir; reuse a finished run of the same config there, resume an
    interrupted one. A directory holding a run of another config is refused unless
    `overwrite` (then it is replaced: rundir.remove_run deletes only the run's own files).
    A directory paced did not mark as a run is never deleted (train refuses it)."""
    run_dir = Path(run_dir)
    saved = run_dir / "config.toml"
    if saved.is_file() and not saved.is_symlink():
        if not same_config(saved, cfg):
            if not overwrite:
                raise ConfigError(f"{run_dir}: holds a run of a different config; choose "
                                  "another --out, delete it, or pass --overwrite")
            return train(cfg, run_dir, overwrite=True)
        if (run_dir / "summary.json").exists():
            return json.loads((run_dir / "summary.json").read_text())
        if (run_dir / "checkpoints").exists():
            return train(cfg, run_dir, resume=True)
        return train(cfg, run_dir, overwrite=True)  # killed before its first checkpoint
    # a leftover of a killed start (a marked directory) is replaced, anything else refused
    return train(cfg, run_dir, overwrite=run_dir.is_dir() and bool(existing_run(run_dir)))


def _worker(cfg: RunConfig, run_dir: str, overwrite: bool) -> dict:
    """One run in a pool process (spawned: a fresh interpreter, torch threads from
    run.threads)."""
    return train_or_reuse(cfg, Path(run_dir), overwrite)


def run_groups(groups: list[Group], seeds: int, jobs: int = 1, overwrite: bool = False,
               progress: bool = True) -> list[dict[str, list[dict]]]:
    """Every arm of every group on seeds 0..seeds-1: per group {arm: [summary per seed]}.
    Baselines run first; an arm of a seed starts when its baseline has set the budget. With
    jobs > 1 the runs share that many spawned processes and start seed-major (every group's
    seed 0, then seed 1, ...), each group's `late` arms after every other run."""
    runs = [{a: [None] * seeds for a in g.arms} for g in groups]
    total, done_n, t0 = sum(len(g.arms) for g in groups) * seeds, 0, time.time()

    def record(gi: int, arm: str, s: int, summary: dict) -> None:
        nonlocal done_n
        summary["run_dir"] = str(groups[gi].out_dir / arm / f"seed{s}")
        runs[gi][arm][s] = summary
        done_n += 1
        if progress:
            print(f"[{done_n}/{total}] {groups[gi].out_dir.name}/{arm} seed {s}: acc "
                  f"{summary['acc']:.3f}, {summary['steps']} steps, {summary['wall_s']:.0f} s "
                  f"(elapsed {time.time() - t0:.0f} s)", file=sys.stderr, flush=True)

    def job(gi: int, arm: str, s: int) -> tuple:
        g = groups[gi]
        base = next(iter(g.arms))
        budget = g.cfg.budget.flops if g.cfg.budget.flops > 0 or arm == base \
            else runs[gi][base][s]["flops"]
        cfg = apply_overrides(g.cfg, ["run.progress=false"]) if jobs > 1 else g.cfg
        return (run_config(cfg, g.arms[arm], arm, s, budget),
                str(g.out_dir / arm / f"seed{s}"), overwrite)

    if progress:
        print(f"{total} runs ({len(groups)} group(s) x arms x {seeds} seeds), {jobs} at a "
              "time; a line per finished run", file=sys.stderr, flush=True)
    if jobs <= 1:
        for gi, g in enumerate(groups):
            for s in range(seeds):
                for arm in g.arms:
                    if arm in g.late and g.late_seeds is not None and s >= g.late_seeds:
                        continue
                    record(gi, arm, s, _worker(*job(gi, arm, s)))
        return runs
    # a ready queue, `jobs` runs in flight: seed-major (seed s of every group before seed
    # s + 1 of any), every `late` arm after all the others, so a long grid stopped part-way
    # has the same seeds in every cell of its primary arms
    ready: list[tuple[int, int, int, int, str]] = []  # (late, seed, order, group, arm)
    order = iter(range(10**9))
    for s in range(seeds):
        for gi, g in enumerate(groups):
            heapq.heappush(ready, (0, s, next(order), gi, next(iter(g.arms))))
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        pending = {}
        while ready or pending:
            while ready and len(pending) < jobs:
                _, s, _, gi, arm = heapq.heappop(ready)
                pending[pool.submit(_worker, *job(gi, arm, s))] = (gi, arm, s)
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                gi, arm, s = pending.pop(fut)
                record(gi, arm, s, fut.result())
                g = groups[gi]
                if arm == next(iter(g.arms)):
                    for other in list(g.arms)[1:]:
                        late = other in g.late
                        if late and g.late_seeds is not None and s >= g.late_seeds:
                            continue
                        heapq.heappush(ready, (int(late), s, next(order), gi, other))
    return runs


# ---------------------------------------------------------------------------- summary
SMALL_STEP = 1 / 8  # a step that keeps at most this share of its candidates is "small"


def step_stats(run_dir) -> tuple[float | None, float | None, float | None]:
    """From a run's step rows: the max of pass_rate_age_max and the mean of pass_rate_age
    (None where no step read a pass rate: uniform, or runs that predate the columns), and
    the share of steps that kept at most SMALL_STEP of their candidates (None: no step). A
    weighted method's small steps put the whole step on few problems under normalise =
    "sum" (study PLAN.md addendum 1)."""
    rows = read_metrics(run_dir, "step")
    top = [r["pass_rate_age_max"] for r in rows if r.get("pass_rate_age_max") is not None]
    mean = [r["pass_rate_age"] for r in rows if r.get("pass_rate_age") is not None]
    cand = [(r["n_kept"], r["n_kept"] + r.get("n_dropped", 0)) for r in rows if "n_kept" in r]
    small = (float(np.mean([k <= SMALL_STEP * c for k, c in cand])) if cand else None)
    return (float(max(top)) if top else None, float(np.mean(mean)) if mean else None, small)


def seed_metrics(runs: dict[str, list[dict]]) -> dict[str, dict[str, list]]:
    """{method: {metric: [value per seed]}} (module docstring), paired by seed index."""
    base = next(iter(runs))  # the baseline (uniform): its runs set budgets and targets
    seeds = len(runs[base])
    budget = [r["flops"] for r in runs[base]]
    target = [r["acc"] for r in runs[base]]
    curves = {m: [eval_curve(r["run_dir"]) for r in rs] for m, rs in runs.items()}
    train_curves = {m: [eval_curve(r["run_dir"], "train_flops") for r in rs]
                    for m, rs in runs.items()}
    train_end = [min(train_curves[m][s][0][-1] for m in runs) for s in range(seeds)]
    out = {}
    for m, rs in runs.items():
        # a target met at the start (uniform ended at or below where it began) measures nothing
        reach = [None if curves[m][s][1][0] >= target[s] else
                 compute_to_reach(*curves[m][s], target[s]) for s in range(seeds)]
        stats = [step_stats(r["run_dir"]) for r in rs]
        out[m] = {
            "start_acc": [float(curves[m][s][1][0]) for s in range(seeds)],
            "final_acc": [r["acc"] for r in rs],
            "auc": [curve_auc(*curves[m][s], budget[s]) for s in range(seeds)],
            "auc_train": [curve_auc(*train_curves[m][s], train_end[s]) for s in range(seeds)],
            "compute_to_uniform_final": reach,
            "compute_ratio_to_uniform": [None if c is None else c / b
                                         for c, b in zip(reach, budget)],
            "forgetting": [r["forgetting"] for r in rs],
            "retention": [r["retention"] for r in rs],
            "mean_at_k": [r["mean_at_k"] for r in rs],
            "rollout_flops_share": [r.get("rollout_flops_share", 0.0) for r in rs],
            "rollout_share": [r["rollout_share"] for r in rs],
            "steps": [r["steps"] for r in rs],
            "pass_rate_age_max": [a[0] for a in stats],
            "pass_rate_age": [a[1] for a in stats],
            "small_step_share": [a[2] for a in stats],
            "flops_ratio_to_uniform": [r["flops"] / b for r, b in zip(rs, budget)],
        }
    return out


def summarise(runs: dict[str, list[dict]], seeds: int) -> dict:
    """comparison.json: per method the mean ± sd of every metric, the per-seed values, and the
    paired comparison with uniform (paced_theory.stats.paired: t-interval, seeds won, p)."""
    per = seed_metrics(runs)
    base = next(iter(runs))
    u = per[base]
    result = {"seeds": seeds, "baseline": base,
              "budget_flops": [r["flops"] for r in runs[base]],
              "start_acc": mean_sd(u["start_acc"]),
              "uniform_gain": paired(u["final_acc"], u["start_acc"]),
              "methods": {}}
    for m, rs in runs.items():
        v = per[m]
        ratios = [x for x in v["compute_ratio_to_uniform"] if x is not None]
        entry = {k: mean_sd(v[k]) for k in ("final_acc", "auc", "auc_train", "forgetting",
                                             "retention", "mean_at_k", "rollout_flops_share",
                                             "rollout_share", "steps",
                                             "flops_ratio_to_uniform")}
        entry.update({k: (mean_sd(v[k]) if all(x is not None for x in v[k]) else None)
                      for k in ("pass_rate_age_max", "pass_rate_age")})
        entry.update({
            "acc_by_difficulty": {k: mean_sd([r["acc_by_difficulty"][k] for r in rs])
                                  for k in rs[0]["acc_by_difficulty"]},
            "flops": mean_sd([r["flops"] for r in rs]),
            "wall_s": mean_sd([r["wall_s"] for r in rs]),
            "compute_to_uniform_final": v["compute_to_uniform_final"],
            "compute_ratio_to_uniform": v["compute_ratio_to_uniform"],
            "compute_ratio_mean": mean_sd(ratios),
            "reached_uniform_final": len(ratios),
            "per_seed": v,
            "runs": [r["run_dir"] for r in rs],
        })
        if m != base:
            entry["vs_uniform"] = {
                "final_acc": paired(v["final_acc"], u["final_acc"]),
                "auc": paired(v["auc"], u["auc"]),
                "auc_train": paired(v["auc_train"], u["auc_train"]),
                # forgetting: lower is better, so uniform - method (> 0: forgets less)
                "forgetting_reduction": paired(u["forgetting"], v["forgetting"]),
            }
        result["methods"][m] = entry
    return result


def write_curves(runs: dict[str, list[dict]], path: Path) -> None:
    """CURVES: one row per evaluation of every run (method, seed, step, FLOPs, rollout FLOPs,
    held-out accuracy overall and per cell as acc:<cell>, mean@k, retention, forgetting), so
    that the figures of a comparison need only files small enough to commit (the run
    directories are not). Floats are written in full (repr), so read_curves gives back the
    values of metrics.jsonl exactly."""
    rows = []
    for m, rs in runs.items():
        for s, r in enumerate(rs):
            for e in read_metrics(r["run_dir"], "eval"):
                rows.append({**{k: e.get(k) for k in CURVE_FIELDS[2:]}, "method": m, "seed": s,
                             **{f"acc:{c}": v for c, v in e["acc_by_difficulty"].items()}})
    cells = sorted({k for r in rows for k in r if k.startswith("acc:")})
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*CURVE_FIELDS, *cells], restval="")
        w.writeheader()
        w.writerows({k: ("" if v is None else repr(v) if isinstance(v, float) else v)
                     for k, v in r.items()} for r in rows)


def read_curves(path: Path | str) -> dict[str, list[list[dict]]]:
    """{method: [eval rows of seed 0, 1, ...]} from a CURVES file (write_curves), each row
    shaped like a metrics.jsonl eval row (acc_by_difficulty a dict of the acc:<cell>
    columns), so eval_curve and the figures read it as they read a run. InputError naming
    the file when it is not such a file."""
    path = Path(path)
    out: dict[str, dict[int, list[dict]]] = {}
    try:
        with open(path, newline="") as f:
            for line, r in enumerate(csv.DictReader(f), start=2):
                try:
                    row = {k: int(r[k]) if k == "step" else (float(r[k]) if r[k] else None)
                           for k in CURVE_FIELDS[2:]}
                    row["acc_by_difficulty"] = {k[4:]: float(v) for k, v in r.items()
                                                if k.startswith("acc:") and v}
                    row["kind"] = "eval"
                    out.setdefault(r["method"], {}).setdefault(int(r["seed"]), []).append(row)
                except (KeyError, TypeError, ValueError) as exc:
                    raise InputError(f"{path}:{line}: not a curves row ({exc})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return {m: [seeds[s] for s in sorted(seeds)] for m, seeds in out.items()}


def compare(cfg: RunConfig, methods: list[str], seeds: int, out_dir, jobs: int = 1,
            overwrite: bool = False, progress: bool = True) -> dict:
    """Run and summarise (module docstring); writes comparison.json, comparison.md, CURVES
    (every run's evaluation rows) and the figures into out_dir and returns the comparison."""
    out_dir = Path(out_dir)
    known = METHOD_OVERRIDES
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; choose from {', '.join(known)}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1 (got {seeds})")
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1 (got {jobs})")
    # the baseline (first): uniform, or the first method named (e.g. uniform-reverse)
    base = "uniform" if "uniform" in methods else methods[0]
    order = [base] + [m for m in methods if m != base]
    group = Group(out_dir, cfg, {m: METHOD_OVERRIDES[m] for m in order})
    runs = run_groups([group], seeds, jobs, overwrite, progress)[0]
    result = summarise(runs, seeds)
    # runs that trained nothing or stopped early (trainer: summary["stopped"]); the CLI exits 2
    # when one trained nothing
    result["stopped"] = [{"method": m, "seed": s, "run": r["run_dir"], "why": r["stopped"],
                          "trained_nothing": bool(r.get("trained_nothing", True))}
                         for m, rs in runs.items() for s, r in enumerate(rs)
                         if r.get("stopped")]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "comparison.json").write_text(json.dumps(strict_json(result), indent=2))
    (out_dir / "comparison.md").write_text(comparison_markdown(result))
    write_curves(runs, out_dir / CURVES)
    plot_comparison(result, out_dir)
    return result
