"""Calibrate the cell simulator on uniform runs, then predict every arm of any pool file
(`paced simulate --calibrate CURVES --pools FILE`; docs/theory.md §10; ours).

Inputs. CURVES: a CSV with one row per evaluation of a uniform run: pool, loss, seed, step,
flops, acc, mean_at_k, retention, acc_<cell>... (bench/calibration_runs.py writes it; only
uniform runs may be in it -- the calibration must not see a weighted arm). POOLS: a TOML file
whose top-level keys are pool names, each an array of `section.key=value` overrides in the
format of `paced study` (paced_train/experiments/study.py load_pools); the simulator reads
data.add_digits, data.add_counts, data.mul_digits, data.mul_counts from it (the cells and their
training problems) and ignores the rest.

Scenarios (the pass-rate schedule of the weighted arms; mechanism a):
  stale   the recorded study's: forward KL refreshes at 0, 53, 70, 85 and 97 % of the run
          (issue "A verdict that stands" measured them on the demo runs), reverse KL only at
          step 0; charged 0.09 (forward) and 0.02 (reverse, beyond uniform's own samples) of
          the compute, as measured in study.csv.
  fresh   K = 8 rollouts every 50 steps (age <= 50 steps), 0.10 of the compute.
  exact   the exact pass rate every 50 steps, 0.05 of the compute (a likelihood pass).
"""

from __future__ import annotations

import csv
import dataclasses
import re
import tomllib
from pathlib import Path

import numpy as np

from paced_theory.cellsim import Arm, Loop, Params, calibrate, simulate_pool
from paced_theory.errors import InputError

SCENARIOS = {
    "stale": {"forward": dict(refresh_fracs=(0.0, 0.53, 0.70, 0.85, 0.97), rollout_share=0.09),
              "reverse": dict(refresh_fracs=(0.0,), rollout_share=0.02)},
    "fresh": {"forward": dict(refresh_every=50, rollout_share=0.10),
              "reverse": dict(refresh_every=50, rollout_share=0.10)},
    "exact": {"forward": dict(refresh_every=50, rates="exact", rollout_share=0.05),
              "reverse": dict(refresh_every=50, rates="exact", rollout_share=0.05)},
}
KERNEL_GRID = [(a, b) for a in (0.5, 1.0, 2.0) for b in (0.5, 1.0, 2.0)]
FLOOR = 0.05
DEFAULT_LOOP = Loop()


def forward_arms(grid: bool) -> dict[str, Arm]:
    arms = {"uniform": Arm(), "hard": Arm("hard"), "paced": Arm("beta"),
            "floor": Arm("beta", floor=FLOOR), "posterior": Arm("beta", estimator="posterior")}
    if grid:
        for a, b in KERNEL_GRID:
            if (a, b) != (1.0, 1.0):
                arms[f"beta{a:g},{b:g}"] = Arm("beta", a, b)
    return arms


REVERSE_ARMS = {"uniform": Arm(), "paced": Arm("beta"), "hard": Arm("hard")}

_LIST = re.compile(r"^\s*\[([^\]]*)\]\s*$")


def _ints(path, pool, key, raw) -> list[int]:
    m = _LIST.match(raw)
    if m:
        try:
            return [int(x) for x in m.group(1).split(",") if x.strip()]
        except ValueError:
            pass
    raise InputError(f"{path}: pool '{pool}': '{key}' must be a list of integers like "
                     f"[2,3] (got {raw!r})")


def pool_counts(path, name: str, overrides: list[str]) -> dict[str, float]:
    """{cell: training problems} of a pool's override list (data.add_digits/add_counts,
    data.mul_digits/mul_counts)."""
    data = {}
    for o in overrides:
        key, eq, raw = o.partition("=")
        if key.strip().startswith("data."):
            data[key.strip()[5:]] = raw
    counts = {}
    for skill in ("add", "mul"):
        if f"{skill}_digits" not in data:
            continue
        digits = _ints(path, name, f"data.{skill}_digits", data[f"{skill}_digits"])
        if f"{skill}_counts" not in data:
            raise InputError(f"{path}: pool '{name}': give data.{skill}_counts (training "
                             f"problems per cell of data.{skill}_digits)")
        n = _ints(path, name, f"data.{skill}_counts", data[f"{skill}_counts"])
        if len(n) != len(digits):
            raise InputError(f"{path}: pool '{name}': data.{skill}_counts has {len(n)} entries "
                             f"for {len(digits)} digits")
        counts.update({f"{skill}{d}": float(c) for d, c in zip(digits, n)})
    if not counts:
        raise InputError(f"{path}: pool '{name}' names no cells (data.add_digits or "
                         "data.mul_digits)")
    return counts


def pool_overrides(path, error: type[Exception] = InputError) -> dict[str, list[str]]:
    """{pool: [section.key=value, ...]} from a pools TOML file: the one reader of the format,
    shared with `paced study --pools` (which also applies the overrides to a config). A
    missing or invalid file, an empty one, or a pool that is not an array of strings raises
    `error`, naming the file and the pool."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise error(f"{path}: cannot read the pools file ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path}: not valid TOML ({e})") from None
    if not data:
        raise error(f"{path}: defines no pool; write e.g. "
                    'frontier = ["data.add_digits=[2,3]", "data.add_counts=[300,300]"]')
    for name, over in data.items():
        if not (isinstance(over, list) and all(isinstance(o, str) for o in over)):
            raise error(f"{path}: pool '{name}' must be an array of 'section.key=value' "
                        f"strings (got {over!r})")
    return {name: list(over) for name, over in data.items()}


def read_pools(path) -> dict[str, dict[str, float]]:
    """{pool: {cell: count}} from a pools TOML file (module docstring)."""
    return {name: pool_counts(path, name, over)
            for name, over in pool_overrides(path).items()}


def _read_csv(path, need: set[str], what: str, hint: str = "") -> list[dict]:
    """The rows of a CSV file that must have the columns `need` (InputError naming the file
    otherwise)."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise InputError(f"{path}: cannot read the {what} ({e.strerror})") from None
    if not rows or need - set(rows[0]):
        missing = sorted(need - set(rows[0] if rows else {}))
        raise InputError(f"{path}: needs columns {sorted(need)}{hint} (missing {missing})")
    return rows


def read_curves(path) -> list[dict]:
    return _read_csv(path, {"pool", "loss", "seed", "step", "retention"}, "curves file",
                     " and acc_<cell>")


def calibration_runs(curves: list[dict], pools: dict[str, dict[str, float]]) -> list[dict]:
    """calibrate()'s input from the curve rows: per (pool, loss), the evaluations at compute
    fractions step / last step (uniform runs evaluate at every 10 % of their steps)."""
    groups: dict = {}
    for r in curves:
        groups.setdefault((r["pool"], r["loss"]), {}).setdefault(int(r["seed"]), []).append(r)
    runs = []
    for (pool, loss), seeds in groups.items():
        if pool not in pools:
            raise InputError(f"curves: pool '{pool}' is not in the pools file "
                             f"(it has {sorted(pools)})")
        counts = pools[pool]
        per = [sorted(rs, key=lambda r: int(r["step"])) for rs in seeds.values()]
        n_eval = min(len(rs) for rs in per)
        frac = [int(r["step"]) / int(per[0][-1]["step"]) for r in per[0][:n_eval]]
        acc = {c: [[float(rs[i][f"acc_{c}"]) for rs in per] for i in range(n_eval)]
               for c in counts}
        ret = [[float(rs[i]["retention"]) for rs in per] for i in range(n_eval)]
        mak = ([[float(rs[i]["mean_at_k"]) for rs in per] for i in range(n_eval)]
               if all(rs[i].get("mean_at_k") not in (None, "") for rs in per
                      for i in range(n_eval)) else None)
        runs.append({"pool": pool, "loss": loss, "counts": counts, "frac": frac, "acc": acc,
                     "retention": ret, "mean_at_k": mak, "seeds": len(per)})
    return runs


def read_initial(path) -> dict:
    """{cell: {"mean_p_hat", "share_0", "share_1", "K"}} from bench/initial_passrates.py's CSV."""
    need = {"cell", "K", "mean_p_hat", "share_0", "share_1"}
    rows = _read_csv(path, need, "initial pass rates")
    return {r["cell"]: {k: float(r[k]) for k in need - {"cell"}} for r in rows}


def fit(curves_path, pools_path, loop: Loop = DEFAULT_LOOP, initial_path=None,
        **kw) -> tuple[Params, dict]:
    pools = read_pools(pools_path)
    initial = read_initial(initial_path) if initial_path else None
    return calibrate(calibration_runs(read_curves(curves_path), pools), loop, initial=initial,
                     **kw)


def predict(params: Params, pools: dict[str, dict[str, float]], loop: Loop = DEFAULT_LOOP,
            scenarios=("stale", "fresh", "exact"), grid_pools=("demo",),
            reverse_pools=("frontier", "hopeless"), losses=("forward", "reverse")) -> list[dict]:
    """Per (pool, loss, arm, scenario): the simulator's AUC, final accuracy and ratios to the
    same pool's uniform run (uniform has no pass rates, so it is the same in every scenario).
    Forward KL: uniform, hard, paced, floor, posterior on every pool (the Beta grid on
    grid_pools); reverse KL: uniform, paced, hard on reverse_pools."""
    rows = []
    for pool, counts in pools.items():
        for loss in losses:
            if loss == "reverse" and pool not in reverse_pools:
                continue
            if loss == "reverse" and not all(c in params.kappa_rev for c in counts):
                continue
            arms = forward_arms(pool in grid_pools) if loss == "forward" else REVERSE_ARMS
            base = dataclasses.replace(loop, mode=loss)
            uni = simulate_pool(counts, params, Arm(), base)
            for name, arm in arms.items():
                for sc in scenarios:
                    cfg = dataclasses.replace(base, **SCENARIOS[sc][loss])
                    r = uni if name == "uniform" else simulate_pool(counts, params, arm, cfg)
                    rows.append({"pool": pool, "loss": loss, "arm": name, "scenario": sc,
                                 "auc": r["auc"], "final_acc": r["final_acc"],
                                 "auc_ratio": r["auc"] / uni["auc"],
                                 "final_diff": r["final_acc"] - uni["final_acc"],
                                 "steps": r["steps"]})
    return rows


def write_predictions(rows: list[dict], path, commit: str, calibration: str) -> None:
    """The predictions as CSV, each row stamped with the git commit they were made at and the
    calibration file they used."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["commit", "calibration", *rows[0]])
        w.writeheader()
        for r in rows:
            w.writerow({"commit": commit, "calibration": calibration,
                        **{k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()}})


def mean_curve(run: dict) -> dict:
    """Mean over seeds of a calibration run's per-cell accuracy (for plots and summaries)."""
    return {c: [float(np.mean(v)) for v in vals] for c, vals in run["acc"].items()}


def read_gradnorm_runs(path, pools: dict[str, dict[str, float]]) -> list[dict]:
    """calibrate_noise()'s input from bench/uniform_gradnorms.py's CSV (uniform runs only):
    calibration_runs() of its evaluation rows, each with "grad_norm": per 10 % window (the
    rows with frac > 0) every seed's mean pre-clip gradient norm."""
    rows = _read_csv(path, {"pool", "loss", "seed", "step", "frac", "grad_norm", "retention"},
                     "gradient-norm file")
    runs = calibration_runs(rows, pools)
    for r in runs:
        per: dict = {}
        for row in rows:
            if (row["pool"], row["loss"]) == (r["pool"], r["loss"]) and row["grad_norm"]:
                per.setdefault(int(row["seed"]), []).append(
                    (float(row["frac"]), float(row["grad_norm"])))
        seqs = [[g for _, g in sorted(v)] for v in per.values()]
        n = min(len(s) for s in seqs)
        r["grad_norm"] = [[s[k] for s in seqs] for k in range(n)]
    return runs
