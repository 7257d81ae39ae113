"""The tiny config on the tiny random GPT pair (tests/conftest.py: tiny_models), and one
torch thread per test module."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from paced_train.config import load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The models and tensors here are tiny: intra-op threads only add contention (and the
    suite runs two workers on two cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tiny_cfg(tiny_models):
    def make(*overrides):
        return load_config(ROOT / "configs" / "tiny.toml", [
            f'models.student="{tiny_models["student"]}"',
            f'models.teacher="{tiny_models["teacher"]}"', *overrides])
    return make
