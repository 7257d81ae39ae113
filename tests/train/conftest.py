"""Tiny random GPT teacher/student pairs saved to a temporary directory, and the tiny config.

Tests must not depend on the shipped weights' quality, so they use these."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from paced_train.config import load_config
from paced_train.model import GPT, GPTConfig, save_model
from paced_train.tokenizer import default_tokenizer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The models and tensors here are tiny: intra-op threads only add contention (and the
    suite runs two workers on two cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    tok = default_tokenizer()
    torch.manual_seed(0)
    paths = {}
    for name, layers in (("student", 1), ("teacher", 1)):
        m = GPT(GPTConfig(tok.vocab_size, block_size=48, n_layer=layers, n_head=2, n_embd=16))
        save_model(d / f"{name}.safetensors", m, tok, {})
        paths[name] = str(d / f"{name}.safetensors")
    return paths


@pytest.fixture
def tiny_cfg(tiny_models):
    def make(*overrides):
        return load_config(ROOT / "configs" / "tiny.toml", [
            f'models.student="{tiny_models["student"]}"',
            f'models.teacher="{tiny_models["teacher"]}"', *overrides])
    return make
