"""The PACED distillation loop. Read top to bottom: setup, then the step, then the run.

Data flow (DESIGN.md): problems -> K student rollouts per problem -> verifier -> pass-rate
table -> weights (paced_theory.kernels) -> zero-weight problems dropped BEFORE any teacher
or student forward pass -> teacher targets (references for forward KL / AKL / JSD / skew;
teacher logits on the student's own samples for reverse KL) -> weighted per-sequence loss ->
AdamW step -> periodic eval -> metrics.jsonl, checkpoints/last.pt, summary.json.

Everything random flows from cfg.run.seed through two checkpointed generators (numpy for
the data order, torch for sampling), and evaluation uses its own seeded generator, so a run
killed and resumed from its last checkpoint ends with the same metrics as an uninterrupted
run on CPU.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from paced_theory.errors import ConfigError, PacedError
from paced_train import losses
from paced_train.batching import pack
from paced_train.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from paced_train.config import RunConfig, config_to_toml
from paced_train.evaluate import evaluate, generate_and_verify
from paced_train.passrates import Ledger, PassRateTable, normaliser, problem_weights
from paced_train.tasks import arithmetic_suite, load_jsonl, retention_suite, split
from paced_train.tokenizer import check_same_vocab

# `paced compare` methods as config overrides (the same seeds, data and budget for each)
METHOD_OVERRIDES: dict[str, list[str]] = {
    "uniform": ["weights.method=uniform", "loss.schedule=forward"],
    "hard": ["weights.method=hard", "loss.schedule=forward"],
    "paced": ["weights.method=paced", "loss.schedule=forward"],
    "akl": ["weights.method=uniform", "loss.schedule=akl"],
    "two-stage": ["weights.method=paced", "loss.schedule=two-stage"],
    "reverse": ["weights.method=paced", "loss.schedule=reverse"],
    "uniform-reverse": ["weights.method=uniform", "loss.schedule=reverse"],
}


# ----------------------------------------------------------------------------- setup
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run.device = cuda but no CUDA device is available")
    return torch.device(name)


def load_model_spec(spec: str, device):
    """'shipped:student' / 'shipped:teacher', a .safetensors file of ours, or (with the hf
    extra) a local Hugging Face directory or .gguf file -> (model, tokenizer)."""
    from paced_train.model import load_model, shipped_path

    if spec.startswith("shipped:"):
        model, tok, _ = load_model(shipped_path(spec.split(":", 1)[1]), device)
        return model, tok
    if spec.endswith(".safetensors"):
        model, tok, _ = load_model(spec, device)
        return model, tok
    from paced_train import hf  # a local HF directory or GGUF file

    model, tok, _ = hf.load_any(spec, device)
    return model, tok


def build_problems(cfg: RunConfig):
    """(train, heldout, retention). The retention set is never used for distillation."""
    d = cfg.data
    if d.jsonl:
        problems = load_jsonl(d.jsonl)
    else:
        problems = arithmetic_suite(cfg.run.seed, d.n_train_per_cell + d.n_eval_per_cell,
                                    d.add_digits, d.mul_digits)
    train, heldout = split(problems, d.n_eval_per_cell, cfg.run.seed)
    return train, heldout, retention_suite(cfg.run.seed, d.n_retention)


def n_params(model) -> int:
    f = getattr(model, "num_params", None)
    return f() if f else sum(p.numel() for p in model.parameters())


@dataclass
class State:
    """Everything the loop mutates; what a checkpoint must restore."""

    step: int = 0
    np_rng: np.random.Generator = None
    gen: torch.Generator = None
    table: PassRateTable = None
    ledger: Ledger = None
    retention_start: float = float("nan")
    timers: dict = field(default_factory=lambda: {"rollout": 0.0, "teacher": 0.0,
                                                  "student": 0.0, "eval": 0.0})
    wall: float = 0.0


# ------------------------------------------------------------------------ the pieces
def refresh_pass_rates(st: State, student, tok, problems, cfg: RunConfig) -> None:
    """K fresh rollouts of every training problem; replaces the table's estimates."""
    t0 = time.perf_counter()
    K = cfg.rollouts.K
    ok, _, tokens = generate_and_verify(student, tok, problems, cfg.rollouts.max_new_tokens, k=K,
                                        temperature=cfg.rollouts.temperature,
                                        top_p=cfg.rollouts.top_p, generator=st.gen)
    st.table.refresh([p.id for p in problems], ok.reshape(len(problems), K).sum(1), K, st.step)
    st.ledger.rollout(tokens)
    st.timers["rollout"] += time.perf_counter() - t0


def loss_kind(cfg: RunConfig, st: State) -> str:
    """Which divergence this step uses (the two-stage schedule switches forward -> reverse)."""
    sched = cfg.loss.schedule
    if sched != "two-stage":
        return sched
    if cfg.loss.switch_unit == "compute":
        return "forward" if st.ledger.flops < cfg.loss.switch_at * cfg.budget.flops else "reverse"
    return "forward" if st.step <= cfg.loss.switch_at * cfg.budget.steps else "reverse"


def divergence(kind: str, s_logits, t_logits, mask, cfg: RunConfig):
    T = cfg.loss.temperature
    if kind in ("forward", "reverse"):
        return losses.token_kl(s_logits, t_logits, mask, kind, temperature=T)
    if kind == "akl":
        return losses.akl(s_logits, t_logits, mask, mu=cfg.loss.akl_mu, temperature=T)
    if kind == "jsd":
        return losses.generalized_jsd(s_logits, t_logits, mask, beta=cfg.loss.jsd_beta,
                                      temperature=T)
    return losses.skew_kl(s_logits, t_logits, mask, alpha=cfg.loss.skew_alpha, temperature=T)


def distill_step(st: State, student, teacher, tok, batch, weights, references, opt,
                 cfg: RunConfig, device) -> dict:
    """One optimizer step on the kept problems of a candidate batch."""
    kind = loss_kind(cfg, st)
    prompts = [tok.encode_prompt(p.prompt) for p in batch]
    if kind == "reverse":  # on-policy: the student's own samples, which also count as rollouts
        t0 = time.perf_counter()
        ok, comps, tokens = generate_and_verify(student, tok, batch, cfg.rollouts.max_new_tokens,
                                                temperature=cfg.rollouts.temperature,
                                                top_p=cfg.rollouts.top_p, generator=st.gen)
        st.table.add([p.id for p in batch], ok)
        st.ledger.rollout(tokens)
        st.timers["rollout"] += time.perf_counter() - t0
        completions = [c if c else [tok.eos_id] for c in comps]
    else:
        completions = [references[p.id] for p in batch]
    x, _, mask = pack(prompts, completions, tok.pad_id, device)
    n_tokens = sum(len(p) + len(c) - 1 for p, c in zip(prompts, completions))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    t0 = time.perf_counter()
    with torch.no_grad(), autocast:
        t_logits = teacher(x)
    st.ledger.teacher(n_tokens)
    t1 = time.perf_counter()
    st.timers["teacher"] += t1 - t0
    student.train()
    with autocast:
        s_logits = student(x)
    per_seq = divergence(kind, s_logits, t_logits, mask, cfg)
    w = torch.tensor(weights, dtype=torch.float32, device=device)
    loss = losses.weighted_loss(per_seq, w, normaliser(weights, cfg.weights.normalise,
                                                       cfg.optim.batch_size))
    if not torch.isfinite(loss):
        raise PacedError(f"step {st.step}: the loss is {loss.item()} (not finite); stopping. "
                         "The last good checkpoint is untouched; lower optim.lr or check the "
                         "inputs, then rerun with --resume.")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.optim.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.optim.grad_clip)
    opt.step()
    st.ledger.student_step(n_tokens)
    st.timers["student"] += time.perf_counter() - t1
    return {"loss": loss.item(), "kind": kind}


def lr_at(step: int, cfg: RunConfig) -> float:
    """Linear warmup, then constant (budgets differ across compared methods)."""
    return cfg.optim.lr * min(1.0, step / max(cfg.optim.warmup_steps, 1))


# ------------------------------------------------------------------------------ run
def train(cfg: RunConfig, out_dir, resume: bool = False) -> dict:
    out_dir = Path(out_dir)
    device = resolve_device(cfg.run.device)
    torch.manual_seed(cfg.run.seed)
    student, tok = load_model_spec(cfg.models.student, device)
    teacher, t_tok = load_model_spec(cfg.models.teacher, device)
    check_same_vocab(t_tok, tok)
    teacher.eval().requires_grad_(False)
    train_set, heldout, retention = build_problems(cfg)
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.optim.lr,
                            weight_decay=cfg.optim.weight_decay)
    st = State(np_rng=np.random.default_rng([cfg.run.seed, 1]),
               gen=torch.Generator().manual_seed(cfg.run.seed),
               table=PassRateTable([p.id for p in train_set]),
               ledger=Ledger(n_params(student), n_params(teacher)))
    ckpt, metrics_path = out_dir / "checkpoints" / "last.pt", out_dir / "metrics.jsonl"

    # teacher references for teacher-forced losses: the teacher's greedy answers, cached
    ok, comps, tokens = generate_and_verify(teacher, t_tok, train_set,
                                            cfg.rollouts.max_new_tokens, temperature=0.0)
    references = {p.id: (c if c else [tok.eos_id]) for p, c in zip(train_set, comps)}
    teacher_train_acc = float(ok.mean())

    if resume:
        info = load_checkpoint(ckpt, model=student, optimizer=opt, map_location=device)
        restore_rng(info["rng_state"], {"np": st.np_rng, "gen": st.gen})
        extra = info["extra"]
        st.step, st.retention_start, st.timers, st.wall = (info["step"], extra["retention_start"],
                                                           extra["timers"], extra["wall"])
        st.table.load(extra["table"])
        st.ledger.load(extra["ledger"])
        rows = [r for r in _read_jsonl(metrics_path) if r["step"] <= st.step]
        _write_jsonl(metrics_path, rows)
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.toml").write_text(config_to_toml(cfg))
        st.ledger.teacher(tokens)  # the references cost teacher compute once
        ev = evaluate(student, tok, heldout, retention, cfg.eval, seed=cfg.run.seed)
        st.retention_start = ev["retention"]
        _write_jsonl(metrics_path, [_eval_row(st, ev, teacher_train_acc)])

    from tqdm import tqdm

    bar = tqdm(total=cfg.budget.steps, initial=st.step, disable=not cfg.run.progress,
               desc=cfg.run.name, leave=False)
    t_start, wall0, last_eval = time.perf_counter(), st.wall, None
    while st.step < cfg.budget.steps:
        if cfg.budget.flops > 0 and st.ledger.flops >= cfg.budget.flops:
            break
        # uniform weighting never reads pass rates, so it pays for no refresh rollouts:
        # rollouts are PACED's overhead and equal-compute comparisons must charge it
        if st.step % cfg.rollouts.refresh_every == 0 and cfg.weights.method != "uniform":
            refresh_pass_rates(st, student, tok, train_set, cfg)
        st.step += 1
        for g in opt.param_groups:
            g["lr"] = lr_at(st.step, cfg)
        pick = st.np_rng.choice(len(train_set), size=min(cfg.optim.batch_size, len(train_set)),
                                replace=False)
        candidates = [train_set[i] for i in pick]
        w = problem_weights(cfg.weights, st.table, [p.id for p in candidates])
        keep = w > 0  # dropped here: no teacher or student forward pass for these
        row = {"kind": "step", "step": st.step, "n_kept": int(keep.sum()),
               "n_dropped": int((~keep).sum())}
        if keep.any():
            batch = [p for p, k in zip(candidates, keep) if k]
            row.update(distill_step(st, student, teacher, tok, batch, w[keep], references, opt,
                                    cfg, device))
            row["loss_kind"] = row.pop("kind")
            row["kind"] = "step"
        st.wall = wall0 + time.perf_counter() - t_start
        row.update(st.ledger.row(), lr=lr_at(st.step, cfg), wall_s=round(st.wall, 3))
        rows = [row]
        final = st.step == cfg.budget.steps or (
            cfg.budget.flops > 0 and st.ledger.flops >= cfg.budget.flops)
        if st.step % cfg.eval.every == 0 or final:
            t0 = time.perf_counter()
            last_eval = evaluate(student, tok, heldout, retention, cfg.eval,
                                 seed=cfg.run.seed + st.step)
            st.timers["eval"] += time.perf_counter() - t0
            rows.append(_eval_row(st, last_eval))
        _append_jsonl(metrics_path, rows)
        if st.step % cfg.run.ckpt_every == 0 or final:
            _save(ckpt, student, opt, st)
        bar.update(1)
        bar.set_postfix(loss=f"{row.get('loss', float('nan')):.3f}", kept=row["n_kept"],
                        acc=f"{last_eval['acc']:.3f}" if last_eval else "-",
                        p=st.table.histogram())
    bar.close()
    if last_eval is None:  # resumed at the end, or stopped by the budget before any eval
        last_eval = evaluate(student, tok, heldout, retention, cfg.eval,
                             seed=cfg.run.seed + st.step)
    summary = _summary(st, last_eval, cfg)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


# ---------------------------------------------------------------------- bookkeeping
def _eval_row(st: State, ev: dict, teacher_train_acc: float | None = None) -> dict:
    row = {"kind": "eval", "step": st.step, "flops": st.ledger.flops, **ev,
           "forgetting": st.retention_start - ev["retention"], "wall_s": round(st.wall, 3)}
    if teacher_train_acc is not None:
        row["teacher_reference_acc"] = teacher_train_acc
    return row


def _summary(st: State, ev: dict, cfg: RunConfig) -> dict:
    total = max(st.wall, 1e-9)
    train_time = max(total - st.timers["eval"], 1e-9)
    return {"name": cfg.run.name, "steps": st.step, **ev,
            "retention_start": st.retention_start,
            "forgetting": st.retention_start - ev["retention"], **st.ledger.row(),
            "wall_s": round(total, 3), "timers_s": {k: round(v, 3) for k, v in st.timers.items()},
            "rollout_share": st.timers["rollout"] / train_time,
            "pass_rate_histogram": st.table.histogram()}


def _save(path: Path, model, opt, st: State) -> None:
    save_checkpoint(path, model=model, optimizer=opt, step=st.step,
                    rng_state=capture_rng({"np": st.np_rng, "gen": st.gen}),
                    extra={"table": st.table.state(), "ledger": st.ledger.row(),
                           "retention_start": st.retention_start, "timers": st.timers,
                           "wall": st.wall})


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, default=_nan) + "\n" for r in rows))
    tmp.replace(path)


def _append_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "a") as f:
        f.writelines(json.dumps(r, default=_nan) + "\n" for r in rows)


def _nan(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    return float(x)
