"""`paced compare`: methods side by side with the same seeds, data and compute budget.

Equal compute: unless the config sets budget.flops, each seed's uniform run is trained for
budget.steps steps first, and every method of that seed then gets exactly the FLOPs the
uniform run used (budget.steps is raised so that the compute cap is what stops a run, and
the two-stage switch is placed in compute). Methods that drop problems therefore take more,
cheaper steps; methods that pay for rollouts take fewer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from paced_theory.errors import ConfigError
from paced_train.config import RunConfig, apply_overrides
from paced_train.trainer import METHOD_OVERRIDES, train

STEP_HEADROOM = 20


def eval_curve(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(flops, held-out accuracy) at each evaluation of a run."""
    rows = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    ev = [r for r in rows if r["kind"] == "eval"]
    return np.array([r["flops"] for r in ev]), np.array([r["acc"] for r in ev])


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


def _ms(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return [float(np.mean(xs)), float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0]


def compare(cfg: RunConfig, methods: list[str], seeds: int, out_dir) -> dict:
    out_dir = Path(out_dir)
    unknown = [m for m in methods if m not in METHOD_OVERRIDES]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; choose from {', '.join(METHOD_OVERRIDES)}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1 (got {seeds})")
    order = ["uniform"] + [m for m in methods if m != "uniform"]
    runs: dict[str, list[dict]] = {m: [] for m in order}
    for seed in range(seeds):
        budget = cfg.budget.flops
        for m in order:
            over = METHOD_OVERRIDES[m] + [f"run.seed={cfg.run.seed + seed}", f'run.name="{m}"']
            if budget > 0:  # every run but a step-budgeted uniform run is capped in FLOPs
                over += [f"budget.flops={budget}", "loss.switch_unit=compute",
                         f"budget.steps={cfg.budget.steps * STEP_HEADROOM}"]
            run_dir = out_dir / m / f"seed{seed}"
            summary = train(apply_overrides(cfg, over), run_dir)
            if m == "uniform" and budget <= 0:
                budget = summary["flops"]
            summary["run_dir"] = str(run_dir)
            runs[m].append(summary)
    result = {"methods": {}, "budget_flops": [r["flops"] for r in runs["uniform"]],
              "seeds": seeds}
    targets = [r["acc"] for r in runs["uniform"]]
    for m in order:
        to_target = [compute_to_reach(*eval_curve(r["run_dir"]), t)
                     for r, t in zip(runs[m], targets)]
        u_flops = [r["flops"] for r in runs["uniform"]]
        ratio = [None if c is None else c / u for c, u in zip(to_target, u_flops)]
        result["methods"][m] = {
            "final_acc": _ms([r["acc"] for r in runs[m]]),
            "mean_at_k": _ms([r["mean_at_k"] for r in runs[m]]),
            "acc_by_difficulty": {k: _ms([r["acc_by_difficulty"][k] for r in runs[m]])
                                  for k in runs[m][0]["acc_by_difficulty"]},
            "retention": _ms([r["retention"] for r in runs[m]]),
            "forgetting": _ms([r["forgetting"] for r in runs[m]]),
            "compute_to_uniform_final": to_target,
            "compute_ratio_to_uniform": ratio,
            "reached_uniform_final": sum(c is not None for c in to_target),
            "flops": _ms([r["flops"] for r in runs[m]]),
            # a run stops after the step that crosses the budget: the overshoot
            "flops_ratio_to_uniform": _ms([r["flops"] / u for r, u in zip(runs[m], u_flops)]),
            "steps": _ms([r["steps"] for r in runs[m]]),
            "wall_s": _ms([r["wall_s"] for r in runs[m]]),
            "rollout_share": _ms([r["rollout_share"] for r in runs[m]]),
            "runs": [r["run_dir"] for r in runs[m]],
        }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "comparison.json").write_text(json.dumps(result, indent=2))
    from paced_train.report import comparison_markdown, plot_comparison

    (out_dir / "comparison.md").write_text(comparison_markdown(result))
    plot_comparison(result, out_dir)
    return result
