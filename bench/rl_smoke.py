"""Does uniform RL (loss.schedule = "rl") learn on the demo pool at all? A smoke check, one
seed, not a comparison (issue 18 asks for the 10-seed one).

Part 1, runs: the demo config with loss.schedule=rl, weights.method=uniform, budget.steps
(150) and seed 0, at each learning rate; per run the held-out greedy accuracy at the start
and the end (and its best), mean@4, the training reward (the fraction of the step's K
samples the verifier accepted, temperature 1) over the first and the last 15 steps,
retention, and seconds per step (the whole run's wall time, evaluations included, / steps).

Part 2, the gradient on a fixed batch: 64 training problems whose exact pass probability P
(likelihood of the canonical answer) lies in (0.2, 0.8), trained alone with rl_step for 30
steps at a constant lr (no warmup); their mean P and that of 300 other training problems,
before and after. It separates "the policy gradient is wrong" (P of the batch does not rise
at any lr) from "the run's learning rate is wrong for RL".

Asserts nothing; prints markdown and writes it to --md. A run directory that already holds
a finished run of the same config is reused.

    python bench/rl_smoke.py [--out runs/rl_smoke] [--lrs 3e-3,1e-3,1e-2,3e-4] [--steps 150]
        [--md bench/results/rl_smoke.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from paced_train.config import config_to_toml, load_config
from paced_train.experiments.demo import demo_config_path
from paced_train.loop import trainer
from paced_train.loop.ledger import read_metrics
from paced_train.loop.likelihood import likelihoods

ROOT = Path(__file__).resolve().parent


def run_lr(out: Path, lr: str, steps: int, seed: int) -> dict:
    cfg = load_config(demo_config_path(), [
        "loss.schedule=rl", "weights.method=uniform", f"budget.steps={steps}", "run.threads=1",
        "run.progress=false", f"optim.lr={lr}", f"run.seed={seed}"])
    d = out / f"lr{lr}"
    done = (d / "summary.json").is_file() and (d / "config.toml").is_file() and \
        (d / "config.toml").read_text() == config_to_toml(cfg)
    if not done:
        trainer.train(cfg, d, overwrite=True)
    summary = json.loads((d / "summary.json").read_text())
    ev, st = read_metrics(d, "eval"), read_metrics(d, "step")
    reward = [r["reward"] for r in st if r.get("reward") is not None]
    return {"lr": lr, "acc0": ev[0]["acc"], "acc": ev[-1]["acc"],
            "best": max(r["acc"] for r in ev), "mk0": ev[0]["mean_at_k"],
            "mk": ev[-1]["mean_at_k"], "r0": statistics.mean(reward[:15]),
            "r1": statistics.mean(reward[-15:]), "ret0": ev[0]["retention"],
            "ret": ev[-1]["retention"], "s_step": summary["wall_s"] / summary["steps"],
            "steps": summary["steps"]}


def fixed_batch(lr: float, steps: int = 30, seed: int = 0) -> list[tuple]:
    cfg = load_config(demo_config_path(), [
        "loss.schedule=rl", "weights.method=uniform", f"optim.lr={lr}", "run.threads=1",
        "optim.warmup_steps=0", "optim.schedule=constant", f"run.seed={seed}"])
    run, st = trainer.setup(cfg)
    P, _ = likelihoods(run, run.train_set)
    rng = np.random.default_rng(seed)
    batch = [run.train_set[i] for i in
             rng.choice(np.flatnonzero((P > 0.2) & (P < 0.8)), 64, replace=False)]
    other = [run.train_set[i] for i in rng.choice(len(run.train_set), 300, replace=False)]

    def mean_p(ps):
        return float(likelihoods(run, ps)[0].mean())

    out = [(0, mean_p(batch), mean_p(other))]
    for s in range(1, steps + 1):
        st.step = s
        trainer.rl_step(run, st, batch)
        if s in (1, 3, 6, 10, 20, steps):
            out.append((s, mean_p(batch), mean_p(other)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/rl_smoke")
    ap.add_argument("--lrs", default="3e-3,1e-3,1e-2,3e-4")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fixed-lrs", default="3e-4,3e-3")
    ap.add_argument("--md", default=str(ROOT / "results" / "rl_smoke.md"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out)
    rows = [run_lr(out, lr, a.steps, a.seed) for lr in a.lrs.split(",")]
    lines = [f"# Uniform RL on the demo pool: a smoke check (seed {a.seed}, {a.steps} steps)",
             "", f"`python bench/rl_smoke.py --lrs {a.lrs} --steps {a.steps}`, "
             f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, torch {torch.__version__}, "
             f"1 thread per run, {os.cpu_count()} cores, load average "
             f"{os.getloadavg()[0]:.1f} when written (s/step counts evaluations and moves "
             "with the machine's load; runs found in --out are reused).", "",
             "| lr | held-out acc start → end (best) | mean@4 start → end | train reward, "
             "first → last 15 steps | retention start → end | s/step |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['lr']} | {r['acc0']:.3f} → {r['acc']:.3f} ({r['best']:.3f}) | "
                     f"{r['mk0']:.3f} → {r['mk']:.3f} | {r['r0']:.3f} → {r['r1']:.3f} | "
                     f"{r['ret0']:.3f} → {r['ret']:.3f} | {r['s_step']:.2f} |")
    fixed = {lr: fixed_batch(float(lr), seed=a.seed) for lr in a.fixed_lrs.split(",")}
    steps = [s for s, _, _ in next(iter(fixed.values()))]
    lines += ["", "Fixed batch (64 problems with 0.2 < P < 0.8, rl_step alone, constant lr, "
              "no warmup): mean exact pass probability P of the batch / of 300 other training "
              "problems.", "", "| lr | " + " | ".join(f"step {s}" for s in steps) + " |",
              "|---|" + "---|" * len(steps)]
    for lr, pts in fixed.items():
        lines.append(f"| {lr} | " + " | ".join(f"{b:.3f} / {o:.3f}" for _, b, o in pts) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(a.md).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
