"""Every ```python block of README.md runs as written (each in a fresh interpreter, in a
scratch directory that sees the repository's files), so the README cannot drift from the
code. A block that raises fails the test with the block's line number."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks() -> list[tuple[int, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [(text[: m.start()].count("\n") + 1, m.group(1)) for m in BLOCK.finditer(text)]


def test_the_readme_has_python_blocks():
    assert python_blocks(), "README.md has no ```python block; this test would check nothing"


@pytest.mark.parametrize("line,code", python_blocks(), ids=lambda x: f"line{x}"
                         if isinstance(x, int) else "")
def test_readme_python_block_runs(line, code, tmp_path):
    for entry in ROOT.iterdir():  # the repository's files, but runs/ etc. land in tmp_path
        if entry.name not in {".git", ".venv", "runs"} and not entry.name.startswith("."):
            (tmp_path / entry.name).symlink_to(entry)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (f"README.md line {line}: the block fails\n"
                                  f"{proc.stderr[-3000:]}")
