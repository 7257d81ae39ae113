"""Checkpoints: atomic writes, exact restore of model, optimizer, step, extra state and the
next random draws; a crash while writing leaves the previous checkpoint loadable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paced_theory.errors import InputError
from paced_train.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint


def test_checkpoint_roundtrip_restores_next_draws(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    gens = {"np": np.random.default_rng(1), "gen": torch.Generator().manual_seed(2)}
    path = tmp_path / "last.pt"
    save_checkpoint(path, model=net, optimizer=opt, step=7, rng_state=capture_rng(gens),
                    extra={"k": [1]})
    want = (gens["np"].random(), torch.rand(1, generator=gens["gen"]).item())
    net2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.AdamW(net2.parameters(), lr=0.1)
    info = load_checkpoint(path, model=net2, optimizer=opt2)
    g2 = {"np": np.random.default_rng(99), "gen": torch.Generator().manual_seed(99)}
    restore_rng(info["rng_state"], g2)
    assert (g2["np"].random(), torch.rand(1, generator=g2["gen"]).item()) == want
    assert info["step"] == 7 and info["extra"] == {"k": [1]}
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]

    # a crash while writing the next checkpoint leaves this one loadable
    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, model=net, optimizer=opt, step=8, rng_state={}, extra={})
    monkeypatch.undo()
    assert load_checkpoint(path, model=net2)["step"] == 7
    with pytest.raises(InputError, match="nothere"):
        load_checkpoint(tmp_path / "nothere.pt", model=net2)
