"""Atomic checkpoints: model, optimizer, step, RNG streams and trainer state.

A checkpoint is written to a temporary file in the same directory, flushed and fsynced,
then os.replace'd over the old one, so a crash mid-write leaves the previous checkpoint
intact. RNG state covers torch (CPU and CUDA), numpy Generators and python `random`.
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import torch

from paced_theory.errors import InputError


def capture_rng(generators: dict) -> dict:
    """State of named torch.Generator / np.random.Generator objects plus the global streams."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    for name, g in generators.items():
        state[name] = g.get_state() if isinstance(g, torch.Generator) else g.bit_generator.state
    return state


def restore_rng(state: dict, generators: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, g in generators.items():
        if isinstance(g, torch.Generator):
            g.set_state(state[name])
        else:
            g.bit_generator.state = state[name]


def save_checkpoint(path, *, model, optimizer, step: int, rng_state: dict, extra: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
               "rng_state": rng_state, "extra": extra}
    buf = io.BytesIO()
    torch.save(payload, buf)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path, *, model, optimizer=None, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no checkpoint to resume from")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
        model.load_state_dict(payload["model"])
        if optimizer is not None:
            optimizer.load_state_dict(payload["optimizer"])
    except (RuntimeError, KeyError, EOFError, OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable or incompatible checkpoint ({exc})") from None
    return {"step": payload["step"], "rng_state": payload["rng_state"], "extra": payload["extra"]}
