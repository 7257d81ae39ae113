"""The rollout stage: the student's own samples, verified, and the pass-rate table they feed.

  generate_and_verify   k completions per problem and their verdicts (tasks.verify), with the
                        positions processed (what the ledger charges)
  refresh_due           whether the table is refreshed before the next step (PACED's overhead,
                        kept under rollouts.max_share of the FLOPs)
  refresh_pass_rates    K rollouts per training problem (sequential K: settled_counts), split
                        over ranks in seeded chunks, gathered into every rank's table
  on_policy_samples     reverse KL's completions: one student sample per problem, which is a
                        rollout too and updates the table
"""

from __future__ import annotations

import numpy as np
import torch

from paced_train.config import RunConfig
from paced_train.loop import distributed
from paced_train.loop.distributed import autocast
from paced_train.loop.passrates import PassRateTable
from paced_train.loop.seeding import torch_gen
from paced_train.loop.state import Run, State, timed
from paced_train.tasks import Problem, verify


def model_device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def generate_and_verify(model, tok, problems: list[Problem], max_new_tokens: int, k: int = 1,
                        temperature: float = 1.0, top_p: float = 1.0,
                        generator: torch.Generator | None = None, batch: int = 1024):
    """k completions per problem, in order (problem 0's k, then problem 1's, ...).

    Returns (ok, completions, tokens): ok a bool array (len(problems) * k,), completions the
    token lists (eos included when produced), tokens the positions processed (each distinct
    prompt once, its k rollouts share the prefill; then each generated token: what
    KV-cached generation costs). Temperature 0 is
    greedy. On CUDA the forward passes run under bf16 autocast."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    prompts = [tok.encode_prompt(p.prompt) for p in problems for _ in range(k)]
    comps: list[list[int]] = []
    tokens = 0
    with autocast(device):
        for i in range(0, len(prompts), batch):
            chunk = prompts[i:i + batch]
            out = model.generate(chunk, max_new_tokens, temperature=temperature, top_p=top_p,
                                 generator=generator, eos_id=tok.eos_id, pad_id=tok.pad_id)
            comps += out
            # a prompt repeated in the chunk (K rollouts) is prefilled once by generate
            tokens += sum(len(p) for p in set(map(tuple, chunk))) + sum(len(c) for c in out)
    model.train(was_training)
    ok = np.array([verify(problems[j // k], tok.decode(c)) for j, c in enumerate(comps)],
                  dtype=bool)
    return ok, comps, tokens


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


def refresh_pass_rates(run: Run, st: State) -> None:
    """Fresh rollouts of every training problem replace the table's counts: K each, or with
    rollouts.settled_K > 0 sequentially (settled_counts). The pool is rolled out in fixed
    chunks, each from its own seeded stream, so the result does not depend on how many
    ranks share the chunks (distributed.py). Charges the rollouts to this rank's ledger."""
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


def on_policy_samples(run: Run, st: State, batch: list[Problem]) -> list[list[int]]:
    """Reverse KL's completions: one fresh student sample per problem of this rank's batch
    (from a rank-seeded stream), eos-padded when empty. Each sample is a rollout too: its
    tokens are charged as rollouts and every rank's verdicts update every rank's table (a
    collective: every rank calls this, with an empty batch if it kept nothing)."""
    cfg, d = run.cfg, run.dist
    ok, comps = np.zeros(0, dtype=bool), []
    if batch:
        with timed(st, "rollout", run.device):
            ok, comps, tokens = generate_and_verify(
                run.student, run.tok, batch, cfg.rollouts.max_new_tokens,
                temperature=cfg.rollouts.temperature, top_p=cfg.rollouts.top_p,
                generator=torch_gen(cfg.run.seed, st.step, "onpolicy",
                                    *((d.rank,) if d.world > 1 else ())))
        st.ledger.rollout(tokens)
    for ids, oks in distributed.gather_objects(d, ([p.id for p in batch], ok)):
        if ids:
            st.table.add(ids, oks, st.step)
    return [c or [run.tok.eos_id] for c in comps]
