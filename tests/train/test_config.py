"""Config: TOML round trip, typed `key=value` overrides, and errors that name file and key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paced_theory.errors import ConfigError
from paced_train.config import (
    METHOD_OVERRIDES,
    RunConfig,
    apply_overrides,
    changed_keys,
    config_to_toml,
    from_dict,
    load_config,
)

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_and_shipped_configs_round_trip(tmp_path):
    demo = ROOT / "paced_train" / "configs" / "demo.toml"
    for path in (None, ROOT / "configs" / "tiny.toml", demo):
        cfg = load_config(path)
        f = tmp_path / "saved.toml"
        f.write_text(config_to_toml(cfg))
        assert load_config(f) == cfg
    assert load_config(ROOT / "configs" / "tiny.toml") != RunConfig()


@settings(deadline=None, max_examples=40)
@given(name=st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
       lr=st.floats(1e-8, 10.0), K=st.integers(1, 64), progress=st.booleans(),
       digits=st.lists(st.integers(1, 6), min_size=1, max_size=4))
def test_any_config_round_trips_through_toml(name, lr, K, progress, digits):
    cfg = from_dict({"run": {"name": name, "progress": progress}, "optim": {"lr": lr},
                     "rollouts": {"K": K}, "data": {"add_digits": digits}})
    assert from_dict(tomllib.loads(config_to_toml(cfg))) == cfg


def test_overrides_are_parsed_as_the_keys_type():
    cfg = load_config(None, ["optim.lr=3e-4", "rollouts.K=16", "run.progress=false",
                             "data.add_digits=[1, 3]", "data.mul_digits=2,4",
                             "weights.method=hard", 'models.student="a b.safetensors"',
                             "run.name=123", "budget.flops=1e12", "optim.grad_clip=2"])
    assert cfg.optim.lr == 3e-4 and cfg.rollouts.K == 16 and cfg.run.progress is False
    assert cfg.data.add_digits == (1, 3) and cfg.data.mul_digits == (2, 4)
    assert cfg.weights.method == "hard" and cfg.models.student == "a b.safetensors"
    assert cfg.run.name == "123"  # a string key stays a string
    assert isinstance(cfg.budget.flops, float) and isinstance(cfg.optim.grad_clip, float)
    # later overrides win; overrides apply on top of a file
    assert load_config(None, ["optim.lr=1", "optim.lr=2"]).optim.lr == 2.0
    tiny = load_config(ROOT / "configs" / "tiny.toml", ["budget.steps=3"])
    assert tiny.budget.steps == 3 and tiny.run.name == "tiny"
    assert changed_keys(RunConfig(), cfg) == [
        "run.name", "run.progress", "data.add_digits", "data.mul_digits", "models.student",
        "rollouts.K", "weights.method", "optim.lr", "optim.grad_clip", "budget.flops"]


def test_method_overrides_apply_cleanly():
    base = load_config(ROOT / "configs" / "tiny.toml")
    for method, over in METHOD_OVERRIDES.items():
        cfg = apply_overrides(base, over)
        assert cfg.weights.method in ("paced", "uniform", "hard", "lp", "rholoss",
                                      "maxloss"), method
    assert apply_overrides(base, METHOD_OVERRIDES["two-stage"]).loss.schedule == "two-stage"
    for method, weights in (("rl", "uniform"), ("paced-rl", "paced"), ("hard-rl", "hard")):
        cfg = apply_overrides(base, METHOD_OVERRIDES[method])
        assert (cfg.weights.method, cfg.loss.schedule) == (weights, "rl"), method


def test_rl_keys_default_off_and_bad_values_name_the_key():
    """loss.schedule = "rl": its knobs default to no KL and no std division; a config it
    cannot run names the key and says what to do; its knobs are ignored by the divergences
    (so one base config serves `paced compare --methods uniform,rl`)."""
    cfg = load_config(None, ["loss.schedule=rl"])
    assert (cfg.loss.rl_kl, cfg.loss.rl_std) == (0.0, False)
    assert load_config(None, ["loss.rl_kl=0.1", "loss.rl_std=true"]).loss.schedule == "forward"
    for item, needle in (("rollouts.K=1", "'rollouts.K' = 1: loss.schedule = 'rl'"),
                         ("rollouts.top_p=0.9", "'rollouts.top_p' = 0.9: loss.schedule = 'rl'"),
                         ("loss.rl_kl=-0.5", "'loss.rl_kl' must be >= 0")):
        with pytest.raises(ConfigError, match=needle):
            load_config(None, ["loss.schedule=rl", item])
    with pytest.raises(ConfigError, match="'loss.schedule' = 'RL'; choose one of .*rl"):
        load_config(None, ["loss.schedule=RL"])
    load_config(None, ["rollouts.K=1", "rollouts.top_p=0.9"])  # fine without rl


@pytest.mark.parametrize("body,needle", [
    ("[optim]\nlrr = 1.0\n", "'optim.lrr'; did you mean 'optim.lr'"),
    ("[nope]\n", "[nope]"),
    ("[optim]\nlr = \"fast\"\n", "'optim.lr': expected a number"),
    ("[rollouts]\nK = 8.5\n", "'rollouts.K': expected an integer"),
    ("[run]\nprogress = \"yes\"\n", "'run.progress': expected true/false"),
    ("[data]\nadd_digits = [1, \"2\"]\n", "'data.add_digits': expected a list of integers"),
    ("[rollouts]\nK = 0\n", "'rollouts.K' must be >= 1"),
    ("[weights]\nalpha = -1.0\n", "'weights.alpha' must be >= 0"),
    ("[weights]\nlo = 0.6\nhi = 0.4\n", "'weights.lo'"),
    ("[weights]\nlo = 0.5\nhi = 0.5\n", "lo < hi"),
    ("[weights]\nmethod = \"magic\"\n", "'weights.method' = 'magic'; choose one of"),
    ("[loss]\nschedule = \"sideways\"\n", "'loss.schedule'"),
    ("[weights]\nestimator = \"guess\"\n", "'weights.estimator'"),
    ("[weights]\nestimator = \"unbiased\"\nalpha = 1.5\n", "'weights.estimator'"),
    ("[loss]\nschedule = \"two-stage\"\nswitch_unit = \"compute\"\n", "budget.flops"),
    ("[loss]\nswitch_at = 1.5\n", "'loss.switch_at'"),
    ("[rollouts]\ntop_p = 0.0\n", "'rollouts.top_p'"),
    ("[optim]\nlr = 0.0\n", "'optim.lr' must be > 0"),
    ("[run]\ndevice = \"tpu\"\n", "'run.device'"),
    ("[optim\n", "invalid TOML"),
])
def test_bad_configs_name_file_and_key(tmp_path, body, needle):
    f = tmp_path / "bad.toml"
    f.write_text(body)
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    assert str(f) in str(exc.value) and needle in str(exc.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="nothere.toml"):
        load_config(tmp_path / "nothere.toml")


@pytest.mark.parametrize("item,needle", [
    ("optim.lr", "expected section.key=value"),
    ("lr=3", "expected section.key=value"),
    ("optim.nope=1", "'optim.nope'"),
    ("zz.lr=1", "unknown section 'zz'"),
    ("rollouts.K=abc", "'rollouts.K': cannot read 'abc' as an integer"),
    ("rollouts.K=2.5", "as an integer"),
    ("run.progress=maybe", "true/false"),
    ("data.add_digits=[1,x]", "list of integers"),
    ("rollouts.K=0", "'rollouts.K' must be >= 1"),
])
def test_bad_overrides_name_the_key(item, needle):
    with pytest.raises(ConfigError) as exc:
        load_config(ROOT / "configs" / "tiny.toml", [item])
    assert needle in str(exc.value)
    assert "tiny.toml" in str(exc.value) or "override" in str(exc.value)


def test_config_refuses_bad_counts_and_overlapping_retention():
    with pytest.raises(ConfigError, match="data.add_counts"):
        load_config(None, ["data.add_digits=[1,2]", "data.add_counts=[5]"])
    with pytest.raises(ConfigError, match="retention_add_digits"):
        load_config(None, ["data.add_digits=[1,2]", "data.retention_add_digits=[2]"])
    with pytest.raises(ConfigError, match="settled_K"):
        load_config(None, ["rollouts.K=4", "rollouts.settled_K=4"])


def test_pass_rate_keys_default_to_what_configs_before_them_meant():
    """A config without rollouts.source / likelihood / max_age measures by rollouts, every
    problem every refresh_every steps; bad values name the key."""
    from paced_train.config import load_config

    cfg = load_config(None, ["rollouts.refresh_every=7"])
    assert (cfg.rollouts.source, cfg.rollouts.max_age, cfg.rollouts.max_share) == \
        ("rollouts", 0, 1.0)
    with pytest.raises(ConfigError, match="rollouts.source"):
        load_config(None, ["rollouts.source=guess"])
    with pytest.raises(ConfigError, match="rollouts.max_age"):
        load_config(None, ["rollouts.max_age=-1"])
    demo = load_config(ROOT / "paced_train" / "configs" / "demo.toml")
    assert demo.rollouts.source == "likelihood" and demo.rollouts.max_age == 50


def test_value_criteria_are_refused_under_rl():
    """lp / rholoss / maxloss read distillation losses, which the RL loss does not compute."""
    for m in ("lp", "rholoss", "maxloss"):
        with pytest.raises(ConfigError, match="weights.method"):
            load_config(None, [f"weights.method={m}", "loss.schedule=rl"])
    load_config(None, ["weights.method=paced", "loss.schedule=rl"])
