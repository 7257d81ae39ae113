"""The PACED distillation loop. Read top to bottom: setup, then the step, then the run.

Data flow (DESIGN.md), one step:
  candidates (B problems, seeded epoch order)
  -> weights from the pass-rate table (K student rollouts per problem, refreshed for the
     whole pool every rollouts.refresh_every steps; paced_theory.kernels)
  -> problems of weight 0 are DROPPED HERE, before any teacher or student forward pass
  -> sequences: the teacher's greedy reference (generated at first use, cached per problem)
     for forward KL / AKL / JSD / skew; one fresh student sample per problem for reverse
     KL (the sample is a rollout too: it updates the pass-rate table)
  -> teacher logits on its view of the problems (with loss.privileged = "answer" the prompt
     plus the reference answer; models.teacher = "self" is the frozen initial student)
     -> student logits on the plain prompts; both only at the completion tokens, aligned
     -> per-sequence divergence (losses.py) -> sum_i w_i L_i / normaliser -> AdamW step
  -> metrics.jsonl row with the compute ledger; eval, checkpoint, progress bar when due.
Under torchrun the ranks split rollouts and candidates and keep weights, normaliser and
ledger global (distributed.py); rank 0 alone writes.

Reproducibility: every random draw of step s comes from a generator seeded by
(run.seed, s, stream) (batch order, refresh rollouts, on-policy samples, eval samples), so
the random streams are a function of the checkpointed step, and a run killed and resumed
from checkpoints/last.safetensors ends with the same metrics and weights as an uninterrupted run
(on CPU; CUDA kernels are not bitwise deterministic).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
import time
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from paced_theory.errors import ConfigError, InputError, PacedError
from paced_train import distributed, losses, rundir, tasks
from paced_train.batching import completion_index, pack
from paced_train.checkpoint import (
    capture_rng,
    checkpoint_path,
    checkpoint_step,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from paced_train.config import RESUMABLE, RunConfig, changed_keys, config_to_toml, from_dict
from paced_train.evaluate import evaluate, forgetting, generate_and_verify
from paced_train.hf import check_same_vocab, load_any
from paced_train.ledger import Ledger, MetricsLog, strict_json
from paced_train.passrates import PassRateTable, normaliser, problem_weights
from paced_train.tasks import (
    Problem,
    arithmetic_suite,
    cell_counts,
    load_jsonl,
    retention_cells,
    retention_suite,
    split,
)
from paced_train.tokenizer import CharTokenizer

# `paced compare` methods as config overrides (same seeds, data and budget for each)
METHOD_OVERRIDES: dict[str, list[str]] = {
    "uniform": ["weights.method=uniform", "loss.schedule=forward"],
    "hard": ["weights.method=hard", "loss.schedule=forward"],
    "paced": ["weights.method=paced", "loss.schedule=forward"],
    "akl": ["weights.method=uniform", "loss.schedule=akl"],
    "two-stage": ["weights.method=paced", "loss.schedule=two-stage"],
    "reverse": ["weights.method=paced", "loss.schedule=reverse"],
    "uniform-reverse": ["weights.method=uniform", "loss.schedule=reverse"],
}
# independent random streams, each seeded by (run.seed, step, stream)
STREAMS = {"data": 1, "refresh": 2, "onpolicy": 3, "eval": 4, "dropout": 5}


# ----------------------------------------------------------------------------- setup
def load_model_spec(spec: str, device):
    """A [models] entry -> (model, tokenizer): 'shipped:student' | 'shipped:teacher', one of
    our .safetensors files, or a local Hugging Face directory / .gguf (paced_train.hf)."""
    model, tok, _ = load_any(spec, device)
    return model, tok


def load_models(cfg: RunConfig, device) -> tuple[torch.nn.Module, torch.nn.Module, object]:
    """(student in train mode, frozen teacher, tokenizer). models.teacher = "self" is a frozen
    copy of the initial student (self-distillation; pair it with loss.privileged = "answer")."""
    student, tok = load_model_spec(cfg.models.student, device)
    if cfg.models.teacher.strip().lower() == "self":
        teacher = copy.deepcopy(student)
    else:
        teacher, t_tok = load_model_spec(cfg.models.teacher, device)
        check_same_vocab(t_tok, tok)  # a token-level KL needs one vocabulary
    teacher.eval().requires_grad_(False)
    student.train()
    return student, teacher, tok


def teacher_view(cfg: RunConfig, problems: list[Problem]) -> list[Problem]:
    """The problems as the teacher sees them: with loss.privileged = "answer" the prompt is
    privileged_template filled with the problem and its reference answer, else unchanged."""
    if cfg.loss.privileged == "none":
        return problems
    tmpl = cfg.loss.privileged_template
    return [dataclasses.replace(p, prompt=tasks.privileged_prompt(p, tmpl)) for p in problems]


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def encoded_prompts(run: Run, batch: list[Problem], teacher: bool) -> list[list[int]]:
    """Token ids of the prompts as the teacher (its view: privileged context or not) or the
    student reads them; cached per problem (chat templates are not free)."""
    cache = run.prompt_cache.setdefault("teacher" if teacher else "student", {})
    todo = [p for p in batch if p.id not in cache]
    if todo:
        for p, q in zip(todo, teacher_view(run.cfg, todo) if teacher else todo):
            cache[p.id] = run.tok.encode_prompt(q.prompt)
    return [cache[p.id] for p in batch]


def completion_logits(model, tok, prompts, completions, device):
    """(logits (B, C, V), mask (B, C), tokens): the model on prompt + completion, with the
    output head applied at the C completion-predicting positions only (model(...,
    positions=...)), so prompts of different lengths (a privileged teacher) line up."""
    x, _, _ = pack(prompts, completions, tok.pad_id, device)
    index, mask = completion_index(prompts, completions, device)
    with _autocast(device):
        logits = model(x, positions=index)
    return logits, mask, sum(len(p) + len(c) - 1 for p, c in zip(prompts, completions))


def teacher_logits(run: Run, batch: list[Problem], completions: list[list[int]]):
    """(logits (B, C, V), tokens): the frozen teacher on its view of the batch followed by
    the completions, at the completion tokens; no gradient."""
    with torch.no_grad():
        logits, _, n = completion_logits(run.teacher, run.tok, encoded_prompts(run, batch, True),
                                          completions, run.device)
    return logits, n


def student_logits(run: Run, batch: list[Problem], completions: list[list[int]]):
    """(logits (B, C, V), mask (B, C), tokens): the student (its DDP wrapper when
    distributed) on the plain prompts followed by the completions, aligned as
    teacher_logits."""
    return completion_logits(run.student_fwd or run.student, run.tok,
                             encoded_prompts(run, batch, False), completions, run.device)


def build_problems(cfg: RunConfig) -> tuple[list[Problem], list[Problem], list[Problem]]:
    """(train, heldout, retention). The retention set is never distilled, only measured:
    data.retention_jsonl, else n_retention built-in `compare` problems."""
    d = cfg.data
    if d.jsonl:
        problems = load_jsonl(d.jsonl, d.extract)
    else:
        per_cell = {**cell_counts("add", d.add_digits, d.add_counts, d.n_train_per_cell,
                                  d.n_eval_per_cell),
                    **cell_counts("mul", d.mul_digits, d.mul_counts, d.n_train_per_cell,
                                  d.n_eval_per_cell)}
        problems = arithmetic_suite(cfg.run.seed, 0, d.add_digits, d.mul_digits, per_cell)
    train, heldout = split(problems, d.n_eval_per_cell, cfg.run.seed)
    if not heldout:  # every cell keeps one problem for training: too few to hold any out
        raise ConfigError(f"{d.jsonl or 'the arithmetic suite'}: {len(problems)} problem(s) "
                          f"leave no held-out problem with data.n_eval_per_cell = "
                          f"{d.n_eval_per_cell} (each difficulty keeps one for training); "
                          "give at least 2 problems per difficulty")
    if d.retention_jsonl:
        retention = load_jsonl(d.retention_jsonl, d.extract)
    elif d.retention_add_digits or d.retention_mul_digits:
        retention = retention_cells(cfg.run.seed, d.n_retention, d.retention_add_digits,
                                    d.retention_mul_digits)
    else:
        retention = retention_suite(cfg.run.seed, d.n_retention)
    return train, heldout, retention


def seed_for(seed: int, step: int, stream: str, *more: int) -> int:
    """A 63-bit seed for one random stream at one step (independent across all arguments;
    `more` names a sub-stream: a refresh chunk, a rank)."""
    ss = np.random.SeedSequence([seed, step, STREAMS[stream], *more])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def torch_gen(seed: int, step: int, stream: str, *more: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed_for(seed, step, stream, *more))


def n_params(model) -> int:
    """Non-embedding parameters (the N of the ledger's 2N / 4N per token)."""
    f = getattr(model, "num_params", None)
    return int(f(non_embedding=True)) if f else sum(p.numel() for p in model.parameters())


@dataclass
class Run:
    """What the loop reads and never replaces: config, models, optimizer, data."""

    cfg: RunConfig
    device: torch.device
    student: torch.nn.Module
    teacher: torch.nn.Module
    tok: object
    opt: torch.optim.Optimizer
    train_set: list[Problem]
    heldout: list[Problem]
    retention: list[Problem]
    student_fwd: torch.nn.Module | None = None   # the DDP wrapper of student when distributed
    dist: distributed.Dist = field(default_factory=distributed.Dist)
    prompt_cache: dict = field(default_factory=dict)  # "teacher"/"student" -> id -> tokens


@dataclass
class State:
    """What the loop mutates; a checkpoint restores exactly this (plus model and optimizer)."""

    step: int
    table: PassRateTable
    ledger: Ledger
    references: dict = field(default_factory=dict)   # problem id -> teacher greedy tokens
    reference_ok: dict = field(default_factory=dict)  # problem id -> does it verify
    retention_start: float = float("nan")
    last_eval: dict | None = None
    timers: dict = field(default_factory=lambda: dict.fromkeys(
        ("rollout", "teacher", "student", "eval"), 0.0))
    wall: float = 0.0
    refresh_flops: float = 0.0  # FLOPs of the last pass-rate refresh (all ranks)
    idle_refreshes: int = 0     # refreshes in a row after which every weight was 0
    last_refresh: int = -1      # step of the last pass-rate refresh (-1: none yet)

    def extra(self, cfg: RunConfig) -> dict:
        return {"table": self.table.state(), "ledger": self.ledger.state(),
                "references": self.references, "reference_ok": self.reference_ok,
                "retention_start": self.retention_start, "last_eval": self.last_eval,
                "timers": self.timers, "wall": self.wall, "refresh_flops": self.refresh_flops,
                "idle_refreshes": self.idle_refreshes, "last_refresh": self.last_refresh,
                "config": config_to_toml(cfg)}


def setup(cfg: RunConfig) -> tuple[Run, State]:
    if cfg.run.threads > 0:
        torch.set_num_threads(cfg.run.threads)
    d, device = distributed.init(cfg.run.device)
    student, teacher, tok = load_models(cfg, device)
    train_set, heldout, retention = build_problems(cfg)
    if isinstance(tok, CharTokenizer):  # a fixed character set: JSONL text may fall outside
        every = train_set + heldout + retention
        for view in (every, teacher_view(cfg, every)):
            tasks.check_prompts(view, tok.encode_prompt)  # errors name the file and line
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.optim.lr,
                            weight_decay=cfg.optim.weight_decay)
    run = Run(cfg, device, student, teacher, tok, opt, train_set, heldout, retention,
              distributed.wrap(student, d, device), d)
    st = State(step=0, table=PassRateTable([p.id for p in train_set]),
               ledger=Ledger(n_params(student), n_params(teacher)))
    return run, st


def resume_state(run: Run, st: State, ckpt: Path) -> None:
    """Restore model, optimizer, RNG and State from ckpt; the configs must agree."""
    info = load_checkpoint(ckpt, model=run.student, optimizer=run.opt, map_location=run.device)
    extra = info["extra"]
    if not isinstance(extra, dict) or "config" not in extra or "table" not in extra:
        raise InputError(f"{ckpt}: not a checkpoint of this trainer (no config / pass-rate "
                         "table inside); start the run afresh without --resume")
    try:
        saved = from_dict(tomllib.loads(extra["config"]), str(ckpt))
    except (TypeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{ckpt}: its config is unreadable ({exc}); start the run afresh "
                         "with --overwrite") from None
    diff = [k for k in changed_keys(saved, run.cfg) if k not in RESUMABLE]
    if diff:
        raise ConfigError(f"{ckpt}: cannot resume with a different {', '.join(diff)}; rerun "
                          "with the run's config.toml (only these may change: "
                          f"{', '.join(sorted(RESUMABLE))})")
    try:
        restore_rng(info["rng_state"], {})  # global streams: unused by the loop, for callers
        st.step = info["step"]
        st.table.load(extra["table"])
        st.ledger.load(extra["ledger"])
        st.references, st.reference_ok = extra["references"], extra["reference_ok"]
        st.retention_start, st.last_eval = extra["retention_start"], extra["last_eval"]
        st.timers, st.wall = extra["timers"], extra["wall"]
        st.refresh_flops = float(extra.get("refresh_flops", 0.0))
        st.idle_refreshes = int(extra.get("idle_refreshes", 0))
        st.last_refresh = int(extra.get("last_refresh", st.step - st.step % max(
            run.cfg.rollouts.refresh_every, 1)))
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise InputError(f"{ckpt}: the trainer state inside is incomplete or malformed "
                         f"({type(exc).__name__}: {exc}); start the run afresh with "
                         "--overwrite") from None


# ------------------------------------------------------------------------------ step
@contextmanager
def timed(st: State, phase: str, device: torch.device):
    """Add the wall time of the block to st.timers[phase] (CUDA work is waited for)."""
    t0 = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    st.timers[phase] += time.perf_counter() - t0


@contextmanager
def seeded_global_rng(seed: int, step: int, device: torch.device):
    """Dropout draws from torch's global generator: inside this block it is seeded by
    (seed, step), in a fork, so the draws are reproducible and the caller's state is kept."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed_for(seed, step, "dropout"))
        yield


def candidates(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Indices of step `step` (1-based): the next batch_size entries of an endless sequence of
    seeded permutations of range(n) (one per epoch), so every problem is seen once per epoch."""
    B = min(batch_size, n)
    start = (step - 1) * B
    first, last = start // n, (start + B - 1) // n
    order = np.concatenate([np.random.default_rng(seed_for(seed, e, "data")).permutation(n)
                            for e in range(first, last + 1)])
    return order[start - first * n:start - first * n + B]


def refresh_pass_rates(run: Run, st: State) -> None:
    """Fresh rollouts of every training problem replace the table's counts: K each, or with
    rollouts.settled_K > 0 sequentially (settled_counts). The pool is rolled out in fixed
    chunks, each from its own seeded stream, so the result does not depend on how many
    ranks share the chunks (distributed.py)."""
    cfg, d = run.cfg, run.dist
    ro = cfg.rollouts
    mine = {}
    with timed(st, "rollout", run.device):
        for c, rows in enumerate(distributed.chunks(len(run.train_set), ro.chunk)):
            if c % d.world != d.rank:
                continue

            def roll(idx, k, phase, c=c):  # successes per problem of k rollouts each
                ok, _, tokens = generate_and_verify(
                    run.student, run.tok, [run.train_set[i] for i in idx], ro.max_new_tokens,
                    k=k, temperature=ro.temperature, top_p=ro.top_p,
                    generator=torch_gen(cfg.run.seed, st.step, "refresh", c, *phase))
                st.ledger.rollout(tokens)
                return ok.reshape(-1, k).sum(1)

            mine[c] = settled_counts(st.table, [run.train_set[i].id for i in rows], rows,
                                     ro.K, ro.settled_K, roll)
    parts = {c: v for part in distributed.gather_objects(d, mine) for c, v in part.items()}
    c_all, n_all = (np.concatenate([parts[c][j] for c in sorted(parts)]) for j in (0, 1))
    st.table.refresh([p.id for p in run.train_set], c_all, n_all, st.step)


def settled_counts(table: PassRateTable, ids: list[str], rows, K: int, settled_K: int,
                   roll) -> tuple[np.ndarray, np.ndarray]:
    """(successes, rollouts) of one refresh of `rows` (their ids in the table: `ids`).

    settled_K = 0: K rollouts each. settled_K > 0 (sequential K, ours): a problem whose last
    measurement was all-fail or all-pass gets settled_K rollouts first; if they agree with it
    its new estimate is 0 or 1 from those settled_K (weight 0 under Paced and the hard band,
    as before), else it gets the other K - settled_K. Every other problem gets K. A settled
    problem that has moved is therefore still measured with K rollouts, and one that has not
    costs settled_K / K of a full measurement. roll(idx, k, phase) -> successes per row."""
    rows = np.asarray(rows)
    c, n = np.zeros(len(rows), dtype=np.int64), np.full(len(rows), K, dtype=np.int64)
    rate = table.rates(ids)
    settled = (settled_K > 0) & ~np.isnan(rate) & ((rate == 0) | (rate == 1))
    if (~settled).any():
        c[~settled] = roll(rows[~settled], K, (0,))
    if settled.any():
        first = roll(rows[settled], settled_K, (1,))
        agree = np.where(rate[settled] == 0, first == 0, first == settled_K)
        pos = np.flatnonzero(settled)
        n[pos[agree]] = settled_K
        c[pos[agree]] = first[agree]
        moved = pos[~agree]
        if moved.size:
            c[moved] = first[~agree] + roll(rows[moved], K - settled_K, (2,))
    return c, n


def sampling_pool(run: Run, st: State) -> np.ndarray:
    """Indices of the training problems a step draws its candidates from. optim.sampler =
    "pool": all of them (problems of weight 0 are then dropped from the batch). "kept"
    (ours): only those of positive weight under the current pass-rate table, so every step
    trains on a full batch; the expected update is the same weighted mean over the kept
    problems, with less batch noise and no tiny steps once most problems are settled. When
    nothing has positive weight it falls back to the whole pool (the step then keeps none)."""
    everything = np.arange(len(run.train_set))
    if run.cfg.optim.sampler == "pool" or run.cfg.weights.method == "uniform":
        return everything
    kept = np.flatnonzero(problem_weights(run.cfg.weights, st.table, st.table.ids) > 0)
    return kept if kept.size else everything


def refresh_due(cfg: RunConfig, st: State) -> bool:
    """Whether to refresh the pass rates before the next step. PACED's overhead: rollouts.
    Uniform weighting never reads pass rates, so it pays for none (equal-compute comparisons
    charge them). The first refresh comes before the first step; later ones every
    rollouts.refresh_every steps, postponed while the refresh (its cost estimated as the
    last one's) would lift the rollouts' share of the FLOPs used above rollouts.max_share,
    and skipped when a FLOPs budget cannot pay for it in full (no overshoot by a refresh)."""
    if cfg.weights.method == "uniform":
        return False
    cost, led = st.refresh_flops, st.ledger
    if st.last_refresh >= 0:
        if st.step - st.last_refresh < cfg.rollouts.refresh_every:
            return False
        if led.rollout_flops + cost > cfg.rollouts.max_share * (led.flops + cost):
            return False
    return not 0 < cfg.budget.flops < led.flops + cost


def eval_due(cfg: RunConfig, step: int, progress_before: float, flops: float) -> bool:
    """Evaluate after this step? Every eval.every steps, or with eval.every_frac > 0 when the
    run's progress crossed a multiple of it during the step."""
    f = cfg.eval.every_frac
    if f <= 0:
        return step % cfg.eval.every == 0
    now = run_progress(cfg, step, flops)
    return math.floor(now / f + 1e-9) > math.floor(progress_before / f + 1e-9)


def loss_kind(cfg: RunConfig, st: State) -> str:
    """This step's divergence. two-stage: forward KL for the first switch_at of the budget
    (steps, or FLOPs when loss.switch_unit = compute), then reverse KL. Paper: the schedule."""
    if cfg.loss.schedule != "two-stage":
        return cfg.loss.schedule
    if cfg.loss.switch_unit == "compute":
        return "forward" if st.ledger.flops < cfg.loss.switch_at * cfg.budget.flops else "reverse"
    return "forward" if st.step <= math.floor(cfg.loss.switch_at * cfg.budget.steps + 1e-9) \
        else "reverse"


def divergence(kind: str, s_logits, t_logits, mask, cfg: RunConfig) -> torch.Tensor:
    """Per-sequence loss (B,) of the configured kind (losses.py)."""
    c = cfg.loss
    if kind in ("forward", "reverse"):
        return losses.token_kl(s_logits, t_logits, mask, kind, temperature=c.temperature)
    if kind == "akl":
        return losses.akl(s_logits, t_logits, mask, mu=c.akl_mu, temperature=c.temperature)
    if kind == "jsd":
        return losses.generalized_jsd(s_logits, t_logits, mask, beta=c.jsd_beta,
                                      temperature=c.temperature)
    return losses.skew_kl(s_logits, t_logits, mask, alpha=c.skew_alpha,
                          temperature=c.temperature)


def teacher_references(run: Run, st: State, batch: list[Problem]) -> list[list[int]]:
    """The teacher's greedy completions of the batch, generated at first use and cached (only
    kept problems ever get here, so dropped problems cost the teacher nothing)."""
    todo = [p for p in batch if p.id not in st.references]
    if todo:
        with timed(st, "teacher", run.device):
            ok, comps, tokens = generate_and_verify(run.teacher, run.tok,
                                                    teacher_view(run.cfg, todo),
                                                    run.cfg.rollouts.max_new_tokens,
                                                    temperature=0.0)
        st.ledger.teacher(tokens)
        for p, c, good in zip(todo, comps, ok):
            st.references[p.id] = c or [run.tok.eos_id]
            st.reference_ok[p.id] = bool(good)
    return [st.references[p.id] for p in batch]


def distill_step(run: Run, st: State, batch: list[Problem], weights: np.ndarray,
                 norm: float) -> dict:
    """One optimizer step on this rank's kept problems `batch` (all weights > 0; possibly
    none on some ranks when distributed) with the GLOBAL normaliser `norm`."""
    cfg, tok, device, d = run.cfg, run.tok, run.device, run.dist
    kind = loss_kind(cfg, st)
    if kind == "reverse":  # on-policy: one student sample per problem, also a rollout
        ok, comps = np.zeros(0, dtype=bool), []
        if batch:
            with timed(st, "rollout", device):
                ok, comps, tokens = generate_and_verify(
                    run.student, tok, batch, cfg.rollouts.max_new_tokens,
                    temperature=cfg.rollouts.temperature, top_p=cfg.rollouts.top_p,
                    generator=torch_gen(cfg.run.seed, st.step, "onpolicy",
                                        *((d.rank,) if d.world > 1 else ())))
            st.ledger.rollout(tokens)
        for ids, oks in distributed.gather_objects(d, ([p.id for p in batch], ok)):
            if ids:
                st.table.add(ids, oks, st.step)
        completions = [c or [tok.eos_id] for c in comps]
    else:
        completions = teacher_references(run, st, batch)
    if not batch:
        return _idle_step(run, st)
    with timed(st, "teacher", device):
        t_logits, n_teacher = teacher_logits(run, batch, completions)
    st.ledger.teacher(n_teacher)
    with timed(st, "student", device), seeded_global_rng(cfg.run.seed, st.step, device):
        s_logits, mask, n_tokens = student_logits(run, batch, completions)
        per_seq = divergence(kind, s_logits, t_logits, mask, cfg)
        w = torch.as_tensor(weights, dtype=torch.float32, device=device)
        # W * (this rank's share): DDP averages gradients over the W ranks
        total, grad_norm = _update(run, st, losses.weighted_loss(per_seq, w, norm) * d.world)
    st.ledger.student_step(n_tokens)
    return {"loss": total, "loss_kind": kind, "grad_norm": grad_norm}


def _idle_step(run: Run, st: State) -> dict:
    """A rank with no kept problem this step while others have some (distributed only): it
    joins the gradient all-reduce with zero gradients and takes the same optimizer step."""
    x = torch.full((1, 1), run.tok.pad_id, dtype=torch.long, device=run.device)
    total, grad_norm = _update(run, st, run.student_fwd(x).float().sum() * 0.0)
    return {"loss": total, "loss_kind": loss_kind(run.cfg, st), "grad_norm": grad_norm}


def _update(run: Run, st: State, loss: torch.Tensor) -> tuple[float, float]:
    """backward + clip + AdamW step on this rank's loss; returns (global loss, grad norm).
    Both checks see global values (the loss summed over ranks, the all-reduced gradient),
    so every rank stops together; the loss is checked before backward: weights stay good."""
    d = run.dist
    total = float(distributed.all_sum(d, [loss.item()], run.device)[0]) / d.world
    _check_finite(torch.tensor(total), "loss", st.step)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    clip = run.cfg.optim.grad_clip if run.cfg.optim.grad_clip > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(run.student.parameters(), clip)
    _check_finite(grad_norm, "gradient norm", st.step)
    run.opt.step()
    return total, grad_norm.item()


class NonFiniteError(PacedError):
    """A NaN or infinite loss or gradient norm: the run stops before the update (train()
    adds which checkpoint, if any, holds the last good state)."""


def _check_finite(x: torch.Tensor, what: str, step: int) -> None:
    if not torch.isfinite(x):
        raise NonFiniteError(f"step {step}: the {what} is {x.item()} (not finite), so the run "
                             "stopped before this update.")


def run_progress(cfg: RunConfig, step: int, flops: float) -> float:
    """How far through its budget a run is, in [0, 1]: FLOPs used / budget.flops when a FLOPs
    budget is set (methods that take different numbers of steps under one compute budget
    then decay alike), else step / budget.steps."""
    if cfg.budget.flops > 0:
        return min(1.0, flops / cfg.budget.flops)
    return min(1.0, step / cfg.budget.steps)


def lr_at(step: int, cfg: RunConfig, progress: float = 0.0) -> float:
    """Linear warmup over optim.warmup_steps, then constant (optim.schedule = "constant") or
    a cosine from lr to min_lr_frac * lr over the run's progress (run_progress)."""
    o = cfg.optim
    warm = min(1.0, step / max(o.warmup_steps, 1))
    if o.schedule == "constant":
        return o.lr * warm
    floor = o.min_lr_frac
    return o.lr * warm * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


# ------------------------------------------------------------------------------- run
IDLE_REFRESHES = 3  # refreshes in a row that leave every weight 0: the run stops (degenerate)


def train(cfg: RunConfig, out_dir: Path | str, resume: bool = False,
          overwrite: bool = False) -> dict:
    """Distil cfg.models.teacher into cfg.models.student; returns the summary (also written
    to out_dir/summary.json; metrics.jsonl and checkpoints/last.safetensors beside it).
    The run holds out_dir exclusively (rundir.py): a directory that already holds a run is
    refused unless resume (continue it) or overwrite (replace it). A run whose weights are
    all 0 after IDLE_REFRESHES refreshes in a row stops with summary["stopped"] saying why.
    Under torchrun the ranks share the work (distributed.py) and rank 0 alone writes; the
    other ranks return {"rank": r}."""
    out_dir = Path(out_dir)
    with rundir.claim(out_dir, resume=resume, overwrite=overwrite,
                      main=rundir.is_main_process()):
        try:
            return _train(cfg, out_dir, resume)
        except NonFiniteError as exc:
            raise NonFiniteError(f"{exc} {_last_good(cfg, checkpoint_path(out_dir))}") from None


def _last_good(cfg: RunConfig, ckpt: Path) -> str:
    """Where a stopped run can go on from, and what to change (for NonFiniteError)."""
    step = checkpoint_step(ckpt)
    where = (f"{ckpt} holds step {step}, the last good state" if step is not None else
             f"No checkpoint was written yet (the first is due at step {cfg.run.ckpt_every})")
    return (f"{where}. Usual cause: optim.lr too high for these models; start again with a "
            "lower optim.lr and --overwrite (--resume keeps the run's optim.lr, so it helps "
            "only when the cause was outside the config).")


def _idle_message(cfg: RunConfig, st: State) -> str:
    """Why a run stopped after IDLE_REFRESHES refreshes that kept nothing, and what to change."""
    r = st.table.rates()
    n0, n1 = int((r == 0).sum()), int((r == 1).sum())
    rest = len(r) - n0 - n1
    band = (f", {rest} lie outside weights.lo < p_hat < weights.hi" if rest else "")
    return (f"every problem had weight 0 after {IDLE_REFRESHES} pass-rate refreshes in a row, "
            f"so nothing was trained since the first of them and the run stopped at step "
            f"{st.step}: of {len(r)} training problems the student solved none of its rollouts "
            f"on {n0} (hopeless for it) and all of them on {n1} (already solved){band}, and "
            f"weights.method = '{cfg.weights.method}' gives those weight 0. Give problems "
            "nearer the student's level (data.*), more rollouts (rollouts.K) or a higher "
            "rollouts.temperature, or use weights.method = 'uniform' or "
            "weights.estimator = 'posterior'.")


def _train(cfg: RunConfig, out_dir: Path, resume: bool) -> dict:
    t_start = time.perf_counter()
    ckpt, metrics = checkpoint_path(out_dir), MetricsLog(out_dir / "metrics.jsonl")
    run, st = setup(cfg)
    d, main = run.dist, run.dist.is_main
    if resume:
        resume_state(run, st, ckpt)
        if main:
            metrics.truncate(st.step)
    wall0 = st.wall - t_start  # st.wall = wall0 + now: the run's wall time, across resumes
    if not resume and main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.toml").write_text(config_to_toml(cfg))
        st.last_eval = _eval(run, st)
        st.retention_start = st.last_eval["retention"]
        st.wall = wall0 + time.perf_counter()
        metrics.start([_eval_row(st, st.last_eval)])

    def done() -> bool:  # the ledger and the table are global, so every rank agrees
        return (st.step >= cfg.budget.steps or 0 < cfg.budget.flops <= st.ledger.flops
                or st.idle_refreshes >= IDLE_REFRESHES)

    if cfg.run.progress and main:  # the legend of the bar's postfix
        print("bar: loss = the step's weighted loss, acc = held-out accuracy at the last eval, "
              "kept = problems with weight > 0 / candidates, p = pass-rate table: 0:never "
              "solved [counts in 4 bins of (0, 1)] 1:always solved", file=sys.stderr)
    bar = tqdm(total=cfg.budget.steps, initial=st.step, disable=not (cfg.run.progress and main),
               desc=cfg.run.name, dynamic_ncols=True)
    while not done():
        before = st.ledger.row()
        if refresh_due(cfg, st):
            st.last_refresh = st.step
            refresh_pass_rates(run, st)
            _sync_ledger(run, st, before)
            st.refresh_flops = st.ledger.flops - before["flops"]  # global: all ranks agree
            before = st.ledger.row()
            idle = not problem_weights(cfg.weights, st.table, st.table.ids).any()
            st.idle_refreshes = st.idle_refreshes + 1 if idle else 0
        st.step += 1
        progress0 = run_progress(cfg, st.step - 1, st.ledger.flops)
        lr = lr_at(st.step, cfg, progress0)
        for g in run.opt.param_groups:
            g["lr"] = lr
        pool = sampling_pool(run, st)
        idx = pool[candidates(len(pool), cfg.optim.batch_size, cfg.run.seed, st.step)]
        cand = [run.train_set[i] for i in idx]
        w = problem_weights(cfg.weights, st.table, [p.id for p in cand])
        keep = w > 0  # dropped problems never reach a teacher or student forward pass
        row = {"kind": "step", "step": st.step, "n_kept": int(keep.sum()),
               "n_dropped": int((~keep).sum()), "loss": None, "loss_kind": loss_kind(cfg, st),
               "w_mean": float(w[keep].mean()) if keep.any() else None}
        if keep.any():
            norm = normaliser(w[keep], cfg.weights.normalise, cfg.optim.batch_size)
            mine = [i for i in range(d.rank, len(cand), d.world) if keep[i]]  # this rank's shard
            row.update(distill_step(run, st, [cand[i] for i in mine], w[mine], norm))
        _sync_ledger(run, st, before)
        st.wall = wall0 + time.perf_counter()
        row.update(st.ledger.row(), lr=lr, wall_s=round(st.wall, 3))
        rows = [row]
        if main and (eval_due(cfg, st.step, progress0, st.ledger.flops) or done()):
            st.last_eval = _eval(run, st)
            rows.append(_eval_row(st, st.last_eval))
        if st.step % cfg.run.ckpt_every == 0 or done():
            _gather_references(run, st)  # a collective: every rank takes part
        if main:
            metrics.append(rows)
            if st.step % cfg.run.ckpt_every == 0 or done():
                st.wall = wall0 + time.perf_counter()
                save_checkpoint(ckpt, model=run.student, optimizer=run.opt, step=st.step,
                                rng_state=capture_rng({}), extra=st.extra(cfg))
        bar.update(1)
        if main and (st.step % cfg.run.log_every == 0 or done()):
            bar.set_postfix_str(f"loss {_fmt(row['loss'])} acc {_fmt(st.last_eval['acc'])} "
                                f"kept {row['n_kept']}/{len(cand)} p {st.table.histogram()}")
    bar.close()
    if not main:
        return {"rank": d.rank}
    st.wall = wall0 + time.perf_counter()
    summary = _summary(run, st)
    if st.idle_refreshes >= IDLE_REFRESHES:
        summary["stopped"] = _idle_message(cfg, st)
        print(f"paced: run stopped: {out_dir}: {summary['stopped']}", file=sys.stderr)
    (out_dir / "summary.json").write_text(json.dumps(strict_json(summary), indent=2))
    return summary


def _sync_ledger(run: Run, st: State, before: dict) -> None:
    """Make the ledger global: add the other ranks' work of this step (no-op on one rank)."""
    if run.dist.world == 1:
        return
    keys = list(before)
    delta = [float(getattr(st.ledger, k)) - float(before[k]) for k in keys]
    total = distributed.all_sum(run.dist, delta, run.device)
    for k, v in zip(keys, total):
        value = before[k] + v
        setattr(st.ledger, k, int(round(value)) if k.endswith("_tokens") else float(value))


def _gather_references(run: Run, st: State) -> None:
    """Teacher references are cached per rank; merge them so checkpoints hold all of them."""
    if run.dist.world == 1:
        return
    for refs, oks in distributed.gather_objects(run.dist, (st.references, st.reference_ok)):
        st.references.update(refs)
        st.reference_ok.update(oks)


# ------------------------------------------------------------------------ bookkeeping
def _eval(run: Run, st: State) -> dict:
    with timed(st, "eval", run.device):
        return evaluate(run.student, run.tok, run.heldout, run.retention, run.cfg.eval,
                        seed=seed_for(run.cfg.run.seed, st.step, "eval"))


def _eval_row(st: State, ev: dict) -> dict:
    return {"kind": "eval", "step": st.step, "flops": st.ledger.flops,
            "rollout_flops": st.ledger.rollout_flops, **ev,
            "forgetting": forgetting(st.retention_start, ev["retention"]),
            "wall_s": round(st.wall, 3)}


def _summary(run: Run, st: State) -> dict:
    t = st.timers
    busy = t["rollout"] + t["teacher"] + t["student"]
    ref_ok = list(st.reference_ok.values())
    return {"name": run.cfg.run.name, "steps": st.step, **st.last_eval,
            "retention_start": st.retention_start,
            "forgetting": forgetting(st.retention_start, st.last_eval["retention"]),
            **st.ledger.row(), "wall_s": round(st.wall, 3),
            "timers_s": {k: round(v, 3) for k, v in t.items()},
            # time generating student rollouts, as a share of the training phases (rollout +
            # teacher + student; what `paced compare` reports) and of the whole wall time
            "rollout_share": t["rollout"] / busy if busy > 0 else 0.0,
            "rollout_share_of_wall": t["rollout"] / st.wall if st.wall > 0 else 0.0,
            "rollout_flops_share": (st.ledger.rollout_flops / st.ledger.flops
                                    if st.ledger.flops > 0 else 0.0),
            "pass_rate_histogram": st.table.histogram(),
            "refreshes": len(st.table.history),
            "pass_rate_shares_start": st.table.shares(0),
            "pass_rate_shares_end": st.table.shares(),
            "teacher_reference_acc": float(np.mean(ref_ok)) if ref_ok else None,
            "n_train": len(run.train_set), "n_heldout": len(run.heldout),
            "device": str(run.device)}


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"
