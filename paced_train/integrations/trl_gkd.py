"""PACED's forward-KL stage on TRL's GKDTrainer, and the two-stage schedule on TRL.

TRL 1.16 has teacher-forced forward KL only in its experimental GKDTrainer: with lmbda = 0 the
student is trained on the dataset's reference completions (no generation), with beta = 0 the
divergence is KL(teacher || student). Its collator, DataCollatorForChatML, drops every column
it does not know, the problem id with them, and its loss divides by the token count of the
batch; PacedGKDTrainer changes that:
  PacedCollator           TRL's collator plus the rows' problem ids ("paced_ids"). The weights
                          are looked up from the ids in the main process (the weight each
                          prompt was drawn with): a weight column fixed in the dataset could
                          not follow refreshes, and DataLoader workers hold stale tables.
  _get_train_sampler      PacedSampler (trl.py): zero-weight rows are never collated, so never
                          forwarded by teacher or student.
  _get_num_items_in_batch the GLOBAL normaliser of the optimizer step (passrates.normaliser
                          over the weights of every micro-batch of every process), where the
                          HF Trainer counts label tokens.
  compute_loss            paced_train.loop.losses.generalized_jsd(beta) per sequence (beta = 0 is
                          the forward KL, as token_kl(direction="forward"), beta = 1 the
                          reverse), at temperature 1 as GKD's loss, then
                          losses.weighted_loss(L, w, normaliser / W): GKD builds the full
                          logits anyway, so paced's own loss functions are used as they are.

PacedTwoStage runs paced_train's loss.schedule = "two-stage" (switch_unit = steps): forward KL
on references with PacedGKDTrainer for the first switch_at of the steps, then on-policy
reverse KL with PacedDistillationTrainer for the rest, on one student with one pass-rate
table and one reward. Unlike paced_train's single loop, each stage is a TRL run with its own
optimizer and learning-rate schedule.

Importing this module imports trl.experimental, which warns that its APIs are unstable
(silence it with TRL_EXPERIMENTAL_SILENCE=1).
"""

from __future__ import annotations

import gc
import math

import datasets
import numpy as np
import torch
from torch.utils.data import Sampler
from trl import DistillationConfig
from trl.data_utils import is_conversational
from trl.experimental.gkd import GKDConfig, GKDTrainer
from trl.experimental.utils import DataCollatorForChatML

from paced_theory.errors import ConfigError, PacedError
from paced_train.integrations.trl import (
    PacedDistillationTrainer,
    PacedSampler,
    PacedState,
    PassRateRefresh,
    check_vocabularies,
)
from paced_train.loop import losses
from paced_train.loop.passrates import PassRateTable

__all__ = ["PacedCollator", "PacedGKDTrainer", "PacedTwoStage"]


class PacedCollator:
    """A GKD collator (DataCollatorForChatML by default) that also keeps the problem ids."""

    def __init__(self, base, id_column: str = "id"):
        self.base, self.id_column = base, id_column

    def __call__(self, examples: list[dict]) -> dict:
        out = self.base(examples)
        if examples and self.id_column in examples[0]:  # eval sets may have none
            out["paced_ids"] = [ex[self.id_column] for ex in examples]
        return out


class PacedGKDTrainer(GKDTrainer):
    """trl.experimental.gkd.GKDTrainer with PACED's per-prompt weights (module docstring).

    Same extra keyword arguments as PacedDistillationTrainer: weights, pass_rates, refresh,
    id_column. train_dataset rows are GKD's ("messages" ending with the reference answer, or
    pre-tokenised "input_ids"), plus the id column (and the answer column for the refresh).
    """

    loss_is_scaled_for_ga = True  # the normaliser covers every micro-batch of the step

    def __init__(self, model=None, teacher_model=None, args: GKDConfig | None = None,
                 data_collator=None, train_dataset=None, *, weights=None,
                 pass_rates: PassRateTable | None = None, refresh: PassRateRefresh | None = None,
                 id_column: str = "id", **kwargs):
        K = refresh.rollouts if refresh is not None else 8
        self._paced = PacedState(train_dataset, weights, pass_rates, id_column, K)
        self._paced_sampler: PacedSampler | None = None
        check_vocabularies(model, teacher_model)
        if args is None:
            raise ConfigError("PacedGKDTrainer needs args=GKDConfig(...) (lmbda=0, beta=0 for "
                              "PACED's forward-KL stage)")
        if data_collator is None:
            data_collator = DataCollatorForChatML(tokenizer=kwargs.get("processing_class"),
                                                  max_length=args.max_length)
        super().__init__(model, teacher_model, args, PacedCollator(data_collator, id_column),
                         train_dataset, **kwargs)
        self.paced_refresh = refresh
        if refresh is not None:
            refresh.attach(self)
            self.add_callback(refresh)

    def _get_train_sampler(self, train_dataset=None) -> Sampler:
        batch = self.args.per_device_train_batch_size * self.accelerator.num_processes
        self._paced_sampler = PacedSampler(self._paced, batch, 1, self.args.seed)
        return self._paced_sampler

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device):
        if not batch_samples or "paced_ids" not in batch_samples[0]:
            return super()._get_num_items_in_batch(batch_samples, device)
        w = np.concatenate([self._paced.of(b["paced_ids"]) for b in batch_samples])
        return torch.tensor(self._paced.global_normaliser(w), dtype=torch.float64, device=device)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "paced_ids" not in inputs or num_items_in_batch is None or not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        w = self._paced.of(inputs["paced_ids"])
        if not (w > 0).all():
            raise PacedError("a row of weight 0 reached the loss; PacedGKDTrainer samples with "
                             "PacedSampler: do not replace _get_train_sampler")
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        self.teacher_model.eval()
        with torch.no_grad():
            teacher = self.teacher_model(input_ids=inputs["input_ids"],
                                         attention_mask=inputs["attention_mask"])
        mask = inputs["labels"][:, 1:] != -100  # positions predicting a completion token
        per_seq = losses.generalized_jsd(outputs.logits[:, :-1], teacher.logits[:, :-1], mask,
                                         beta=self.beta)
        norm = float(num_items_in_batch) / self.accelerator.num_processes  # DDP averages
        loss = losses.weighted_loss(per_seq, torch.as_tensor(w), norm)
        return (loss, outputs) if return_outputs else loss


def _release(trainer) -> None:
    """Drop a finished stage's DDP / accelerate wrappers, so the next stage wraps the same
    student afresh (a stale DDP reducer would keep hooks on its parameters)."""
    trainer.accelerator.free_memory()
    trainer.model_wrapped = trainer.model
    trainer.optimizer = trainer.lr_scheduler = None
    gc.collect()


class PacedTwoStage:
    """PACED's two-stage schedule on TRL (module docstring).

    train_dataset columns: prompt (conversational or text), `completion_column` (the reference
    answer the forward stage is trained on, e.g. the teacher's greedy output), the id column,
    and the answer column the reward reads. max_steps optimizer steps in all: the first
    floor(switch_at * max_steps) on forward KL, the rest on reverse KL (as paced_train counts
    them). `training` holds the TrainingArguments shared by both stages (output_dir gets a
    forward/ and a reverse/ subfolder); forward_args / reverse_args add GKDConfig /
    DistillationConfig fields (e.g. max_length; max_completion_length, temperature).
    refresh: the PassRateRefresh keyword arguments (one callback per stage, one table).
    """

    def __init__(self, model, teacher_model, train_dataset, processing_class, *, max_steps: int,
                 training: dict, switch_at: float = 0.5, reward_func=None,
                 refresh: dict | None = None, weights=None, pass_rates=None,
                 completion_column: str = "completion", id_column: str = "id",
                 forward_args: dict | None = None, reverse_args: dict | None = None):
        if not 0.0 <= switch_at <= 1.0:
            raise ConfigError(f"switch_at must be in [0, 1] (got {switch_at!r})")
        if completion_column not in train_dataset.column_names:
            raise ConfigError(
                f"train_dataset has no reference column {completion_column!r} (its columns: "
                f"{', '.join(train_dataset.column_names)}); the forward-KL stage trains on "
                "one reference completion per prompt (e.g. the teacher's greedy answer): add it "
                "or name it with completion_column=...")
        if "prompt" not in train_dataset.column_names:
            raise ConfigError(f"train_dataset has no 'prompt' column (its columns: "
                              f"{', '.join(train_dataset.column_names)})")
        self.n_forward = math.floor(switch_at * max_steps + 1e-9)
        self.n_reverse = max_steps - self.n_forward
        K = (refresh or {}).get("rollouts", 8)
        table = PacedState(train_dataset, weights, pass_rates, id_column, K).table  # checks
        out = training.get("output_dir", "paced-two-stage")

        def callback():
            return None if reward_func is None else PassRateRefresh(reward_func,
                                                                    **(refresh or {}))

        def to_messages(row):
            p = row["prompt"]
            conv = p if is_conversational({"prompt": p}) else [{"role": "user", "content": p}]
            return {"messages": [*conv, {"role": "assistant", "content": row[completion_column]}]}

        common = dict(weights=weights, pass_rates=table, id_column=id_column,
                      processing_class=processing_class)
        self.forward = self.reverse = None
        if self.n_forward:
            quiet = datasets.are_progress_bars_disabled()
            datasets.disable_progress_bars()
            try:
                refs = train_dataset.map(to_messages,
                                         remove_columns=["prompt", completion_column])
            finally:
                if not quiet:
                    datasets.enable_progress_bars()
            args = GKDConfig(**{**training, "output_dir": f"{out}/forward",
                                "max_steps": self.n_forward, **(forward_args or {}),
                                "lmbda": 0.0, "beta": 0.0})
            self.forward = PacedGKDTrainer(model, teacher_model, args, train_dataset=refs,
                                           refresh=callback(), **common)
        if self.n_reverse:
            args = DistillationConfig(**{**training, "output_dir": f"{out}/reverse",
                                         "max_steps": self.n_reverse, **(reverse_args or {}),
                                         "beta": 1.0})
            self.reverse = PacedDistillationTrainer(
                model, teacher_model, args, train_dataset.remove_columns([completion_column]),
                refresh=callback(), **common)
            if self.reverse.paced_refresh is not None:  # the table's steps count across both stages
                self.reverse.paced_refresh.step_offset = self.n_forward
        self.table = table

    def train(self) -> list:
        """Run the stages in order; returns their TrainOutputs."""
        results = []
        for stage in (self.forward, self.reverse):
            if stage is not None:
                results.append(stage.train())
                _release(stage)
        return results
