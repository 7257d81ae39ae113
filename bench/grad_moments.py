"""One problem's distillation-gradient second moment against its pass rate, for the shipped
student at the start (no training, no arm): the input of the cell simulator's mechanism (e)
(paced_theory.cellsim.batch_grad_norm; ours).

Runs `paced snr-probe` (paced_train/experiments/snr_probe.py: per-problem gradients of the
loss w.r.t. every student parameter, CountSketch to 1024, binned by p_hat = c/8) on the
hopeless pool (add2, add3, add4, mul2: every calibrated reverse-KL cell), for reverse KL on one
student sample and for forward KL on the teacher's reference, and writes per bin the signal
||E g||^2, the noise tr Cov g and their sum E||g||^2 = the second moment v(p).

    PYTHONPATH=$PWD python bench/grad_moments.py    # ~30 s on one core
Writes bench/results/calibration/grad_moments.csv.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

from paced_train.config import load_config
from paced_train.experiments.snr_probe import run_probe

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench/results/calibration/grad_moments.csv"
POOL = ["data.add_digits=[2,3,4]", "data.add_counts=[300,1200,900]", "data.mul_digits=[2]",
        "data.mul_counts=[600]"]


def main() -> None:
    rows = []
    for loss in ("reverse", "forward"):
        cfg = load_config(str(ROOT / "paced_train/configs/demo.toml"), POOL + [
            f"probe.loss={loss}", "probe.n_problems=800", "probe.max_per_bin=40",
            "probe.n_boot=50", "rollouts.K=8", "run.seed=0"])
        with tempfile.TemporaryDirectory() as d:
            res = run_probe(cfg, Path(d), progress=False)
        for b in res["bins"]:
            rows.append({"loss": loss, "p": b["p"], "n": b["n"], "signal": b["signal"],
                         "noise": b["noise"], "second_moment": b["signal"] + b["noise"]})
    with open(OUT, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    print(f"wrote {OUT}")
    for r in rows:
        print(r["loss"], r["p"], r["n"], round(r["second_moment"], 1))


if __name__ == "__main__":
    main()
