"""The distillation view (paced_train/loop/distill.py), tested through self-distillation with a
privileged teacher: the frozen initial student, shown the reference answer, scores the
student's own samples (reverse KL); completion logits line up behind different prompts."""

from __future__ import annotations

import json

import pytest
import torch

from paced_theory.errors import ConfigError
from paced_train.config import RunConfig
from paced_train.loop.batching import completion_index, pack
from paced_train.loop.distill import load_models, student_logits, teacher_logits, teacher_view
from paced_train.loop.state import Run
from paced_train.loop.trainer import train
from paced_train.tasks import arithmetic_suite, privileged_prompt


def test_privileged_prompt_fills_the_answer_as_the_student_writes_it():
    p = arithmetic_suite(0, 2, (2,), ())[0]
    text = privileged_prompt(p, "{prompt} (answer: {answer})")
    assert text.startswith(p.prompt) and text.endswith(f"(answer: {p.answer[::-1]})")


def test_gathered_completion_logits_equal_unpadded_forward_passes(tiny_models):
    """Two packings of the same completions behind prompts of different lengths line up
    token for token: each row equals a forward pass on that row alone (no padding)."""
    from paced_train.models.model import load_model

    model, tok, _ = load_model(tiny_models["teacher"])
    model.eval()
    prompts = [tok.encode("12+3="), tok.encode("7+8= (answer: 51)"), tok.encode("1*2=")]
    comps = [tok.encode("51") + [tok.eos_id], tok.encode("5"), tok.encode("2") + [tok.eos_id]]
    x, _, _ = pack(prompts, comps, tok.pad_id)
    index, mask = completion_index(prompts, comps)
    with torch.no_grad():
        got = model(x, positions=index)
        for i, (p, c) in enumerate(zip(prompts, comps)):
            alone = model(torch.tensor([p + c[:-1]]))[0, len(p) - 1:]
            assert torch.allclose(got[i, : len(c)], alone, atol=1e-5)
            assert mask[i].sum() == len(c)
    assert mask.shape == (3, 3) and mask[1, 1:].sum() == 0 and mask[2, 2] == 0


def test_self_teacher_is_a_frozen_copy_and_sees_the_answer(tiny_cfg):
    cfg = tiny_cfg("models.teacher=self", "loss.privileged=answer")
    student, teacher, tok = load_models(cfg, torch.device("cpu"))
    assert teacher is not student
    for (n, a), (_, b) in zip(student.named_parameters(), teacher.named_parameters()):
        assert torch.equal(a, b) and not b.requires_grad and a.requires_grad, n
    probs = arithmetic_suite(0, 3, (1,), ())[:3]
    view = teacher_view(cfg, probs)
    assert [v.prompt for v in view] == [privileged_prompt(p, cfg.loss.privileged_template)
                                        for p in probs]
    assert teacher_view(tiny_cfg(), probs) == probs


def _first_step_kl(cfg) -> float:
    student, teacher, tok = load_models(cfg, torch.device("cpu"))
    run = Run(cfg, torch.device("cpu"), student, teacher, tok, None, [], [], [])
    student.eval()  # no dropout: the comparison is exact
    probs = arithmetic_suite(0, 4, (1, 2), ())[:6]
    comps = [tok.encode(p.answer[::-1]) + [tok.eos_id] for p in probs]
    t, _ = teacher_logits(run, probs, comps)
    with torch.no_grad():
        s, mask, _ = student_logits(run, probs, comps)
    from paced_train.loop.losses import token_kl

    return float(token_kl(s, t, mask, "reverse").mean())


def test_reverse_kl_to_self_is_zero_without_and_positive_with_privileged_context(tiny_cfg):
    assert _first_step_kl(tiny_cfg("models.teacher=self")) == pytest.approx(0.0, abs=1e-6)
    assert _first_step_kl(tiny_cfg("models.teacher=self", "loss.privileged=answer")) > 1e-4


def test_self_distillation_runs_end_to_end(tiny_cfg, tmp_path):
    # uniform weights: a random tiny student solves nothing, so PACED would drop every problem
    cfg = tiny_cfg("models.teacher=self", "loss.privileged=answer", "loss.schedule=reverse",
                   "weights.method=uniform")
    summary = train(cfg, tmp_path / "sd")
    rows = [json.loads(x) for x in (tmp_path / "sd" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["kind"] == "step" and r["loss"] is not None]
    assert steps and all(r["loss_kind"] == "reverse" and r["loss"] > 0 for r in steps)
    assert summary["steps"] == cfg.budget.steps and summary["sample_tokens"] > 0
    saved = (tmp_path / "sd" / "config.toml").read_text()
    assert 'teacher = "self"' in saved and 'privileged = "answer"' in saved


@pytest.mark.parametrize("template", ["{prompt} only", "{answer} only", "{prompt} {oops}"])
def test_bad_privileged_templates_are_refused_by_key(tiny_cfg, template):
    with pytest.raises(ConfigError, match="loss.privileged_template"):
        tiny_cfg("loss.privileged=answer", f"loss.privileged_template={template!r}")


def test_default_config_is_not_privileged():
    assert RunConfig().loss.privileged == "none"
