"""A run directory's records for tests that compare runs: metrics rows and summaries without
the fields that differ between identical runs (wall time), and the last checkpoint."""

from __future__ import annotations

import json

from paced_train.models.checkpoint import read_checkpoint

VOLATILE = {"wall_s", "timers_s", "rollout_share", "rollout_share_of_wall"}


def rows(run_dir, kind=None):
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = {k: v for k, v in json.loads(line).items() if k not in VOLATILE}
        if kind is None or r["kind"] == kind:
            out.append(r)
    return out


def stable(summary):
    return {k: v for k, v in summary.items() if k not in VOLATILE}


def ckpt(run_dir):
    return read_checkpoint(run_dir / "checkpoints/last.safetensors")
