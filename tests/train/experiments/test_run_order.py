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


def test_a_recorded_run_is_the_same_config_when_it_predates_a_key(tmp_path):
    """Reuse compares configs, not text: a config.toml written before a key existed (the
    key at its default) is the same run; a changed value, or a key since removed, is not."""
    from paced_train.config import config_to_toml

    cfg = RunConfig()
    path = tmp_path / "config.toml"
    text = config_to_toml(cfg)
    path.write_text(text.replace("normalise = \"sum\"\n", ""))  # as if written before it
    assert "normalise" not in path.read_text() and compare.same_config(path, cfg)
    path.write_text(text.replace("normalise = \"sum\"", "normalise = \"mean\""))
    assert not compare.same_config(path, cfg)
    path.write_text(text.replace("[weights]\n", "[weights]\nretired_key = 1\n"))
    assert not compare.same_config(path, cfg)
    path.write_bytes(b"\xff\xfe not toml")
    assert not compare.same_config(path, cfg)
