"""`paced study --pools FILE`: the pools TOML loader."""

from pathlib import Path

import pytest

from paced_theory.errors import ConfigError, PacedError
from paced_train.config import RunConfig
from paced_train.experiments.study import POOLS, SIZES, load_pools, study_groups

ROOT = Path(__file__).resolve().parents[3]


def test_the_committed_pools_file_is_the_built_in_pools():
    assert load_pools(ROOT / "bench/results/calibration/pools.toml") == POOLS


@pytest.mark.parametrize("text, key", [
    ('p1 = ["data.add_digits=[2]"]\np2 = ["data.nope=3"]\n', "p2"),
    ('p1 = "data.add_digits=[2]"\n', "p1"),
    ('p1 = ["data.add_counts=[a]"]\n', "p1"),
])
def test_a_bad_pool_names_the_file_and_the_pool(tmp_path, text, key):
    path = tmp_path / "pools.toml"
    path.write_text(text)
    with pytest.raises(PacedError) as e:
        load_pools(path)
    assert str(path) in str(e.value) and f"'{key}'" in str(e.value)


def test_unreadable_or_invalid_or_empty_file(tmp_path):
    for text in (None, "p1 = [", ""):
        path = tmp_path / "pools.toml"
        if text is None:
            path = tmp_path / "missing.toml"
        else:
            path.write_text(text)
        with pytest.raises(ConfigError, match=str(path)):
            load_pools(path)


def test_study_groups_use_the_file_pools(tmp_path):
    pools = {"mine": ["data.add_digits=[2]", "data.add_counts=[10]"],
             "frontier": POOLS["frontier"]}
    groups = study_groups(RunConfig(), tmp_path, SIZES["default"], pools=pools)
    names = [g.out_dir.name for g in groups]
    assert names == ["mine-forward", "frontier-forward", "frontier-reverse"]
    assert tuple(groups[0].cfg.data.add_counts) == (10,)
    assert len(groups[0].arms) == 1 + 6 + 8  # the Beta grid goes to the first pool


def test_study_takes_overrides_without_a_config(tmp_path, monkeypatch):
    """`paced study run.seed=3` overrides the default (demo) config: the first positional is
    an override, not a file name (it used to fail with "cannot read the config")."""
    import paced_train.experiments.study as study
    from paced_train.cli import main

    seen = {}

    def fake(cfg, out, **kw):
        seen["cfg"] = cfg
        (out / "table.md").write_text("table\n")
        return {"runs": 0, "wall_s": 0.0}

    monkeypatch.setattr(study, "run_study", fake)
    out = tmp_path / "s"
    out.mkdir()
    assert main(["study", "run.seed=3", "optim.lr=0.002", "--out", str(out)]) == 0
    assert seen["cfg"].run.seed == 3 and seen["cfg"].optim.lr == 0.002
    assert seen["cfg"].rollouts.source == "likelihood"  # the demo's config underneath
