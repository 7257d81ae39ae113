"""PACED inside Hugging Face TRL (1.16): per-prompt weights on trl.DistillationTrainer.

    trainer = PacedDistillationTrainer(
        model=student, teacher_model=teacher, args=DistillationConfig(..., beta=1.0),
        train_dataset=dataset,                    # columns: prompt, id, answer (and any others)
        processing_class=tokenizer, weights=paced_weights(method="paced", alpha=1, beta=1),
        refresh=PassRateRefresh(accuracy_reward, rollouts=8, every=20))
    trainer.train()

TRL has no per-sample weight in its distillation trainers, so the subclass changes three of
DistillationTrainer's methods (TRL 1.16's internals, hence the pinned minor version):
  _get_train_sampler    PacedSampler: every generation batch holds only prompts whose weight
                        is > 0 at the moment the batch is drawn. Zero-weight prompts are
                        never generated and never reach a teacher or student forward pass.
  _generate_and_score_completions
                        after TRL's own generation, each row gets the weight it was drawn with
                        and the generation batch gets its GLOBAL normaliser:
                        passrates.normaliser over the weights gathered from every process.
  _compute_loss         TRL's chunked kernel computes the per-token divergence exactly as for
                        plain TRL (its beta, temperature, logit scaling; the full logits are
                        never built); paced reduces it per sequence (the mean over the row's
                        completion tokens, as losses.token_kl does) and weights it:
                        losses.weighted_loss(L, w, normaliser / W). Summed over gradient
                        accumulation and averaged by DDP over W processes, the update is that
                        of sum_i w_i L_i / normaliser over the global generation batch: the
                        loss paced_train's trainer takes (tests/integrations check both).
The weights come from paced_theory through passrates.problem_weights (w = p^alpha (1-p)^beta
from the table's c of n, or the hard band, or uniform), the counts from PassRateRefresh: K
student rollouts per prompt, scored by a TRL-style reward function, every N steps.

Where this differs from paced_train's own loop (ours, by design or by TRL's layout):
  - paced_train draws B candidates and drops the zero-weight ones, so a step can be short;
    here the sampler skips them, so every batch is full of kept prompts. normalise = "mean"
    therefore divides by the number of rows of the generation batch.
  - a refresh takes effect from the next batch the sampler draws. The data loader fetches
    one batch ahead, so the batch of the step right after a refresh keeps the weights it was
    drawn with (every row keeps a weight > 0: the sampler records it at the draw).
  - on-policy samples are not counted as rollouts: counts change only at refreshes.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict

import numpy as np
import torch
from accelerate.utils import gather_object
from torch.utils.data import Sampler
from trl import DistillationTrainer
from trl.trainer import distillation_trainer as _trl_distill

from paced_theory.errors import ConfigError, PacedError
from paced_train.config import WeightsSection, from_dict
from paced_train.integrations.trl_refresh import PassRateRefresh, check_rewards
from paced_train.loop import losses
from paced_train.loop.passrates import PassRateTable, normaliser, problem_weights
from paced_train.loop.seeding import seed_for

__all__ = ["PacedDistillationTrainer", "PacedSampler", "PassRateRefresh", "PacedState",
           "paced_weights", "check_vocabularies", "check_rewards"]


# ------------------------------------------------------------------------------ set-up
def paced_weights(rollouts: int = 8, **section) -> WeightsSection:
    """The weighting as paced_train's [weights] section: method = paced | uniform | hard,
    alpha, beta, estimator, prior_a, prior_b, lo, hi, normalise (defaults: paced, 1, 1,
    plugin, ..., sum). Validated as a config file is, so errors name the key; `rollouts` is
    the K the unbiased estimator is checked against."""
    cfg = from_dict({"weights": section, "rollouts": {"K": rollouts}}, "paced_weights(...)")
    return cfg.weights


def _vocab_size(model) -> int | None:
    if model is None:
        return None
    if isinstance(model, str):  # a path or hub id, as TRL accepts: its config says
        from transformers import AutoConfig

        return int(AutoConfig.from_pretrained(model).get_text_config().vocab_size)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and getattr(head, "weight", None) is not None:
        return int(head.weight.shape[0])
    return int(model.config.get_text_config().vocab_size)


def check_vocabularies(student, teacher) -> None:
    """ConfigError unless the student's and the teacher's logits cover the same vocabulary."""
    vs, vt = _vocab_size(student), _vocab_size(teacher)
    if vs is not None and vt is not None and vs != vt:
        raise ConfigError(
            f"the student has {vs} logits per token but the teacher has {vt}: a token-level KL "
            "compares both next-token distributions over one vocabulary, so the two models must "
            "share a tokenizer (same vocabulary size and ids). Use a teacher of the student's "
            "family, or TRL's GOLD trainer for cross-tokenizer distillation.")


class PacedState:
    """What a paced trainer adds to TRL's: the dataset's problem ids, the pass-rate table,
    the weighting, and the weight each prompt was last drawn with (`drawn`)."""

    def __init__(self, dataset, weights, table: PassRateTable | None, id_column: str,
                 rollouts: int = 8):
        if dataset is None or not hasattr(dataset, "column_names") \
                or not hasattr(dataset, "__len__"):
            raise ConfigError("PACED needs train_dataset as a datasets.Dataset (map-style: the "
                              "sampler picks prompts by weight; an IterableDataset cannot)")
        if id_column not in dataset.column_names:
            raise ConfigError(
                f"train_dataset has no problem-id column {id_column!r} (its columns: "
                f"{', '.join(dataset.column_names)}). PACED keeps one pass rate per problem: add "
                "a column of unique ids, e.g. dataset.add_column('id', [str(i) for i in "
                "range(len(dataset))]), or name yours with id_column=...")
        self.ids = list(dataset[id_column])
        seen: set = set()
        for pid in self.ids:
            if pid in seen:
                raise ConfigError(f"train_dataset column {id_column!r}: problem id {pid!r} "
                                  "occurs twice; each problem needs its own id")
            seen.add(pid)
        self.table = table if table is not None else PassRateTable(self.ids)
        missing = [pid for pid in self.ids if pid not in self.table.index]
        if missing:
            raise ConfigError(f"pass_rates has no entry for problem id {missing[0]!r} of "
                              f"train_dataset ({len(missing)} missing); build the table from "
                              f"the dataset's {id_column!r} column (or pass none)")
        if weights is None:
            weights = paced_weights(rollouts)
        elif isinstance(weights, WeightsSection):
            weights = paced_weights(rollouts, **asdict(weights))
        else:
            weights = paced_weights(rollouts, **dict(weights))
        self.weights, self.id_column = weights, id_column
        self.drawn: dict = {}

    def current(self, ids=None) -> np.ndarray:
        """Weights now, from the table (paced_theory via passrates.problem_weights)."""
        return problem_weights(self.weights, self.table, self.ids if ids is None else ids)

    def of(self, ids) -> np.ndarray:
        """The weight each prompt was drawn with (the table's current one if never drawn)."""
        w = np.array([self.drawn.get(pid, np.nan) for pid in ids], dtype=float)
        if np.isnan(w).any():
            w = np.where(np.isnan(w), self.current(ids), w)
        return w

    def global_normaliser(self, local: np.ndarray) -> float:
        """passrates.normaliser over the weights of every process's rows (one collective)."""
        everyone = np.asarray(gather_object([float(x) for x in local]), dtype=float)
        return normaliser(everyone, self.weights.normalise, len(everyone))


# ----------------------------------------------------------------------------- sampler
class PacedSampler(Sampler[int]):
    """Indices of prompts with weight > 0 in batches of `batch_size`, each batch repeated
    `repeat` times (TRL's RepeatSampler layout: DistillationTrainer generates once per
    gradient-accumulation window and reuses the batch; GKD uses repeat = 1).

    Order: the endless sequence of seeded permutations of the pool (paced_train's data
    stream, seed_for(seed, epoch, "data")), walked by a cursor. Before each batch the sampler
    reads every prompt's weight from the table and skips those at 0, so a refresh changes the
    next batch drawn, mid-epoch, and every process (same table, same seed) draws the same
    batches. With fewer kept prompts than batch_size the walk wraps into the next permutation
    and a prompt can appear twice in a batch. len() is one pass over the pool, as TRL's.
    """

    def __init__(self, state: PacedState, batch_size: int, repeat: int = 1, seed: int = 0):
        self.state, self.batch_size, self.repeat, self.seed = state, batch_size, repeat, seed
        self.n_batches = max(1, len(state.ids) // batch_size)
        self.epoch, self.pos, self.perm = 0, 0, None

    def __len__(self) -> int:
        return self.n_batches * self.batch_size * self.repeat

    def __iter__(self):
        for _ in range(self.n_batches):
            batch = self.next_batch()
            for _ in range(self.repeat):
                yield from batch

    def next_batch(self) -> list[int]:
        w = self.state.current()
        if not (w > 0).any():
            raise PacedError(
                f"no prompt has weight > 0 ({len(w)} prompts, weights.method = "
                f"{self.state.weights.method!r}): the student solves all of them or none, or "
                "none has been measured yet. Pass refresh=PassRateRefresh(reward, ...) so that "
                "pass rates are measured before the first batch, or use easier/harder prompts.")
        out: list[int] = []
        while len(out) < self.batch_size:
            if self.perm is None or self.pos == len(self.perm):
                if self.perm is not None:
                    self.epoch += 1
                rng = np.random.default_rng(seed_for(self.seed, self.epoch, "data"))
                self.perm, self.pos = rng.permutation(len(w)), 0
            i = int(self.perm[self.pos])
            self.pos += 1
            if w[i] > 0:
                out.append(i)
                self.state.drawn[self.state.ids[i]] = float(w[i])
        return out


# ------------------------------------------------------------------------- the trainer
@contextmanager
def _per_token_divergence():
    """For one call of TRL's _compute_loss, record the per-token divergence its chunked
    kernel returns (ChunkedDivergenceFunction.apply), graph included, so that paced can
    reduce it per sequence; TRL's own token-mean reduction of it is then discarded."""
    real = getattr(_trl_distill, "ChunkedDivergenceFunction", None)
    if real is None:
        raise PacedError("this TRL version has no trl.trainer.distillation_trainer."
                         "ChunkedDivergenceFunction; paced's TRL adapter is written for trl "
                         "1.16 (pip install 'paced[trl]')")
    got: list[torch.Tensor] = []

    class Recording:
        @staticmethod
        def apply(*args):
            divergence, entropy = real.apply(*args)
            got.append(divergence)
            return divergence, entropy

    _trl_distill.ChunkedDivergenceFunction = Recording
    try:
        yield got
    finally:
        _trl_distill.ChunkedDivergenceFunction = real


def per_sequence_mean(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) mean of the per-token divergence over each row's scored tokens (0 for none), from
    TRL's flat per-token output: B*K positions, or only the mask's positions in row order
    (TRL's compact layout on Triton devices)."""
    B, K = mask.shape
    valid = mask.reshape(-1) != 0
    rows = torch.arange(B, device=mask.device).repeat_interleave(K)
    if per_token.numel() == valid.numel():
        per_token = per_token.masked_fill(~valid, 0)
    else:
        rows = rows[valid]
    sums = per_token.new_zeros(B).index_add(0, rows, per_token)
    return sums / valid.view(B, K).sum(1).clamp(min=1).to(sums.dtype)


class PacedDistillationTrainer(DistillationTrainer):
    """trl.DistillationTrainer with PACED's per-prompt weights (module docstring).

    Extra keyword arguments: weights (paced_weights(...), a WeightsSection or a dict of its
    keys; default paced, alpha = beta = 1), pass_rates (a PassRateTable to share, e.g. with the
    forward-KL stage; default a new one over the dataset's ids), refresh (a PassRateRefresh),
    id_column (default "id"). Everything else goes to DistillationTrainer unchanged.
    """

    def __init__(self, model, teacher_model=None, args=None, train_dataset=None, *,
                 weights=None, pass_rates: PassRateTable | None = None,
                 refresh: PassRateRefresh | None = None, id_column: str = "id", **kwargs):
        K = refresh.rollouts if refresh is not None else 8
        self._paced = PacedState(train_dataset, weights, pass_rates, id_column, K)
        self._paced_sampler: PacedSampler | None = None
        check_vocabularies(model, teacher_model)
        super().__init__(model, teacher_model, args, train_dataset, **kwargs)
        self.paced_refresh = refresh
        if refresh is not None:
            refresh.attach(self)
            self.add_callback(refresh)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self._paced.id_column not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, self._paced.id_column]

    def _get_train_sampler(self, dataset=None) -> Sampler:
        a = self.args
        batch = a.per_device_train_batch_size * self.accelerator.num_processes \
            * a.gradient_accumulation_steps
        self._paced_sampler = PacedSampler(self._paced, batch, a.gradient_accumulation_steps,
                                           a.seed)
        return self._paced_sampler

    def _generate_and_score_completions(self, inputs):
        if not self.model.training:  # evaluation: TRL's unweighted loss
            return super()._generate_and_score_completions(inputs)
        w = self._paced.of([row[self._paced.id_column] for row in inputs])
        if not (w > 0).all():
            raise PacedError("a prompt of weight 0 reached generation; PacedDistillationTrainer "
                             "samples its batches with PacedSampler: do not replace "
                             "_get_train_sampler")
        out = super()._generate_and_score_completions(inputs)
        dev = out["completion_ids"].device
        out["paced_weight"] = torch.tensor(w, dtype=torch.float32, device=dev)
        out["paced_norm"] = torch.tensor(self._paced.global_normaliser(w), dtype=torch.float64,
                                         device=dev)
        self._metrics["train"]["paced/weight_mean"].append(float(w.mean()))
        return out

    def _compute_loss(self, unwrapped_student, inputs, num_items_in_batch):
        if "paced_weight" not in inputs:
            return super()._compute_loss(unwrapped_student, inputs, num_items_in_batch)
        with _per_token_divergence() as got:
            _, entropy_sum, n_valid = super()._compute_loss(unwrapped_student, inputs,
                                                            num_items_in_batch)
        mask = inputs["completion_mask"]
        if "tool_mask" in inputs:
            mask = mask * inputs["tool_mask"]
        per_seq = per_sequence_mean(got[-1], mask.to(got[-1].device))
        norm = float(inputs["paced_norm"]) / self.accelerator.num_processes  # DDP averages
        return losses.weighted_loss(per_seq, inputs["paced_weight"], norm), entropy_sum, n_valid
