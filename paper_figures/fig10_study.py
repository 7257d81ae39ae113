"""Figure 10: where frontier weighting pays, from the recorded study (`paced study`).

(a) Phase diagram: AUC ratio to uniform (same seeds, equal compute; 95 % paired t-interval
    over seeds) against the pool's measured hopeless share, for forward and reverse KL, with
    the calibrated cell simulator's committed predictions (paced_theory/cellsim.py, fitted to
    the uniform runs only; bench/results/calibration/predictions.csv, committed before the
    study's runs), dotted.
(b) Kernel map: AUC ratio to uniform over the Beta (a, b) grid on the demo pool, with the
    kernel fitted to the shipped student's measured SNR (the probe on the same cells) and
    the theory's forward-KL kernel (M2: (2, 2)) marked.

    python -m paper_figures.fig10_study [--study-dir DIR] [--probe-dir DIR] [--predictions CSV]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from paced_train.experiments.study import arm_table, plot_kernel_map, plot_phase, read_csv
from paper_figures import style
from paper_figures.runs import MissingData, main_or_skip

ROOT = Path(__file__).resolve().parents[1]


# measured arm -> (the simulator's arm, scenario) its committed prediction is read from
# (bench/results/study/PLAN.md): exact-P arms against `exact`, count arms against `fresh`
PREDICTED = {"paced": ("paced", "exact"), "hard": ("hard", "exact"),
             "paced-binomial": ("paced", "fresh"), "floor": ("floor", "fresh"),
             "posterior": ("posterior", "fresh")}


def simulator_prediction(table: list[dict], path: Path) -> list[dict]:
    """The calibrated cell simulator's committed predictions (bench/results/calibration/
    predictions.csv, written before the reruns), at each pool's measured hopeless share,
    dotted, for the arms the study measured (PREDICTED says which prediction each reads)."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    share = {(t["pool"], t["loss"]): t["hopeless_share"] for t in table
             if t["arm"] == "uniform" and t["hopeless_share"] is not None}
    measured = {(t["loss"], t["arm"]) for t in table}
    out = []
    for loss in ("forward", "reverse"):
        for arm, (sim_arm, sc) in PREDICTED.items():
            if (loss, arm) not in measured:
                continue
            pts = sorted((share[(r["pool"], loss)], float(r["auc_ratio"])) for r in rows
                         if r["loss"] == loss and r["arm"] == sim_arm and r["scenario"] == sc
                         and (r["pool"], loss) in share)
            if pts:
                out.append({"loss": loss, "arm": arm, "x": [p[0] for p in pts],
                            "y": [p[1] for p in pts], "ls": ":", "marker": "x",
                            "label": f"{arm} (simulator, {sc} pass rates)"})
    return out


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--study-dir", default=str(ROOT / "bench/results/study"))
    ap.add_argument("--probe-dir", default=str(ROOT / "bench/results/snr_shipped"))
    ap.add_argument("--predictions", default=str(ROOT / "bench/results/calibration/"
                                                  "predictions.csv"))
    a = ap.parse_args(argv)
    path = Path(a.study_dir) / "study.csv"
    if not path.is_file():
        raise MissingData(f"{path} not found: run `paced study --out {a.study_dir}` (~2 h on "
                          "2 cores)")
    rows = read_csv(path)
    table = arm_table(rows)
    out = style.OUT
    out.mkdir(parents=True, exist_ok=True)
    prediction = simulator_prediction(table, Path(a.predictions))
    plot_phase(table, out / "fig10a_phase.png", prediction)
    marks = {"theory M2 (2, 2)": (2.0, 2.0)}
    probe = Path(a.probe_dir) / "probe.json"
    if probe.exists():
        fit = json.loads(probe.read_text())["fit"]["beta_ls"]["params"]
        # the map's axes span 0.5..2: a fit outside is drawn at the edge, labelled with its value
        marks[f"probe fit ({fit['alpha']:.2f}, {fit['beta']:.2f})"] = (
            float(np.clip(fit["alpha"], 0.5, 2.0)), float(np.clip(fit["beta"], 0.5, 2.0)))
    pools = [t["pool"] for t in table if t["arm"].startswith("beta")]
    if pools:
        plot_kernel_map(table, pools[0], out / "fig10b_kernel_map.png", marks)
    style.write_text(out / "fig10_prediction.json", json.dumps(prediction, indent=1))
    return out / "fig10a_phase.png"


if __name__ == "__main__":
    main_or_skip("fig10_study", main)
