"""run_groups' order of starting runs: baselines and arms seed-major, `late` arms last."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import paced_train.experiments.compare as compare
from paced_train.config import RunConfig


class _Inline:
    """An executor that runs each job when it is submitted (the order is the start order)."""

    def __init__(self, *a, **k):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args):
        f = Future()
        f.set_result(fn(*args))
        return f


def test_runs_start_seed_major_with_late_arms_last(monkeypatch, tmp_path):
    started = []

    def fake_worker(cfg, run_dir, overwrite):
        started.append(str(Path(run_dir).relative_to(tmp_path)))
        return {"acc": 0.5, "steps": 1, "wall_s": 0.0, "flops": 1.0}

    monkeypatch.setattr(compare, "ProcessPoolExecutor", _Inline)
    monkeypatch.setattr(compare, "_worker", fake_worker)
    cfg = RunConfig()
    groups = [compare.Group(tmp_path / "g1", cfg, {"u": [], "a": [], "k": []}, late=("k",)),
              compare.Group(tmp_path / "g2", cfg, {"u": [], "c": []})]
    runs = compare.run_groups(groups, seeds=2, jobs=2, progress=False)
    assert sorted(started) == sorted({f"{g}/{a}/seed{s}" for g, arms in
                                      (("g1", "uak"), ("g2", "uc")) for a in arms
                                      for s in (0, 1)})
    pos = {r: i for i, r in enumerate(started)}
    # every primary run of seed 0 starts before any of seed 1 except baselines queued earlier
    assert pos["g1/a/seed0"] < pos["g1/a/seed1"] and pos["g2/c/seed0"] < pos["g2/c/seed1"]
    assert pos["g1/u/seed0"] < pos["g2/u/seed0"] < pos["g1/u/seed1"]
    # the late arm starts after every other run, of every group and seed
    last_primary = max(i for r, i in pos.items() if "/k/" not in r)
    assert min(pos["g1/k/seed0"], pos["g1/k/seed1"]) > last_primary
    assert runs[0]["k"][1]["run_dir"].endswith("g1/k/seed1")
