"""How good is rholoss's reference student on the demo pool (loop/value.py)?

For each (weights.ref_frac, weights.ref_steps[, optim.lr]) it builds the demo run's setup,
trains the reference exactly as a rholoss run does at its first step, and prints the mean
forward KL to the teacher (the per-sequence loss the criterion uses) of the initial student
and of the reference, on the reference's own split and on the training pool, by cell, and
the value FLOPs charged so far. RHO-LOSS needs a reference that generalises from its split:
lower on the pool than the initial student. Asserts nothing; one seed, seconds a setting;
bench/results/rholoss_reference.md holds a run of it.

    python bench/rholoss_reference.py [--seed 0] [--settings 0.1:10 0.1:30 0.1:100 0.2:30:1e-3]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import paced_train.loop.value as value
from paced_train.config import load_config
from paced_train.experiments.demo import demo_config_path
from paced_train.loop.distill import teacher_references
from paced_train.loop.trainer import setup


def by_cell(problems, losses: np.ndarray) -> str:
    cells = np.array([f"{p.skill}{p.difficulty}" for p in problems])
    return " ".join(f"{c} {losses[cells == c].mean():.3f}" for c in sorted(set(cells)))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--settings", nargs="+", default=["0.1:10", "0.1:30", "0.1:100", "0.2:30"],
                    help="REF_FRAC:REF_STEPS[:LR] (LR: optim.lr of the reference)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    captured = {}
    real = value.train_reference

    def keep(run, st):
        captured["ref"] = real(run, st)
        return captured["ref"]

    value.train_reference = keep
    print("| ref_frac | ref_steps | lr | model | split (mean) | pool (mean) | pool by cell | "
          "value FLOPs |\n|---|---|---|---|---|---|---|---|")
    for item in args.settings:
        frac, steps, *lr = item.split(":")
        over = ["weights.method=rholoss", f"weights.ref_frac={frac}",
                f"weights.ref_steps={steps}", f"run.seed={args.seed}"]
        over += [f"optim.lr={lr[0]}"] if lr else []
        run, st = setup(load_config(demo_config_path(), over))
        st.step = 1
        value.pick(run, st)  # the first step's preparation: reference, IL, cache
        spent = st.ledger.value_flops
        split = run.value["reference_split"]
        run.value["teacher"] = None  # the split is not in the cache: teacher forwards
        for name, model in (("initial student", run.student), ("reference", captured["ref"])):
            on_split = value.current_losses(run, st, model, split,
                                            teacher_references(run, st, split))
            pool = value.current_losses(run, st, model, run.train_set,
                                        teacher_references(run, st, run.train_set))
            print(f"| {frac} | {steps} | {run.cfg.optim.lr:g} | {name} | "
                  f"{on_split.mean():.3f} | {pool.mean():.3f} | {by_cell(run.train_set, pool)} "
                  f"| {spent:.3g} |", flush=True)


if __name__ == "__main__":
    main()
