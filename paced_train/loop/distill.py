"""The distillation view: which models, what each one reads, and their logits on the tokens
the loss scores.

  load_models         student (trained), frozen teacher (or "self": a frozen copy of the
                      student) and their one shared tokenizer; under loss.schedule = "rl" no
                      teacher is loaded (the slot holds the KL reference, or None)
  reference_logits    RL's KL reference (the frozen initial student) on the student's view
  teacher_view        the problems as the teacher reads them (privileged context or not)
  teacher_references  the teacher's greedy completion per problem, generated at first use
                      and cached in State (forward KL / AKL / JSD / skew score these)
  teacher_logits, student_logits
                      both models on prompt + completion, the output head applied only at the
                      completion-predicting positions, so a longer (privileged) teacher prompt
                      lines up token for token with the student's plain one
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from paced_train import tasks
from paced_train.config import RunConfig
from paced_train.loop.batching import completion_index, pack
from paced_train.loop.distributed import autocast
from paced_train.loop.losses import RL
from paced_train.loop.rollouts import generate_and_verify
from paced_train.loop.state import Run, State, timed
from paced_train.models import adapters
from paced_train.models.hf import check_same_vocab, load_any
from paced_train.tasks import Problem


def load_model_spec(spec: str, device):
    """A [models] entry -> (model, tokenizer): 'shipped:student' | 'shipped:teacher', one of
    our .safetensors files, or a local Hugging Face directory / .gguf (paced_train.models.hf)."""
    model, tok, _ = load_any(spec, device)
    return model, tok


def load_models(cfg: RunConfig, device
                ) -> tuple[torch.nn.Module, torch.nn.Module | None, object]:
    """(student in train mode, frozen teacher, tokenizer). models.teacher = "self" is a frozen
    copy of the initial student (self-distillation; pair it with loss.privileged = "answer").
    loss.schedule = "rl" learns from the verifier, not a teacher: models.teacher is not
    loaded, and the teacher's slot holds the KL reference, a frozen copy of the initial
    student, when loss.rl_kl > 0 (its forward is charged as teacher tokens) and None
    otherwise.
    The student's trainable parameters are set by [trainable] (models/adapters.py) after the
    copy, so a "self" teacher (or RL's KL reference) is always the plain initial model."""
    student, tok = load_model_spec(cfg.models.student, device)
    if cfg.loss.schedule == RL:
        teacher = copy.deepcopy(student) if cfg.loss.rl_kl > 0 else None
    elif cfg.models.teacher.strip().lower() == "self":
        teacher = copy.deepcopy(student)
    else:
        teacher, t_tok = load_model_spec(cfg.models.teacher, device)
        check_same_vocab(t_tok, tok)  # a token-level KL needs one vocabulary
    if teacher is not None:
        teacher.eval().requires_grad_(False)
    adapters.configure(student, cfg.trainable, cfg.run.seed)
    student.train()
    return student, teacher, tok


def n_params(model) -> int:
    """Non-embedding parameters (the N of the ledger's 2N / 4N per token)."""
    f = getattr(model, "num_params", None)
    return int(f(non_embedding=True)) if f else sum(p.numel() for p in model.parameters())


def teacher_view(cfg: RunConfig, problems: list[Problem]) -> list[Problem]:
    """The problems as the teacher sees them: with loss.privileged = "answer" the prompt is
    privileged_template filled with the problem and its reference answer, else unchanged."""
    if cfg.loss.privileged == "none":
        return problems
    tmpl = cfg.loss.privileged_template
    return [dataclasses.replace(p, prompt=tasks.privileged_prompt(p, tmpl)) for p in problems]


def encoded_prompts(run: Run, batch: list[Problem], teacher: bool) -> list[list[int]]:
    """Token ids of the prompts as the teacher (its view: privileged context or not) or the
    student reads them; cached per problem in run.prompt_cache (chat templates are not free)."""
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
    with autocast(device):
        logits = model(x, positions=index)
    return logits, mask, sum(len(p) + len(c) - 1 for p, c in zip(prompts, completions))


def teacher_logits(run: Run, batch: list[Problem], completions: list[list[int]]):
    """(logits (B, C, V), tokens): the frozen teacher on its view of the batch followed by
    the completions, at the completion tokens; no gradient."""
    with torch.no_grad():
        logits, _, n = completion_logits(run.teacher, run.tok, encoded_prompts(run, batch, True),
                                          completions, run.device)
    return logits, n


def reference_logits(run: Run, batch: list[Problem], completions: list[list[int]]):
    """(logits (B, C, V), tokens): RL's KL reference (the frozen initial student in the
    teacher's slot, loss.rl_kl > 0) on the plain prompts and the completions; no gradient."""
    with torch.no_grad():
        logits, _, n = completion_logits(run.teacher, run.tok, encoded_prompts(run, batch, False),
                                         completions, run.device)
    return logits, n


def student_logits(run: Run, batch: list[Problem], completions: list[list[int]]):
    """(logits (B, C, V), mask (B, C), tokens): the student (its DDP wrapper when
    distributed) on the plain prompts followed by the completions, aligned as
    teacher_logits."""
    return completion_logits(run.student_fwd or run.student, run.tok,
                             encoded_prompts(run, batch, False), completions, run.device)


def teacher_references(run: Run, st: State, batch: list[Problem]) -> list[list[int]]:
    """The teacher's greedy completions of the batch, generated at first use and cached in
    st.references (only kept problems ever get here, so dropped problems cost the teacher
    nothing); the generation is charged to the teacher in the ledger."""
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
