"""Checkpoints: atomic writes, exact restore of model, optimizer, step, extra state and the
next random draws; a crash while writing leaves the previous checkpoint loadable; and a
checkpoint is data only: a planted pickle never runs, whatever the file is called."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch

import paced_train.models.checkpoint as ck
from paced_theory.errors import InputError
from paced_train.cli import main
from paced_train.models.checkpoint import (
    CheckpointError,
    capture_rng,
    checkpoint_path,
    load_checkpoint,
    read_checkpoint,
    restore_rng,
    save_checkpoint,
)
from paced_train.rundir import MARKER


def _net_and_opt(seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    return net, opt


def test_checkpoint_roundtrip_restores_next_draws(tmp_path, monkeypatch):
    net, opt = _net_and_opt()
    gens = {"np": np.random.default_rng(1), "mt": np.random.Generator(np.random.MT19937(5)),
            "gen": torch.Generator().manual_seed(2)}
    path = tmp_path / "last.safetensors"
    extra = {"k": [1, (2, 3)], "ids": {0: "a", (1, 2): None}, "nan": float("nan"),
             "inf": -float("inf"), "$odd": "key", "t": torch.arange(3)}
    save_checkpoint(path, model=net, optimizer=opt, step=7, rng_state=capture_rng(gens),
                    extra=extra)
    want = (gens["np"].random(), gens["mt"].random(),
            torch.rand(1, generator=gens["gen"]).item())
    net2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.AdamW(net2.parameters(), lr=0.1)
    info = load_checkpoint(path, model=net2, optimizer=opt2)
    g2 = {"np": np.random.default_rng(99), "mt": np.random.Generator(np.random.MT19937(9)),
          "gen": torch.Generator().manual_seed(99)}
    restore_rng(info["rng_state"], g2)
    assert (g2["np"].random(), g2["mt"].random(),
            torch.rand(1, generator=g2["gen"]).item()) == want
    # the JSON part keeps tuples, non-string keys and non-finite floats exactly
    got = info["extra"]
    assert info["step"] == 7 and got["k"] == [1, (2, 3)] and got["ids"] == {0: "a", (1, 2): None}
    assert np.isnan(got["nan"]) and got["inf"] == -float("inf") and got["$odd"] == "key"
    assert torch.equal(got["t"], torch.arange(3))
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                  net2.state_dict().values()))
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    assert all(torch.equal(s1["state"][0][k], s2["state"][0][k]) for k in s1["state"][0])

    # a crash while writing the next checkpoint leaves this one loadable
    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ck.os, "fsync", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, model=net, optimizer=opt, step=8, rng_state={}, extra={})
    monkeypatch.undo()
    assert load_checkpoint(path, model=net2)["step"] == 7
    with pytest.raises(InputError, match="nothere"):
        load_checkpoint(tmp_path / "nothere.safetensors", model=net2)


class Payload:
    """A pickle that, when unpickled, creates a marker file (as a real attack would run any
    command)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(path, marker, how: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "pickle":
        path.write_bytes(pickle.dumps(Payload(marker)))
    else:  # what torch.save writes: a zip archive holding the pickle
        torch.save({"model": Payload(marker)}, path)


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
@pytest.mark.parametrize("name", ["last.safetensors", "last.pt"])
def test_a_planted_pickle_never_runs(tiny_models, tmp_path, capsys, how, name):
    """--resume on a run directory holding a malicious checkpoint: nothing from the file
    runs (no marker), and the error is one line naming the file, exit 2."""
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_text("")
    (run / MARKER).write_text("{}")  # a run directory from someone else carries the marker
    _plant(run / "checkpoints" / name, marker, how)
    with pytest.raises(CheckpointError, match="pickle"):
        read_checkpoint(checkpoint_path(run))
    code = main(["train", "configs/tiny.toml", f'models.student="{tiny_models["student"]}"',
                 f'models.teacher="{tiny_models["teacher"]}"', "--out", str(run), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and not marker.exists()
    assert err.count("\n") == 1 and name in err and "pickle" in err and "Traceback" not in err
    # the pickle is real: unpickling it does create the marker
    pickle.loads(pickle.dumps(Payload(marker))).close()
    assert marker.exists()


# seeded bytes: pytest-xdist workers must collect the same parameters
@pytest.mark.parametrize("content", [random.Random(0).randbytes(64), b"",
                                     b"\x08\x00\x00\x00\x00\x00\x00\x00{}",
                                     b"\xff" * 8 + b"x" * 100])
def test_garbage_checkpoints_are_one_line_errors(tmp_path, content):
    path = tmp_path / "last.safetensors"
    path.write_bytes(content)
    net = torch.nn.Linear(3, 2)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path, model=net)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_a_checkpoint_of_another_model_is_a_checkpoint_error(tmp_path):
    net, opt = _net_and_opt()
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, model=net, optimizer=opt, step=1, rng_state={}, extra={})
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(path, model=torch.nn.Linear(4, 2))
    # a safetensors file that is not a checkpoint (no paced metadata)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="not a paced checkpoint"):
        read_checkpoint(tmp_path / "plain.safetensors")
