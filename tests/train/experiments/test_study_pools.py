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
