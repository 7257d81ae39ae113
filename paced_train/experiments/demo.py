"""`paced demo`: the main job on the built-in default, in minutes on 2 CPU cores.

1. the theory walkthrough (paced_theory.walkthrough), and
2. `paced compare` of uniform, hard filter, AKL, Paced and the two-stage schedule on the
   arithmetic suite with the shipped teacher and student, at equal compute,
then runs/demo/report.md with both, the measured targets and the figures.
"""

from __future__ import annotations

import json
import os
import sys
import time
from importlib import resources
from pathlib import Path

from paced_theory.errors import ConfigError
from paced_theory.jsonable import strict_json

DEMO_METHODS = ["uniform", "hard", "akl", "paced", "two-stage"]
DEMO_SEEDS = 5
QUICK = ["budget.steps=6", "eval.every=3", "data.n_train_per_cell=6", "data.n_eval_per_cell=3",
         "data.n_retention=8", "rollouts.K=4", "rollouts.settled_K=2", "rollouts.refresh_every=3",
         "run.progress=false", "data.add_counts=[]", "data.mul_counts=[]"]
TARGET_GAIN = 0.20       # uniform must raise held-out accuracy this much, or nothing is tested
TARGET_ROLLOUT = 0.20    # Paced's pass-rate estimation: at most this share of FLOPs, wall time


def demo_config_path() -> Path:
    return Path(str(resources.files("paced_train") / "configs" / "demo.toml"))


def run_demo(out: Path, quick: bool = False, seeds: int | None = None,
             jobs: int | None = None) -> Path:
    from paced_theory.walkthrough import theory_report
    from paced_train.config import load_config
    from paced_train.experiments.compare import compare

    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds must be >= 1 (got {seeds})")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    print("demo 1/2: theory walkthrough (SNR models, kernels, robustness; ~15 s)",
          file=sys.stderr, flush=True)
    theory_md = theory_report(out / "theory")
    t_theory = time.time() - t0
    cfg = load_config(demo_config_path(), QUICK if quick else [])
    n_seeds = seeds or (1 if quick else DEMO_SEEDS)
    n_jobs = jobs or min(2, os.cpu_count() or 1)
    print(f"demo 2/2: {len(DEMO_METHODS)} methods x {n_seeds} seeds at equal compute, "
          f"{n_jobs} at a time", file=sys.stderr, flush=True)
    result = compare(cfg, DEMO_METHODS, n_seeds, out / "compare", jobs=n_jobs)
    wall = time.time() - t0
    md = [
        "# paced demo",
        f"Made by `paced demo{' --quick' if quick else ''}` in {wall:.0f} s (theory "
        f"{t_theory:.0f} s, {n_jobs} process(es)). Config: `{demo_config_path().name}` "
        f"(shipped in paced_train/configs/), {n_seeds} seed(s).",
        "## Method comparison (shipped teacher -> shipped student, arithmetic testbed)",
        (out / "compare" / "comparison.md").read_text(),
        "![accuracy vs compute](compare/accuracy_vs_compute.png)",
        "![forgetting](compare/forgetting.png)",
        "## Targets",
        targets_section(result),
        theory_md.replace("](theory_snr.png)", "](theory/theory_snr.png)").replace(
            "# Theory walkthrough", "## Theory walkthrough"),
    ]
    path = out / "report.md"
    path.write_text("\n\n".join(md) + "\n")
    (out / "demo.json").write_text(json.dumps(strict_json(
        {"wall_s": wall, "theory_s": t_theory, "jobs": n_jobs, "comparison": result}), indent=2))
    return path


def targets_section(result: dict) -> str:
    """The demo's targets, stated as measured (reported, never asserted)."""
    from paced_train.experiments.report import ci

    m, lines = result["methods"], []
    gain = result["uniform_gain"]
    ok = gain["n"] > 0 and gain["mean"] >= TARGET_GAIN
    lines.append(f"- Uniform distillation {'raises' if gain['mean'] > 0 else 'does not raise'} "
                 f"held-out accuracy: {ci(gain)} over {gain['n']} seeds ({gain['wins']} seeds "
                 f"improve); target >= +{TARGET_GAIN:.2f}: {'met' if ok else 'NOT met'}."
                 + ("" if ok else " Below it the comparison tests little: every method "
                    "learns little."))
    for name in ("paced", "hard", "two-stage", "akl"):
        if name not in m:
            continue
        vs = m[name]["vs_uniform"]
        lines.append(f"- {name} against uniform at equal compute: final accuracy "
                     f"{ci(vs['final_acc'])}, AUC {ci(vs['auc'])}, AUC on training FLOPs "
                     f"{ci(vs['auc_train'])}, forgetting reduction "
                     f"{ci(vs['forgetting_reduction'])}; reached uniform's final accuracy in "
                     f"{m[name]['reached_uniform_final']}/{result['seeds']} seeds.")
    if "paced" in m:
        f_share, w_share = m["paced"]["rollout_flops_share"], m["paced"]["rollout_share"]
        met = f_share[0] <= TARGET_ROLLOUT and w_share[0] <= TARGET_ROLLOUT
        lines.append(f"- Paced's pass-rate estimation: {f_share[0]:.2f} of its FLOPs, "
                     f"{w_share[0]:.2f} of its training wall time (target <= {TARGET_ROLLOUT:.2f}: "
                     f"{'met' if met else 'NOT met'}).")
    return "\n".join(lines)
