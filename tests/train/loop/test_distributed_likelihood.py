"""The likelihood pass-rate source under data parallelism: two gloo ranks split the refresh
chunks and read P free from their own shards, and every rank's table ends equal to the
single process's (up to float reduction order)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_distributed import COMMON, _rows, _single, _torchrun

from paced_train.models.checkpoint import read_checkpoint


@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process_likelihood_source(tmp_path):
    ov = [*COMMON, "loss.schedule=forward", "rollouts.source=likelihood",
          "rollouts.likelihood=exact", "rollouts.max_age=2", "optim.sampler=kept"]
    _single(tmp_path / "one", ov)
    _torchrun(tmp_path / "two", ov)
    one, two = _rows(tmp_path / "one", "step"), _rows(tmp_path / "two", "step")
    assert len(one) == len(two) == 6
    for a, b in zip(one, two):
        assert (a["n_kept"], a["pass_rate_age_max"]) == (b["n_kept"], b["pass_rate_age_max"])
        for k in ("estimate_tokens", "rollout_tokens", "teacher_tokens", "student_fwd_tokens"):
            assert a[k] == b[k], (a["step"], k)  # the ledger is global, not rank 0's share
    ta = read_checkpoint(tmp_path / "one" / "checkpoints" / "last.safetensors")["extra"]["table"]
    tb = read_checkpoint(tmp_path / "two" / "checkpoints" / "last.safetensors")["extra"]["table"]
    assert ta["step"] == tb["step"]  # the same entries read at the same steps (free reads too)
    assert max(ta["step"]) == 5  # step 6's free reads (the student before its update)
    pa, pb = (np.array(t["p"], dtype=float) for t in (ta, tb))
    np.testing.assert_allclose(pa, pb, rtol=1e-4, atol=1e-7)
    s = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert s["estimate_tokens"] > 0 and s["rollout_tokens"] == 0
