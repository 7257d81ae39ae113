"""A character tokenizer shared by teacher and student.

Special ids: 0 <pad>, 1 <bos>, 2 <eos>; then one id per character. The vocabulary is saved
with every model (in the safetensors metadata) and a teacher/student pair must match.
"""

from __future__ import annotations

from paced_theory.errors import ConfigError, InputError

SPECIALS = ("<pad>", "<bos>", "<eos>")
DEFAULT_CHARS = "0123456789+*=<>,:? abcdefghijklmnopqrstuvwxyz"


class CharTokenizer:
    def __init__(self, chars: str = DEFAULT_CHARS):
        if len(set(chars)) != len(chars):
            raise ConfigError("tokenizer: duplicate characters in the vocabulary")
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
            raise InputError(f"tokenizer: character {exc.args[0]!r} is not in the vocabulary "
                             f"{self.chars!r}") from None

    def encode_prompt(self, text: str) -> list[int]:
        """The model input for a prompt: <bos> + characters (HF tokenizers add a chat template)."""
        return [self.bos_id, *self.encode(text)]

    def decode(self, ids) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in self.itos:
                out.append(self.itos[i])
        return "".join(out)

    def to_dict(self) -> dict:
        return {"kind": "char", "chars": self.chars}

    @classmethod
    def from_dict(cls, d: dict) -> CharTokenizer:
        if d.get("kind") != "char" or "chars" not in d:
            raise InputError(f"tokenizer: not a character tokenizer description: {d!r}")
        return cls(d["chars"])

    def __eq__(self, other) -> bool:
        return isinstance(other, CharTokenizer) and other.chars == self.chars


def default_tokenizer() -> CharTokenizer:
    return CharTokenizer(DEFAULT_CHARS)


def check_same_vocab(a, b, names=("teacher", "student")) -> None:
    """Teacher and student must share a vocabulary, or token-level KL compares different
    things. Works for CharTokenizer and anything with vocab_size + decode."""
    if a.vocab_size != b.vocab_size:
        raise ConfigError(f"{names[0]} vocabulary has {a.vocab_size} tokens but {names[1]} has "
                          f"{b.vocab_size}; distillation needs one shared vocabulary")
    if isinstance(a, CharTokenizer) and isinstance(b, CharTokenizer) and a != b:
        raise ConfigError(f"{names[0]} and {names[1]} character vocabularies differ "
                          f"({a.chars!r} vs {b.chars!r})")
    probe = range(min(a.vocab_size, 200))
    if any(a.decode([i]) != b.decode([i]) for i in probe):
        raise ConfigError(f"{names[0]} and {names[1]} map token ids to different strings")
