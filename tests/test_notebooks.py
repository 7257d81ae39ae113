"""The walkthrough notebooks (notebooks/*.ipynb) run end to end in quick mode, and are stored
without outputs.

Each notebook runs in a fresh kernel of *this* interpreter's ipykernel (the .venv's): the kernel
spec is built here from sys.executable, so nothing is registered globally and a `python3` kernel
spec elsewhere on the machine (~/.local/share/jupyter, /usr/share/jupyter) is never used; an
injected first cell checks that the kernel's sys.prefix is ours. The working directory is a
fresh tmp_path, so the notebooks' runs/ land there. The cell tagged "parameters" gets
`QUICK = True` whatever the stored value. Any cell error, including a failed `assert` inside a
notebook, fails the test.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["01_theory.ipynb", "02_validation.ipynb", "03_your_student.ipynb"]
NEEDS = {"03_your_student.ipynb": "transformers"}  # the Hugging Face extra
CELL_TIMEOUT_S = 300
QUICK_LINE = re.compile(r"^QUICK\s*=.*$", re.MULTILINE)


def read(name: str):
    path = ROOT / "notebooks" / name
    assert path.is_file(), f"{path} is missing"
    return nbformat.read(path, as_version=4)


def parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "a notebook needs exactly one cell tagged 'parameters'"
    return cells[0]


def quick(nb):
    """nb with QUICK = True in its parameters cell (sizes derived from QUICK follow)."""
    cell = parameters_cell(nb)
    cell.source, n = QUICK_LINE.subn("QUICK = True", cell.source)
    assert n == 1, "the parameters cell needs exactly one `QUICK = ...` line"
    check = (f"import os, sys\nassert sys.prefix == {sys.prefix!r}, sys.prefix\n"
             f"assert os.environ.get('OMP_NUM_THREADS') == '1'")
    nb.cells.insert(0, nbformat.v4.new_code_cell(check))
    return nb


def kernel_manager():
    """An AsyncKernelManager (what nbclient drives) whose every kernel name resolves to
    ipykernel on sys.executable."""
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class ThisInterpreter(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            spec = {k: v for k, v in get_kernel_dict().items()
                    if k in KernelSpec.class_trait_names()}
            return KernelSpec(resource_dir=RESOURCES, name=kernel_name, **spec)

    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=ThisInterpreter())


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stored_without_outputs(name):
    nb = read(name)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{name}: clear the outputs before committing (e.g. jupyter nbconvert "
                "--clear-output --inplace)")
    assert QUICK_LINE.search(parameters_cell(nb).source).group(0) == "QUICK = True"


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_quick_mode(name, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    # connection files and IPython's profile go to tmp_path, not to ~/.local or ~/.ipython
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    cwd = tmp_path / "cwd"  # the notebook's working directory: its runs/ land here
    cwd.mkdir()
    client = NotebookClient(quick(read(name)), km=kernel_manager(), kernel_name="python3",
                            timeout=CELL_TIMEOUT_S, startup_timeout=120,
                            resources={"metadata": {"path": str(cwd)}})
    # one thread per kernel: the suite runs two workers on two cores
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    # raises CellExecutionError, naming the cell, on any error; cleanup_kc: shut the kernel
    # down afterwards (nbclient leaves a kernel it was handed running otherwise)
    client.execute(env=env, cleanup_kc=True)
    print(f"{name}: {time.perf_counter() - t0:.1f} s")
