"""Does a kernel fitted to a probe rank the study's kernel map? (docs/theory.md §10.7; ours)

The kernel map: `paced study` trains Beta kernels w = p^a (1-p)^b over (a, b) in
{0.5, 1, 2}^2 on one pool (study.csv rows of that pool and loss with arm "beta<a>,<b>", and
arm "paced" for (1, 1)), each seed paired with the same seed's uniform run; the measurement is
the per-seed AUC ratio to uniform (column auc_ratio), averaged over seeds.

A prediction: a target t(p) on pass-rate points p with masses mu (a fitted kernel k, or a
probe's measured curve itself). Kernel (a, b) is predicted to do as well as its efficiency
against the target,

    eta(w_ab) = (E_mu[w_ab t])^2 / (E_mu[w_ab^2] E_mu[t^2])          (efficiency.py, §2)

the allocation criterion on mu, i.e. the squared cosine between w_ab and t in L2(mu). With
the SNR as target and mu the pass-rate distribution, that is §2's allocation criterion; with
the value weight A/M as target and mu ∝ (pool count) M, that is §10.1's value criterion
(alignment.value_curve says why).

The score of a prediction: Spearman's rho between the nine predicted efficiencies and the
nine measured mean AUC ratios (ties get average ranks). Its interval: a percentile bootstrap
over seeds, paired: each replicate draws S seeds with replacement from the seeds every kernel
has, and every kernel's mean ratio is taken over the same drawn seeds (the arms of a seed
share its data and initial student). The prediction is held fixed (the probe's own noise is
not in the interval). With few seeds the percentile interval under-covers: with 3 seeds
there are only 10 distinct resamples (stats.py measures ~75 % coverage for a mean).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from paced_theory.efficiency import PassRateMeasure, efficiency
from paced_theory.errors import InputError
from paced_theory.kernels import beta_kernel
from paced_theory.stats import BOOT_MIN_SEEDS

__all__ = ["GRID", "read_kernel_map", "kernel_scores", "spearman", "rank_agreement",
           "compare_predictions", "probe_predictions", "kernel_map_ranking", "ranking_table"]

GRID = tuple((a, b) for a in (0.5, 1.0, 2.0) for b in (0.5, 1.0, 2.0))


def read_kernel_map(path, pool: str = "demo", loss: str = "forward",
                    kernels=GRID) -> tuple[list[int], np.ndarray]:
    """(seeds, ratios (len(kernels), S)): the per-seed auc_ratio of each Beta kernel of the
    study.csv at `path` on (pool, loss), over the seeds that every kernel has (sorted).
    Arm "paced" is kernel (1, 1); arm "beta<a>,<b>" is (a, b). InputError naming the file
    for a missing file or column, a kernel without rows, or no seed common to all."""
    path = Path(path)
    need = {"pool", "loss", "arm", "seed", "auc_ratio"}
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise InputError(f"{path}: cannot read the study CSV ({e.strerror}); give the "
                         "study.csv that `paced study` wrote") from None
    if not rows or need - set(rows[0]):
        raise InputError(f"{path}: a study.csv needs columns {sorted(need)} (missing "
                         f"{sorted(need - set(rows[0] if rows else {}))})")
    found: dict[tuple[float, float], dict[int, float]] = {}
    for line, r in enumerate(rows, 2):
        if r["pool"] != pool or r["loss"] != loss:
            continue
        arm = r["arm"]
        if arm == "paced":
            key = (1.0, 1.0)
        elif arm.startswith("beta"):
            try:
                key = tuple(float(x) for x in arm[4:].split(","))
            except ValueError:
                raise InputError(f"{path}: line {line}: arm {arm!r} is not beta<a>,<b>") from None
        else:
            continue
        try:
            found.setdefault(key, {})[int(r["seed"])] = float(r["auc_ratio"])
        except ValueError:
            raise InputError(f"{path}: line {line}: seed {r['seed']!r} or auc_ratio "
                             f"{r['auc_ratio']!r} is not a number") from None
    missing = [k for k in kernels if tuple(map(float, k)) not in found]
    if missing:
        raise InputError(f"{path}: no rows of pool {pool!r}, loss {loss!r} for kernel(s) "
                         f"{missing} (arms 'paced' for (1, 1), 'beta<a>,<b>' otherwise); "
                         f"found {sorted(found)}")
    per = [found[tuple(map(float, k))] for k in kernels]
    seeds = sorted(set.intersection(*(set(d) for d in per)))
    if not seeds:
        raise InputError(f"{path}: no seed is common to all {len(kernels)} kernels of pool "
                         f"{pool!r}, loss {loss!r}")
    ratios = np.array([[d[s] for s in seeds] for d in per], dtype=float)
    if not np.all(np.isfinite(ratios)):
        raise InputError(f"{path}: a kernel's auc_ratio is not finite on a common seed")
    return seeds, ratios


def kernel_scores(p, mass, target, kernels=GRID) -> np.ndarray:
    """The predicted score of each Beta kernel (a, b): its allocation efficiency against
    `target` on the points p with masses `mass` (module docstring)."""
    mu = PassRateMeasure(np.asarray(p, dtype=float), np.asarray(mass, dtype=float))
    t = np.asarray(target, dtype=float)
    return np.array([efficiency(beta_kernel(mu.p, a, b), mu, rho=t, criterion="allocation")
                     for a, b in kernels])


def spearman(x, y) -> np.ndarray | float:
    """Spearman's rho of x (n,) against each row of y (..., n): Pearson's correlation of the
    average ranks. NaN where either side is constant."""
    rx = rankdata(np.asarray(x, dtype=float))
    ry = rankdata(np.asarray(y, dtype=float), axis=-1)
    rx, ry = rx - rx.mean(), ry - ry.mean(axis=-1, keepdims=True)
    den = np.sqrt((rx * rx).sum() * (ry * ry).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(den > 0, (ry * rx).sum(axis=-1) / np.where(den > 0, den, 1.0), np.nan)
    return float(rho) if np.ndim(rho) == 0 else rho


def _boot_means(ratios: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, kernels): each kernel's mean ratio over the same resampled seeds."""
    S = ratios.shape[1]
    idx = np.random.default_rng(seed).integers(0, S, (n_boot, S))
    return ratios[:, idx].mean(axis=2).T


def rank_agreement(pred, ratios, n_boot: int = 10_000, seed: int = 0,
                   level: float = 0.95) -> dict:
    """{"rho", "lo", "hi", "n_boot", "n_seeds"}: Spearman's rho between the predicted scores
    pred (k,) and the seed-mean measured ratios (rows of ratios (k, S)), with its paired
    percentile bootstrap over seeds (module docstring; replicates whose rho is undefined are
    dropped; n_boot says how many were kept). Ours."""
    ratios = np.asarray(ratios, dtype=float)
    pred = np.asarray(pred, dtype=float)
    if ratios.ndim != 2 or pred.shape != (ratios.shape[0],):
        raise InputError(f"rank_agreement: pred (k,) and ratios (k, S); got {pred.shape}, "
                         f"{ratios.shape}")
    rho = spearman(pred, ratios.mean(axis=1))
    out = {"rho": rho, "lo": float("nan"), "hi": float("nan"), "n_boot": 0,
           "n_seeds": int(ratios.shape[1])}
    if n_boot > 0:
        reps = spearman(pred, _boot_means(ratios, n_boot, seed))
        reps = reps[np.isfinite(reps)]
        tail = 100 * (1 - level) / 2
        if reps.size:
            out["lo"], out["hi"] = (float(q) for q in np.percentile(reps, [tail, 100 - tail]))
        out["n_boot"] = int(reps.size)
    return out


def compare_predictions(predictions: dict[str, np.ndarray], ratios, n_boot: int = 10_000,
                        seed: int = 0, level: float = 0.95) -> dict:
    """rank_agreement for each named prediction (name -> scores (k,)), all on the SAME seed
    resamples, plus "differences": for each pair (x, y) of names, rho_x - rho_y and its
    paired percentile interval (the replicates of x and y share their resample). Ours."""
    ratios = np.asarray(ratios, dtype=float)
    res = {name: rank_agreement(s, ratios, n_boot, seed, level)
           for name, s in predictions.items()}
    diffs = {}
    if n_boot > 0:
        means = _boot_means(ratios, n_boot, seed)  # the same draws as rank_agreement's
        reps = {name: spearman(np.asarray(s, dtype=float), means)
                for name, s in predictions.items()}
        names = list(predictions)
        tail = 100 * (1 - level) / 2
        for i, x in enumerate(names):
            for y in names[i + 1:]:
                d = reps[x] - reps[y]
                d = d[np.isfinite(d)]
                lo, hi = (np.percentile(d, [tail, 100 - tail]) if d.size
                          else (np.nan, np.nan))
                diffs[f"{x} - {y}"] = {"diff": res[x]["rho"] - res[y]["rho"],
                                       "lo": float(lo), "hi": float(hi)}
    return {"predictions": res, "differences": diffs}


def probe_predictions(probe: dict, families=("beta_ls", "beta_eff")) -> dict:
    """The predictions a value probe's result (value.json, `paced value-probe`) makes, on its
    bins with the pool's pass-rate counts as mu ("bin_pool_counts"):
        "value <family>"  the kernel fitted to value; mu ∝ count * E|g|^2 (value criterion)
        "SNR <family>"    the kernel fitted to SNR; mu ∝ count (allocation criterion)
        "value curve", "SNR curve"   the measured curves themselves, on the same masses.
    Each entry: {"p", "mass", "target", "params" (None for a curve)}; a family without a fit
    is left out."""
    counts = np.asarray(probe["bin_pool_counts"], dtype=float)
    vb, sb = probe["value_bins"], probe["snr_bins"]
    p = np.array([b["p"] for b in vb], dtype=float)
    sq = np.array([b["sq"] for b in vb], dtype=float)
    weight = np.array([np.nan if b["weight"] is None else max(b["weight"], 0.0) for b in vb])
    snr = np.array([np.nan if b["snr"] is None else max(b["snr"], 0.0) for b in sb])
    masses = {"value": counts * sq, "SNR": counts}
    curves = {"value": weight, "SNR": snr}
    out = {}
    for fam in families:
        for name, key in (("value", "value"), ("SNR", "snr")):
            f = probe["fit"][key].get(fam)
            if f:
                a, b = f["params"]["alpha"], f["params"]["beta"]
                out[f"{name} {fam}"] = {"p": p, "mass": masses[name],
                                        "target": beta_kernel(p, a, b), "params": [a, b]}
    for name in ("value", "SNR"):
        out[f"{name} curve"] = {"p": p, "mass": masses[name], "target": curves[name],
                                "params": None}
    for v in out.values():  # bins where the curve is undefined carry no mass
        ok = np.isfinite(v["target"]) & np.isfinite(v["mass"])
        v.update(p=v["p"][ok], mass=v["mass"][ok], target=v["target"][ok])
    return out


def kernel_map_ranking(probe: dict, study_csv, pool: str = "demo", loss: str | None = None,
                       n_boot: int = 10_000, seed: int = 0, level: float = 0.95) -> dict:
    """Rank the kernel map of `study_csv` (pool, loss: the probe's loss by default) by each of
    the probe's predictions (probe_predictions) and score each by Spearman's rho with its
    paired seed-bootstrap interval, plus the paired differences (compare_predictions).
    Returns {"study", "pool", "loss", "seeds", "kernels", "measured" (mean ratio per kernel),
    "predictions": {name: {"params", "scores", "rho", "lo", "hi", ...}}, "differences"}."""
    loss = loss or probe["config"]["loss"]
    seeds, ratios = read_kernel_map(study_csv, pool, loss)
    preds = probe_predictions(probe)
    scores = {k: kernel_scores(v["p"], v["mass"], v["target"]) for k, v in preds.items()}
    cmp = compare_predictions(scores, ratios, n_boot, seed, level)
    return {"study": str(study_csv), "pool": pool, "loss": loss, "seeds": seeds,
            "kernels": [list(k) for k in GRID], "measured": ratios.mean(axis=1).tolist(),
            "predictions": {k: {"params": preds[k]["params"], "scores": scores[k].tolist(),
                                **cmp["predictions"][k]} for k in preds},
            "differences": cmp["differences"]}


def ranking_table(rank: dict) -> str:
    """The kernel map against each prediction, and Spearman's rho per prediction (text)."""
    names = list(rank["predictions"])
    lines = [f"kernel map of {rank['study']} (pool {rank['pool']}, {rank['loss']} KL, seeds "
             f"{rank['seeds']}): mean AUC ratio to uniform, and each prediction's score "
             "(efficiency against its target):",
             f"{'(a, b)':>10} {'measured':>9} " + " ".join(f"{n:>15}" for n in names)]
    for i, (a, b) in enumerate(rank["kernels"]):
        lines.append(f"{f'({a:g}, {b:g})':>10} {rank['measured'][i]:9.3f} " + " ".join(
            f"{rank['predictions'][n]['scores'][i]:15.3f}" for n in names))
    lines += ["", f"Spearman's rho, predicted against measured ranking, 95 % paired bootstrap "
              f"over the {len(rank['seeds'])} seeds:"]
    if len(rank["seeds"]) < BOOT_MIN_SEEDS:
        lines.append(f"  (fewer than {BOOT_MIN_SEEDS} seeds: S seeds give few distinct "
                     "resamples and the percentile interval under-covers (stats.py); read "
                     "the intervals as the spread of a few resamples, not as 95 %)")
    for n in names:
        r = rank["predictions"][n]
        prm = "" if r["params"] is None else f" ({r['params'][0]:.2f}, {r['params'][1]:.2f})"
        lines.append(f"  {n + prm:<30} rho {r['rho']:+.2f}  [{r['lo']:+.2f}, {r['hi']:+.2f}]")
    pairs = [k for k in rank["differences"]
             if k.startswith("value ") and k.split(" - ")[1].startswith("SNR ")
             and k.split(" - ")[0][6:] == k.split(" - ")[1][4:]]
    if pairs:
        lines += ["", "value - SNR (same family), paired over the same resamples:"]
        for k in pairs:
            d = rank["differences"][k]
            lines.append(f"  {k:<30} {d['diff']:+.2f}  [{d['lo']:+.2f}, {d['hi']:+.2f}]")
    return "\n".join(lines)
