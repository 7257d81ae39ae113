"""The pass-rate refresh of PACED inside TRL: K student rollouts per candidate prompt, scored
by a TRL-style reward function, written into paced_train's PassRateTable (trl.py uses it;
import it from there: `from paced_train.integrations.trl import PassRateRefresh`).

The callback runs at the start of training and every N optimizer steps, in every process
(it needs the trainer: PacedDistillationTrainer and PacedGKDTrainer bind it when passed as
refresh=...). Rollouts come from the trainer's own generation path, so whatever TRL
supports there (vLLM, DeepSpeed ZeRO-3, FSDP) the refresh uses too.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np
import torch
from accelerate.utils import gather_object
from transformers import TrainerCallback
from trl import DistillationTrainer
from trl.data_utils import is_conversational

from paced_theory.errors import ConfigError, InputError, PacedError
from paced_train.loop.seeding import seed_for


def check_rewards(values, n: int, name: str) -> np.ndarray:
    """The rewards of n completions as floats; InputError for anything else."""
    hint = f"it must return one number per completion (a list of {n} floats, 1.0 = solved)"
    if isinstance(values, torch.Tensor):
        values = values.tolist()
    try:
        seq = list(values)
    except TypeError:
        raise InputError(f"reward function {name} returned {type(values).__name__}; {hint}") \
            from None
    if len(seq) != n:
        raise InputError(f"reward function {name} returned {len(seq)} values for {n} "
                         f"completions; {hint}")
    out = np.empty(n)
    for i, v in enumerate(seq):
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, (bool, np.bool_)) or (isinstance(v, numbers.Real)
                                              and math.isfinite(float(v))):
            out[i] = float(v)
            continue
        why = (" (TRL's GRPO lets a reward skip a sample with None; a pass rate needs a "
               "verdict on every rollout)" if v is None else "")
        raise InputError(f"reward function {name} returned {v!r} for completion {i}{why}; "
                         f"{hint}")
    return out



def _prompt_of(row: dict):
    """The prompt of a dataset row: its 'prompt', else its 'messages' without the last turn
    (GKD's format: the conversation ends with the reference answer)."""
    return row["prompt"] if "prompt" in row else row["messages"][:-1]


def _tokenize(trainer, prompts: list) -> list[list[int]]:
    if isinstance(trainer, DistillationTrainer):  # its own template, tools and kwargs
        return [list(x) for x in trainer._tokenize_prompts(prompts)[0]]
    tok = trainer.processing_class
    if is_conversational({"prompt": prompts[0]}):
        return list(tok.apply_chat_template(prompts, add_generation_prompt=True, tokenize=True,
                                            return_dict=True)["input_ids"])
    return list(tok(text=prompts)["input_ids"])


def _sample(trainer, prompt_ids: list[list[int]]) -> list[list[int]]:
    """One sampled completion per prompt from the trainer's student, eos-cut: TRL's own
    generation for DistillationTrainer (vLLM, ZeRO-3 and FSDP included), else HF generate
    with the trainer's generation config (GKD)."""
    if isinstance(trainer, DistillationTrainer):
        return trainer._generate_single_turn(prompt_ids, None, {})
    from trl.models.utils import unwrap_model_for_generation
    from trl.trainer.utils import pad

    tok, dev = trainer.processing_class, trainer.accelerator.device
    ids = [torch.tensor(p) for p in prompt_ids]
    x = pad(ids, padding_value=tok.pad_token_id, padding_side="left").to(dev)
    mask = pad([torch.ones_like(p) for p in ids], padding_value=0, padding_side="left").to(dev)
    with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator) as model, \
            torch.no_grad():
        out = model.generate(input_ids=x, attention_mask=mask,
                             generation_config=trainer.generation_config)
    eos = trainer.generation_config.eos_token_id
    eos = {tok.eos_token_id} | (set(eos) if isinstance(eos, list) else {eos} - {None})
    comps = []
    for row in out[:, x.shape[1]:].tolist():
        cut = next((j for j, t in enumerate(row) if t in eos), len(row) - 1)
        comps.append(row[:cut + 1])
    return comps


class PassRateRefresh(TrainerCallback):
    """Refresh the pass-rate table: K student rollouts per candidate prompt, each scored by
    a TRL-style reward function reward_func(prompts, completions, completion_ids,
    trainer_state, **columns) -> one float per completion (every other dataset column is
    passed, K times per prompt, as GRPO does). A rollout counts as solved when its reward is
    >= success_at. Runs at the start of training and after every `every` optimizer steps.

    candidates = None measures the whole pool (as paced_train does); an int m measures the
    next m prompts of a seeded cycle through the pool, so a large pool is covered over
    several refreshes (the others keep their counts). With W processes the candidates are cut
    into fixed chunks of prompts_per_call prompts; chunk c is rolled out by process c mod W
    with its own seed (seed_for(seed, step, "refresh", c)), the success counts are gathered,
    and every process writes the same counts into its table (the table paced_train uses).
    Under weights.method = "uniform" nothing is rolled out (weights never read pass rates).
    """

    def __init__(self, reward_func: Callable, *, rollouts: int = 8, every: int = 20,
                 prompts_per_call: int = 16, success_at: float = 1.0,
                 answer_column: str | None = "answer", candidates: int | None = None):
        if not callable(reward_func):
            raise ConfigError(f"reward_func must be callable (got {type(reward_func).__name__})")
        for name, v in (("rollouts", rollouts), ("every", every),
                        ("prompts_per_call", prompts_per_call)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"PassRateRefresh: {name} must be an int >= 1 (got {v!r})")
        if candidates is not None and (not isinstance(candidates, int) or candidates < 1):
            raise ConfigError(f"PassRateRefresh: candidates must be None or an int >= 1 "
                              f"(got {candidates!r})")
        self.reward_func, self.rollouts, self.every = reward_func, rollouts, every
        self.prompts_per_call, self.success_at = prompts_per_call, float(success_at)
        self.answer_column, self.candidates = answer_column, candidates
        self.name = getattr(reward_func, "__name__", repr(reward_func))
        self.trainer = None
        self.cursor = 0
        self.step_offset = 0  # PacedTwoStage: the reverse stage's steps follow the forward's

    def attach(self, trainer) -> None:
        """Bind to a paced trainer (its constructor calls this); checks the columns."""
        cols = trainer.train_dataset.column_names
        if self.answer_column is not None and self.answer_column not in cols:
            raise ConfigError(
                f"train_dataset has no answer column {self.answer_column!r} (its columns: "
                f"{', '.join(cols)}); the pass-rate refresh passes it to {self.name} to verify "
                "rollouts. Add it, or set answer_column=None if your reward needs none.")
        if "prompt" not in cols and "messages" not in cols:
            raise ConfigError(f"train_dataset has neither a 'prompt' nor a 'messages' column "
                              f"(its columns: {', '.join(cols)}); the refresh samples from it")
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.refresh(state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0 and state.global_step < state.max_steps:
            self.refresh(state.global_step)

    def _pool(self) -> list[int]:
        n = len(self.trainer._paced.ids)
        if self.candidates is None or self.candidates >= n:
            return list(range(n))
        seed = self.trainer.args.seed
        order = np.random.default_rng(seed_for(seed, 0, "refresh")).permutation(n)
        picked = [int(order[(self.cursor + j) % n]) for j in range(self.candidates)]
        self.cursor = (self.cursor + self.candidates) % n
        return sorted(picked)

    def refresh(self, step: int) -> None:
        tr = self.trainer
        if tr is None:
            raise PacedError("PassRateRefresh is not attached to a trainer: pass it as "
                             "refresh=... to PacedDistillationTrainer / PacedGKDTrainer")
        paced = tr._paced
        if paced.weights.method == "uniform":
            return
        step += self.step_offset
        pool = self._pool()
        per = self.prompts_per_call
        chunks = [pool[i:i + per] for i in range(0, len(pool), per)]
        rank, world = tr.accelerator.process_index, tr.accelerator.num_processes
        mine = list(range(rank, len(chunks), world))
        # generation is a collective under vLLM, ZeRO-3 and FSDP: every process calls it
        # equally often (a spare call on chunk 0 whose results are dropped)
        lockstep = getattr(tr, "use_vllm", False) or tr.is_deepspeed_enabled \
            or tr.is_fsdp_enabled
        spare = -(-len(chunks) // world) - len(mine) if lockstep else 0
        found: list[tuple[int, int]] = []
        model, was_training = tr.model, tr.model.training
        model.eval()
        try:
            for c in mine + [0] * spare:
                solved = self.rollout(chunks[c], seed_for(tr.args.seed, step, "refresh", c))
                if c in mine:
                    found += list(zip(chunks[c], solved))
        finally:
            model.train(was_training)
        counts = dict(gather_object(found))
        order = sorted(counts)
        paced.table.refresh([paced.ids[i] for i in order], [counts[i] for i in order],
                            self.rollouts, step)
        metrics = getattr(tr, "_metrics", None)
        if isinstance(metrics, dict) and "train" in metrics:
            p = paced.table.rates([paced.ids[i] for i in order])
            metrics["train"]["paced/pass_rate"].append(float(np.nanmean(p)))
            metrics["train"]["paced/kept_fraction"].append(float((paced.current() > 0).mean()))

    def rollout(self, idx: list[int], seed: int) -> list[int]:
        """Solved rollouts (of K) for each dataset row in idx."""
        tr, K = self.trainer, self.rollouts
        rows = [tr.train_dataset[i] for i in idx]
        prompts = [_prompt_of(r) for r in rows]
        ids = _tokenize(tr, prompts)
        cuda = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            comp_ids = _sample(tr, [p for p in ids for _ in range(K)])
        texts = tr.processing_class.batch_decode(comp_ids, skip_special_tokens=True)
        conversational = is_conversational({"prompt": prompts[0]})
        completions = [[{"role": "assistant", "content": t}] for t in texts] \
            if conversational else texts
        columns = {k: [r[k] for r in rows for _ in range(K)] for k in rows[0]
                   if k not in ("prompt", "completion", "completion_ids")}
        rewards = self.reward_func(prompts=[p for p in prompts for _ in range(K)],
                                   completions=completions, completion_ids=comp_ids,
                                   trainer_state=tr.state, **columns)
        r = check_rewards(rewards, len(comp_ids), self.name)
        return (r >= self.success_at).reshape(-1, K).sum(1).tolist()
