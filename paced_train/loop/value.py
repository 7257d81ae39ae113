"""Value criteria: which problems a step trains on, chosen by a measure of their value instead
of their pass rate (weights.method = lp | rholoss | maxloss). A chosen problem has weight 1
(passrates.problem_weights); no pass rate is read, so no refresh is paid for
(passrates.reads_pass_rates). One process only (split_reference refuses torchrun).

  split_reference   rholoss: the training pool minus the reference's split (setup)
  pick              this step's batch and what the criterion acted on (a metrics row)
  observe           lp: the step's per-sequence training losses fold into the EMAs

lp, learning progress. Sources: TSCL (Matiisen et al. 2017: sample the tasks whose score
changes fastest, in absolute value), the fast/slow moving-average form of Kanitscheider et al.
2021, ALP-GMM (Portelas et al. 2019: absolute learning progress). Per group g (a cell, skill x
difficulty, or a problem: weights.lp_group), after each step that trained problems of g, with
x the mean of their per-sequence training losses (what the step computed anyway: no extra
forward pass, no FLOPs charged):
    first observation   fast_g = slow_g = x
    then                fast_g += lp_fast (x - fast_g),   slow_g += lp_slow (x - slow_g)
    LP_g = |fast_g - slow_g|
A group never observed gets the largest LP of the observed ones (optimistic: it is tried
before it is ranked; before any observation every LP is 0, so sampling starts uniform).
Every problem carries its group's LP, and the softmax is over problems:
    P(i) = (1 - lp_eps) softmax_i(LP_g(i) / (lp_tau * max_h LP_h)) + lp_eps / N
(all LP 0: uniform), so a cell's share is its size times its problems' softmax weight and
equal LP keep the pool's composition (uniform weighting's distribution). A step trains on
optim.batch_size distinct problems drawn from P without replacement (numpy's
Generator.choice: each draw is proportional to P over the problems left), from the stream
(seed, step, "lp"). Ours: the EMAs of the distillation loss, the optimistic start,
the softmax over problems rather than over groups (TSCL samples tasks; with groups of one
size the two agree), and dividing LP by its largest value: LP is in nats and its scale
moves with the loss (0.003 to 0.025 across the demo's cells and steps in a 150-step smoke
run), so a fixed temperature in nats would mean different sharpness at different times;
relative to max LP, lp_tau = 0.25 makes a problem of the most progressing group e^4 ~ 55
times as likely as one of a stalled group (before the lp_eps mixture).
Why cells by default: the demo pool has ~2100 problems and a 600-step run draws 64 a step,
so a problem is observed ~18 times a run, ~33 steps apart: its LP would rest on a handful of
sparse observations and most problems' values would be stale or initial. A cell (300 to
1200 problems in the demo) holds ~9 to ~37 of a uniform batch of 64, so it is observed at
almost every step. The price is coarseness: LP cannot tell problems of one cell apart (TSCL
itself chooses among tasks such as digit counts of addition). lp_group = "problem" is there
to measure the other side.

rholoss, reducible loss (RHO-LOSS, Mindermann et al. 2022), and maxloss, its control. At the
first step (_prepare):
  - the teacher's greedy references of the whole pool are generated (charged as teacher
    tokens: a training step would charge them at first use, and every candidate needs one);
  - the teacher's logits on them are computed once (ledger.value, teacher) and cached in
    run.value when they fit in CACHE_BYTES (rebuilt uncharged after a resume); otherwise
    every step's candidates get a teacher forward, charged the same way;
  - rholoss: a reference student (a copy of the initial student) is distilled with uniform
    forward KL on the reference split (weights.ref_frac of every cell of the training pool,
    which the run's student never trains on; NOT the evaluation set) for weights.ref_steps
    steps of optim.batch_size problems (AdamW at optim.lr, the run's warmup and lr schedule
    over its own steps, grad clip), and its loss on every training problem computed once:
    IL(i) = KL(teacher || reference) per sequence (charged: the split's teacher references
    and logits, 6 N_student per training token, 2 N_student per scoring token). The
    reference is then discarded; IL lives in the checkpoint.
Each step: C = weights.candidates * optim.batch_size candidates (the next C of the seeded
epoch permutation, batching.candidates), their current loss L(i) = KL(teacher || student) per
sequence (a student forward without gradient, in eval mode: ledger.value, 2 N_student per
token), and the optim.batch_size candidates of the highest score train (top-k; ties go to
the earlier candidate):
    rholoss  score = L(i) - IL(i)     (the reducible loss)
    maxloss  score = L(i)
Paper (RHO-LOSS): select the top n_b of n_B candidates by training loss minus irreducible
holdout loss, the latter from a model trained on a holdout set, computed once. Ours: forward
KL to the teacher instead of cross-entropy to labels, the holdout as a split of the training
pool, the reference started from the initial student; top-k rather than softmax weights,
as the paper selects. With weights.candidates = 1 both train on exactly uniform's batches
(and pay for the scoring).
On the demo pool no reference tried (10 to 100 steps on a 10 or 20 % split, lr 3e-3 or
3e-4; bench/rholoss_reference.py, seed 0) has a lower mean loss on the pool than the initial
student: it learns its split (0.380 -> 0.055 after 100 steps) while its pool loss rises
(0.394 -> 1.204). Hence the default ref_steps = 10, the reference nearest the initial
student (pool 0.436); with it the score is roughly the current loss minus the initial
student's. Whether the reference term then helps is what maxloss is there to show.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from paced_theory.errors import ConfigError, PacedError
from paced_train import tasks
from paced_train.config import RunConfig
from paced_train.loop import losses
from paced_train.loop.batching import candidates
from paced_train.loop.distill import (
    completion_logits,
    encoded_prompts,
    teacher_references,
    teacher_view,
)
from paced_train.loop.passrates import VALUE_METHODS
from paced_train.loop.rollouts import generate_and_verify
from paced_train.loop.schedule import lr_at
from paced_train.loop.seeding import seed_for, seeded_global_rng
from paced_train.loop.state import Run, State, timed
from paced_train.tasks import Problem

CACHE_BYTES = 1 << 30
"""The most the teacher's cached logits on the pool may take (the demo's: ~6 MB)."""
CHUNK = 256
"""Problems per scoring forward pass."""


# ----------------------------------------------------------------------------- setup
def split_reference(cfg: RunConfig, world: int,
                    train_set: list[Problem]) -> tuple[list[Problem], list[Problem]]:
    """(the run's training problems, the reference's split): rholoss holds out
    weights.ref_frac of every cell (tasks.split, at least one problem of a cell stays), every
    other method keeps the pool whole. A value criterion under torchrun (world > 1) is refused."""
    method = cfg.weights.method
    if method in VALUE_METHODS and world > 1:
        raise ConfigError(f"weights.method = {method!r} runs in one process only (its choice "
                          "of the batch is not shared between ranks); run it without torchrun")
    if method != "rholoss":
        return train_set, []
    train, split = tasks.split(train_set, cfg.weights.ref_frac,
                               seed_for(cfg.run.seed, 0, "reference"))
    if not split:
        raise ConfigError(f"weights.ref_frac = {cfg.weights.ref_frac} holds out no problem of "
                          f"the {len(train_set)} training problems (every cell keeps at least "
                          "one); raise weights.ref_frac or give more problems (data.*)")
    return train, split


# --------------------------------------------------------------------------- the step
def pick(run: Run, st: State) -> tuple[np.ndarray, dict]:
    """This step's batch (indices into run.train_set) and what the criterion acted on (for
    the step's metrics row); see the module docstring."""
    if run.cfg.weights.method == "lp":
        with timed(st, "value", run.device):
            return _pick_lp(run, st)
    if "teacher" not in run.value:  # the first step, or the first after a resume
        _prepare(run, st)
    with timed(st, "value", run.device):
        return _pick_scored(run, st)


def observe(run: Run, st: State, batch: list[Problem], per_seq: torch.Tensor) -> None:
    """lp: fold the step's per-sequence training losses (one per problem of `batch`) into the
    groups' moving averages. Nothing for the other methods."""
    if run.cfg.weights.method != "lp":
        return
    with timed(st, "value", run.device):
        group_of, names = _groups(run)
        fast, slow = _lp_state(st, len(names))
        g = group_of[[st.table.index[p.id] for p in batch]]
        x = per_seq.detach().float().cpu().numpy()
        w = run.cfg.weights
        st.value["fast"], st.value["slow"] = lp_update(fast, slow, g, x, w.lp_fast, w.lp_slow)


# ----------------------------------------------------------------- learning progress
def lp_update(fast: np.ndarray, slow: np.ndarray, groups: np.ndarray, x: np.ndarray,
              a_fast: float, a_slow: float) -> tuple[np.ndarray, np.ndarray]:
    """New (fast, slow) after one step's observations: x[j] the loss of a problem of group
    groups[j]; each group observed folds in the mean of its x once (module docstring).
    NaN marks a group never observed."""
    fast, slow = fast.copy(), slow.copy()
    for g in np.unique(groups):
        m = float(np.mean(x[groups == g]))
        if np.isnan(fast[g]):
            fast[g] = slow[g] = m
        else:
            fast[g] += a_fast * (m - fast[g])
            slow[g] += a_slow * (m - slow[g])
    return fast, slow


def lp_values(fast: np.ndarray, slow: np.ndarray) -> np.ndarray:
    """LP per group: |fast - slow|, and for a group never observed the largest LP of the
    observed ones (0 when none is)."""
    seen = ~np.isnan(fast)
    lp = np.zeros(len(fast))
    lp[seen] = np.abs(fast[seen] - slow[seen])
    lp[~seen] = lp[seen].max() if seen.any() else 0.0
    return lp


def lp_probs(lp: np.ndarray, group_of: np.ndarray, tau: float, eps: float) -> np.ndarray:
    """P(i) = (1 - eps) softmax_i(LP_g(i) / (tau max LP)) + eps / N per problem i, group_of[i]
    its group (uniform when every LP is 0)."""
    z = lp[group_of]
    top = z.max()
    e = np.exp((z - top) / (tau * top)) if top > 0 else np.ones(len(z))
    p = (1 - eps) * e / e.sum() + eps / len(z)
    return p / p.sum()


def _groups(run: Run) -> tuple[np.ndarray, list[str]]:
    """(group index of every training problem, group names), cached in run.value."""
    if "groups" not in run.value:
        ps = run.train_set
        if run.cfg.weights.lp_group == "problem":
            run.value["groups"] = (np.arange(len(ps)), [p.id for p in ps])
        else:
            keys = sorted({(p.skill, p.difficulty) for p in ps})
            pos = {k: i for i, k in enumerate(keys)}
            run.value["groups"] = (np.array([pos[(p.skill, p.difficulty)] for p in ps]),
                                   [f"{s}{d}" for s, d in keys])
    return run.value["groups"]


def _lp_state(st: State, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    if "fast" not in st.value:
        return np.full(n_groups, np.nan), np.full(n_groups, np.nan)
    return (np.asarray(st.value["fast"], dtype=float), np.asarray(st.value["slow"], dtype=float))


def _pick_lp(run: Run, st: State) -> tuple[np.ndarray, dict]:
    w = run.cfg.weights
    group_of, names = _groups(run)
    fast, slow = _lp_state(st, len(names))
    lp = lp_values(fast, slow)
    probs = lp_probs(lp, group_of, w.lp_tau, w.lp_eps)
    B = min(run.cfg.optim.batch_size, len(probs))
    rng = np.random.default_rng(seed_for(run.cfg.run.seed, st.step, "lp"))
    idx = rng.choice(len(probs), size=B, replace=False, p=probs)
    seen = ~np.isnan(fast)
    row = {"lp_min": round(float(lp[seen].min()), 6) if seen.any() else None,
           "lp_max": round(float(lp[seen].max()), 6) if seen.any() else None,
           "lp_seen": int(seen.sum()),
           "lp_p_max": round(float(probs.max() * len(probs)), 4)}  # vs uniform's 1
    if w.lp_group == "cell":
        row["lp_by_cell"] = {n: round(float(v), 6) for n, v in zip(names, lp)}
    return idx, row


# ------------------------------------------------------------ reducible loss, max loss
def select_top(score: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest scores, in their original order (ties: the earlier)."""
    return np.sort(np.argsort(-np.asarray(score, dtype=float), kind="stable")[:k])


def _pick_scored(run: Run, st: State) -> tuple[np.ndarray, dict]:
    cfg = run.cfg
    n = len(run.train_set)
    B = min(cfg.optim.batch_size, n)
    idx = candidates(n, min(cfg.weights.candidates * B, n), cfg.run.seed, st.step)
    cand = [run.train_set[i] for i in idx]
    cur = current_losses(run, st, run.student, cand, teacher_references(run, st, cand))
    score = cur
    if cfg.weights.method == "rholoss":
        irr = np.asarray(st.value["irreducible"], dtype=float)[idx]
        score = cur - irr
    top = select_top(score, B)
    row = {"value_candidates": len(idx), "cand_loss": round(float(cur.mean()), 6),
           "sel_loss": round(float(cur[top].mean()), 6)}
    if cfg.weights.method == "rholoss":
        row.update(cand_irreducible=round(float(irr.mean()), 6),
                   sel_irreducible=round(float(irr[top].mean()), 6),
                   sel_reducible=round(float(score[top].mean()), 6),
                   reference_age=st.step - 1)  # student updates since IL was computed
    return idx[top], row


def current_losses(run: Run, st: State, model: torch.nn.Module, problems: list[Problem],
                   completions: list[list[int]]) -> np.ndarray:
    """KL(teacher || model) per sequence on the completions, without gradient and in eval
    mode, in chunks of CHUNK; the model's forward is charged as value work (2 N_student per
    token: the student or the reference, a copy of it), the teacher's where not cached."""
    out = []
    for a in range(0, len(problems), CHUNK):
        part, comps = problems[a:a + CHUNK], completions[a:a + CHUNK]
        t = _teacher_batch(run, st, part, comps)
        out.append(_divergence(run, st, model, part, comps, t))
    return np.concatenate(out) if out else np.zeros(0)


def _divergence(run: Run, st: State, model, part, comps, t_logits) -> np.ndarray:
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            s, mask, n = completion_logits(model, run.tok, encoded_prompts(run, part, False),
                                           comps, run.device)
            per = losses.divergence("forward", s, t_logits, mask, run.cfg.loss)
    finally:
        model.train(was)
    st.ledger.value(n)
    return per.float().cpu().numpy()


def _teacher_forward(run: Run, st: State | None, part, comps) -> torch.Tensor:
    """The teacher's logits (B, C, V) on its view of `part` + comps; charged when st."""
    with torch.no_grad():
        logits, _, n = completion_logits(run.teacher, run.tok, encoded_prompts(run, part, True),
                                         comps, run.device)
    if st is not None:
        st.ledger.value(n, teacher=True)
    return logits


def _pad(rows: list[torch.Tensor]) -> torch.Tensor:
    """Per-problem logits (C_i, V) stacked into (B, max C_i, V), zeros past each row's end
    (masked positions: the divergences never read them)."""
    C = max(r.shape[0] for r in rows)
    out = rows[0].new_zeros(len(rows), C, rows[0].shape[-1])
    for i, r in enumerate(rows):
        out[i, :r.shape[0]] = r
    return out


def _teacher_batch(run: Run, st: State, part, comps) -> torch.Tensor:
    cache = run.value.get("teacher")
    if cache:
        return _pad([cache[p.id] for p in part])
    return _teacher_forward(run, st, part, comps)


def _prepare(run: Run, st: State) -> None:
    """The pool's teacher references, its teacher logits (cached when they fit) and, for
    rholoss, the reference and IL (module docstring). After a resume (st.value holds the
    mark) only the cache is rebuilt, uncharged: the checkpoint's ledger holds the charge."""
    fresh = "prepared" not in st.value
    pool = run.train_set
    comps = teacher_references(run, st, pool)  # charged as teacher tokens (training)
    with timed(st, "value", run.device):
        ref = train_reference(run, st) if fresh and run.cfg.weights.method == "rholoss" \
            else None
        total = sum(len(c) for c in comps)
        cache: dict | None = {}
        irr = []
        for a in range(0, len(pool), CHUNK):
            part, pc = pool[a:a + CHUNK], comps[a:a + CHUNK]
            t = _teacher_forward(run, st if fresh else None, part, pc)
            if a == 0 and total * t.shape[-1] * t.element_size() > CACHE_BYTES:
                cache = None  # too big: every step's candidates get a teacher forward
            if cache is not None:
                cache.update({p.id: t[i, :len(c)].clone() for i, (p, c) in
                              enumerate(zip(part, pc))})
            if ref is not None:
                irr.append(_divergence(run, st, ref, part, pc, t))
            if cache is None and ref is None:
                break
        run.value["teacher"] = cache
        if fresh:
            if ref is not None:
                st.value["irreducible"] = np.concatenate(irr)
            st.value["prepared"] = True


def train_reference(run: Run, st: State) -> torch.nn.Module:
    """The reference student: a copy of the initial student distilled with uniform forward KL
    on run.value["reference_split"] for weights.ref_steps steps (module docstring), every
    token charged as value work. Returned in eval mode."""
    cfg, split = run.cfg, run.value["reference_split"]
    ref = copy.deepcopy(run.student).train()
    opt = torch.optim.AdamW(ref.parameters(), lr=cfg.optim.lr,
                            weight_decay=cfg.optim.weight_decay)
    _, comps, tokens = generate_and_verify(run.teacher, run.tok, teacher_view(cfg, split),
                                           cfg.rollouts.max_new_tokens, temperature=0.0)
    st.ledger.value(tokens, teacher=True)
    comps = [c or [run.tok.eos_id] for c in comps]
    t_all = []
    for a in range(0, len(split), CHUNK):
        t = _teacher_forward(run, st, split[a:a + CHUNK], comps[a:a + CHUNK])
        t_all += [t[i, :len(c)] for i, c in enumerate(comps[a:a + CHUNK])]
    seed, B = seed_for(cfg.run.seed, 0, "reference"), min(cfg.optim.batch_size, len(split))
    clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
    for s in range(1, cfg.weights.ref_steps + 1):
        pick_ = candidates(len(split), B, seed, s)
        part, pc = [split[i] for i in pick_], [comps[i] for i in pick_]
        for g in opt.param_groups:
            g["lr"] = lr_at(s, cfg, (s - 1) / cfg.weights.ref_steps)
        with seeded_global_rng(seed, s, run.device):
            logits, mask, n = completion_logits(ref, run.tok, encoded_prompts(run, part, False),
                                                pc, run.device)
            loss = losses.divergence("forward", logits, _pad([t_all[i] for i in pick_]),
                                     mask, cfg.loss).mean()
        if not torch.isfinite(loss):
            raise PacedError(f"the rholoss reference's loss is {loss.item()} at its step {s}: "
                             "lower optim.lr or weights.ref_steps")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), clip)
        opt.step()
        st.ledger.value(n, backward=True)
    return ref.eval()
