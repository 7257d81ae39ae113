"""What a run holds (paced_train/loop/state.py): State survives a checkpoint field for field, and
the phase timer adds up."""

from __future__ import annotations

import time

import torch

from paced_train.config import RunConfig
from paced_train.loop.ledger import Ledger
from paced_train.loop.passrates import PassRateTable
from paced_train.loop.state import Run, State, resume_state, timed
from paced_train.models.checkpoint import save_checkpoint


def test_trainer_state_round_trips_through_a_checkpoint(tmp_path):
    """State.extra -> save_checkpoint -> resume_state gives back every field of State."""
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(net.parameters())
    st = State(step=7, table=PassRateTable(["a", "b"]), ledger=Ledger(10, 20),
               references={"a": [3, 4]}, reference_ok={"a": True}, retention_start=0.5,
               last_eval={"acc": 0.25}, wall=12.5, refresh_flops=80.0, idle_refreshes=1,
               last_refresh=5)
    st.table.refresh(["a", "b"], [1, 4], 4, step=5)
    st.ledger.rollout(4)
    st.timers["rollout"] = 1.5
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, model=net, optimizer=opt, step=st.step, rng_state={},
                    extra=st.extra(RunConfig()))
    run = Run(RunConfig(), torch.device("cpu"), net, net, None, opt, [], [], [])
    back = State(step=0, table=PassRateTable(["a", "b"]), ledger=Ledger(10, 20))
    resume_state(run, back, path)
    assert back.extra(RunConfig()) == st.extra(RunConfig()) and back.step == 7


def test_timed_adds_the_blocks_wall_time_to_its_phase():
    st = State(step=0, table=PassRateTable([]), ledger=Ledger(1, 1))
    for _ in range(2):
        with timed(st, "teacher", torch.device("cpu")):
            time.sleep(0.01)
    assert st.timers["teacher"] >= 0.02 and st.timers["rollout"] == 0.0
