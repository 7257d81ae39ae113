"""What changes along a run: the learning rate, when to evaluate, and which divergence a step
trains with (the two-stage schedule). Each is a function of the config and of how far the
run is (its step, or the FLOPs its ledger has charged), so every rank and a resumed run agree.
"""

from __future__ import annotations

import math

from paced_train.config import RunConfig


def run_progress(cfg: RunConfig, step: int, flops: float) -> float:
    """How far through its budget a run is, in [0, 1]: FLOPs used / budget.flops when a FLOPs
    budget is set (methods that take different numbers of steps under one compute budget
    then decay alike), else step / budget.steps."""
    if cfg.budget.flops > 0:
        return min(1.0, flops / cfg.budget.flops)
    return min(1.0, step / cfg.budget.steps)


def lr_at(step: int, cfg: RunConfig, progress: float = 0.0) -> float:
    """Linear warmup over optim.warmup_steps, then constant (optim.schedule = "constant") or
    a cosine from lr to min_lr_frac * lr over the run's progress (run_progress)."""
    o = cfg.optim
    warm = min(1.0, step / max(o.warmup_steps, 1))
    if o.schedule == "constant":
        return o.lr * warm
    floor = o.min_lr_frac
    return o.lr * warm * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def eval_due(cfg: RunConfig, step: int, progress_before: float, flops: float) -> bool:
    """Evaluate after this step? Every eval.every steps, or with eval.every_frac > 0 when the
    run's progress crossed a multiple of it during the step."""
    f = cfg.eval.every_frac
    if f <= 0:
        return step % cfg.eval.every == 0
    now = run_progress(cfg, step, flops)
    return math.floor(now / f + 1e-9) > math.floor(progress_before / f + 1e-9)


def loss_kind(cfg: RunConfig, step: int, flops: float) -> str:
    """The divergence of step `step` (flops: charged before it). loss.schedule names one of
    losses.LOSSES, or "two-stage" (the paper's schedule): forward KL for the first
    loss.switch_at of the budget (steps, or FLOPs when loss.switch_unit = compute), then
    reverse KL."""
    if cfg.loss.schedule != "two-stage":
        return cfg.loss.schedule
    if cfg.loss.switch_unit == "compute":
        return "forward" if flops < cfg.loss.switch_at * cfg.budget.flops else "reverse"
    return "forward" if step <= math.floor(cfg.loss.switch_at * cfg.budget.steps + 1e-9) \
        else "reverse"
