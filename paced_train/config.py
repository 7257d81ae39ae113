"""Run configuration: frozen dataclasses, one per TOML section, plus `section.key=value` overrides.

    cfg = load_config("paced_train/configs/demo.toml", ["weights.method=uniform", "optim.lr=3e-4"])
    text = config_to_toml(cfg)          # saved as <run>/config.toml; reloads to an equal cfg

Every key has a default, so a TOML file names only what it changes. The type of a key is the
type of its default (bool, int, float, str, or a list of ints). A value from TOML must have
that type (an int is accepted where a float is expected); a value from an override is parsed
as that type ("optim.lr=3e-4", "run.progress=false", "data.add_digits=[1,2]" or "1,2",
"weights.method=uniform" or '"uniform"'). Unknown sections or keys, wrong types and
inconsistent values raise ConfigError naming the file and the key and saying how to fix it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from paced_theory.errors import ConfigError
from paced_theory.kernels import ESTIMATORS
from paced_train.loop.losses import LOSSES, RL
from paced_train.loop.passrates import METHODS, NORMALISERS


@dataclass(frozen=True)
class RunSection:
    name: str = "run"
    seed: int = 0
    device: str = "auto"          # auto | cpu | cuda
    log_every: int = 10           # steps between progress-bar refreshes
    ckpt_every: int = 50          # steps between checkpoints (one is always written at the end)
    progress: bool = True         # tqdm bar
    threads: int = 0              # torch CPU threads (0: torch's default). Tiny models on a
                                  # busy machine run ~3.5x faster with 1 thread per process


@dataclass(frozen=True)
class DataSection:
    add_digits: tuple[int, ...] = (1, 2, 3, 4)
    mul_digits: tuple[int, ...] = (1, 2, 3)
    n_train_per_cell: int = 48    # training problems per cell, capped at what a small cell
                                  # holds beyond its held-out share (add1 has 100, mul1 80)
    add_counts: tuple[int, ...] = ()  # per-cell training counts (one per add_digits entry);
    mul_counts: tuple[int, ...] = ()  # empty: n_train_per_cell for every cell
    n_eval_per_cell: int = 16
    n_retention: int = 64         # retention problems (per retention cell, or compare problems)
    retention_add_digits: tuple[int, ...] = ()  # retention = these never-trained cells; both
    retention_mul_digits: tuple[int, ...] = ()  # empty: the `compare` skill
    jsonl: str = ""               # a JSONL problem file instead of the arithmetic suite
    extract: str = "first"        # JSONL answers: the first | last number of a completion
    retention_jsonl: str = ""     # a JSONL file of retention problems (forgetting) instead
                                  # of n_retention built-in `compare` problems


@dataclass(frozen=True)
class ModelsSection:
    student: str = "shipped:student"   # or a path (our .safetensors, an HF directory, a .gguf)
    teacher: str = "shipped:teacher"   # same forms, or "self": a frozen copy of the initial student


@dataclass(frozen=True)
class TrainableSection:
    """Which student parameters train (models/adapters.py): the same for every arm of a
    comparison. Frozen parameters get no gradient and no optimizer state."""

    mode: str = "all"             # all | top: the last top_blocks blocks + final norm |
                                  # lora: LoRA adapters via peft (the optional `lora` extra)
    top_blocks: int = 2           # top: how many transformer blocks (from the output side)
    head: bool = False            # top: also the output head (refused when tied to the
                                  # input embedding: its gradient would cross every block)
    lora_rank: int = 8            # lora: adapter rank r
    lora_alpha: float = 16.0      # lora: scale alpha (the update is (alpha / r) B A x)
    lora_targets: str = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
                                  # lora: comma-separated names of the linear layers adapted


@dataclass(frozen=True)
class RolloutsSection:
    """How pass rates are measured and kept current (loop/rollouts.py, loop/likelihood.py)."""

    source: str = "rollouts"      # rollouts: K verified student samples per problem |
                                  # likelihood: the student's probability of the canonical
                                  # answer (tasks with one accepted string: add, mul)
    likelihood: str = "binomial"  # likelihood source: binomial = c ~ Binomial(K, P) (the
                                  # distribution of K rollouts' count, rollout-like support) |
                                  # exact = p_hat = P (continuous weights)
    K: int = 8                    # student rollouts per problem per pass-rate refresh
    refresh_every: int = 20       # steps between refreshes (checks, with max_age > 0)
    max_age: int = 0              # > 0: a refresh measures only the entries that would
                                  # otherwise be older than this many steps before the next
                                  # one (oldest first); 0: every problem, every refresh
    max_share: float = 1.0        # < 1: cut a refresh (oldest entries first) to what keeps
                                  # pass-rate estimation at or below this share of the FLOPs
    settled_K: int = 0            # > 0: a problem settled at p_hat in {0, 1} gets settled_K
                                  # rollouts first, and the other K - settled_K only if they
                                  # break the streak (sequential K; 0 = always K)
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 8
    chunk: int = 64               # problems per seeded generation chunk (the unit ranks share;
                                  # under loss.schedule = "rl" also of a step's groups: under
                                  # torchrun keep it <= optim.batch_size / ranks)


@dataclass(frozen=True)
class WeightsSection:
    method: str = "paced"         # paced | uniform | hard | lp | rholoss | maxloss (the last
                                  # three: value criteria, loop/value.py)
    alpha: float = 1.0            # paced: w(p) = p^alpha (1-p)^beta
    beta: float = 1.0
    estimator: str = "plugin"     # plugin | unbiased | posterior
    prior_a: float = 1.0          # posterior: Beta(prior_a, prior_b) prior on p
    prior_b: float = 1.0
    floor: float = 0.0            # paced: weight of a problem never solved (c = 0) instead of
                                  # 0, so forward KL still learns hopeless problems (ours)
    lo: float = 0.0               # hard: keep lo < p_hat < hi
    hi: float = 1.0
    normalise: str = "sum"        # sum: sum w L / sum w ; mean: sum w L / B ; none: sum w L
    # value criteria (loop/value.py). lp: draw the batch from P = (1 - lp_eps) softmax(LP /
    # (lp_tau max LP)) + lp_eps uniform, LP = |fast - slow EMA| of the training loss
    lp_group: str = "cell"        # cell (skill x difficulty) | problem: what LP is kept for
    lp_fast: float = 0.2          # EMA rates per observation of a group, 0 < slow < fast <= 1
    lp_slow: float = 0.05
    lp_tau: float = 0.25          # softmax temperature, relative to the largest LP (>= 0.01)
    lp_eps: float = 0.1           # share of uniform sampling, in [0, 1]
    # rholoss | maxloss: score candidates * batch_size candidates, train on the top batch_size
    candidates: int = 2
    ref_frac: float = 0.1         # rholoss: share of each cell held out for the reference
    ref_steps: int = 10           # rholoss: the reference's training steps (batch_size each;
                                  # longer ones overfit the demo's split: value.py docstring)


@dataclass(frozen=True)
class LossSection:
    schedule: str = "forward"     # forward | reverse | two-stage | akl | jsd | skew | rl
                                  # (rl: policy gradient from the verifier's reward on
                                  # rollouts.K student samples per problem, no teacher)
    switch_at: float = 0.5        # two-stage: fraction of the budget spent on forward KL
    switch_unit: str = "steps"    # steps (of budget.steps) | compute (of budget.flops)
    temperature: float = 1.0
    jsd_beta: float = 0.5
    skew_alpha: float = 0.1
    akl_mu: float = 0.5
    # Privileged teacher context (the paper's self-distillation): "answer" gives the TEACHER
    # the prompt rewritten by privileged_template (with the reference answer) while the
    # student sees the plain prompt; both score the same completion tokens.
    privileged: str = "none"      # none | answer
    privileged_template: str = "{prompt} (answer: {answer})"
    rl_kl: float = 0.0            # rl: coefficient of KL(student || initial student), exact
                                  # per token on the samples (> 0: the frozen copy's forward
                                  # is charged as teacher tokens)
    rl_std: bool = False          # rl: divide advantages by the group's std (GRPO); false
                                  # (Dr. GRPO): that std is a hidden weighting
                                  # 1 / sqrt(p_hat (1 - p_hat)) (losses.py says more)


@dataclass(frozen=True)
class OptimSection:
    lr: float = 1e-3
    batch_size: int = 32          # candidate problems per step, before zero weights are dropped
    weight_decay: float = 0.0
    grad_clip: float = 1.0        # max global grad norm; 0 = no clipping
    warmup_steps: int = 10
    sampler: str = "pool"         # pool: candidates from all problems (weight 0 dropped
                                  # from the batch) | kept: only from problems of weight > 0
    schedule: str = "constant"    # constant | cosine: after warmup, decay to min_lr_frac * lr
                                  # over the run's progress (FLOPs used / budget.flops when a
                                  # FLOPs budget is set, else step / budget.steps)
    min_lr_frac: float = 0.1


@dataclass(frozen=True)
class BudgetSection:
    steps: int = 200              # maximum optimizer steps
    flops: float = 0.0            # > 0: also stop when the compute ledger reaches this


@dataclass(frozen=True)
class EvalSection:
    every: int = 25
    every_frac: float = 0.0       # > 0: evaluate each time the run's progress (FLOPs used /
                                  # budget.flops, or step / budget.steps) crosses a multiple
                                  # of this instead: the same points in compute for methods
                                  # that take different numbers of steps
    mean_at_k: int = 4            # samples per held-out problem for mean@k (temperature 1)
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
    max_per_bin: int = 0          # > 0: gradients of at most this many problems per bin c/K


@dataclass(frozen=True)
class RunConfig:
    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    models: ModelsSection = field(default_factory=ModelsSection)
    trainable: TrainableSection = field(default_factory=TrainableSection)
    rollouts: RolloutsSection = field(default_factory=RolloutsSection)
    weights: WeightsSection = field(default_factory=WeightsSection)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    budget: BudgetSection = field(default_factory=BudgetSection)
    eval: EvalSection = field(default_factory=EvalSection)
    probe: ProbeSection = field(default_factory=ProbeSection)


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in fields(RunConfig)}
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("run", "device"): ("auto", "cpu", "cuda"),
    ("weights", "method"): METHODS,
    ("weights", "estimator"): ESTIMATORS,
    ("weights", "normalise"): NORMALISERS,
    ("weights", "lp_group"): ("cell", "problem"),
    # two-stage: forward KL, then reverse KL; rl: policy gradient (losses.policy_gradient)
    ("loss", "schedule"): (*LOSSES, "two-stage", RL),
    ("loss", "switch_unit"): ("steps", "compute"),
    ("probe", "loss"): ("forward", "reverse"),
    ("loss", "privileged"): ("none", "answer"),
    ("data", "extract"): ("first", "last"),
    ("optim", "schedule"): ("constant", "cosine"),
    ("optim", "sampler"): ("pool", "kept"),
    ("rollouts", "source"): ("rollouts", "likelihood"),
    ("rollouts", "likelihood"): ("binomial", "exact"),
    ("trainable", "mode"): ("all", "top", "lora"),
}
# keys that may change between a run and its --resume (they do not change what is computed)
RESUMABLE = {"run.name", "run.device", "run.log_every", "run.ckpt_every", "run.progress",
             "run.threads", "eval.every_frac",
             "budget.steps", "budget.flops", "eval.every"}
# the methods `paced compare` and `paced study` train, as overrides of one base config (so
# the same seeds, data and budget hold for each)
METHOD_OVERRIDES: dict[str, list[str]] = {
    "uniform": ["weights.method=uniform", "loss.schedule=forward"],
    "hard": ["weights.method=hard", "loss.schedule=forward"],
    "paced": ["weights.method=paced", "loss.schedule=forward"],
    "akl": ["weights.method=uniform", "loss.schedule=akl"],
    "two-stage": ["weights.method=paced", "loss.schedule=two-stage"],
    "reverse": ["weights.method=paced", "loss.schedule=reverse"],
    "uniform-reverse": ["weights.method=uniform", "loss.schedule=reverse"],
    # RL from the verifier's reward (no teacher): uniform, PACED and hard-band weights of
    # each group by its own fresh pass rate c / K
    "rl": ["weights.method=uniform", "loss.schedule=rl"],
    "paced-rl": ["weights.method=paced", "loss.schedule=rl"],
    "hard-rl": ["weights.method=hard", "loss.schedule=rl"],
    "lp": ["weights.method=lp", "loss.schedule=forward"],
    "rholoss": ["weights.method=rholoss", "loss.schedule=forward"],
    "maxloss": ["weights.method=maxloss", "loss.schedule=forward"],
}


# ------------------------------------------------------------------------------ typing
def _type_name(default) -> str:
    if isinstance(default, tuple):
        return "a list of integers"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}[
        type(default)]


def _example(default) -> str:
    return config_value(list(default) if isinstance(default, tuple) else default)


def _coerce(value, default, where: str):
    """Check a value parsed from TOML against the type of the key's default."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:  # tuple of ints
        ok = isinstance(value, list | tuple) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value)
        value = tuple(value) if ok else value
    if not ok:
        raise ConfigError(f"{where}: expected {_type_name(default)}, got {value!r} "
                          f"(e.g. {_example(default)})")
    return value


def parse_value(raw: str, default, where: str):
    """Parse an override's text as the type of the key's default (see module docstring)."""
    text = raw.strip()
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, str):
            if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
                return tomllib.loads(f"v = {text}")["v"]
            return text
        body = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        return tuple(int(x) for x in body.split(",") if x.strip())
    except (ValueError, tomllib.TOMLDecodeError):
        raise ConfigError(f"{where}: cannot read {raw!r} as {_type_name(default)} "
                          f"(e.g. {_example(default)})") from None


def _keys(section: str) -> list[str]:
    return [f"{section}.{f.name}" for f in fields(SECTIONS[section])]


def _unknown(what: str, name: str, known: Iterable[str]) -> str:
    """'unknown key ...; did you mean ...? known: ...' (for the error messages)."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown {what} '{name}'; {hint}known: {', '.join(known)}"


# --------------------------------------------------------------------------- loading
def from_dict(data: dict, source: str = "<config>") -> RunConfig:
    """A validated RunConfig from nested dicts {section: {key: value}} (as tomllib gives)."""
    sections = {}
    for name, body in data.items():
        if name not in SECTIONS:
            known = [f"[{s}]" for s in SECTIONS]
            raise ConfigError(f"{source}: {_unknown('section', f'[{name}]', known)}")
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: [{name}] must be a table of key = value lines")
        default = SECTIONS[name]()
        values = {}
        for key, value in body.items():
            if f"{name}.{key}" not in _keys(name):
                raise ConfigError(f"{source}: {_unknown('key', f'{name}.{key}', _keys(name))}")
            values[key] = _coerce(value, getattr(default, key), f"{source}: '{name}.{key}'")
        sections[name] = replace(default, **values)
    cfg = RunConfig(**sections)
    validate(cfg, source)
    return cfg


def load_config(path: Path | str | None, overrides: Iterable[str] = ()) -> RunConfig:
    """Load a TOML file (defaults when path is None), then apply `section.key=value` overrides."""
    if path is None:
        cfg, source = RunConfig(), "<defaults>"
    else:
        path = Path(path)
        try:
            raw = path.read_bytes()
            data = tomllib.loads(raw.decode("utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
        except UnicodeDecodeError as exc:
            line = raw[:exc.start].count(b"\n") + 1
            raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
                              "save the config as UTF-8") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML ({exc}); fix the syntax there") from None
        except RecursionError:
            raise ConfigError(f"{path}: invalid TOML (nested too deeply)") from None
        cfg, source = from_dict(data, str(path)), str(path)
    return apply_overrides(cfg, overrides, source)


def apply_overrides(cfg: RunConfig, overrides: Iterable[str],
                    source: str = "<config>") -> RunConfig:
    """cfg with each `section.key=value` applied in order, parsed as the key's type."""
    overrides = list(overrides)
    data = to_dict(cfg)
    for item in overrides:
        where = f"override {item!r}"
        dotted, eq, raw = item.partition("=")
        section, dot, key = dotted.strip().partition(".")
        if not eq or not dot:
            raise ConfigError(f"{where}: expected section.key=value, e.g. optim.lr=3e-4")
        if section not in SECTIONS:
            raise ConfigError(f"{where}: {_unknown('section', section, SECTIONS)}")
        if f"{section}.{key}" not in _keys(section):
            raise ConfigError(f"{where}: {_unknown('key', f'{section}.{key}', _keys(section))}")
        value = parse_value(raw, getattr(SECTIONS[section](), key), f"{where}: '{section}.{key}'")
        data[section][key] = list(value) if isinstance(value, tuple) else value
    if not overrides:
        return cfg
    return from_dict(data, f"{source} with overrides {' '.join(overrides)}")


def validate(cfg: RunConfig, source: str = "<config>") -> None:
    """ConfigError (naming source and key) for values no run can use."""
    def bad(key: str, why: str):
        raise ConfigError(f"{source}: '{key}' {why}")

    for (section, key), allowed in CHOICES.items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            bad(f"{section}.{key}", f"= {value!r}; choose one of {', '.join(allowed)}")
    # Every number finite (TOML and overrides both accept inf and nan), integers within 64
    # bits, and sizes that are allocated before the first step below caps far above any
    # real run (beyond them a run would only exhaust memory).
    for section, kind in SECTIONS.items():
        for f in fields(kind):
            value, dotted = getattr(getattr(cfg, section), f.name), f"{section}.{f.name}"
            if isinstance(value, float) and not abs(value) < float("inf"):
                bad(dotted, f"must be a finite number (got {value!r})")
            ints = value if isinstance(value, tuple) else (value,)
            if any(isinstance(v, int) and abs(v) >= 2**62 for v in ints):
                bad(dotted, f"is out of range (got {value!r})")
    caps = {"data.n_train_per_cell": 10**6, "data.n_eval_per_cell": 10**6,
            "data.n_retention": 10**6, "rollouts.K": 4096, "rollouts.max_new_tokens": 65536,
            "eval.max_new_tokens": 65536, "eval.mean_at_k": 4096, "probe.n_problems": 10**6,
            "probe.sketch_dim": 2**20, "probe.sketch_hashes": 64, "probe.n_boot": 10**5,
            "run.threads": 1024, "weights.candidates": 1024}
    for dotted, cap in caps.items():
        section, key = dotted.split(".")
        value = getattr(getattr(cfg, section), key, 0)
        if value > cap:
            bad(dotted, f"must be <= {cap} (got {value!r})")
    if cfg.run.seed < 0:
        bad("run.seed", f"must be >= 0 (got {cfg.run.seed})")
    for f in fields(cfg.data):
        value = getattr(cfg.data, f.name)
        if f.name.endswith("digits") and any(x > 18 for x in value):
            bad(f"data.{f.name}", f"needs digit counts <= 18, the most a 64-bit integer "
                f"holds (got {list(value)})")
        if f.name.endswith("counts") and any(x > 10**6 for x in value):
            bad(f"data.{f.name}", f"needs counts <= 1000000 (got {list(value)})")
    at_least_one = ["rollouts.K", "rollouts.refresh_every", "rollouts.max_new_tokens",
                    "rollouts.chunk",
                    "optim.batch_size", "budget.steps", "eval.every", "eval.mean_at_k",
                    "eval.max_new_tokens", "run.log_every", "run.ckpt_every",
                    "data.n_train_per_cell", "data.n_eval_per_cell", "data.n_retention",
                    "probe.n_problems", "probe.sketch_hashes", "weights.candidates",
                    "weights.ref_steps", "trainable.top_blocks", "trainable.lora_rank"]
    at_least_zero = ["optim.warmup_steps", "optim.weight_decay", "optim.grad_clip",
                     "budget.flops", "weights.alpha", "weights.beta", "probe.sketch_dim",
                     "probe.n_boot", "probe.max_per_bin", "run.threads", "rollouts.settled_K",
                     "rollouts.max_age",
                     "weights.floor"]
    positive = ["optim.lr", "rollouts.temperature", "loss.temperature", "weights.prior_a",
                "weights.prior_b", "trainable.lora_alpha"]
    for keys, test, why in ((at_least_one, lambda v: v >= 1, "must be >= 1"),
                            (at_least_zero, lambda v: v >= 0, "must be >= 0"),
                            (positive, lambda v: v > 0, "must be > 0")):
        for dotted in keys:
            section, key = dotted.split(".")
            value = getattr(getattr(cfg, section), key)
            if not test(value):
                bad(dotted, f"{why} (got {value!r})")
    d, w, lo = cfg.data, cfg.weights, cfg.loss
    if not d.jsonl and not (d.add_digits or d.mul_digits):
        bad("data.add_digits", "and 'data.mul_digits' are both empty; give at least one "
            "difficulty (e.g. add_digits = [1, 2]) or a 'data.jsonl' file")
    for key in ("add_digits", "mul_digits"):
        if any(x < 1 for x in getattr(d, key)):
            bad(f"data.{key}", f"needs digit counts >= 1 (got {list(getattr(d, key))})")
    if not 0.0 < w.lp_slow < w.lp_fast <= 1.0:
        bad("weights.lp_slow", f"and 'weights.lp_fast' need 0 < lp_slow < lp_fast <= 1 (EMA "
            f"rates; got lp_slow={w.lp_slow}, lp_fast={w.lp_fast})")
    if w.lp_tau < 0.01:
        bad("weights.lp_tau", f"must be >= 0.01 (got {w.lp_tau}; below it the softmax "
            "underflows to exact zeros); use lp_eps for a floor instead")
    if not 0.0 <= w.lp_eps <= 1.0:
        bad("weights.lp_eps", f"must be a fraction in [0, 1] (got {w.lp_eps})")
    if not 0.0 < w.ref_frac < 1.0:
        bad("weights.ref_frac", f"must be a fraction in (0, 1) (got {w.ref_frac})")
    if not 0.0 <= w.lo < w.hi <= 1.0:
        bad("weights.lo", f"and 'weights.hi' need 0 <= lo < hi <= 1 (got lo={w.lo}, hi={w.hi})")
    if w.estimator == "unbiased" and w.method == "paced" and (
            w.alpha != int(w.alpha) or w.beta != int(w.beta) or w.alpha + w.beta > cfg.rollouts.K):
        bad("weights.estimator", "= 'unbiased' needs integer 'weights.alpha' and 'weights.beta' "
            f"with alpha + beta <= 'rollouts.K' (got {w.alpha}, {w.beta}, K={cfg.rollouts.K}); "
            "use estimator = 'plugin' or 'posterior' otherwise")
    if not 0.0 < cfg.rollouts.top_p <= 1.0:
        bad("rollouts.top_p", f"must be in (0, 1] (got {cfg.rollouts.top_p})")
    if not 0.0 <= lo.switch_at <= 1.0:
        bad("loss.switch_at", f"must be a fraction in [0, 1] (got {lo.switch_at})")
    if lo.schedule == "two-stage" and lo.switch_unit == "compute" and cfg.budget.flops <= 0:
        bad("loss.switch_unit", "= 'compute' needs 'budget.flops' > 0 (the switch is placed at "
            "switch_at * budget.flops); set budget.flops or use switch_unit = 'steps'")
    if not 0.0 < lo.jsd_beta < 1.0:
        bad("loss.jsd_beta", f"must be in (0, 1) (got {lo.jsd_beta})")
    if not 0.0 <= lo.skew_alpha < 1.0:
        bad("loss.skew_alpha", f"must be in [0, 1) (got {lo.skew_alpha})")
    if not 0.0 < lo.akl_mu <= 1.0:
        bad("loss.akl_mu", f"must be in (0, 1] (got {lo.akl_mu})")
    if lo.rl_kl < 0:
        bad("loss.rl_kl", f"must be >= 0 (got {lo.rl_kl}); 0 turns the KL term off")
    if lo.schedule == RL:
        if cfg.rollouts.K < 2:
            bad("rollouts.K", f"= {cfg.rollouts.K}: loss.schedule = 'rl' takes K samples per "
                "problem and a group of one has zero advantage (no gradient); use K >= 2")
        if cfg.rollouts.top_p < 1.0:
            bad("rollouts.top_p", f"= {cfg.rollouts.top_p}: loss.schedule = 'rl' scores the "
                "samples under the full softmax (the policy gradient of what was sampled); "
                "use top_p = 1")
        if w.method in ("lp", "rholoss", "maxloss"):
            bad("weights.method", f"= {w.method!r} scores problems by their distillation loss "
                "(forward KL to the teacher), which loss.schedule = 'rl' does not compute; use "
                "uniform, paced or hard with rl")
    if lo.privileged == "answer":
        try:
            text = lo.privileged_template.format(prompt="P", answer="A")
        except (KeyError, IndexError, ValueError) as exc:
            bad("loss.privileged_template", f"is not a valid template ({exc!r}); use the "
                "fields {prompt} and {answer} only, e.g. '{prompt} (answer: {answer})'")
        if "P" not in text or "A" not in text.replace("P", ""):
            bad("loss.privileged_template", "must contain both {prompt} and {answer} (got "
                f"{lo.privileged_template!r})")
    if not 0.0 <= cfg.optim.min_lr_frac <= 1.0:
        bad("optim.min_lr_frac", f"must be a fraction in [0, 1] (got {cfg.optim.min_lr_frac})")
    ro = cfg.rollouts
    if ro.source == "likelihood" and ro.likelihood == "exact" and w.estimator != "plugin":
        bad("weights.estimator", f"= {w.estimator!r} estimates w(p) from counts, but "
            "'rollouts.likelihood' = 'exact' gives p itself (w(P) is used as is); use "
            "estimator = 'plugin' or rollouts.likelihood = 'binomial'")
    if ro.source == "likelihood" and ro.likelihood == "exact" and w.floor > 0:
        bad("weights.floor", f"= {w.floor} is the weight of a problem with no success in its "
            "count (c = 0), but 'rollouts.likelihood' = 'exact' gives p itself, never a count, "
            "so the floor would do nothing; use rollouts.likelihood = 'binomial' (or source = "
            "'rollouts') or floor = 0")
    if ro.source == "likelihood" and ro.top_p < 1.0:
        bad("rollouts.top_p", f"= {ro.top_p}: 'rollouts.source' = 'likelihood' is the pass "
            "probability of sampling from the full softmax; use top_p = 1 or source = "
            "'rollouts'")
    if not 0.0 < cfg.rollouts.max_share <= 1.0:
        bad("rollouts.max_share", f"must be in (0, 1] (got {cfg.rollouts.max_share}); 1 "
            "turns the cap off")
    if not 0.0 <= cfg.eval.every_frac < 1.0:
        bad("eval.every_frac", f"must be in [0, 1) (got {cfg.eval.every_frac}); 0 evaluates "
            "every eval.every steps")
    if cfg.rollouts.settled_K >= cfg.rollouts.K:
        bad("rollouts.settled_K", f"must be < 'rollouts.K' (got {cfg.rollouts.settled_K}, "
            f"K={cfg.rollouts.K}); 0 turns sequential K off")
    for key in ("add", "mul"):
        counts, digits = getattr(d, f"{key}_counts"), getattr(d, f"{key}_digits")
        if counts and len(counts) != len(digits):
            bad(f"data.{key}_counts", f"needs one count per 'data.{key}_digits' entry (got "
                f"{list(counts)} for {list(digits)}); leave it empty for n_train_per_cell")
        if any(c < 1 for c in counts):
            bad(f"data.{key}_counts", f"needs counts >= 1 (got {list(counts)})")
        both = set(digits) & set(getattr(d, f"retention_{key}_digits"))
        if both:
            bad(f"data.retention_{key}_digits", f"overlaps 'data.{key}_digits' at {sorted(both)}:"
                " a retention cell is never trained on; remove it from one of the two")
        if any(x < 1 for x in getattr(d, f"retention_{key}_digits")):
            bad(f"data.retention_{key}_digits", "needs digit counts >= 1")
    if cfg.probe.min_per_bin < 2:
        bad("probe.min_per_bin", f"must be >= 2 (got {cfg.probe.min_per_bin})")


# ---------------------------------------------------------------------------- saving
def to_dict(cfg: RunConfig) -> dict:
    """{section: {key: value}} with lists for tuples (what TOML holds)."""
    return {f.name: {k: list(v) if isinstance(v, tuple) else v
                     for k, v in dataclasses.asdict(getattr(cfg, f.name)).items()}
            for f in fields(cfg)}


def config_value(v) -> str:
    """One value in TOML syntax."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):  # JSON string escapes are valid TOML basic-string escapes
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list | tuple):
        return "[" + ", ".join(config_value(x) for x in v) + "]"
    return repr(v)  # ints and floats (repr of inf / nan is valid TOML too)


def config_to_toml(cfg: RunConfig) -> str:
    """The whole config as TOML; load_config on this text gives back an equal RunConfig."""
    lines = []
    for section, body in to_dict(cfg).items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {config_value(v)}" for k, v in body.items()]
        lines.append("")
    return "\n".join(lines)


def changed_keys(a: RunConfig, b: RunConfig) -> list[str]:
    """Dotted keys whose values differ between two configs."""
    da, db = to_dict(a), to_dict(b)
    return [f"{s}.{k}" for s in da for k in da[s] if da[s][k] != db[s][k]]
