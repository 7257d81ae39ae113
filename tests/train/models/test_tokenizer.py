"""Character tokenizer: roundtrip, specials, serialisation, errors naming the culprit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paced_theory.errors import ConfigError, InputError
from paced_train.models.tokenizer import (
    DEFAULT_CHARS,
    CharTokenizer,
    check_same_vocab,
    default_tokenizer,
)

TOK = default_tokenizer()


@settings(deadline=None, max_examples=200)
@given(st.text(alphabet=DEFAULT_CHARS, max_size=40))
def test_roundtrip(text):
    ids = TOK.encode(text)
    assert TOK.decode(ids) == text and len(ids) == len(text)
    assert all(i >= 3 for i in ids)  # characters never collide with the specials
    assert TOK.encode_prompt(text) == [TOK.bos_id, *ids]


def test_specials_and_vocab():
    assert (TOK.pad_id, TOK.bos_id, TOK.eos_id) == (0, 1, 2)
    assert TOK.vocab_size == 3 + len(DEFAULT_CHARS) == 99
    for ch in "0123456789+*=<>,cmp \nAZ?#":
        assert ch in DEFAULT_CHARS
    ids = TOK.encode("12+34=")
    # decode stops at eos and drops pad/bos
    assert TOK.decode([TOK.bos_id, *ids, TOK.pad_id, TOK.eos_id, *TOK.encode("9")]) == "12+34="
    assert len({TOK.decode([i]) for i in range(3, TOK.vocab_size)}) == TOK.vocab_size - 3


def test_serialisation():
    t = CharTokenizer("abc+")
    back = CharTokenizer.from_dict(t.to_dict())
    assert back == t and back.encode("a+c") == t.encode("a+c") and back != TOK
    assert CharTokenizer.from_dict(TOK.to_dict()) == TOK
    for bad in [{}, {"kind": "bpe", "chars": "ab"}, {"kind": "char"}, {"kind": "char", "chars": 3}]:
        with pytest.raises(InputError):
            CharTokenizer.from_dict(bad)
    for bad in ["", "aa"]:
        with pytest.raises(ConfigError):
            CharTokenizer(bad)


def test_unknown_character_is_named():
    with pytest.raises(InputError, match="'€'"):
        TOK.encode("1€2")
    with pytest.raises(InputError, match=r"'\\t'"):
        TOK.encode("1\t2")
    with pytest.raises(InputError, match="'é'"):
        TOK.encode_prompt("café")


def test_check_same_vocab():
    check_same_vocab(TOK, default_tokenizer())
    with pytest.raises(ConfigError, match="teacher vocabulary has 99 .* student has 13"):
        check_same_vocab(TOK, CharTokenizer("0123456789"))
    with pytest.raises(ConfigError, match="big and small .* differ at id 3"):
        check_same_vocab(TOK, CharTokenizer(DEFAULT_CHARS[::-1]), names=("big", "small"))

    class Other:  # any tokenizer with vocab_size and decode is compared id by id
        vocab_size = TOK.vocab_size

        def __init__(self, shift):
            self.shift = shift

        def decode(self, ids):
            return TOK.decode([(i + self.shift) % TOK.vocab_size for i in ids])

    check_same_vocab(Other(0), TOK)
    with pytest.raises(ConfigError, match="different strings"):
        check_same_vocab(Other(1), TOK)
