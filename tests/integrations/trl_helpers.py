"""Helpers shared by the TRL adapter tests and their torchrun worker (trl_worker.py)."""

from __future__ import annotations

from pathlib import Path

import torch

CHARS = "0123456789+*=<>,:? abcdefghijklmnopqrstuvwxyz"
TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}:{{ m['content'] }}</s>{% endfor %}"
            "{% if add_generation_prompt %}<s>assistant:{% endif %}")
SIZES = {"student": (16, 1), "teacher": (32, 2)}  # hidden, seed


def tokenizer():
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + list(CHARS))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", pad_token="<pad>")
    tok.chat_template = TEMPLATE
    tok.padding_side = "left"
    return tok


def llama(hidden: int, seed: int, vocab: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                      max_position_embeddings=128, initializer_range=0.2,
                      tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return LlamaForCausalLM(cfg)


def save_pair(root: Path) -> dict:
    tok = tokenizer()
    out = {}
    for name, (hidden, seed) in SIZES.items():
        llama(hidden, seed, len(tok)).save_pretrained(root / name)
        tok.save_pretrained(root / name)
        out[name] = str(root / name)
    return out


def load(path: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32,
                                                 local_files_only=True)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tok.padding_side = "left"
    return model, tok


def problems(n: int = 16, start: int = 10, completion: bool = False) -> list[dict]:
    """Conversational prompts 'a+b=' of equal length (two-digit operands: no padding in a
    batch), ids 'p<a>', answers; optionally a reference completion (the answer)."""
    rows = []
    for a in range(start, start + n):
        row = {"prompt": [{"role": "user", "content": f"{a}+{a + 1}="}], "id": f"p{a}",
               "answer": str(2 * a + 1)}
        if completion:
            row["completion"] = str(2 * a + 1)
        rows.append(row)
    return rows


class CountingReward:
    """A reward that ignores the completions: the k-th rollout of problem p<a> is solved
    when (k mod 4) < solved(a) (default a mod 5), so K = 4 rollouts give c = solved(a) and the
    table is the same however the rollouts are split across processes."""

    def __init__(self, solved=lambda a: a % 5):
        self.solved, self.calls, self.seen = solved, {}, []
        self.__name__ = "counting_reward"

    def __call__(self, prompts, completions, id, **columns):
        out = []
        for pid in id:
            k = self.calls.get(pid, 0)
            self.calls[pid] = k + 1
            out.append(1.0 if k % 4 < self.solved(int(pid[1:])) else 0.0)
        self.seen.append((list(prompts), list(completions), dict(columns)))
        return out


def args(cls, out: str, **kw):
    """A TRL config for tiny CPU runs (float32, no checkpointing, no saving, no reports)."""
    base = dict(output_dir=out, per_device_train_batch_size=4, max_steps=2, learning_rate=1e-3,
                lr_scheduler_type="constant", bf16=False, use_cpu=True, report_to="none",
                save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0,
                activation_checkpointing=False)
    return cls(**{**base, **kw})


def sampled_batches(tr) -> list[list[str]]:
    """The problem ids of each generation batch the trainer draws, filled as it trains (a spy
    on its sampler's draws)."""
    out: list[list[str]] = []
    real = tr._get_train_sampler

    def sampler(*a, **kw):
        s = real(*a, **kw)
        draw = s.next_batch

        def spy():
            batch = draw()
            out.append([s.state.ids[i] for i in batch])
            return batch

        s.next_batch = spy
        return s

    tr._get_train_sampler = sampler
    return out
