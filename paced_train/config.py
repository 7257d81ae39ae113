"""Run configuration: frozen dataclasses, loaded from TOML, overridable as `section.key=value`.

Every run directory gets the resolved config as config.toml, which reloads to an equal
RunConfig. Unknown sections or keys, wrong types and inconsistent values raise ConfigError
naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from paced_theory.errors import ConfigError


@dataclass(frozen=True)
class RunSection:
    name: str = "run"
    seed: int = 0
    device: str = "auto"          # auto | cpu | cuda
    log_every: int = 10
    ckpt_every: int = 50
    progress: bool = True


@dataclass(frozen=True)
class DataSection:
    add_digits: tuple = (1, 2, 3, 4)
    mul_digits: tuple = (1, 2, 3)
    n_train_per_cell: int = 48
    n_eval_per_cell: int = 16
    n_retention: int = 64
    jsonl: str = ""               # a JSONL problem file instead of the arithmetic suite


@dataclass(frozen=True)
class ModelsSection:
    student: str = "shipped:student"
    teacher: str = "shipped:teacher"


@dataclass(frozen=True)
class RolloutsSection:
    K: int = 8
    refresh_every: int = 20       # steps between pass-rate refreshes of the whole pool
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 8


@dataclass(frozen=True)
class WeightsSection:
    method: str = "paced"         # paced | uniform | hard
    alpha: float = 1.0
    beta: float = 1.0
    estimator: str = "plugin"     # plugin | unbiased | posterior
    prior_a: float = 1.0
    prior_b: float = 1.0
    lo: float = 0.0               # hard band lo < p_hat < hi
    hi: float = 1.0
    normalise: str = "sum"        # sum: sum w L / sum w ; mean: / batch ; none


@dataclass(frozen=True)
class LossSection:
    schedule: str = "forward"     # forward | reverse | two-stage | akl | jsd | skew
    switch_at: float = 0.5        # two-stage: fraction of the budget spent on forward KL
    switch_unit: str = "steps"    # steps | compute
    temperature: float = 1.0
    jsd_beta: float = 0.5
    skew_alpha: float = 0.1
    akl_mu: float = 0.5


@dataclass(frozen=True)
class OptimSection:
    lr: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    warmup_steps: int = 10


@dataclass(frozen=True)
class BudgetSection:
    steps: int = 200              # maximum optimizer steps
    flops: float = 0.0            # > 0: also stop when the compute ledger reaches this


@dataclass(frozen=True)
class EvalSection:
    every: int = 25
    mean_at_k: int = 4
    max_new_tokens: int = 8


@dataclass(frozen=True)
class ProbeSection:
    """`paced snr-probe` (snr_probe.py)."""

    n_problems: int = 336         # pool size (taken from the training problems)
    loss: str = "forward"         # forward (teacher references) | reverse (student samples)
    param_prefix: str = ""        # only parameters whose name starts with this ("" = all)
    sketch_dim: int = 1024        # CountSketch width; 0 = exact gradients
    sketch_hashes: int = 1
    n_boot: int = 200
    min_per_bin: int = 4


@dataclass(frozen=True)
class RunConfig:
    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    models: ModelsSection = field(default_factory=ModelsSection)
    rollouts: RolloutsSection = field(default_factory=RolloutsSection)
    weights: WeightsSection = field(default_factory=WeightsSection)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    budget: BudgetSection = field(default_factory=BudgetSection)
    eval: EvalSection = field(default_factory=EvalSection)
    probe: ProbeSection = field(default_factory=ProbeSection)


SECTIONS = {f.name: f.default_factory for f in fields(RunConfig)}
CHOICES = {
    ("run", "device"): ("auto", "cpu", "cuda"),
    ("weights", "method"): ("paced", "uniform", "hard"),
    ("weights", "estimator"): ("plugin", "unbiased", "posterior"),
    ("weights", "normalise"): ("sum", "mean", "none"),
    ("loss", "schedule"): ("forward", "reverse", "two-stage", "akl", "jsd", "skew"),
    ("loss", "switch_unit"): ("steps", "compute"),
    ("probe", "loss"): ("forward", "reverse"),
}


def _coerce(value, default, where: str):
    """Check a TOML value against the type of the field's default."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, tuple):
        if isinstance(value, list | tuple) and all(isinstance(v, int) for v in value):
            return tuple(value)
    raise ConfigError(f"{where}: expected {type(default).__name__}, got {value!r}")


def from_dict(data: dict, source: str = "<config>") -> RunConfig:
    sections = {}
    for name, body in data.items():
        if name not in SECTIONS:
            raise ConfigError(f"{source}: unknown section [{name}]; known: {', '.join(SECTIONS)}")
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        default = SECTIONS[name]()
        known = {f.name for f in fields(default)}
        values = {}
        for key, value in body.items():
            if key not in known:
                raise ConfigError(f"{source}: unknown key '{name}.{key}'; known keys of [{name}]: "
                                  f"{', '.join(sorted(known))}")
            values[key] = _coerce(value, getattr(default, key), f"{source}: '{name}.{key}'")
        sections[name] = replace(default, **values)
    cfg = RunConfig(**sections)
    validate(cfg, source)
    return cfg


def load_config(path: Path | str | None, overrides: list[str] = ()) -> RunConfig:
    """Load TOML (or defaults when path is None) and apply `section.key=value` overrides."""
    if path is None:
        cfg, source = RunConfig(), "<defaults>"
    else:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML ({exc})") from None
        cfg, source = from_dict(data, str(path)), str(path)
    return apply_overrides(cfg, overrides, source)


def apply_overrides(cfg: RunConfig, overrides, source: str = "<overrides>") -> RunConfig:
    data = to_dict(cfg)
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"override {item!r}: expected section.key=value, e.g. optim.lr=3e-4")
        dotted, raw = item.split("=", 1)
        section, key = dotted.strip().split(".", 1)
        if section not in data:
            raise ConfigError(f"override {item!r}: unknown section [{section}]")
        if key not in data[section]:
            raise ConfigError(f"override {item!r}: unknown key '{section}.{key}'")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare word: treat as a string (weights.method=uniform)
        data[section][key] = value
    return from_dict(data, f"{source} + overrides" if overrides else source)


def validate(cfg: RunConfig, source: str = "<config>") -> None:
    for (section, key), allowed in CHOICES.items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            raise ConfigError(f"{source}: '{section}.{key}' = {value!r}; choose one of "
                              f"{', '.join(allowed)}")
    positive = [("rollouts", "K"), ("rollouts", "refresh_every"), ("rollouts", "max_new_tokens"),
                ("optim", "batch_size"), ("budget", "steps"), ("eval", "every"),
                ("eval", "mean_at_k"), ("run", "log_every"), ("run", "ckpt_every"),
                ("data", "n_train_per_cell"), ("data", "n_eval_per_cell"),
                ("data", "n_retention"), ("probe", "n_problems"), ("probe", "sketch_hashes")]
    for section, key in positive:
        if getattr(getattr(cfg, section), key) < 1:
            raise ConfigError(f"{source}: '{section}.{key}' must be >= 1")
    w = cfg.weights
    if w.alpha < 0 or w.beta < 0:
        raise ConfigError(f"{source}: 'weights.alpha' and 'weights.beta' must be >= 0")
    if not 0.0 <= w.lo < w.hi <= 1.0:
        raise ConfigError(f"{source}: need 0 <= 'weights.lo' < 'weights.hi' <= 1")
    if w.prior_a <= 0 or w.prior_b <= 0:
        raise ConfigError(f"{source}: 'weights.prior_a' and 'weights.prior_b' must be > 0")
    if w.estimator == "unbiased" and (w.alpha != int(w.alpha) or w.beta != int(w.beta)
                                      or w.alpha + w.beta > cfg.rollouts.K):
        raise ConfigError(f"{source}: the unbiased estimator needs integer 'weights.alpha', "
                          "'weights.beta' with alpha + beta <= 'rollouts.K'")
    if not 0.0 <= cfg.loss.switch_at <= 1.0:
        raise ConfigError(f"{source}: 'loss.switch_at' must be in [0, 1]")
    if cfg.loss.switch_unit == "compute" and cfg.loss.schedule == "two-stage" \
            and cfg.budget.flops <= 0:
        raise ConfigError(f"{source}: 'loss.switch_unit' = compute needs 'budget.flops' > 0")
    for key in ("temperature",):
        if getattr(cfg.loss, key) <= 0:
            raise ConfigError(f"{source}: 'loss.{key}' must be > 0")
    if cfg.rollouts.temperature <= 0 or not 0 < cfg.rollouts.top_p <= 1:
        raise ConfigError(f"{source}: need 'rollouts.temperature' > 0 and "
                          "0 < 'rollouts.top_p' <= 1")
    if cfg.probe.sketch_dim < 0 or cfg.probe.min_per_bin < 2 or cfg.probe.n_boot < 0:
        raise ConfigError(f"{source}: need 'probe.sketch_dim' >= 0, 'probe.min_per_bin' >= 2, "
                          "'probe.n_boot' >= 0")
    if cfg.optim.lr <= 0 or cfg.budget.flops < 0:
        raise ConfigError(f"{source}: need 'optim.lr' > 0 and 'budget.flops' >= 0")


def to_dict(cfg: RunConfig) -> dict:
    out = {}
    for f in fields(cfg):
        sec = dataclasses.asdict(getattr(cfg, f.name))
        out[f.name] = {k: list(v) if isinstance(v, tuple) else v for k, v in sec.items()}
    return out


def config_to_toml(cfg: RunConfig) -> str:
    def fmt(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list | tuple):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return repr(v)

    lines = []
    for section, body in to_dict(cfg).items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {fmt(v)}" for k, v in body.items()]
        lines.append("")
    return "\n".join(lines)
