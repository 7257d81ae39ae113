"""PACED inside Hugging Face TRL: on-policy distillation (trl.DistillationTrainer) on the
prompts at the student's frontier, weighted by w(p) = p^alpha (1-p)^beta of each prompt's pass
rate p, which K student rollouts measure every N steps.

    # one process (CPU, or one GPU)
    python examples/trl_paced.py --student STUDENT_DIR --teacher TEACHER_DIR --data problems.jsonl
    # several GPUs (DDP): TRL and accelerate do the rest
    accelerate launch --num_processes 8 examples/trl_paced.py --student ... --teacher ... --data ...
    # DeepSpeed ZeRO-3 or FSDP: an accelerate config file (`accelerate config` writes one)
    accelerate launch --config_file zero3.yaml examples/trl_paced.py --student ... --teacher ...
    # random tiny models on CPU, a few steps (what the tests run)
    python examples/trl_paced.py --tiny --out /tmp/trl-paced

problems.jsonl: one {"id": ..., "prompt": ..., "answer": ...} per line, paced_train's format
(paced_train.tasks.load_jsonl). The student and teacher are local Hugging Face directories (or
hub ids) that share a tokenizer with a chat template. Needs `pip install 'paced[trl]'`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from datasets import Dataset
from transformers import AutoTokenizer
from trl import DistillationConfig

from paced_train.integrations.trl import PacedDistillationTrainer, PassRateRefresh, paced_weights
from paced_train.tasks import arithmetic_suite, load_jsonl, verify


def main(argv: list[str] | None = None) -> PacedDistillationTrainer:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", help="student model directory (or hub id)")
    ap.add_argument("--teacher", help="teacher model directory (or hub id), same tokenizer")
    ap.add_argument("--data", help="problems.jsonl (id, prompt, answer per line)")
    ap.add_argument("--out", default="runs/trl-paced")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=8, help="prompts per device per step")
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--rollouts", type=int, default=8, help="K per prompt per refresh")
    ap.add_argument("--refresh-every", type=int, default=20)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--tiny", action="store_true", help="random tiny models, CPU, a few steps")
    a = ap.parse_args(argv)
    extra = {}
    if a.tiny:  # a miniature of the real thing: random Llamas built here, CPU, float32
        a.student, a.teacher = tiny_models(Path(a.out) / "models")
        a.steps, a.batch, a.max_new_tokens, a.rollouts, a.refresh_every = 2, 4, 6, 4, 1
        a.lr = 1e-3
        extra = dict(use_cpu=True, bf16=False, activation_checkpointing=False)
    elif not (a.student and a.teacher and a.data):
        ap.error("--student, --teacher and --data are required (or --tiny)")

    # 1. the dataset: a prompt (conversational), a problem id and an answer per row
    problems = load_jsonl(a.data) if a.data else arithmetic_suite(0, 4, (1, 2), (1,))
    by_id = {p.id: p for p in problems}
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": p.prompt}],
                                  "id": p.id, "answer": p.answer} for p in problems])

    # 2. the reward, TRL's convention: one float per completion (here 1.0 = it verifies)
    def accuracy(prompts, completions, id, **columns):
        return [float(verify(by_id[pid], c[0]["content"])) for pid, c in zip(id, completions)]

    def starts_with_a_digit(prompts, completions, **columns):
        """--tiny: random models never verify, so every weight would be 0; this stand-in
        task is one they pass at some rate, so pass rates spread and PACED keeps some."""
        return [float(c[0]["content"][:1].isdigit()) for c in completions]

    # 3. TRL's trainer with PACED's weights: only prompts with 0 < p < 1 are trained on
    trainer = PacedDistillationTrainer(
        model=a.student, teacher_model=a.teacher,
        args=DistillationConfig(output_dir=a.out, max_steps=a.steps, learning_rate=a.lr,
                                per_device_train_batch_size=a.batch, beta=1.0,  # reverse KL
                                max_completion_length=a.max_new_tokens, logging_steps=1,
                                save_strategy="no", report_to="none", **extra),
        train_dataset=dataset, processing_class=AutoTokenizer.from_pretrained(a.student),
        weights=paced_weights(a.rollouts, method="paced", alpha=a.alpha, beta=a.beta),
        refresh=PassRateRefresh(starts_with_a_digit if a.tiny else accuracy,
                                rollouts=a.rollouts, every=a.refresh_every))
    trainer.train()
    trainer.save_model(str(Path(a.out) / "student"))
    if trainer.accelerator.is_main_process:
        print(f"pass rates (0: never solved [four bins of (0, 1)] 1: always): "
              f"{trainer._paced.table.histogram()}")
    return trainer


def tiny_models(root: Path) -> tuple[str, str]:
    """Two random Llamas (hidden 16 and 32) sharing a character tokenizer with a chat
    template, saved with save_pretrained: stand-ins for a real student and teacher."""
    import torch
    from tokenizers import Tokenizer, decoders, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    chars = "0123456789+*=<>,:? abcdefghijklmnopqrstuvwxyz"
    vocab = {t: i for i, t in enumerate(["<pad>", "<s>", "</s>", "<unk>", *chars])}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", pad_token="<pad>", padding_side="left")
    tok.chat_template = ("{% for m in messages %}<s>{{ m['role'] }}:{{ m['content'] }}</s>"
                         "{% endfor %}{% if add_generation_prompt %}<s>assistant:{% endif %}")
    paths = []
    for name, hidden in (("student", 16), ("teacher", 32)):
        torch.manual_seed(hidden)
        cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden,
                          num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                          max_position_embeddings=128, tie_word_embeddings=False,
                          bos_token_id=1, eos_token_id=2, pad_token_id=0)
        LlamaForCausalLM(cfg).save_pretrained(root / name)
        tok.save_pretrained(root / name)
        paths.append(str(root / name))
    return paths[0], paths[1]


if __name__ == "__main__":
    main()
