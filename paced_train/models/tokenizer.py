"""A character tokenizer shared by teacher and student.

Ids 0 <pad>, 1 <bos>, 2 <eos>, then one id per character of printable ASCII plus newline, so a
user's JSONL problems encode too (the shipped models only ever saw digits, "+*=<>,", "cmp"
and a space; the other embeddings stay near their initialisation). The vocabulary is saved
with every model, in the safetensors metadata, and distillation checks that teacher and
student share it: a token-level KL between two different vocabularies compares nothing.
"""

from __future__ import annotations

import string

from paced_theory.errors import ConfigError, InputError

SPECIALS = ("<pad>", "<bos>", "<eos>")
DEFAULT_CHARS = "".join(c for c in string.printable if c not in "\t\r\x0b\x0c")  # 95 + "\n"


class CharTokenizer:
    """encode: str -> ids (no specials); decode: ids -> str, stopping at <eos> and skipping
    <pad>/<bos>; encode_prompt: <bos> + encode(text), the model input for a prompt."""

    def __init__(self, chars: str = DEFAULT_CHARS):
        if not chars or len(set(chars)) != len(chars):
            raise ConfigError(f"tokenizer: the character list must be non-empty and without "
                              f"duplicates (got {chars!r})")
        self.chars = chars
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2
        self.stoi = {c: i + len(SPECIALS) for i, c in enumerate(chars)}
        self.itos = {i: c for c, i in self.stoi.items()}

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as exc:
            raise InputError(f"tokenizer: character {exc.args[0]!r} (in {text[:60]!r}) is not "
                             f"in the vocabulary; use only printable ASCII characters") from None

    def encode_prompt(self, text: str) -> list[int]:
        return [self.bos_id, *self.encode(text)]

    def decode(self, ids) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in self.itos:  # pad and bos decode to nothing
                out.append(self.itos[i])
        return "".join(out)

    def to_dict(self) -> dict:
        return {"kind": "char", "chars": self.chars}

    @classmethod
    def from_dict(cls, d: dict) -> CharTokenizer:
        ok = isinstance(d, dict) and d.get("kind") == "char" and isinstance(d.get("chars"), str)
        if not ok:
            raise InputError(f"tokenizer: not a character tokenizer description: {d!r}")
        return cls(d["chars"])

    def __eq__(self, other) -> bool:
        return isinstance(other, CharTokenizer) and other.chars == self.chars

    def __hash__(self) -> int:
        return hash(self.chars)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def default_tokenizer() -> CharTokenizer:
    return CharTokenizer(DEFAULT_CHARS)


def check_same_vocab(a, b, names=("teacher", "student")) -> None:
    """Raise ConfigError unless tokenizers a and b map every id to the same string (same
    size, same specials, same characters in the same order). Works for CharTokenizer and for
    anything with vocab_size and decode."""
    if a.vocab_size != b.vocab_size:
        raise ConfigError(f"{names[0]} vocabulary has {a.vocab_size} tokens but {names[1]} has "
                          f"{b.vocab_size}; distillation needs one shared vocabulary")
    if isinstance(a, CharTokenizer) and isinstance(b, CharTokenizer):
        if a != b:
            bad = next(i for i, (x, y) in enumerate(zip(a.chars, b.chars)) if x != y)
            raise ConfigError(f"{names[0]} and {names[1]} character vocabularies differ at id "
                              f"{bad + len(SPECIALS)} ({a.chars[bad]!r} vs {b.chars[bad]!r}); "
                              f"retrain one of them with the other's tokenizer")
        return
    if any(a.decode([i]) != b.decode([i]) for i in range(min(a.vocab_size, 200))):
        raise ConfigError(f"{names[0]} and {names[1]} map token ids to different strings")
