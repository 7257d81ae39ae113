"""The PACED distillation loop: one screen of stages, read top to bottom.

    setup        models, problems, optimizer, pass-rate table, ledger   (distill, tasks, state)
    loop, until budget.steps or budget.flops:
      rollouts   measure the pass rates that are due: K verified student rollouts, or
                 the likelihood of the canonical answer                (rollouts, likelihood)
      weights    B candidates (batching) weighted from the table by paced_theory's
                 kernels (passrates), or B problems chosen by a value criterion    (value)
      drop       problems of weight 0 leave the batch HERE, before any teacher or student
                 forward pass; the rest is split over ranks                    (distributed)
      step       completions (teacher references, or fresh student samples for reverse KL),
                 teacher and student logits on them (distill), per-sequence divergence and
                 sum_i w_i L_i / normaliser (losses), backward, clip, AdamW; the step's
                 forward reads pass rates free where it scores the canonical answer
                 (likelihood). loss.schedule = "rl" (rl_step): K student samples per kept
                 problem (rollouts.group_samples), whose c / K replaces the table entry and
                 gives the step's weights and normaliser; no teacher; the policy gradient
                 sum_g w_g L_g / normaliser (losses.policy_gradient)
      evaluate   held-out accuracy, mean@k, retention when due: every boundary the refresh
                 and the step crossed, so no method skips one                (evaluate)
      log        a metrics.jsonl row with the compute ledger and the pass rates' ages; a
                 checkpoint when due
    summary.json

Reproducibility: every random draw of step s comes from a generator seeded by
(run.seed, s, stream) (seeding.py), so the random streams are a function of the checkpointed
step, and a run killed and resumed from checkpoints/last.safetensors ends with the same
metrics and weights as an uninterrupted run (on CPU; CUDA kernels are not bitwise
deterministic). Under torchrun the ranks split rollouts and candidates and keep weights,
normaliser and ledger global (distributed.py); rank 0 alone evaluates and writes.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from paced_theory.errors import PacedError
from paced_theory.jsonable import strict_json
from paced_train import rundir, tasks
from paced_train.config import RunConfig, config_to_toml
from paced_train.loop import distributed, likelihood, losses, value
from paced_train.loop.batching import (
    candidates,
    completion_targets,
    pass_rate_ages,
    sampling_pool,
)
from paced_train.loop.distill import (
    load_models,
    n_params,
    reference_logits,
    student_logits,
    teacher_logits,
    teacher_references,
    teacher_view,
)
from paced_train.loop.evaluate import evaluate, forgetting
from paced_train.loop.ledger import Ledger, MetricsLog
from paced_train.loop.losses import RL
from paced_train.loop.passrates import (
    VALUE_METHODS,
    PassRateTable,
    normaliser,
    problem_weights,
    reads_pass_rates,
)
from paced_train.loop.rollouts import group_samples, on_policy_samples, refresh, refresh_rows
from paced_train.loop.schedule import eval_due, loss_kind, lr_at, run_progress
from paced_train.loop.seeding import seed_for, seeded_global_rng
from paced_train.loop.state import Run, State, resume_state, timed
from paced_train.models import adapters
from paced_train.models.checkpoint import checkpoint_path, checkpoint_step, save_checkpoint
from paced_train.models.tokenizer import CharTokenizer

IDLE_REFRESHES = 3  # refreshes in a row that leave every weight 0: the run stops (degenerate)
LEGEND = ("bar: loss = the step's weighted loss, acc = held-out accuracy at the last eval, "
          "kept = problems with weight > 0 / candidates, p = pass-rate table: 0:never solved "
          "[counts in 4 bins of (0, 1)] 1:always solved")


class NonFiniteError(PacedError):
    """A NaN or infinite loss or gradient norm: the run stops before the update (train()
    adds which checkpoint, if any, holds the last good state)."""


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


# ----------------------------------------------------------------------------- setup
def setup(cfg: RunConfig) -> tuple[Run, State]:
    """Models, problems, optimizer (Run) and an empty pass-rate table and ledger (State)."""
    if cfg.run.threads > 0:
        torch.set_num_threads(cfg.run.threads)
    d, device = distributed.init(cfg.run.device)
    student, teacher, tok = load_models(cfg, device)
    train_set, heldout, retention = tasks.build_problems(cfg)
    if cfg.rollouts.source == "likelihood" and reads_pass_rates(cfg.weights.method):
        likelihood.check_source(cfg, train_set, tok)  # names a problem it cannot measure
    if isinstance(tok, CharTokenizer):  # a fixed character set: JSONL text may fall outside
        every = train_set + heldout + retention
        blocks = [getattr(getattr(m, "config", None), "block_size", None)
                  for m in (student, teacher)]
        context = min((b for b in blocks if isinstance(b, int)), default=None)
        for view in (every, teacher_view(cfg, every)):
            # errors name the file and line, before the run writes anything
            tasks.check_prompts(view, tok.encode_prompt, context)
    train_set, ref_split = value.split_reference(cfg, d.world, train_set)  # rholoss only
    # only trainable parameters ([trainable]: frozen ones get no optimizer state)
    opt = torch.optim.AdamW(adapters.trainable_parameters(student), lr=cfg.optim.lr,
                            weight_decay=cfg.optim.weight_decay)
    run = Run(cfg, device, student, teacher, tok, opt, train_set, heldout, retention,
              distributed.wrap(student, d, device), d, value={"reference_split": ref_split})
    st = State(step=0, table=PassRateTable([p.id for p in train_set]),
               ledger=Ledger(n_params(student), n_params(teacher) if teacher else 0,
                             bwd_per_token=_backward_rate(cfg, student)))
    return run, st


def _backward_rate(cfg: RunConfig, student) -> float:
    """FLOPs per backward token with frozen parameters (models/adapters.py); 0 = the ledger's
    4 N when everything trains."""
    if cfg.trainable.mode == "all":
        return 0.0
    return adapters.backward_flops_per_token(student, n_params(student))


# ------------------------------------------------------------------------------ loop
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

    if cfg.run.progress and main:
        print(LEGEND, file=sys.stderr)
    bar = tqdm(total=cfg.budget.steps, initial=st.step, disable=not (cfg.run.progress and main),
               desc=cfg.run.name, dynamic_ncols=True)
    while not done():
        # rollouts: measure the pass rates that are due (progress taken before, so an
        # evaluation boundary crossed by the refresh is evaluated after this step)
        progress_prev = run_progress(cfg, st.step, st.ledger.flops)
        due = refresh_rows(cfg, st)
        if due is not None:
            refresh(run, st, due)
        before = st.ledger.row()
        st.step += 1
        progress0 = run_progress(cfg, st.step - 1, st.ledger.flops)
        lr = lr_at(st.step, cfg, progress0)
        for g in run.opt.param_groups:
            g["lr"] = lr
        # weights of this step's candidates, then drop every problem of weight 0
        if cfg.weights.method in VALUE_METHODS:  # a value criterion picks the batch
            idx, picked = value.pick(run, st)
        else:
            pool = sampling_pool(cfg, st.table)
            idx, picked = pool[candidates(len(pool), cfg.optim.batch_size, cfg.run.seed,
                                          st.step)], {}
        cand = [run.train_set[i] for i in idx]
        w = problem_weights(cfg.weights, st.table, [p.id for p in cand])
        keep = w > 0
        row = {"kind": "step", "step": st.step, "n_kept": int(keep.sum()),
               "n_dropped": int((~keep).sum()), "loss": None,
               "loss_kind": loss_kind(cfg, st.step, st.ledger.flops),
               "w_mean": float(w[keep].mean()) if keep.any() else None,
               **pass_rate_ages(cfg, st.table, idx, st.step - 1), **picked}
        # step on this rank's share of the kept problems, with the global normaliser (rl:
        # weights and normaliser from the step's own samples)
        if keep.any() and row["loss_kind"] == RL:
            row.update(rl_step(run, st, [cand[i] for i in np.flatnonzero(keep)]))
        elif keep.any():
            norm = normaliser(w[keep], cfg.weights.normalise, cfg.optim.batch_size)
            mine = distributed.shard(d, keep)
            row.update(distill_step(run, st, [cand[i] for i in mine], w[mine], norm))
        distributed.sum_ledger(d, st.ledger, before, run.device)
        st.wall = wall0 + time.perf_counter()
        row.update(st.ledger.row(), lr=lr, wall_s=round(st.wall, 3))
        # evaluate and log
        rows = [row]
        if main and (eval_due(cfg, st.step, progress_prev, st.ledger.flops) or done()):
            st.last_eval = _eval(run, st)
            rows.append(_eval_row(st, st.last_eval))
        ckpt_due = st.step % cfg.run.ckpt_every == 0 or done()
        if ckpt_due:  # a collective: every rank takes part
            distributed.merge_dicts(d, st.references, st.reference_ok)
        if main:
            metrics.append(rows)
            if ckpt_due:
                st.wall = wall0 + time.perf_counter()
                save_checkpoint(ckpt, model=run.student, optimizer=run.opt, step=st.step,
                                rng_state={}, extra=st.extra(cfg))
        bar.update(1)
        if main and (st.step % cfg.run.log_every == 0 or done()):
            bar.set_postfix_str(f"loss {_fmt(row['loss'])} acc {_fmt(st.last_eval['acc'])} "
                                f"kept {row['n_kept']}/{len(cand)} p {st.table.histogram()}")
    bar.close()
    if not main:
        return {"rank": d.rank}
    st.wall = wall0 + time.perf_counter()
    summary = _summary(run, st)
    if st.idle_refreshes >= IDLE_REFRESHES:  # stopped early: maybe after training, maybe not
        summary["stopped"] = _idle_message(cfg, st)
        summary["trained_nothing"] = st.ledger.student_fwd_tokens == 0
        print(f"paced: run stopped: {out_dir}: {summary['stopped']}", file=sys.stderr)
    elif st.ledger.student_fwd_tokens == 0:  # the whole budget kept no problem
        summary["stopped"] = _idle_message(cfg, st, budget=True)
        summary["trained_nothing"] = True
        print(f"paced: run trained nothing: {out_dir}: {summary['stopped']}", file=sys.stderr)
    (out_dir / "summary.json").write_text(json.dumps(strict_json(summary), indent=2))
    return summary


# ------------------------------------------------------------------------------ step
def distill_step(run: Run, st: State, batch: list, weights: np.ndarray, norm: float) -> dict:
    """One optimizer step on this rank's kept problems `batch` (all weights > 0; possibly
    none on some ranks when distributed) with the GLOBAL normaliser `norm`. With
    rollouts.source = "likelihood" the pass rates of the batch's problems whose completion
    is the canonical answer are read from the step's student logits (likelihood.free_reads)
    and gathered into every rank's table."""
    cfg, device, d = run.cfg, run.device, run.dist
    kind = loss_kind(cfg, st.step, st.ledger.flops)
    if kind == "reverse":  # on-policy: one student sample per problem (training compute)
        completions = on_policy_samples(run, st, batch)
    else:
        completions = teacher_references(run, st, batch)
    live = cfg.rollouts.source == "likelihood" and reads_pass_rates(cfg.weights.method)
    read: tuple[list, np.ndarray] = ([], np.zeros(0))
    if not batch:
        row = _idle_step(run, st, kind)
    else:
        with timed(st, "teacher", device):
            t_logits, n_teacher = teacher_logits(run, batch, completions)
        st.ledger.teacher(n_teacher)
        with timed(st, "student", device), seeded_global_rng(cfg.run.seed, st.step, device):
            s_logits, mask, n_tokens = student_logits(run, batch, completions)
            per_seq = losses.divergence(kind, s_logits, t_logits, mask, cfg.loss)
            w = torch.as_tensor(weights, dtype=torch.float32, device=device)
            # W * (this rank's share): DDP averages gradients over the W ranks
            total, grad_norm = _update(run, st,
                                       losses.weighted_loss(per_seq, w, norm) * d.world)
        st.ledger.student_step(n_tokens)
        row = {"loss": total, "loss_kind": kind, "grad_norm": grad_norm}
        value.observe(run, st, batch, per_seq)  # lp: the losses feed learning progress
        if live:  # pass rates read free where the step scored the canonical answer
            read = likelihood.free_reads(run, batch, completions, s_logits)
    if live:
        likelihood.record_reads(run, st, *read)  # a collective: every rank, every step
    return row


def rl_step(run: Run, st: State, kept: list) -> dict:
    """One policy-gradient step (loss.schedule = "rl") on the step's kept problems `kept`
    (the same list on every rank; the sampler chose them from the table, so a weighted
    method pays no samples for problems it skips). Each gets a group of K samples
    (rollouts.group_samples: this rank's chunks; every group's c / K replaces its table
    entry), then the weights w(c / K) and the GLOBAL normaliser are read from those fresh
    counts, exactly as the divergences read theirs. Only this rank's groups that can move the
    student go through the model: a group with c in {0, K} has zero advantage, so without
    KL it is skipped in every method (its gradient is exactly 0; it still counts in the
    normaliser). The teacher is never run; with loss.rl_kl > 0 the frozen initial student
    is, charged as teacher tokens."""
    cfg, device, d, K = run.cfg, run.device, run.dist, run.cfg.rollouts.K
    mine, comps, ok, counts = group_samples(run, st, kept)
    w = problem_weights(cfg.weights, st.table, [p.id for p in kept])  # from these groups
    norm = normaliser(w, cfg.weights.normalise, cfg.optim.batch_size)
    c = counts[mine]
    live = [j for j in range(len(mine)) if w[mine[j]] > 0 and (
        cfg.loss.rl_kl > 0 or 0 < c[j] < K)]
    stats = {"reward": float(counts.sum() / (K * len(kept))), "w_mean": float(w.mean()),
             "n_frontier": int(((counts > 0) & (counts < K)).sum())}
    if not live:
        return {**_idle_step(run, st, RL), **stats}
    batch = [kept[mine[j]] for j in live for _ in range(K)]
    samples = [comps[j * K + k] for j in live for k in range(K)]
    kl = None
    if cfg.loss.rl_kl > 0:
        with timed(st, "teacher", device):
            ref, n_ref = reference_logits(run, batch, samples)
        st.ledger.teacher(n_ref)
    with timed(st, "student", device), seeded_global_rng(cfg.run.seed, st.step, device):
        logits, mask, n_tokens = student_logits(run, batch, samples)
        T = cfg.rollouts.temperature  # the policy that drew the samples
        logp = losses.sequence_logp(logits, completion_targets(samples, device), mask, T)
        if cfg.loss.rl_kl > 0:
            kl = losses.token_kl(logits, ref, mask, "reverse", temperature=T, reduction="sum")
        rewards = torch.as_tensor(ok.reshape(-1, K)[live].reshape(-1), dtype=torch.float32)
        groups = torch.arange(len(live)).repeat_interleave(K)
        loss = losses.policy_gradient(logp, rewards, groups, torch.as_tensor(w[mine[live]]),
                                      norm, scale_std=cfg.loss.rl_std, kl=kl,
                                      kl_coef=cfg.loss.rl_kl)
        total, grad_norm = _update(run, st, loss * d.world)  # DDP averages over W ranks
    st.ledger.student_step(n_tokens)
    return {"loss": total, "loss_kind": RL, "grad_norm": grad_norm, **stats}


def _idle_step(run: Run, st: State, kind: str) -> dict:
    """A rank with no kept problem this step while others have some (distributed only), or
    an RL step none of whose groups can move the student: it joins the gradient all-reduce
    with zero gradients and takes the same optimizer step."""
    x = torch.full((1, 1), run.tok.pad_id, dtype=torch.long, device=run.device)
    total, grad_norm = _update(run, st, (run.student_fwd or run.student)(x).float().sum() * 0.0)
    return {"loss": total, "loss_kind": kind, "grad_norm": grad_norm}


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


def _check_finite(x: torch.Tensor, what: str, step: int) -> None:
    if not torch.isfinite(x):
        raise NonFiniteError(f"step {step}: the {what} is {x.item()} (not finite), so the run "
                             "stopped before this update.")


# ----------------------------------------------------------------- evaluate and log
def _eval(run: Run, st: State) -> dict:
    with timed(st, "eval", run.device):
        return evaluate(run.student, run.tok, run.heldout, run.retention, run.cfg.eval,
                        seed=seed_for(run.cfg.run.seed, st.step, "eval"))


def _eval_row(st: State, ev: dict) -> dict:
    return {"kind": "eval", "step": st.step, "flops": st.ledger.flops,
            "rollout_flops": st.ledger.rollout_flops,
            "estimation_flops": st.ledger.estimation_flops, **ev,
            "forgetting": forgetting(st.retention_start, ev["retention"]),
            "wall_s": round(st.wall, 3)}


def _summary(run: Run, st: State) -> dict:
    t = st.timers
    busy = sum(t.get(k, 0.0) for k in ("rollout", "estimate", "sample", "teacher", "student",
                                       "value"))
    est = t["rollout"] + t.get("estimate", 0.0) + t.get("value", 0.0)
    ref_ok = list(st.reference_ok.values())
    return {"name": run.cfg.run.name, "steps": st.step, **st.last_eval,
            "retention_start": st.retention_start,
            "forgetting": forgetting(st.retention_start, st.last_eval["retention"]),
            **st.ledger.row(), "wall_s": round(st.wall, 3),
            "timers_s": {k: round(v, 3) for k, v in t.items()},
            # estimation (refresh rollouts + likelihood passes + a value criterion's work;
            # on-policy samples are training) as a share of the training phases' time
            # (rollout + estimate + sample + teacher + student + value; what `paced compare`
            # reports), of the whole wall time, and of the FLOPs. The keys keep their old
            # names; value_flops_share is the value criterion's part of the FLOPs.
            "rollout_share": est / busy if busy > 0 else 0.0,
            "rollout_share_of_wall": est / st.wall if st.wall > 0 else 0.0,
            "rollout_flops_share": (st.ledger.estimation_flops / st.ledger.flops
                                    if st.ledger.flops > 0 else 0.0),
            "value_flops_share": (st.ledger.value_flops / st.ledger.flops
                                  if st.ledger.flops > 0 else 0.0),
            "pass_rate_histogram": st.table.histogram(),
            "refreshes": len(st.table.history),
            "pass_rate_shares_start": st.table.shares(0, run.cfg.rollouts.K),
            "pass_rate_shares_end": st.table.shares(None, run.cfg.rollouts.K),
            "teacher_reference_acc": float(np.mean(ref_ok)) if ref_ok else None,
            "n_train": len(run.train_set), "n_heldout": len(run.heldout),
            "device": str(run.device)}


def _last_good(cfg: RunConfig, ckpt: Path) -> str:
    """Where a stopped run can go on from, and what to change (for NonFiniteError)."""
    step = checkpoint_step(ckpt)
    where = (f"{ckpt} holds step {step}, the last good state" if step is not None else
             f"No checkpoint was written yet (the first is due at step {cfg.run.ckpt_every})")
    return (f"{where}. Usual cause: optim.lr too high for these models; start again with a "
            "lower optim.lr and --overwrite (--resume keeps the run's optim.lr, so it helps "
            "only when the cause was outside the config).")


def _idle_message(cfg: RunConfig, st: State, budget: bool = False) -> str:
    """Why a run stopped after IDLE_REFRESHES refreshes that kept nothing (or, budget=True,
    ended its budget without keeping a problem), and what to change."""
    r = st.table.rates()
    lo, hi = (cfg.weights.lo, cfg.weights.hi) if cfg.weights.method == "hard" else (0.0, 1.0)
    n0, n1 = int((r <= lo).sum()), int((r >= hi).sum())  # exact P: at or past the band's ends
    rest = len(r) - n0 - n1
    band = (f", {rest} lie outside weights.lo < p_hat < weights.hi" if rest else "")
    when = (f"every problem had weight 0 at every one of the run's {st.step} steps, so "
            "nothing was trained (no teacher or student token was processed; the accuracy "
            "reported is the untrained student's)" if budget else
            f"every problem had weight 0 after {IDLE_REFRESHES} pass-rate refreshes in a row, "
            f"so nothing was trained since the first of them and the run stopped at step "
            f"{st.step}")
    return (f"{when}: of {len(r)} training problems the student's pass rate is at most "
            f"{lo:g} on {n0} (hopeless for it) and at least {hi:g} on {n1} (solved){band}, and "
            f"weights.method = '{cfg.weights.method}' gives those weight 0. Give problems "
            "nearer the student's level (data.*), more rollouts (rollouts.K) or a higher "
            "rollouts.temperature, or use weights.method = 'uniform' or "
            "weights.estimator = 'posterior'.")


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"
