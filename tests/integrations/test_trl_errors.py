"""What TRL users get wrong, answered by a PacedError that names the problem and the fix."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from trl_helpers import CountingReward, args, llama, load, problems

from paced_theory.errors import ConfigError, InputError, PacedError


def _trainer(pair_dir, tmp_path, rows, teacher=None, **kw):
    from datasets import Dataset
    from trl import DistillationConfig

    from paced_train.integrations.trl import PacedDistillationTrainer

    student, tok = load(pair_dir["student"])
    teacher = teacher if teacher is not None else load(pair_dir["teacher"])[0]
    return PacedDistillationTrainer(
        model=student, teacher_model=teacher, train_dataset=Dataset.from_list(rows),
        args=args(DistillationConfig, str(tmp_path), max_completion_length=4),
        processing_class=tok, **kw)


def test_different_vocabularies(pair_dir, tmp_path):
    from datasets import Dataset
    from trl.experimental.gkd import GKDConfig

    from paced_train.integrations.trl_gkd import PacedGKDTrainer

    wide = llama(32, 5, vocab=58)
    with pytest.raises(ConfigError, match="student has 49 logits per token but the teacher "
                                          "has 58.*share a tokenizer"):
        _trainer(pair_dir, tmp_path, problems(4), teacher=wide)
    student, tok = load(pair_dir["student"])
    data = Dataset.from_list([{"messages": [{"role": "user", "content": "1+1="},
                                            {"role": "assistant", "content": "2"}], "id": "a"}])
    with pytest.raises(ConfigError, match="49 logits per token but the teacher has 58"):
        PacedGKDTrainer(student, wide, args(GKDConfig, str(tmp_path)), train_dataset=data,
                        processing_class=tok)


def test_dataset_without_id_or_answer_column(pair_dir, tmp_path):
    from paced_train.integrations.trl import PassRateRefresh

    rows = [{k: v for k, v in r.items() if k != "id"} for r in problems(4)]
    with pytest.raises(ConfigError, match=r"no problem-id column 'id' \(its columns: prompt, "
                                          r"answer\).*add_column"):
        _trainer(pair_dir, tmp_path, rows)
    rows = [{k: v for k, v in r.items() if k != "answer"} for r in problems(4)]
    with pytest.raises(ConfigError, match=r"no answer column 'answer'.*counting_reward.*"
                                          "answer_column=None"):
        _trainer(pair_dir, tmp_path, rows, refresh=PassRateRefresh(CountingReward()))
    twice = problems(3) + problems(1)
    with pytest.raises(ConfigError, match="problem id 'p10' occurs twice"):
        _trainer(pair_dir, tmp_path, twice)


@pytest.mark.parametrize("bad, match", [
    (lambda n: [None] * n, r"returned None for completion 0 \(TRL's GRPO"),
    (lambda n: ["yes"] * n, "returned 'yes' for completion 0"),
    (lambda n: [1.0] * (n - 1), "returned 7 values for 8 completions"),
    (lambda n: [0.0] * (n - 1) + [math.nan], "returned nan for completion 7"),
    (lambda n: 1.0, "returned float"),
])
def test_reward_returning_non_numbers(pair_dir, tmp_path, bad, match):
    from paced_train.integrations.trl import PassRateRefresh

    def verifier(prompts, completions, **kw):
        return bad(len(completions))

    tr = _trainer(pair_dir, tmp_path, problems(4),
                  refresh=PassRateRefresh(verifier, rollouts=2, prompts_per_call=4))
    with pytest.raises(InputError, match=f"reward function verifier {match}.*one number per "
                                         "completion"):
        tr.paced_refresh.refresh(0)


def test_check_rewards_accepts_numbers_of_every_kind():
    from paced_train.integrations.trl import check_rewards

    got = check_rewards([True, np.float32(0.5), 1, torch.tensor(0.25), np.bool_(False)], 5, "f")
    assert got.tolist() == [1.0, 0.5, 1.0, 0.25, 0.0]
    assert check_rewards(torch.tensor([1.0, 0.0]), 2, "f").tolist() == [1.0, 0.0]


def test_nothing_to_sample_and_bad_weights(pair_dir, tmp_path):
    from paced_train.integrations.trl import paced_weights

    tr = _trainer(pair_dir, tmp_path, problems(4))  # paced weights, no refresh: all unmeasured
    with pytest.raises(PacedError, match="no prompt has weight > 0.*refresh=PassRateRefresh"):
        tr.train()
    with pytest.raises(ConfigError, match="weights.alhpa"):
        paced_weights(alhpa=2)
    with pytest.raises(ConfigError, match="weights.estimator"):
        paced_weights(rollouts=2, estimator="unbiased", alpha=2, beta=1)
