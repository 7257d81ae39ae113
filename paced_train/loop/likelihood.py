"""Pass rates from the likelihood of the canonical answer (rollouts.source = "likelihood").

For a task whose verifier accepts one completion string y (tasks.canonical_answer: add and mul,
whose completion must be the reversed answer digits, then eos), the probability that a
temperature-T sample of the student is accepted is

    P_T(y) = prod_t softmax(logits_t / T)[y_t]        (t over y's tokens, eos included)

up to the mass of the other strings verify also accepts (surrounding whitespace, pad tokens:
<= 2e-5 of the accepted mass on the shipped and trained students, issue 17). Ours: the
observation and this pass-rate source. One teacher-forced forward pass of the student gives
P_T(y) exactly, where K rollouts give an estimate with binomial noise, and costs less than
generation (one pass over prompt + answer, no sampling loop). Two ways in:

  refresh     a forward pass over the problems a refresh selects (rollouts.refresh_rows),
              in seeded chunks shared by ranks; charged to the ledger as `estimate` tokens
              and timed as the "estimate" phase
  free reads  the training step's own student forward already scores the canonical answer
              wherever the step's completion IS that string: forward KL / AKL / JSD / skew
              on a teacher reference equal to it (the teacher solved the problem; with a
              wrong reference nothing is read), reverse KL on an on-policy sample equal to it
              (an accepted sample). Those problems get P for free (logits of the model before
              the step's update, stamped step - 1). Not read: problems whose reference or
              sample is any other string.

What the table holds (rollouts.likelihood):
  "binomial"  c ~ Binomial(K, P) from a seeded stream, n = K: exactly the distribution of the
              success count of K rollouts, at no generation cost, so the weights keep the
              rollouts' support (p_hat in {0, 1/K, ..., 1}; weight 0 at p_hat in {0, 1}
              under Paced and the hard band) and differ from K fresh rollouts only in being
              cheaper. This separates freshness from support.
  "exact"     p_hat = P itself. Weights are continuous: w(P) > 0 for almost every problem, so
              nothing is dropped and optim.sampler = "kept" draws from (nearly) the whole pool;
              the weighting is then a soft reweighting of every problem, not a filter.
"""

from __future__ import annotations

import numpy as np
import torch

from paced_theory.errors import ConfigError
from paced_train import tasks
from paced_train.loop import distributed
from paced_train.loop.batching import completion_index, pack
from paced_train.loop.distributed import autocast
from paced_train.loop.seeding import seed_for
from paced_train.loop.state import Run, State, timed
from paced_train.models.tokenizer import CharTokenizer
from paced_train.tasks import Problem


def check_source(cfg, problems: list[Problem], tok) -> None:
    """ConfigError unless every training problem has one canonical answer string that this
    tokenizer writes one way and that rollouts.max_new_tokens can hold (the likelihood is
    then the exact pass probability); names the first problem refused."""
    ro = cfg.rollouts
    if ro.top_p < 1.0:
        raise ConfigError(f"'rollouts.source' = 'likelihood' samples from the full softmax; "
                          f"'rollouts.top_p' = {ro.top_p} truncates it, so P would not be the "
                          "pass probability. Set top_p = 1 or rollouts.source = 'rollouts'")
    if not isinstance(tok, CharTokenizer):
        raise ConfigError(f"'rollouts.source' = 'likelihood' needs a character tokenizer (one "
                          f"token sequence per string); this student's is {tok!r}. Use "
                          "rollouts.source = 'rollouts'")
    for p in problems:
        ans = tasks.canonical_answer(p)
        where = p.source or p.id
        if ans is None:
            raise ConfigError(f"'rollouts.source' = 'likelihood': problem {where} ({p.skill}) "
                              "has no canonical answer string (its verifier accepts many "
                              "completions), so its pass rate is not one likelihood. Use "
                              "rollouts.source = 'rollouts' for this data")
        if len(ans) > ro.max_new_tokens or not tasks.verify(p, ans):
            raise ConfigError(f"'rollouts.source' = 'likelihood': the canonical answer {ans!r} "
                              f"of problem {where} is longer than 'rollouts.max_new_tokens' = "
                              f"{ro.max_new_tokens} or not accepted; raise max_new_tokens")


def canonical_tokens(run: Run, problem: Problem) -> list[int]:
    """The token ids generation must produce to be accepted: the answer, then eos unless the
    answer alone fills rollouts.max_new_tokens (generation stops there and verify reads the
    text as is). Cached in run.prompt_cache["canonical"]."""
    cache = run.prompt_cache.setdefault("canonical", {})
    if problem.id not in cache:
        ids = run.tok.encode(tasks.canonical_answer(problem)) + [run.tok.eos_id]
        cache[problem.id] = ids[:run.cfg.rollouts.max_new_tokens]
    return cache[problem.id]


def log_likelihood(logits: torch.Tensor, completions: list[list[int]],
                   temperature: float) -> np.ndarray:
    """log P_T of each completion: sum_j log softmax(logits[i, j] / T)[completions[i][j]],
    with logits (B, C, V) at the completion-predicting positions (distill.completion_logits)."""
    if not completions:
        return np.zeros(0)
    C = logits.shape[1]
    y = torch.tensor([c + [0] * (C - len(c)) for c in completions], device=logits.device)
    mask = torch.tensor([[1.0] * len(c) + [0.0] * (C - len(c)) for c in completions],
                        device=logits.device)
    logp = torch.log_softmax(logits.detach().float() / temperature, dim=-1)
    picked = logp.gather(-1, y[..., None])[..., 0]
    return (picked * mask).sum(1).double().cpu().numpy()


@torch.no_grad()
def likelihoods(run: Run, problems: list[Problem], batch: int = 256) -> tuple[np.ndarray, int]:
    """(P_T of each problem's canonical answer, tokens processed): teacher-forced passes of
    the student in eval mode, `batch` problems at a time."""
    model, tok, device = run.student, run.tok, run.device
    was_training = model.training
    model.eval()
    out, tokens = [], 0
    for i in range(0, len(problems), batch):
        part = problems[i:i + batch]
        prompts = [tok.encode_prompt(p.prompt) for p in part]
        comps = [canonical_tokens(run, p) for p in part]
        x, _, _ = pack(prompts, comps, tok.pad_id, device)
        index, _ = completion_index(prompts, comps, device)
        with autocast(device):
            logits = model(x, positions=index)
        out.append(log_likelihood(logits, comps, run.cfg.rollouts.temperature))
        tokens += sum(len(p) + len(c) - 1 for p, c in zip(prompts, comps))
    model.train(was_training)
    return np.exp(np.concatenate(out)) if out else np.zeros(0), tokens


def refresh_likelihood(run: Run, st: State, rows: np.ndarray) -> None:
    """Measure the training problems `rows` (indices) by likelihood passes: the chunks of
    rollouts.chunk rows are shared by ranks, the results gathered, and the table updated as
    rollouts.likelihood says (record). Charged as estimate tokens to this rank's ledger."""
    cfg, d = run.cfg, run.dist
    rows = np.asarray(rows, dtype=np.int64)
    mine = {}
    with timed(st, "estimate", run.device):
        for c, part in enumerate(distributed.chunks(len(rows), cfg.rollouts.chunk)):
            if c % d.world == d.rank:
                p, tokens = likelihoods(run, [run.train_set[i] for i in rows[part]])
                st.ledger.estimate(tokens)
                mine[c] = p
    parts = {c: v for part in distributed.gather_objects(d, mine) for c, v in part.items()}
    probs = np.concatenate([parts[c] for c in sorted(parts)]) if parts else np.zeros(0)
    _store(run, st, rows, probs, "likelihood-refresh", history=True)


def free_reads(run: Run, batch: list[Problem], completions: list[list[int]],
               s_logits: torch.Tensor) -> tuple[list[str], np.ndarray]:
    """(ids, P) of the batch's problems whose training completion is exactly the canonical
    answer, read from the step's student logits (module docstring); empty otherwise."""
    hit = [i for i, (p, c) in enumerate(zip(batch, completions))
           if c == canonical_tokens(run, p)]
    if not hit:
        return [], np.zeros(0)
    logp = log_likelihood(s_logits[hit], [completions[i] for i in hit],
                          run.cfg.rollouts.temperature)
    return [batch[i].id for i in hit], np.exp(logp)


def record_reads(run: Run, st: State, ids: list[str], probs: np.ndarray) -> None:
    """Every rank's free reads of this step into every rank's table (a collective: every
    rank calls it, with nothing if it read nothing), stamped st.step - 1 (the student before
    this step's update)."""
    pairs = [x for part in distributed.gather_objects(run.dist, (list(ids), list(probs)))
             for x in zip(*part)]
    if not pairs:
        return
    index = st.table.index
    pairs.sort(key=lambda x: index[x[0]])  # one order on every layout: the table's
    rows = np.array([index[i] for i, _ in pairs], dtype=np.int64)
    _store(run, st, rows, np.array([p for _, p in pairs]), "likelihood-free", history=False,
           stamp=st.step - 1)


def _store(run: Run, st: State, rows: np.ndarray, probs: np.ndarray, stream: str,
           history: bool, stamp: int | None = None) -> None:
    """P of `rows` into the table: exact, or c ~ Binomial(K, P) from the stream
    (seed, step, stream), drawn in row order (so the same on every rank and layout)."""
    cfg = run.cfg
    ids = [st.table.ids[i] for i in rows]
    step = st.step if stamp is None else stamp
    probs = np.clip(probs, 0.0, 1.0)
    if cfg.rollouts.likelihood == "exact":
        st.table.set_exact(ids, probs, step, history=history)
    else:
        rng = np.random.default_rng(seed_for(cfg.run.seed, st.step, stream))
        st.table.measure(ids, rng.binomial(cfg.rollouts.K, probs), cfg.rollouts.K, step,
                         history=history)
