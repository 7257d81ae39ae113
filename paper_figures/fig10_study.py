"""Figure 10: where frontier weighting pays, from the recorded study (`paced study`).

(a) Phase diagram: AUC ratio to uniform (same seeds, equal compute; 95 % paired t-interval
    over seeds) against the pool's measured hopeless share, for forward and reverse KL, with
    the population simulator's prediction for the forward-KL pools (dashed; its forward
    gradient model, paced_theory.population.predict_phase, at the measured shares).
(b) Kernel map: AUC ratio to uniform over the Beta (a, b) grid on the demo pool, with the
    kernel fitted to the shipped student's measured SNR (the probe on the same cells) and
    the theory's forward-KL kernel (M2: (2, 2)) marked.

    python -m paper_figures.fig10_study [--study-dir DIR] [--probe-dir DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from paced_train.experiments.study import arm_table, plot_kernel_map, plot_phase, read_csv
from paper_figures import style
from paper_figures.runs import MissingData, main_or_skip

ROOT = Path(__file__).resolve().parents[1]
ROLLOUT_COST = 0.037


def simulator_prediction(table: list[dict], seeds: int = 3) -> list[dict]:
    """The simulator's AUC ratios at the forward pools' measured hopeless shares."""
    from paced_theory.population import phase_summary, predict_phase

    shares = sorted({round(t["hopeless_share"], 3) for t in table
                     if t["loss"] == "forward" and t["hopeless_share"] is not None})
    methods = {"paced": "beta", "hard": "hard", "floor": "beta+floor:1,1,0.05"}
    # rollouts charged like the neural runs': about 9 % of a weighted method's compute
    # (8 rollouts per drawn problem at cost c against an update cost of 3: 8c / (8c + 3))
    rows = predict_phase(shares, methods=tuple(methods.values()), seeds=seeds,
                         rollout_cost=ROLLOUT_COST)
    summary = phase_summary(rows)
    out = []
    for arm, name in methods.items():
        pts = sorted((r["hopeless_share"], r["ratio_mean"]) for r in summary
                     if r["method"] == name)
        out.append({"loss": "forward", "arm": arm, "x": [p[0] for p in pts],
                    "y": [p[1] for p in pts]})
    return out


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--study-dir", default=str(ROOT / "bench/results/study"))
    ap.add_argument("--probe-dir", default=str(ROOT / "bench/results/snr_shipped"))
    a = ap.parse_args(argv)
    path = Path(a.study_dir) / "study.csv"
    if not path.is_file():
        raise MissingData(f"{path} not found: run `paced study --out {a.study_dir}` (47 min on "
                          "2 cores)")
    rows = read_csv(path)
    table = arm_table(rows)
    out = style.OUT
    out.mkdir(parents=True, exist_ok=True)
    prediction = simulator_prediction(table)
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
