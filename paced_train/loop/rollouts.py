"""The rollout stage: the student's own samples, verified, and the pass-rate table they feed.

  generate_and_verify   k completions per problem and their verdicts (tasks.verify), with the
                        positions processed (what the ledger charges)
  refresh_rows          which problems are measured before the next step (the refresh policy
                        below), or None
  refresh               measures them: K rollouts each (refresh_pass_rates) or the likelihood
                        of the canonical answer (likelihood.py, rollouts.source), and keeps
                        the bookkeeping (last refresh, its cost, idle refreshes)
  refresh_pass_rates    K rollouts per selected problem (sequential K: settled_counts), split
                        over ranks in seeded chunks, gathered into every rank's table
  on_policy_samples     reverse KL's completions: one student sample per problem. Training
                        compute (ledger.sample), not estimation: they update the table (a
                        window of the latest K outcomes, passrates.PassRateTable.add) but do
                        not count against rollouts.max_share
  group_samples         RL's groups (loss.schedule = "rl"): K student samples per kept
                        problem, verified; training compute like reverse KL's samples, and a
                        full fresh measurement: each group's c of K replaces its table entry,
                        so the step's weights are read from the samples its gradient uses

The refresh policy (ours). Every rollouts.refresh_every steps the table is checked:
  - rollouts.max_age = 0 (the default, and what configs before it meant): every problem is
    measured again.
  - rollouts.max_age = A > 0: only the entries that would be older than A steps before the
    next check (age + refresh_every - 1 > A) are measured, oldest first. Entries refreshed for
    free by the training forward (likelihood source) are not measured twice, and problems left
    out of the sampler (weight 0) are measured like every other, so they can come back.
  - rollouts.max_share < 1: the refresh is cut, oldest entries first, to what keeps the
    pass-rate estimation's share of the FLOPs at or below max_share, its cost per problem
    estimated from the last refresh. The first refresh (every problem, before step 1) is a
    setup cost every weighted method pays once: it is left out of that share (counted, it
    made the cap cut the second whole-pool refresh of the demo's reverse-KL Paced). A
    refresh is never postponed as a whole (the old cap estimated a refresh from the first,
    whole-pool one and postponed refreshes for half of the demo's run); a cut refresh shows
    as a larger pass_rate_age_max in metrics.jsonl.
  - A refresh that a FLOPs budget cannot pay for in full is cut the same way.
The first refresh (before step 1) measures every problem.

Under loss.schedule = "rl" the policy is the same (ours): every group stamps its problem's
entry with the step, so with max_age > 0 a refresh measures only what the groups did not,
in practice the problems the sampler skipped (weight 0 in the table); they need it to come
back when the student moves. With max_age = 0 every refresh measures every problem, groups
or not. Uniform weighting reads no pass rate and never refreshes, under RL too.
"""

from __future__ import annotations

import numpy as np
import torch

from paced_train.config import RunConfig
from paced_train.loop import distributed
from paced_train.loop.distributed import autocast
from paced_train.loop.likelihood import refresh_likelihood
from paced_train.loop.passrates import PassRateTable, problem_weights, reads_pass_rates
from paced_train.loop.seeding import seed_for, torch_gen
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


def refresh_rows(cfg: RunConfig, st: State) -> np.ndarray | None:
    """The training problems (indices into the table) to measure before the next step, under
    the refresh policy (module docstring); None when no refresh is due. Uniform weighting
    and the value criteria (value.py) never read pass rates, so they pay for none
    (equal-compute comparisons charge them)."""
    ro, table, led = cfg.rollouts, st.table, st.ledger
    if not reads_pass_rates(cfg.weights.method):
        return None
    everything = np.arange(len(table.ids))
    if st.last_refresh < 0:
        return everything
    if st.step - st.last_refresh < ro.refresh_every:
        return None
    ages = table.ages(st.step)
    oldest = everything[np.argsort(-ages, kind="stable")]
    if ro.max_age > 0:
        oldest = oldest[ages[oldest] + ro.refresh_every - 1 > ro.max_age]
    due = len(oldest)
    per = st.refresh_flops / max(st.refresh_rows, 1)  # one problem's cost, last refresh
    if per > 0:
        allowed = np.inf
        if ro.max_share < 1:  # e + x <= s (f + x)  <=>  x <= (s f - e) / (1 - s), with e and
            # f the estimation and all FLOPs since the first refresh (a setup cost, exempt)
            first = st.first_refresh_flops
            allowed = (ro.max_share * (led.flops - first) - (led.estimation_flops - first)) \
                / (1 - ro.max_share)
        if cfg.budget.flops > 0:
            allowed = min(allowed, cfg.budget.flops - led.flops)
        oldest = oldest[:max(int(allowed // per), 0)] if allowed < np.inf else oldest
    st.refresh_cut = len(oldest) < due  # read by refresh(): a cut refresh can stop a run
    return np.sort(oldest)


def refresh(run: Run, st: State, rows: np.ndarray) -> None:
    """Measure `rows` with the configured source (rollouts.source), sum the ledger over ranks,
    and keep the policy's bookkeeping: the step of this check, the cost per problem, and the
    count of refreshes in a row after which every weight is 0 (the loop stops at 3; a check
    that the cap or the budget cut to nothing counts too, or a run whose budget cannot pay
    for a refresh and keeps no problem would take empty steps to the step limit)."""
    cfg, d = run.cfg, run.dist
    before = st.ledger.row()
    first, st.last_refresh = st.last_refresh < 0, st.step
    if len(rows) == 0:  # nothing stale, or nothing the cap or the budget can pay for: when
        # the latter leaves every weight 0, the run can never keep a problem again
        if st.refresh_cut and not problem_weights(cfg.weights, st.table, st.table.ids).any():
            st.idle_refreshes += 1
        return
    if cfg.rollouts.source == "likelihood":
        refresh_likelihood(run, st, rows)
    else:
        refresh_pass_rates(run, st, rows)
    distributed.sum_ledger(d, st.ledger, before, run.device)
    st.refresh_flops = st.ledger.flops - before["flops"]  # global: all ranks agree
    if first:
        st.first_refresh_flops = st.refresh_flops
    st.refresh_rows = len(rows)
    idle = not problem_weights(cfg.weights, st.table, st.table.ids).any()
    st.idle_refreshes = st.idle_refreshes + 1 if idle else 0


def refresh_pass_rates(run: Run, st: State, rows=None) -> None:
    """Fresh rollouts of the training problems `rows` (indices; None: all) replace their
    counts: K each, or with rollouts.settled_K > 0 sequentially (settled_counts). The rows
    are rolled out in fixed chunks, each from its own seeded stream, so the result does not
    depend on how many ranks share the chunks (distributed.py). Charges the rollouts to this
    rank's ledger."""
    cfg, d = run.cfg, run.dist
    ro = cfg.rollouts
    rows = np.arange(len(run.train_set)) if rows is None else np.asarray(rows, dtype=np.int64)
    mine = {}
    with timed(st, "rollout", run.device):
        for c, part in enumerate(distributed.chunks(len(rows), ro.chunk)):
            if c % d.world != d.rank:
                continue

            def roll(idx, k, phase, c=c):  # successes per problem of k rollouts each
                ok, _, tokens = generate_and_verify(
                    run.student, run.tok, [run.train_set[i] for i in idx], ro.max_new_tokens,
                    k=k, temperature=ro.temperature, top_p=ro.top_p,
                    generator=torch_gen(cfg.run.seed, st.step, "refresh", c, *phase))
                st.ledger.rollout(tokens)
                return ok.reshape(-1, k).sum(1)

            sub = rows[part]
            mine[c] = settled_counts(st.table, [run.train_set[i].id for i in sub], sub,
                                     ro.K, ro.settled_K, roll)
    parts = {c: v for part in distributed.gather_objects(d, mine) for c, v in part.items()}
    c_all, n_all = (np.concatenate([parts[c][j] for c in sorted(parts)]) for j in (0, 1))
    st.table.refresh([run.train_set[i].id for i in rows], c_all, n_all, st.step)


def settled_counts(table: PassRateTable, ids: list[str], rows, K: int, settled_K: int,
                   roll) -> tuple[np.ndarray, np.ndarray]:
    """(successes, rollouts) of one refresh of `rows` (their ids in the table: `ids`).

    settled_K = 0: K rollouts each. settled_K > 0 (sequential K, ours): a problem whose last
    measurement was all-fail or all-pass gets settled_K rollouts first; if they agree with it
    its new estimate is 0 or 1 from those settled_K (weight 0 under Paced and the hard band,
    as before), else it gets the other K - settled_K. Every other problem gets K. A settled
    problem that has moved is therefore still measured with K rollouts, and one that has not
    costs settled_K / K of a full measurement. roll(idx, k, phase) -> successes per row.

    The price is stickiness: a settled-at-0 problem whose true pass rate is p leaves 0 with
    probability 1 - (1 - p)^settled_K instead of 1 - (1 - p)^K (p = 0.2: 0.36 under
    settled_K = 2, 0.83 with K = 8; tests/train/loop/test_rollouts.py measures it), so the
    demo no longer uses it (settled_K = 0 there)."""
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
    (from a rank-seeded stream), eos-padded when empty. Training compute: charged as
    ledger.sample and timed as "sample", never as estimation. With rollouts.source =
    "rollouts" every rank's verdicts update every rank's table (PassRateTable.add, a window of
    the latest K outcomes, evictions drawn in table order from one seeded stream); with the
    likelihood source an accepted sample is read free instead (likelihood.free_reads). A
    collective: every rank calls this, with an empty batch if it kept nothing."""
    cfg, d = run.cfg, run.dist
    ok, comps = np.zeros(0, dtype=bool), []
    if batch:
        with timed(st, "sample", run.device):
            ok, comps, tokens = generate_and_verify(
                run.student, run.tok, batch, cfg.rollouts.max_new_tokens,
                temperature=cfg.rollouts.temperature, top_p=cfg.rollouts.top_p,
                generator=torch_gen(cfg.run.seed, st.step, "onpolicy",
                                    *((d.rank,) if d.world > 1 else ())))
        st.ledger.sample(tokens)
    gathered = distributed.gather_objects(d, ([p.id for p in batch], ok))
    if cfg.rollouts.source == "rollouts":
        pairs = sorted(((i, bool(x)) for ids, oks in gathered for i, x in zip(ids, oks)),
                       key=lambda x: st.table.index[x[0]])
        if pairs:
            rng = np.random.default_rng(seed_for(cfg.run.seed, st.step, "evict"))
            st.table.add([i for i, _ in pairs], [x for _, x in pairs], window=cfg.rollouts.K,
                         rng=rng)
    return [c or [run.tok.eos_id] for c in comps]


def group_samples(run: Run, st: State, kept: list[Problem]
                  ) -> tuple[np.ndarray, list[list[int]], np.ndarray, np.ndarray]:
    """RL's groups: rollouts.K fresh samples of every problem of `kept` (the step's kept
    problems, the same list on every rank), verified: (mine, completions, ok, counts).

    `kept` is cut into fixed chunks of rollouts.chunk problems; chunk c is sampled from the
    stream (seed, step, "rl", c) by rank c mod W, so the samples do not depend on the number
    of ranks (and rank r trains on the problems of its chunks: `mine`, indices into kept;
    completions and ok are theirs, K per problem in order, eos-padded when empty). Charged as
    ledger.sample and timed as "sample": training compute, as reverse KL's samples. counts
    (len(kept),) are every group's successes, gathered; they replace the kept problems' table
    entries (c of K, stamped step - 1: the student that drew them) on every rank, whatever
    rollouts.source, so the step's weights come from these samples. A collective."""
    cfg, d, ro = run.cfg, run.dist, run.cfg.rollouts
    mine, comps, oks, parts = [], [], [], {}
    with timed(st, "sample", run.device):
        for c, part in enumerate(distributed.chunks(len(kept), ro.chunk)):
            if c % d.world != d.rank:
                continue
            ok, out, tokens = generate_and_verify(
                run.student, run.tok, [kept[i] for i in part], ro.max_new_tokens, k=ro.K,
                temperature=ro.temperature, top_p=ro.top_p,
                generator=torch_gen(cfg.run.seed, st.step, "rl", c))
            st.ledger.sample(tokens)
            mine += list(part)
            comps += [x or [run.tok.eos_id] for x in out]
            oks.append(ok)
            parts[c] = ok.reshape(-1, ro.K).sum(1)
    gathered = {c: v for part in distributed.gather_objects(d, parts) for c, v in part.items()}
    counts = (np.concatenate([gathered[c] for c in sorted(gathered)]) if gathered
              else np.zeros(0, dtype=np.int64))
    if len(kept):
        st.table.measure([p.id for p in kept], counts, ro.K, st.step - 1)
    ok = np.concatenate(oks) if oks else np.zeros(0, dtype=bool)
    return np.array(mine, dtype=np.int64), comps, ok, counts
