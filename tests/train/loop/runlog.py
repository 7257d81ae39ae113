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


def killed_and_resumed(cfg, tmp_path, monkeypatch, owner, name, step_of):
    """Train cfg to the end in tmp_path/full; train it again in tmp_path/killed, interrupted
    when owner.<name> is called at step 6 (after the checkpoint at step 4; step_of(*args)
    reads the step from the call), then resumed. Asserts the resumed run equals the full one
    (summary, metrics rows, weights, pass-rate table, references, ledger) and returns both
    final checkpoints for the caller's own checks."""
    import pytest
    import torch

    from paced_train.loop.trainer import train

    full = train(cfg, tmp_path / "full")
    real = getattr(owner, name)

    def killed_at_step_6(*args):
        if step_of(*args) == 6:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(owner, name, killed_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "killed")
    assert ckpt(tmp_path / "killed")["step"] == 4
    monkeypatch.setattr(owner, name, real)
    resumed = train(cfg, tmp_path / "killed", resume=True)
    assert stable(resumed) == stable(full)
    assert rows(tmp_path / "killed") == rows(tmp_path / "full")
    c1, c2 = ckpt(tmp_path / "full"), ckpt(tmp_path / "killed")
    assert all(torch.equal(c1["model"][k], c2["model"][k]) for k in c1["model"])
    for key in ("table", "references", "ledger"):
        assert c1["extra"][key] == c2["extra"][key]
    return c1, c2
