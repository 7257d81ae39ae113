"""Fixtures shared by the whole suite: tiny random GPT teacher/student pairs.

Tests must not depend on the shipped weights' quality, so they use these."""

from __future__ import annotations

import pytest
import torch

from paced_train.models.model import GPT, GPTConfig, save_model
from paced_train.models.tokenizer import default_tokenizer


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
