"""Data parallelism under `torchrun` (PyTorch DDP: NCCL on GPUs, gloo on CPU).

    torchrun --nproc_per_node 2 -m paced_train.cli train configs/tiny.toml run.device=cpu

How the loop divides the work (trainer.py and its stages), with W processes (ranks):
  - pass-rate refresh: the pool is cut into fixed chunks of rollouts.chunk problems, each
    sampled with its own seeded generator; rank r rolls out chunks r, r+W, ...; the success
    counts are all-gathered, so every rank holds the same pass-rate table;
  - each step's B candidates are the same on every rank (a seeded order); every rank computes
    all B weights from its copy of the table, so the normaliser (e.g. sum of kept weights) is
    GLOBAL, then takes the shard candidates[r::W] and runs teacher and student only on its
    kept problems; its loss is W * sum_shard w_i L_i / normaliser, and DDP's gradient mean
    over ranks makes the update that of the single-process loss sum_all w_i L_i / normaliser;
  - on-policy samples (reverse KL) are drawn per rank from a rank-seeded stream and their
    verdicts all-gathered into every rank's table;
  - RL's groups (loss.schedule = "rl") are drawn per chunk of rollouts.chunk kept problems,
    each chunk from its own seeded stream, by rank chunk mod W, which also trains on them;
    their counts are all-gathered, so every rank reads the same fresh weights and
    normaliser, and the run equals the single process (a step with fewer chunks than ranks
    leaves some ranks idle);
  - the compute ledger is summed over ranks every step, so budgets stop all ranks together;
  - rank 0 alone evaluates and writes (config.toml, metrics.jsonl, checkpoints, summary).
With one process none of this costs anything. Forward-KL runs (greedy teacher references)
and RL runs equal the single-process run on the same global batch
(tests/train/loop/test_distributed.py); reverse-KL runs differ only through the on-policy
samples' random streams.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from paced_theory.errors import ConfigError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str) -> torch.device:
    """run.device: auto (CUDA when available, else CPU), cpu, or cuda."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run.device = cuda, but torch sees no CUDA device; use cpu or auto")
    return torch.device(name)


def autocast(device: torch.device):
    """The forward passes' precision: bf16 autocast on CUDA (float32 master weights), nothing
    on CPU (float32 throughout, exact and reproducible). Use as `with autocast(device):`."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def init(device_name: str) -> tuple[Dist, torch.device]:
    """(Dist, device) from torchrun's environment; a single process (and resolve_device)
    when WORLD_SIZE is unset or 1. Under torchrun each rank uses cuda:LOCAL_RANK (NCCL) or
    the CPU (gloo)."""
    device = resolve_device(device_name)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA "
                              "devices; start torchrun with --nproc_per_node <= that")
        torch.cuda.set_device(local)
        device = torch.device(f"cuda:{local}")
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size()), device


def wrap(model: torch.nn.Module, d: Dist, device: torch.device) -> torch.nn.Module | None:
    """The DDP wrapper used for the training forward pass (None in a single process)."""
    if d.world == 1:
        return None
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def gather_objects(d: Dist, obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    if d.world == 1:
        return [obj]
    import torch.distributed as dist

    out: list = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def all_sum(d: Dist, values, device: torch.device) -> np.ndarray:
    """Elementwise sum over ranks of a float64 vector (identity in a single process)."""
    x = np.asarray(values, dtype=np.float64)
    if d.world == 1:
        return x
    import torch.distributed as dist

    t = torch.as_tensor(x, device=device)
    dist.all_reduce(t)
    return t.cpu().numpy()


def chunks(n: int, size: int) -> list[range]:
    """The pool's refresh chunks: fixed ranges of `size` (rollouts.chunk) problem indices."""
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def shard(d: Dist, keep: np.ndarray) -> np.ndarray:
    """This rank's share of a step's candidates: the indices i = rank, rank + W, ... with
    keep[i] (every rank holds all of keep, so the shares are disjoint and cover every kept
    candidate)."""
    idx = np.arange(d.rank, len(keep), d.world)
    return idx[np.asarray(keep, dtype=bool)[idx]]


def sum_ledger(d: Dist, ledger, before: dict, device: torch.device) -> None:
    """Make a compute ledger global: add the other ranks' work since `before` (its row() at
    that time) to this rank's ledger (no-op on one rank). Token counts stay integers."""
    if d.world == 1:
        return
    keys = list(before)
    delta = [float(getattr(ledger, k)) - float(before[k]) for k in keys]
    for k, v in zip(keys, all_sum(d, delta, device)):
        value = before[k] + v
        setattr(ledger, k, int(round(value)) if k.endswith("_tokens") else float(value))


def merge_dicts(d: Dist, *dicts: dict) -> None:
    """Update each dict with every rank's entries (per-rank caches such as the teacher's
    references, before a checkpoint holds them); a collective, no-op on one rank."""
    if d.world == 1:
        return
    for theirs in gather_objects(d, dicts):
        for mine, other in zip(dicts, theirs):
            mine.update(other)


def shutdown(wait: bool = True) -> None:
    """Tear the process group down, after every rank arrives when `wait` (an exit with gloo
    threads still running can abort with 'terminate called without an active exception').
    After an error, wait=False: the other ranks may never arrive."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()
