"""Run directories: one writer at a time, never a silent overwrite, never a write elsewhere.

A run directory holds config.toml, metrics.jsonl, summary.json and checkpoints/ (trainer.py),
and MARKER (`.paced-run`), which claim() writes into a new or empty directory before anything
else: a directory is a paced run because paced marked it, never because of its file names.
`claim(out_dir, resume=..., overwrite=...)` guards a run's use of it:
  - an exclusive lock for the whole run: fcntl.flock on the directory itself (the kernel
    drops the lock when the process dies, so a killed run never leaves a stale lock). A
    second writer gets RunDirError at once and has changed nothing;
  - a run directory (marked) that already holds a run is refused, unless the call continues
    it (resume=True, `--resume`) or replaces it (overwrite=True, `--overwrite`). Overwrite
    deletes only what paced writes there (RUN_FILES, and in checkpoints/ CHECKPOINT_FILES),
    and refuses the whole directory, deleting nothing, when it holds anything else;
  - a directory paced did not mark is used only when it is empty (then marked); one holding
    anything is refused, with or without --overwrite, so a project folder's config.toml or
    checkpoints/ are never written over or deleted. --resume needs a marked directory;
  - no write follows a symbolic link: --out itself, the marker, any run file and any file in
    checkpoints/ that is a link is refused before anything is written (the run's atomic
    writes, tmp file + os.replace, replace a link rather than follow it, and the claim holds
    the lock while it writes). --out may not lie inside the installed package (its assets/);
  - a new run that fails on a user's error (PacedError) before its first metrics row leaves
    nothing that blocks a retry (_undo_start);
  - the lock of an output directory that holds several runs (compare, demo, study:
    lock_dir, marked OUTPUT_MARKER) covers the runs inside it: claim() takes a shared lock on
    every marked ancestor this process (or the command that spawned it) does not already hold,
    so `paced train --overwrite` into one run of a comparison another process is writing is
    refused, and a comparison cannot start while such a run is going.
run_dir_for(name) is runs/<name> for a run.name that is one plain path component (no "/",
"..", ...), so a name cannot put a run outside runs/.
Under torchrun only rank 0 writes, so only rank 0 claims (main=False skips it).
Ours.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from paced_theory.errors import PacedError

MARKER = ".paced-run"            # written by claim(): this directory is a paced run
OUTPUT_MARKER = ".paced-output"  # written by claim_output()/lock_dir(): it holds paced runs
# what a run writes into its directory (the .tmp files are interrupted atomic writes)
RUN_FILES = ("config.toml", "metrics.jsonl", "summary.json", "checkpoints", "metrics.jsonl.tmp")
ARTIFACTS = RUN_FILES  # the name earlier callers used
# what a run writes into checkpoints/ (last.pt: the format of older paced versions)
CHECKPOINT_FILES = ("last.safetensors", "last.safetensors.tmp", "last.pt")
HELD_ENV = "PACED_HELD_OUTPUT_DIRS"  # output dirs this process tree holds (os.pathsep-joined)
PACKAGE_DIRS = tuple(Path(__file__).resolve().parents[1] / p
                     for p in ("paced_train", "paced_theory"))


class RunDirError(PacedError):
    """A run directory that is in use, already holds a run or other files, contains a
    symbolic link, or is not a directory."""


def existing_run(out_dir: Path) -> list[str]:
    """The run files already in out_dir (empty when it holds no run)."""
    return [a for a in RUN_FILES if os.path.lexists(out_dir / a)]


def foreign_files(out_dir: Path) -> list[str]:
    """What out_dir holds that a paced run does not write (relative names, sorted)."""
    out = [n for n in os.listdir(out_dir) if n not in (*RUN_FILES, MARKER)]
    ck = out_dir / "checkpoints"
    if ck.is_dir() and not ck.is_symlink():
        out += [f"checkpoints/{n}" for n in os.listdir(ck) if n not in CHECKPOINT_FILES]
    elif os.path.lexists(ck):
        out.append("checkpoints (not a directory)")
    return sorted(out)


def symlinks(out_dir: Path) -> list[str]:
    """The marker, run files and checkpoint files in out_dir that are symbolic links."""
    names = [MARKER, *RUN_FILES] + [f"checkpoints/{n}" for n in CHECKPOINT_FILES]
    return [n for n in names if (out_dir / n).is_symlink()]


def run_dir_for(name: str, prefix: str = "") -> Path:
    """runs/<prefix><name>, the default --out of a run named `name`; RunDirError unless name
    is one plain path component (so that no run.name can write outside runs/)."""
    bad = (not name or name in (".", "..") or any(c in name for c in "/\\\0")
           or name != name.strip() or Path(name).is_absolute())
    if bad:
        raise RunDirError(f"run.name = {name!r}: must be a plain name (no '/', '\\', '..', "
                          "leading or trailing spaces); it names the run's directory under "
                          "runs/ (or give --out)")
    return Path("runs") / f"{prefix}{name}"


def _check_target(out_dir: Path) -> None:
    """--out is not a symbolic link, not a file, and not inside the installed package."""
    if out_dir.is_symlink():
        raise RunDirError(f"{out_dir}: is a symbolic link (to {os.readlink(out_dir)}); paced "
                          "never writes a run through a link; give the directory itself")
    if os.path.lexists(out_dir) and not out_dir.is_dir():
        raise RunDirError(f"{out_dir}: exists and is not a directory; --out needs a directory "
                          "(a new one, or a run to --resume)")
    real = out_dir.resolve()
    for pkg in PACKAGE_DIRS:
        if real == pkg or pkg in real.parents:
            raise RunDirError(f"{out_dir}: is inside the installed package ({pkg}), which "
                              "paced never writes; give --out another directory")


def _lock(out_dir: Path, shared: bool = False):
    """An open descriptor of out_dir holding a flock (exclusive unless shared), or
    RunDirError. None where there is no flock (Windows: run unlocked)."""
    try:
        import fcntl
    except ImportError:
        return None
    fd = os.open(out_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
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


def _held() -> set[str]:
    return {p for p in os.environ.get(HELD_ENV, "").split(os.pathsep) if p}


@contextmanager
def _hold_ancestors(out_dir: Path) -> Iterator[None]:
    """A shared lock on every output directory (OUTPUT_MARKER) above out_dir that this
    process tree does not hold itself, for the block; RunDirError naming the one that another
    process holds."""
    held = _held()
    with ExitStack() as stack:
        for a in out_dir.resolve().parents:
            if (a / OUTPUT_MARKER).is_file() and str(a) not in held:
                try:
                    fd = _lock(a, shared=True)
                except RunDirError:
                    raise RunDirError(f"{out_dir}: is inside {a}, which another paced process "
                                      "(a compare, demo or study) is writing; wait for it to "
                                      "finish or choose another --out") from None
                stack.callback(_unlock, fd)
        yield


def _write_marker(path: Path, what: str) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o644)
    with os.fdopen(fd, "w") as f:
        json.dump({"paced": what, "note": "written by paced: --overwrite deletes only the "
                   "files paced writes here, and refuses a directory holding anything else"},
                  f)
        f.write("\n")


def remove_run(out_dir: Path) -> None:
    """Delete the run in the marked directory out_dir: only RUN_FILES (checkpoints/ only
    when it holds nothing but CHECKPOINT_FILES). RunDirError, deleting nothing, when out_dir
    is not marked, contains a link, or holds anything else."""
    out_dir = Path(out_dir)
    if not (out_dir / MARKER).is_file() or (out_dir / MARKER).is_symlink():
        raise RunDirError(f"{out_dir}: is not a paced run directory (no {MARKER} marker); "
                          "paced deletes nothing there")
    links, other = symlinks(out_dir), foreign_files(out_dir)
    if links or other:
        what = ", ".join(links) + " (symbolic links)" if links else ", ".join(other[:5])
        raise RunDirError(f"{out_dir}: --overwrite deletes only a run's own files, and this "
                          f"directory also holds {what}; move them away or choose another "
                          "--out (nothing was deleted)")
    for name in existing_run(out_dir):
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


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
    _check_target(out_dir)
    if resume and not out_dir.is_dir():
        raise RunDirError(f"{out_dir}: no such run directory to --resume; start the run "
                          "without --resume")
    created = not os.path.lexists(out_dir)
    with _hold_ancestors(out_dir):
        fd = _make_and_lock(out_dir, "run directory")
        try:
            _prepare(out_dir, resume, overwrite)
            try:
                yield out_dir
            except PacedError:
                if not resume:
                    _undo_start(out_dir, created)
                raise
        finally:
            _unlock(fd)


def _undo_start(out_dir: Path, created: bool) -> None:
    """A new run that failed on a user's error before its first metrics row (a bad prompt,
    model or config found at setup) leaves nothing that blocks a retry: its config.toml and
    marker go, and the directory too when this claim created it and it is empty."""
    if os.path.lexists(out_dir / "metrics.jsonl"):
        return  # the run started: what it wrote says where it stopped
    for name in ("config.toml", "metrics.jsonl.tmp", MARKER):
        path = out_dir / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
    if created and not os.listdir(out_dir):
        out_dir.rmdir()


def _prepare(out_dir: Path, resume: bool, overwrite: bool) -> None:
    """Check out_dir under its lock; mark it (new) or empty it (overwrite)."""
    links = symlinks(out_dir)
    if links:
        raise RunDirError(f"{out_dir}: {', '.join(links)} is a symbolic link; paced never "
                          "writes through a link in a run directory; remove it (or choose "
                          "another --out)")
    marked = (out_dir / MARKER).is_file()
    if not marked:
        entries = sorted(os.listdir(out_dir))
        if resume:
            raise RunDirError(f"{out_dir}: holds no paced run (no {MARKER} marker, which "
                              "paced writes into every run directory); nothing to --resume "
                              "(a run of a paced version older than the marker: create it, "
                              f"touch {out_dir / MARKER}, if the directory holds only that run)")
        if entries:
            raise RunDirError(f"{out_dir}: is not empty ({', '.join(entries[:5])}) and is not "
                              f"a paced run directory (no {MARKER} marker); paced writes a "
                              "run only into a new or empty directory and never deletes "
                              "files it did not write; choose another --out")
        _write_marker(out_dir / MARKER, "run")
        return
    found = existing_run(out_dir)
    if found and not resume:
        if not overwrite:
            raise RunDirError(
                f"{out_dir}: already holds a run ({', '.join(found)}); continue it with "
                "--resume, replace it with --overwrite (train(..., overwrite=True)), or "
                "choose another --out")
        remove_run(out_dir)


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
    (compare, demo, study, snr-probe): hold it locked for the block (marked OUTPUT_MARKER:
    its lock covers the runs inside it, see claim), and refuse one that already holds
    earlier results (any of `marks`) unless overwrite, in which case the command rewrites
    them (compare replaces its own sub-runs). Yields its Path."""
    out_dir = Path(out_dir)
    if out_dir.is_symlink() and not out_dir.is_dir():
        raise RunDirError(f"{out_dir}: is a dangling symbolic link; --out needs a directory")
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirError(f"{out_dir}: exists and is not a directory; --out needs a directory")
    if (out_dir / MARKER).is_file():
        raise RunDirError(f"{out_dir}: is a single run's directory (it holds {MARKER}); give "
                          "this command a directory of its own")
    found = [m for m in marks if (out_dir / m).exists()]
    if found and not overwrite:
        raise RunDirError(f"{out_dir}: already holds a {what} ({', '.join(found)}); replace it "
                          "with --overwrite or choose another --out")
    with _hold_ancestors(out_dir):
        fd = _make_and_lock(out_dir, "output directory")
        old = os.environ.get(HELD_ENV)
        try:
            if not (out_dir / OUTPUT_MARKER).is_file():
                if (out_dir / OUTPUT_MARKER).is_symlink():
                    raise RunDirError(f"{out_dir / OUTPUT_MARKER}: is a symbolic link; "
                                      "remove it")
                _write_marker(out_dir / OUTPUT_MARKER, "output")
            # runs claimed inside it by this process or the ones it spawns are ours
            os.environ[HELD_ENV] = os.pathsep.join(sorted(_held() | {str(out_dir.resolve())}))
            yield out_dir
        finally:
            if old is None:
                os.environ.pop(HELD_ENV, None)
            else:
                os.environ[HELD_ENV] = old
            _unlock(fd)


@contextmanager
def lock_dir(out_dir: Path | str) -> Iterator[Path]:
    """Hold out_dir (created if needed) exclusively for the block, nothing more: for commands
    that manage the runs inside it themselves (compare, demo, study)."""
    out_dir = Path(out_dir)
    with claim_output(out_dir, marks=(), overwrite=True, what="") as path:
        yield path


def check_new_file(path: Path | str, overwrite: bool) -> Path:
    """An output file path that may be written: not a directory, not a symbolic link, and
    not an existing file unless overwrite."""
    path = Path(path)
    if path.is_symlink():
        raise RunDirError(f"{path}: is a symbolic link; paced never writes through a link; "
                          "give the file's own path")
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
