"""Tiny random Llama student/teacher pairs for the TRL adapter tests (built with
LlamaConfig, saved with save_pretrained into a temporary directory; never the hub)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # trl_helpers, trl_worker

pytest.importorskip("trl")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def pair_dir(tmp_path_factory):
    """{'student': dir, 'teacher': dir}: a 2-layer hidden-16 student and a 2-layer hidden-32
    teacher sharing one character vocabulary (49 tokens) and chat template."""
    from trl_helpers import save_pair

    return save_pair(tmp_path_factory.mktemp("trl-pair"))


def pytest_collection_modifyitems(config, items):
    """TRL 1.16 calls transformers' deprecated is_gradient_checkpointing (not our code)."""
    here = Path(__file__).resolve().parent
    mark = pytest.mark.filterwarnings(
        "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
    for item in items:
        if Path(str(item.fspath)).resolve().parent == here:
            item.add_marker(mark)
