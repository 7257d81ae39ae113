"""Two gloo processes (torchrun, CPU) train exactly as one process on the same global batch:
the same generation batches, pass-rate table, gradients (after DDP's all-reduce) and losses.
The normaliser is global and each process's loss is W * its share, so the mean over the
processes is the single-process loss."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process(pair_dir, tmp_path):
    from trl_worker import run

    (tmp_path / "two").mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(HERE / "trl_worker.py"),
           pair_dir["student"], pair_dir["teacher"], str(tmp_path / "two"), "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "TRL_EXPERIMENTAL_SILENCE": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)  # runs while the single process trains here
    one = run(pair_dir["student"], pair_dir["teacher"], str(tmp_path / "one"), 4)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-4000:]
    two = torch.load(tmp_path / "two" / "result.pt")
    assert one["world"] == 1 and two["world"] == 2
    assert len(one["batches"]) >= 3 and two["batches"] == one["batches"]
    assert two["table"] == one["table"] and len(one["table"]["history"]) == 2
    assert len(one["grads"]) == len(two["grads"]) == 3
    for a, b in zip(one["grads"], two["grads"]):
        assert float((a - b).abs().max()) <= 1e-6 * float(a.abs().max()), (a - b).abs().max()
    assert two["losses"] == pytest.approx(one["losses"], rel=1e-6)
