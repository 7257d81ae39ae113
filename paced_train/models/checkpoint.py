"""Checkpoints that are data, never code: model, optimizer, step, RNG streams, trainer state.

One file, <run>/checkpoints/last.safetensors: every tensor (model weights, optimizer moments,
torch RNG states) is a safetensors entry, and everything else (step, the trainer's state, the
optimizer's hyperparameters, python/numpy RNG states, the config) is JSON in the file's
metadata, with {"$tensor": name} where a tensor sat. Loading parses a length-prefixed JSON
header and raw little-endian arrays (safetensors), then JSON: nothing from the file is ever
unpickled or executed, so a checkpoint from a shared or downloaded run directory is safe to
--resume from. A file that is not such a checkpoint (random bytes, a pickle, a torn write)
is a CheckpointError naming it.

Old checkpoints (checkpoints/last.pt, pickles written by torch.save) are refused: unpickling
runs whatever the file says. Start such a run afresh.

Writes are atomic: the bytes go to a temporary file in the same directory, flushed and
fsynced, then os.replace'd over the old checkpoint, so a crash mid-write leaves the previous
checkpoint intact. RNG state covers torch (CPU and CUDA), numpy Generators and python
`random`. The JSON encoding keeps tuples, non-string dict keys and non-finite floats, so a
round trip returns equal objects (exact resume).
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import numpy as np
import torch

from paced_theory.errors import InputError

FORMAT = "paced-checkpoint/1"
NAME = "last.safetensors"
OLD_NAME = "last.pt"
# first bytes of what torch.save / pickle write: a zip archive, or a pickle protocol marker
_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


class CheckpointError(InputError):
    """A checkpoint file that cannot be (or must not be) loaded."""


def checkpoint_path(run_dir: Path | str) -> Path:
    """Where a run directory keeps its checkpoint."""
    return Path(run_dir) / "checkpoints" / NAME


# ---------------------------------------------------------------------------- RNG state
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


# ------------------------------------------------------------------ JSON with tensors
def _encode(x, tensors: dict, seen: set | None = None):
    """x as JSON-able data; tensors move into `tensors` (named t0, t1, ...)."""
    if seen is None:
        seen = set()  # storages already stored: safetensors refuses shared memory
    if isinstance(x, torch.Tensor):
        name = f"t{len(tensors)}"
        t = x.detach()
        key = (t.device, t.untyped_storage().data_ptr())
        if t.device.type != "cpu" or key in seen or not t.is_contiguous() \
                or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.to("cpu", copy=True).contiguous()  # a copy only where one is needed
        seen.add(key)
        tensors[name] = t
        return {"$tensor": name}
    if isinstance(x, bool | int | str) or x is None:
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else {"$float": repr(x)}
    if isinstance(x, np.ndarray):
        return {"$ndarray": _encode(x.tolist(), tensors, seen), "dtype": str(x.dtype)}
    if isinstance(x, np.generic):
        return _encode(x.item(), tensors, seen)
    if isinstance(x, tuple):
        return {"$tuple": [_encode(v, tensors, seen) for v in x]}
    if isinstance(x, list):
        return [_encode(v, tensors, seen) for v in x]
    if isinstance(x, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in x):
            return {k: _encode(v, tensors, seen) for k, v in x.items()}
        return {"$items": [[_encode(k, tensors, seen), _encode(v, tensors, seen)]
                           for k, v in x.items()]}
    raise TypeError(f"checkpoint: cannot store a {type(x).__name__}")


def _decode(x, tensors: dict):
    """The inverse of _encode. Builds only tensors, numbers, strings, lists, tuples, dicts."""
    if isinstance(x, list):
        return [_decode(v, tensors) for v in x]
    if not isinstance(x, dict):
        return x
    if len(x) == 1 and "$tensor" in x:
        return tensors[x["$tensor"]]
    if len(x) == 1 and "$float" in x:
        return float(x["$float"])
    if len(x) == 1 and "$tuple" in x:
        return tuple(_decode(v, tensors) for v in x["$tuple"])
    if len(x) == 1 and "$items" in x:
        return {_hashable(_decode(k, tensors)): _decode(v, tensors) for k, v in x["$items"]}
    if set(x) == {"$ndarray", "dtype"}:
        return np.asarray(_decode(x["$ndarray"], tensors), dtype=np.dtype(x["dtype"]))
    if any(k.startswith("$") for k in x):
        raise ValueError(f"unknown entry {sorted(x)[0]!r}")
    return {k: _decode(v, tensors) for k, v in x.items()}


def _hashable(k):
    if isinstance(k, list | dict) or isinstance(k, torch.Tensor):
        raise ValueError("a dict key that is not a number or string")
    return k


# ------------------------------------------------------------------------ save / load
def save_checkpoint(path, *, model, optimizer, step: int, rng_state: dict, extra: dict) -> None:
    """Write model and optimizer state, step, rng_state and extra (JSON-able data and
    tensors) to `path` atomically (module docstring)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    state = _encode({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "step": int(step), "rng_state": rng_state, "extra": extra}, tensors)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT,
                                           "state": json.dumps(state, allow_nan=False)})
    with open(tmp, "rb+") as f:  # on disk before it replaces the previous checkpoint
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _refuse_old(path: Path) -> None:
    raise CheckpointError(
        f"{path}: holds a pickle (the old checkpoint format of torch.save); paced never "
        "unpickles, since unpickling runs whatever the file says. Start the run afresh "
        "(paced train ... --overwrite)")


def read_checkpoint(path) -> dict:
    """The whole checkpoint as data: {"model": state dict, "optimizer": state dict, "step",
    "rng_state", "extra"} (tensors on the CPU). CheckpointError for anything else."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        old = path.with_name(OLD_NAME)
        if path.name == NAME and old.is_file():
            _refuse_old(old)
        raise CheckpointError(f"{path}: no checkpoint to resume from")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({_one_line(exc)})") from None
    if head.startswith(_PICKLE_MAGIC):
        _refuse_old(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        payload = _decode(json.loads(meta["state"]), tensors)
        if not (isinstance(payload, dict) and isinstance(payload.get("step"), int)
                and payload["step"] >= 0 and isinstance(payload.get("extra"), dict)
                and isinstance(payload.get("model"), dict)
                and isinstance(payload.get("optimizer"), dict)
                and isinstance(payload.get("rng_state"), dict)):
            raise ValueError("missing or malformed model, optimizer, step, rng_state or extra")
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: not a paced checkpoint ({_one_line(exc)}); start the "
                              "run afresh (paced train ... --overwrite)") from None
    return payload


def checkpoint_step(path) -> int | None:
    """The step a checkpoint holds, from its metadata alone (no tensor is read); None when
    there is no readable checkpoint."""
    try:
        return int(read_checkpoint_meta(path)["step"])
    except (CheckpointError, KeyError, TypeError, ValueError):
        return None


def read_checkpoint_meta(path) -> dict:
    """The checkpoint's JSON state without its tensors (each tensor is left as its
    {"$tensor": name} reference)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return json.loads(meta["state"])
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a paced checkpoint ({_one_line(exc)})") from None


def load_checkpoint(path, *, model, optimizer=None, map_location="cpu") -> dict:
    """Load the model (and optimizer) state from `path`; return its step, rng_state and
    extra. CheckpointError (one line, naming the file) when the file is no checkpoint of
    ours or does not fit the model. Tensors are read to the CPU and copied onto the model's
    (and optimizer's) device, whatever map_location says (kept for callers)."""
    path = Path(path)
    payload = read_checkpoint(path)
    try:
        model.load_state_dict(payload["model"])
        if optimizer is not None:
            optimizer.load_state_dict(payload["optimizer"])
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise CheckpointError(f"{path}: the checkpoint does not fit this model or optimizer "
                              f"({_one_line(exc)}); was models.* changed?") from None
    return {"step": payload["step"], "rng_state": payload["rng_state"],
            "extra": payload["extra"]}
