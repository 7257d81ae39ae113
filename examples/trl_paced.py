"""PACED inside Hugging Face TRL: on-policy distillation (trl.DistillationTrainer) on the
prompts at the student's frontier, weighted by w(p) = p^alpha (1-p)^beta of each prompt's pass
rate p, which K student rollouts measure every N steps.

    # one process: one GPU, or the CPU in float32 when none is visible (or with --cpu)
    python examples/trl_paced.py --student STUDENT_DIR --teacher TEACHER_DIR --data problems.jsonl
    # several GPUs (DDP): TRL and accelerate do the rest
    accelerate launch --num_processes 8 examples/trl_paced.py --student ... --teacher ... --data ...
    # DeepSpeed ZeRO-3 or FSDP: an accelerate config file (`accelerate config` writes one)
    accelerate launch --config_file zero3.yaml examples/trl_paced.py --student ... --teacher ...
    # random tiny models on CPU, a few steps (what the tests run; --steps etc. still apply)
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

# defaults of a real run, and of --tiny where the command line does not give a value
DEFAULTS = dict(steps=200, batch=8, lr=1e-5, max_new_tokens=256, rollouts=8, refresh_every=20)
TINY = dict(steps=2, batch=4, lr=1e-3, max_new_tokens=6, rollouts=4, refresh_every=1)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; --tiny fills in only the values not given (so --tiny --steps 5 runs
    5 steps), and CPU is chosen when there is no GPU (or with --cpu)."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", help="student model directory (or hub id)")
    ap.add_argument("--teacher", help="teacher model directory (or hub id), same tokenizer")
    ap.add_argument("--data", help="problems.jsonl (id, prompt, answer per line)")
    ap.add_argument("--out", default="runs/trl-paced")
    ap.add_argument("--steps", type=int, help=f"optimizer steps (default {DEFAULTS['steps']}; "
                    f"--tiny: {TINY['steps']})")
    ap.add_argument("--batch", type=int, help="prompts per device per step (default "
                    f"{DEFAULTS['batch']}; --tiny: {TINY['batch']})")
    ap.add_argument("--lr", type=float, help=f"learning rate (default {DEFAULTS['lr']}; "
                    f"--tiny: {TINY['lr']})")
    ap.add_argument("--max-new-tokens", type=int, help="completion length (default "
                    f"{DEFAULTS['max_new_tokens']}; --tiny: {TINY['max_new_tokens']})")
    ap.add_argument("--rollouts", type=int, help="K per prompt per refresh (default "
                    f"{DEFAULTS['rollouts']}; --tiny: {TINY['rollouts']})")
    ap.add_argument("--refresh-every", type=int, help="steps between pass-rate refreshes "
                    f"(default {DEFAULTS['refresh_every']}; --tiny: {TINY['refresh_every']})")
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--cpu", action="store_true",
                    help="train on the CPU in float32 (the default when no GPU is visible)")
    ap.add_argument("--tiny", action="store_true",
                    help="random tiny models built here, CPU, a few steps (what the tests run)")
    a = ap.parse_args(argv)
    for k, v in (TINY if a.tiny else DEFAULTS).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    for k in ("steps", "batch", "max_new_tokens", "rollouts", "refresh_every"):
        if getattr(a, k) < 1:
            ap.error(f"--{k.replace('_', '-')} must be >= 1 (got {getattr(a, k)})")
    if not a.tiny and not (a.student and a.teacher and a.data):
        ap.error("--student, --teacher and --data are required (or --tiny)")
    import torch

    a.cpu = a.cpu or a.tiny or not torch.cuda.is_available()
    return a


def main(argv: list[str] | None = None) -> PacedDistillationTrainer:
    a = parse(argv)
    if a.tiny:  # a miniature of the real thing: random Llamas built here
        a.student, a.teacher = tiny_models(Path(a.out) / "models")
    # on CPU: float32 (TRL's bf16 default needs a GPU), no activation checkpointing
    extra = dict(use_cpu=True, bf16=False, activation_checkpointing=False) if a.cpu else {}

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
    import sys

    from paced_theory.errors import PacedError

    try:
        main()
    except (PacedError, OSError, ValueError) as exc:  # a bad path, file or setting: one line
        msg = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
        lines = msg.strip().splitlines() or [repr(exc)]
        print(f"trl_paced: error: {lines[0]}", file=sys.stderr)
        sys.exit(2)
