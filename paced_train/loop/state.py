"""What a run holds: Run (read by every stage, never replaced) and State (what the loop
mutates and a checkpoint restores), the phase timer, and resuming from a checkpoint."""

from __future__ import annotations

import time
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from paced_theory.errors import ConfigError, InputError
from paced_train.config import RESUMABLE, RunConfig, changed_keys, config_to_toml, from_dict
from paced_train.loop import distributed
from paced_train.loop.ledger import Ledger
from paced_train.loop.passrates import PassRateTable
from paced_train.models.checkpoint import load_checkpoint
from paced_train.tasks import Problem

PHASES = ("rollout", "estimate", "sample", "teacher", "student", "eval", "value")
"""The timed phases of a run (State.timers, summary.json's timers_s): rollout and estimate
are pass-rate estimation (refresh rollouts, likelihood passes), sample is reverse KL's
on-policy generation (training), value a value criterion's choice of the batch (value.py)."""


@dataclass
class Run:
    """What the loop reads and never replaces: config, models, optimizer, data. A probe that
    takes no step passes opt=None and empty problem lists."""

    cfg: RunConfig
    device: torch.device
    student: torch.nn.Module
    teacher: torch.nn.Module
    tok: object
    opt: torch.optim.Optimizer | None
    train_set: list[Problem]
    heldout: list[Problem]
    retention: list[Problem]
    student_fwd: torch.nn.Module | None = None   # the DDP wrapper of student when distributed
    dist: distributed.Dist = field(default_factory=distributed.Dist)
    prompt_cache: dict = field(default_factory=dict)  # "teacher"/"student" -> id -> tokens
    value: dict = field(default_factory=dict)  # what a value criterion reads (value.py): the
                                               # reference's split, cached teacher logits


@dataclass
class State:
    """What the loop mutates; a checkpoint restores exactly this (plus model and optimizer)."""

    step: int
    table: PassRateTable
    ledger: Ledger
    references: dict = field(default_factory=dict)   # problem id -> teacher greedy tokens
    reference_ok: dict = field(default_factory=dict)  # problem id -> does it verify
    retention_start: float = float("nan")
    last_eval: dict | None = None
    timers: dict = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    wall: float = 0.0
    refresh_flops: float = 0.0  # FLOPs of the last pass-rate refresh (all ranks)
    refresh_rows: int = 0       # problems it measured (refresh_flops / this: cost per problem)
    first_refresh_flops: float = 0.0  # the first refresh's FLOPs (exempt from max_share)
    idle_refreshes: int = 0     # refreshes in a row after which every weight was 0
    last_refresh: int = -1      # step of the last pass-rate refresh (-1: none yet)
    refresh_cut: bool = False   # the last check was cut by max_share or the budget (transient)
    value: dict = field(default_factory=dict)  # a value criterion's state (value.py)

    def extra(self, cfg: RunConfig) -> dict:
        """The checkpoint's JSON part: this state and the run's config."""
        return {"table": self.table.state(), "ledger": self.ledger.state(),
                "references": self.references, "reference_ok": self.reference_ok,
                "retention_start": self.retention_start, "last_eval": self.last_eval,
                "timers": self.timers, "wall": self.wall, "refresh_flops": self.refresh_flops,
                "refresh_rows": self.refresh_rows,
                "first_refresh_flops": self.first_refresh_flops,
                "idle_refreshes": self.idle_refreshes,
                "last_refresh": self.last_refresh, "value": self.value,
                "config": config_to_toml(cfg)}

    def load(self, step: int, extra: dict, refresh_every: int) -> None:
        """Restore from a checkpoint's step and extra() (KeyError etc. when malformed).
        Checkpoints older than the refresh policy have no last_refresh: the last multiple of
        refresh_every is where the old loop refreshed."""
        self.step = step
        self.table.load(extra["table"])
        self.ledger.load(extra["ledger"])
        self.references, self.reference_ok = extra["references"], extra["reference_ok"]
        self.retention_start, self.last_eval = extra["retention_start"], extra["last_eval"]
        self.timers = {**dict.fromkeys(PHASES, 0.0), **extra["timers"]}
        self.wall = extra["wall"]
        self.refresh_flops = float(extra.get("refresh_flops", 0.0))
        self.refresh_rows = int(extra.get("refresh_rows", len(self.table.ids)))
        self.first_refresh_flops = float(extra.get("first_refresh_flops", 0.0))
        self.idle_refreshes = int(extra.get("idle_refreshes", 0))
        self.value = dict(extra.get("value", {}))
        self.last_refresh = int(extra.get("last_refresh",
                                          step - step % max(refresh_every, 1)))


@contextmanager
def timed(st: State, phase: str, device: torch.device):
    """Add the wall time of the block to st.timers[phase] (CUDA work is waited for)."""
    t0 = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    st.timers[phase] += time.perf_counter() - t0


def resume_state(run: Run, st: State, ckpt: Path) -> None:
    """Restore model, optimizer and State from ckpt; the configs must agree except in the
    RESUMABLE keys. The loop draws only from seeding's per-step streams, so no global RNG
    state needs restoring."""
    info = load_checkpoint(ckpt, model=run.student, optimizer=run.opt, map_location=run.device)
    extra = info["extra"]
    if not isinstance(extra, dict) or "config" not in extra or "table" not in extra:
        raise InputError(f"{ckpt}: not a checkpoint of this trainer (no config / pass-rate "
                         "table inside); start the run afresh without --resume")
    try:
        saved = from_dict(tomllib.loads(extra["config"]), str(ckpt))
    except (TypeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{ckpt}: its config is unreadable ({exc}); start the run afresh "
                         "with --overwrite") from None
    diff = [k for k in changed_keys(saved, run.cfg) if k not in RESUMABLE]
    if diff:
        raise ConfigError(f"{ckpt}: cannot resume with a different {', '.join(diff)}; rerun "
                          "with the run's config.toml (only these may change: "
                          f"{', '.join(sorted(RESUMABLE))})")
    try:
        st.load(info["step"], extra, run.cfg.rollouts.refresh_every)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise InputError(f"{ckpt}: the trainer state inside is incomplete or malformed "
                         f"({type(exc).__name__}: {exc}); start the run afresh with "
                         "--overwrite") from None
