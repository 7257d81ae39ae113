"""Run directories: one writer at a time, and never a silent overwrite.

A run directory holds config.toml, metrics.jsonl, summary.json and checkpoints/ (trainer.py).
`claim(out_dir, resume=..., overwrite=...)` guards a run's use of it:
  - an exclusive lock for the whole run: fcntl.flock on the directory itself (no lock file,
    so the directory holds only the run's outputs; the kernel drops the lock when the process
    dies, so a killed run never leaves a stale lock). A second writer gets RunDirError at
    once and has changed nothing;
  - a directory that already holds a run (any of the files above) is refused, unless the
    call continues it (resume=True, `--resume`) or replaces it (overwrite=True,
    `--overwrite`: only the run's own files are deleted, never anything else in it);
  - --resume needs the directory; an --out that names a file is refused.
Under torchrun only rank 0 writes, so only rank 0 claims (main=False skips it).
Ours.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from paced_theory.errors import PacedError

# what a run writes into its directory (the .tmp files are interrupted atomic writes)
ARTIFACTS = ("config.toml", "metrics.jsonl", "summary.json", "checkpoints",
             "metrics.jsonl.tmp")


class RunDirError(PacedError):
    """A run directory that is in use, already holds a run, or is not a directory."""


def existing_run(out_dir: Path) -> list[str]:
    """The run files already in out_dir (empty when it holds no run)."""
    return [a for a in ARTIFACTS if (out_dir / a).exists()]


def _lock(out_dir: Path):
    """An open descriptor of out_dir holding an exclusive flock, or RunDirError."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): run unlocked
        return None
    fd = os.open(out_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise RunDirError(f"{out_dir}: another paced process is writing to this run directory "
                          "(it holds the directory's lock); wait for it to finish or choose "
                          "another --out") from None
    return fd


def _unlock(fd) -> None:
    if fd is None:
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextmanager
def claim(out_dir: Path | str, *, resume: bool = False, overwrite: bool = False,
          main: bool = True) -> Iterator[Path]:
    """Hold out_dir exclusively for the block (module docstring); yields its Path."""
    out_dir = Path(out_dir)
    if not main:
        yield out_dir
        return
    if resume and overwrite:
        raise RunDirError(f"{out_dir}: --resume continues the run there and --overwrite "
                          "deletes it; give one of them")
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirError(f"{out_dir}: exists and is not a directory; --out needs a directory "
                          "(a new one, or a run to --resume)")
    if resume and not out_dir.is_dir():
        raise RunDirError(f"{out_dir}: no such run directory to --resume; start the run "
                          "without --resume")
    fd = _make_and_lock(out_dir, "run directory")
    try:
        found = existing_run(out_dir)
        if found and not resume:
            if not overwrite:
                raise RunDirError(
                    f"{out_dir}: already holds a run ({', '.join(found)}); continue it with "
                    "--resume, replace it with --overwrite (train(..., overwrite=True)), or "
                    "choose another --out")
            for name in found:
                path = out_dir / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        yield out_dir
    finally:
        _unlock(fd)


def _make_and_lock(out_dir: Path, what: str) -> int:
    """Create out_dir (one-line error if that fails) and take its exclusive lock."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"{out_dir}: cannot create the {what} "
                          f"({exc.strerror or exc})") from None
    return _lock(out_dir)


@contextmanager
def claim_output(out_dir: Path | str, *, marks: tuple[str, ...], overwrite: bool,
                 what: str) -> Iterator[Path]:
    """For commands whose output directory holds several runs or files of their own
    (compare, demo, snr-probe): hold it locked for the block, and refuse one that already
    holds earlier results (any of `marks`) unless overwrite, in which case the command
    rewrites them (compare replaces its own sub-runs). Yields its Path."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirError(f"{out_dir}: exists and is not a directory; --out needs a directory")
    found = [m for m in marks if (out_dir / m).exists()]
    if found and not overwrite:
        raise RunDirError(f"{out_dir}: already holds a {what} ({', '.join(found)}); replace it "
                          "with --overwrite or choose another --out")
    fd = _make_and_lock(out_dir, "output directory")
    try:
        yield out_dir
    finally:
        _unlock(fd)


@contextmanager
def lock_dir(out_dir: Path | str) -> Iterator[Path]:
    """Hold out_dir (created if needed) exclusively for the block, nothing more: for commands
    that manage the runs inside it themselves (compare, demo)."""
    out_dir = Path(out_dir)
    with claim_output(out_dir, marks=(), overwrite=True, what="") as path:
        yield path


def check_new_file(path: Path | str, overwrite: bool) -> Path:
    """An output file path that may be written: not a directory, and not an existing file
    unless overwrite."""
    path = Path(path)
    if path.is_dir():
        raise RunDirError(f"{path}: is a directory; --out needs a file path")
    if path.exists() and not overwrite:
        raise RunDirError(f"{path}: already exists; replace it with --overwrite or choose "
                          "another --out")
    return path


def is_main_process() -> bool:
    """False on a torchrun rank other than 0 (RANK is set by torchrun before the process
    group exists, which is when the run directory is claimed)."""
    return int(os.environ.get("RANK", "0") or 0) == 0
