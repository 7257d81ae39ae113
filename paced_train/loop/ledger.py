"""The compute ledger (tokens processed and estimated FLOPs, cumulative over a run) and the
metrics.jsonl log it is written to every step.

Seven token counters, each the number of real (non-padding) token positions processed:
  rollout_tokens       student generation for pass-rate refreshes (prompt tokens once, then
                       every generated token; KV cache)
  estimate_tokens      student teacher-forced forward passes that measure pass rates from the
                       likelihood of the canonical answer (rollouts.source = "likelihood")
  sample_tokens        student generation of reverse KL's on-policy samples and of RL's groups
                       (K per problem, loss.schedule = "rl"): training compute (they also
                       update the pass-rate table, but are not estimation cost; under RL
                       they are the pass rates' only source for the problems trained on)
  teacher_tokens       teacher forward passes: greedy reference completions (generated once
                       per problem and cached) and the teacher logits of every training batch;
                       under RL, which runs no teacher, only the KL reference's forward (the
                       frozen initial student, N_teacher = N_student; 0 when loss.rl_kl = 0)
  student_fwd_tokens   student forward passes of training batches
  student_bwd_tokens   student backward passes of training batches
  value_tokens         the work of a value criterion (weights.method = rholoss | maxloss,
                       value.py): teacher and student forwards that score candidates, and
                       the reference student's training and forwards; their FLOPs are summed
                       in value_flops (the models and passes differ: ledger.value)
FLOPs use the standard dense-transformer estimate (Kaplan et al. 2020):
  forward  = 2 N tokens,   backward = 4 N tokens (less when [trainable] freezes parameters:
  2 N_act + 2 N_w, models/adapters.py),
with N the NON-embedding parameter count of the model doing the work (N_student for rollouts
and training, N_teacher for the teacher). It ignores attention's sequence-length term, which
is small at our sequence lengths. Evaluation is measurement, not training, and is not
charged. Estimation = pass-rate estimation (rollout_tokens + estimate_tokens) + value_flops
(estimation_flops): what a weighted method pays that uniform does not. Ours: the accounting
rule (it is what makes equal-compute comparisons fair to uniform weighting: PACED's
estimation and a value criterion's scoring are charged in full).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from paced_theory.errors import InputError
from paced_theory.jsonable import strict_json

FIELDS = ("rollout_tokens", "estimate_tokens", "sample_tokens", "teacher_tokens",
          "student_fwd_tokens", "student_bwd_tokens", "flops", "value_tokens", "value_flops")


@dataclass
class Ledger:
    n_student: int   # non-embedding parameters of the student
    n_teacher: int   # ... and of the teacher
    rollout_tokens: int = 0
    estimate_tokens: int = 0
    sample_tokens: int = 0
    teacher_tokens: int = 0
    student_fwd_tokens: int = 0
    student_bwd_tokens: int = 0
    flops: float = 0.0
    value_tokens: int = 0
    value_flops: float = 0.0
    bwd_per_token: float = 0.0  # > 0: FLOPs of a backward token when parameters are frozen
                                # ([trainable], models/adapters.py); 0: 4 N_student

    def rollout(self, tokens: int) -> None:
        """Student generation for a pass-rate refresh over `tokens` positions: 2 N_student
        tokens FLOPs."""
        self.rollout_tokens += int(tokens)
        self.flops += 2.0 * self.n_student * int(tokens)

    def estimate(self, tokens: int) -> None:
        """Student teacher-forced forward for pass rates (likelihood source): 2 N_student
        tokens."""
        self.estimate_tokens += int(tokens)
        self.flops += 2.0 * self.n_student * int(tokens)

    def sample(self, tokens: int) -> None:
        """Student generation of on-policy training samples (reverse KL, RL's groups):
        2 N_student tokens, training compute."""
        self.sample_tokens += int(tokens)
        self.flops += 2.0 * self.n_student * int(tokens)

    def teacher(self, tokens: int) -> None:
        """Teacher forward (or greedy generation) over `tokens` positions: 2 N_teacher tokens."""
        self.teacher_tokens += int(tokens)
        self.flops += 2.0 * self.n_teacher * int(tokens)

    def student_forward(self, tokens: int) -> None:
        """Student forward pass over `tokens` positions: 2 N_student tokens."""
        self.student_fwd_tokens += int(tokens)
        self.flops += 2.0 * self.n_student * int(tokens)

    def student_backward(self, tokens: int) -> None:
        """Student backward pass over `tokens` positions: 4 N_student tokens, or bwd_per_token
        tokens with frozen parameters (2 N_act + 2 N_w, models/adapters.py)."""
        self.student_bwd_tokens += int(tokens)
        if self.bwd_per_token > 0:
            self.flops += self.bwd_per_token * int(tokens)
        else:
            self.flops += 4.0 * self.n_student * int(tokens)

    def student_step(self, tokens: int) -> None:
        """A training step over `tokens` positions: forward + backward = 6 N_student tokens."""
        self.student_forward(tokens)
        self.student_backward(tokens)

    def value(self, tokens: int, teacher: bool = False, backward: bool = False) -> None:
        """A value criterion's work over `tokens` positions (value.py): a teacher forward
        (2 N_teacher tokens), a student-sized forward (the student or the reference student,
        a copy of it: 2 N_student tokens), or with backward=True a training step of the
        reference (6 N_student tokens)."""
        per = 2.0 * self.n_teacher if teacher else (6.0 if backward else 2.0) * self.n_student
        self.value_tokens += int(tokens)
        self.value_flops += per * int(tokens)
        self.flops += per * int(tokens)

    @property
    def rollout_flops(self) -> float:
        """The FLOPs of student generation for pass-rate refreshes."""
        return 2.0 * self.n_student * self.rollout_tokens

    @property
    def estimation_flops(self) -> float:
        """The FLOPs a weighting pays that uniform does not: pass-rate estimation (refresh
        rollouts and likelihood passes; not the on-policy samples, which are training
        compute) and a value criterion's work (value_flops)."""
        return 2.0 * self.n_student * (self.rollout_tokens + self.estimate_tokens) \
            + self.value_flops

    def row(self) -> dict:
        """The cumulative counters (what metrics.jsonl logs every step)."""
        return {k: getattr(self, k) for k in FIELDS}

    def state(self) -> dict:
        return asdict(self)

    def load(self, state: dict) -> None:
        for k, v in state.items():
            if k in FIELDS:
                setattr(self, k, v)


class MetricsLog:
    """metrics.jsonl: one JSON object per line, appended as the run goes. Non-finite floats
    are written as null (strict JSON). On resume, rows after the checkpoint's step are cut,
    so a resumed run's file equals an uninterrupted run's. A run killed mid-append leaves a
    torn last line: rows() drops it (the checkpoint predates it, so resume rewrites it);
    any other unreadable line is an InputError naming the file and line."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def rows(self) -> list[dict]:
        if not self.path.exists():
            return []
        try:
            lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read ({exc.strerror or exc})") from None
        numbered = [(i, x) for i, x in enumerate(lines, start=1) if x.strip(" \t\x00")]
        out = []
        for k, (lineno, line) in enumerate(numbered):
            try:
                row = json.loads(line)
                ok = isinstance(row, dict) and isinstance(row.get("step"), int)
            except ValueError:
                ok = False
            if ok:
                out.append(row)
            elif k < len(numbered) - 1:  # a torn write can only be the last line
                raise InputError(f"{self.path}:{lineno}: not a metrics row (a JSON object with "
                                 "an integer 'step'); fix or delete that line, or start the run "
                                 "afresh with --overwrite")
        return out

    def start(self, rows: list[dict]) -> None:
        """Replace the file's contents with `rows` (atomically)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(strict_json(r)) + "\n" for r in rows))
        tmp.replace(self.path)

    def append(self, rows: list[dict]) -> None:
        with open(self.path, "a") as f:
            f.writelines(json.dumps(strict_json(r)) + "\n" for r in rows)

    def truncate(self, step: int) -> None:
        """Keep only the rows of steps <= step (those the checkpoint at `step` has seen)."""
        self.start([r for r in self.rows() if r["step"] <= step])


def read_metrics(run: Path | str, kind: str | None = None) -> list[dict]:
    """The rows of a run's metrics.jsonl, in order (`run`: the run directory or the file),
    read by MetricsLog.rows; only the rows with row["kind"] == kind ("step" or "eval") when
    kind is given. Every reader of the format (compare, the figures) should come here."""
    path = Path(run)
    rows = MetricsLog(path / "metrics.jsonl" if path.is_dir() else path).rows()
    return rows if kind is None else [r for r in rows if r.get("kind") == kind]


def eval_curve(run: Path | str | list[dict],
               axis: str = "flops") -> tuple[np.ndarray, np.ndarray]:
    """(compute, held-out accuracy) at each evaluation of a run (read_metrics' eval rows, or
    the run's eval rows themselves, e.g. from a comparison's curves.csv); axis "flops"
    (total) or "train_flops" (pass-rate estimation excluded: the eval row's
    estimation_flops, or rollout_flops in runs that predate it)."""
    ev = run if isinstance(run, list) else read_metrics(run, "eval")

    def spent(r: dict) -> float:
        e = r.get("estimation_flops")
        return float(e if e is not None else (r.get("rollout_flops") or 0.0))

    x = [r["flops"] - spent(r) if axis == "train_flops" else r["flops"] for r in ev]
    return np.array(x, dtype=float), np.array([r["acc"] for r in ev], dtype=float)
