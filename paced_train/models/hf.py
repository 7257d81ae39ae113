"""Local Hugging Face models (a directory or a GGUF file) as PACED students and teachers.

The trainer only needs what our minimal GPT offers (paced_train/models/model.py):
  model.forward(idx, attn_mask=None, pos=None) -> logits (B, T, V)
  model.generate(prompts, max_new_tokens, temperature, top_p, generator, eos_id, pad_id)
      -> completions without the prompt, eos included when produced
  tok.encode / encode_prompt / decode, tok.pad_id / bos_id / eos_id / vocab_size
This module wraps any AutoModelForCausalLM and its tokenizer behind exactly that interface,
so `[models] student = "path/to/dir"` (or a `.gguf` file, or "smollm2") needs no other change.

Nothing here touches the network: every load is `local_files_only=True` with HF_HUB_OFFLINE
set, and a path that is not a model raises InputError naming it. `transformers` is imported
lazily (it is the optional `hf` extra), so the tiny-GPT path never pays for it.

Why our own decoding loop instead of `model.generate`: the trainer's sampling must be
reproducible from one torch.Generator (checkpointed with the run), and must mean exactly
what it means for our GPT (temperature 0 = greedy, nucleus top-p, inverse-CDF draws). The
loop reuses paced_train.models.model.sample_next and the HF key/value cache.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from paced_theory.errors import ConfigError, InputError

_INSTALL_HINT = "install the Hugging Face extra: pip install -e '.[hf]'"


# ------------------------------------------------------------------------------ tokenizer
class HFTokenizer:
    """A transformers tokenizer with the CharTokenizer interface.

    encode(text)         the text's tokens, no special tokens added
    encode_prompt(text)  the model input for a problem: the chat template (one user turn plus
                         the assistant header) when the tokenizer has one and chat=True, else
                         [bos] + encode(text) (bos only if the tokenizer has one)
    decode(ids)          text up to the first eos, special tokens dropped
    pad_id               the tokenizer's pad token, else eos (pads are always masked or cut)
    vocab_size           the size V of the model's logits when known (load_hf passes it; it
                         can exceed len(tokenizer) when embeddings are padded), else the
                         number of tokens. Teacher and student must agree on it for a
                         token-level KL to compare the same things.
    Batched generation is left-padded by HFCausalLM.generate itself (prompts are lists of ids).
    """

    def __init__(self, hf_tokenizer, vocab_size: int | None = None, chat: bool = True,
                 name: str = ""):
        self.hf = hf_tokenizer
        self.name = name
        eos = hf_tokenizer.eos_token_id
        if eos is None:
            raise InputError(f"{name or 'tokenizer'}: the tokenizer defines no eos token; "
                             "generation could not stop. Set eos_token in tokenizer_config.json")
        self.eos_id = int(eos)
        pad = hf_tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.eos_id
        bos = hf_tokenizer.bos_token_id
        self.bos_id = int(bos) if bos is not None else None
        self.n_tokens = len(hf_tokenizer)
        self.vocab_size = int(vocab_size) if vocab_size is not None else self.n_tokens
        self.chat = bool(chat) and bool(getattr(hf_tokenizer, "chat_template", None))

    def encode(self, text: str) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=False))

    def encode_prompt(self, text: str) -> list[int]:
        if self.chat:
            rendered = self.hf.apply_chat_template([{"role": "user", "content": text}],
                                                   add_generation_prompt=True, tokenize=False)
            return self.encode(rendered)  # the template already holds its special tokens
        ids = self.encode(text)
        return ids if self.bos_id is None else [self.bos_id, *ids]

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        ids = [i for i in ids if 0 <= i < self.n_tokens]  # padded logit rows have no token
        return self.hf.decode(ids, skip_special_tokens=True)

    def tokens(self, ids) -> list[str | None]:
        """The raw token strings of ids (None beyond the tokenizer's table)."""
        ids = [int(i) for i in ids]
        inside = [i for i in ids if i < self.n_tokens]
        strs = dict(zip(inside, self.hf.convert_ids_to_tokens(inside)))
        return [strs.get(i) for i in ids]


def check_same_vocab(a, b, names=("teacher", "student"), n_sample: int = 1024,
                     seed: int = 0) -> None:
    """ConfigError unless two tokenizers map token ids to the same strings.

    Token-level distillation compares the teacher's and the student's distributions over
    the same V ids, so the ids must mean the same tokens. For Hugging Face tokenizers we
    compare the logit size V, the number of tokens, the eos id, and the token strings of the
    first and last 128 ids plus a seeded random sample of n_sample ids (a full comparison of
    a 150k vocabulary costs seconds; a shifted or different vocabulary fails the sample).
    Any other pair (our CharTokenizer) goes to paced_train.models.tokenizer.check_same_vocab.
    Ours: a sampled consistency check, not a proof of identity.
    """
    from paced_train.models.tokenizer import check_same_vocab as check_char

    if not (isinstance(a, HFTokenizer) and isinstance(b, HFTokenizer)):
        if isinstance(a, HFTokenizer) != isinstance(b, HFTokenizer):
            raise ConfigError(f"{names[0]} and {names[1]} use different kinds of tokenizer "
                              f"({type(a).__name__} vs {type(b).__name__}); distillation needs "
                              "one shared vocabulary")
        check_char(a, b, names)
        return
    if a.vocab_size != b.vocab_size:
        raise ConfigError(f"{names[0]} has {a.vocab_size} logits per token but {names[1]} has "
                          f"{b.vocab_size}; distillation needs one shared vocabulary")
    if a.n_tokens != b.n_tokens:
        raise ConfigError(f"{names[0]} tokenizer has {a.n_tokens} tokens but {names[1]}'s has "
                          f"{b.n_tokens}; distillation needs one shared vocabulary")
    if a.eos_id != b.eos_id:
        raise ConfigError(f"{names[0]} ends sequences with token {a.eos_id} but {names[1]} "
                          f"with {b.eos_id}; use one tokenizer for both")
    n = a.n_tokens
    rng = np.random.default_rng(seed)
    ids = np.unique(np.concatenate([np.arange(min(n, 128)), np.arange(max(n - 128, 0), n),
                                    rng.integers(0, n, size=min(n_sample, n))]))
    sa, sb = a.tokens(ids.tolist()), b.tokens(ids.tolist())
    for i, x, y in zip(ids.tolist(), sa, sb):
        if x != y:
            raise ConfigError(f"{names[0]} and {names[1]} map token id {i} to different strings "
                              f"({x!r} vs {y!r}); distillation needs one shared vocabulary")


# ---------------------------------------------------------------------------------- model
class HFCausalLM(nn.Module):
    """An AutoModelForCausalLM with the GPT interface of paced_train.models.model.

    forward(idx, attn_mask=None, pos=None) -> logits (B, T, V)
      attn_mask (B, T): 1 on real tokens. With left padding every row's positions are counted
      from its first real token, pos = cumsum(mask) - 1, so a padded row gets exactly the
      logits it would get alone. Right-padded training batches need no mask (causal
      attention: trailing pads cannot change earlier positions), as for our GPT.
    generate(...) -> list of completions; see the method.
    """

    def __init__(self, hf_model, name: str = ""):
        super().__init__()
        self.hf = hf_model
        self.name = name
        cfg = hf_model.config
        self.max_positions = int(getattr(cfg, "max_position_embeddings", 0) or 0) or None
        gen_cfg = getattr(hf_model, "generation_config", None)
        eos = getattr(gen_cfg, "eos_token_id", None) if gen_cfg is not None else None
        eos = eos if eos is not None else getattr(cfg, "eos_token_id", None)
        # chat models often have several end tokens (e.g. <|im_end|> and <|endoftext|>)
        self.stop_ids = set() if eos is None else {int(e) for e in np.atleast_1d(eos)}

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters (tied weights counted once), minus the input embedding by default:
        the N of the ledger's 2N FLOPs per token, as for our GPT."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.hf.get_input_embeddings().weight.numel()
        return n

    def forward(self, idx, attn_mask=None, pos=None, positions=None):
        """Logits (B, T, V); with positions (B, C), logits (B, C, V) at those positions only:
        the decoder's hidden states are gathered before the output head where the model is
        a plain decoder + head (no logit soft-capping or scaling), else the full logits are
        gathered (same values, more work)."""
        if attn_mask is not None and pos is None:
            pos = (attn_mask.long().cumsum(1) - 1).clamp(min=0)
        kw = dict(input_ids=idx, attention_mask=attn_mask, position_ids=pos, use_cache=False)
        if positions is None:
            return self.hf(**kw).logits
        head, decoder = self._head_and_decoder()
        if head is None:
            logits = self.hf(**kw).logits
            return logits.gather(1, positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
        h = decoder(**kw).last_hidden_state
        return head(h.gather(1, positions.unsqueeze(-1).expand(-1, -1, h.shape[-1])))

    def _head_and_decoder(self):
        """(output head, decoder) when logits are exactly head(decoder(x)), else (None, None)."""
        cfg = self.hf.config
        if any(getattr(cfg, k, None) not in (None, 1.0) for k in
               ("final_logit_softcapping", "logit_scale", "output_multiplier_scale")):
            return None, None
        get_dec = getattr(self.hf, "get_decoder", None)
        decoder = get_dec() if callable(get_dec) else None
        head = self.hf.get_output_embeddings()
        if decoder is None or decoder is self.hf or not isinstance(head, nn.Linear):
            return None, None
        return head, decoder

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], max_new_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, generator: torch.Generator | None = None, eos_id: int = 2,
                 pad_id: int = 0) -> list[list[int]]:
        """Completions (without the prompt, the stop token included when produced).

        Prompts are left-padded into one batch; each step feeds one token per unfinished row
        through the HF key/value cache, and rows stop at eos_id (or any of the model's own
        end tokens, `stop_ids`). Two savings that do not change what is computed: a prompt
        repeated in the batch (the K rollouts of one problem) is prefilled once and its cache
        copied, and finished rows are dropped from the batch and the cache, so a short answer
        does not pay for the longest one. Sampling is paced_train.models.model's sample_next
        (temperature 0 = greedy; top-p nucleus; one uniform draw per unfinished row per step
        from `generator`), so a seed fixes the output.
        """
        from paced_train.models.model import sample_next

        if not prompts:
            return []
        if min(len(p) for p in prompts) == 0:
            raise InputError("generate: an empty prompt; encode_prompt gives at least one token")
        device = self.device
        B, L = len(prompts), max(len(p) for p in prompts)
        if self.max_positions is not None:
            max_new_tokens = min(max_new_tokens, self.max_positions - L)
        result: list[list[int]] = [[] for _ in range(B)]
        if max_new_tokens <= 0:
            return result
        first: dict[tuple, int] = {}
        inverse = torch.tensor([first.setdefault(tuple(p), len(first)) for p in prompts],
                               device=device)
        unique = [list(p) for p in first]
        cache, logits, mask, pos = self._prefill(unique, L, pad_id)
        if _selectable(cache):
            if len(unique) < B:  # copy each distinct prompt's cache to its rows
                cache.batch_select_indices(inverse)
                logits, mask, pos = logits[inverse], mask[inverse], pos[inverse]
        elif len(unique) < B:  # a cache we cannot index (e.g. recurrent layers): prefill all
            cache, logits, mask, pos = self._prefill(prompts, L, pad_id)
        prune = _selectable(cache)
        stop = torch.tensor(sorted(self.stop_ids | {int(eos_id)}), device=device)
        rows = torch.arange(B, device=device)  # batch row -> prompt index
        done = torch.zeros(B, dtype=torch.bool, device=device)
        next_pos = pos[:, -1] + 1
        for t in range(max_new_tokens):
            tok = sample_next(logits.float(), temperature, top_p, generator)
            if not prune:  # finished rows keep a slot; they are fed pads and ignored
                tok = torch.where(done, torch.full_like(tok, pad_id), tok)
            for r, k, d in zip(rows.tolist(), tok.tolist(), done.tolist()):
                if not d:
                    result[r].append(k)
            done = done | torch.isin(tok, stop)
            if t == max_new_tokens - 1 or bool(done.all()):
                break
            if prune and bool(done.any()):  # drop finished rows from the batch and the cache
                keep = (~done).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                rows, tok, mask, next_pos, done = (rows[keep], tok[keep], mask[keep],
                                                   next_pos[keep], done[keep])
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            out = self.hf(input_ids=tok[:, None], attention_mask=mask,
                          position_ids=next_pos[:, None], past_key_values=cache, use_cache=True)
            cache, logits = out.past_key_values, out.logits[:, -1]
            next_pos = next_pos + 1
        return result

    def _prefill(self, prompts: list[list[int]], L: int, pad_id: int):
        """Run left-padded prompts (padded to length L) through the model: (cache, last
        logits (B, V), mask (B, L), positions (B, L))."""
        device = self.device
        B = len(prompts)
        idx = torch.full((B, L), pad_id, dtype=torch.long, device=device)
        mask = torch.zeros(B, L, dtype=torch.long, device=device)
        for i, p in enumerate(prompts):
            idx[i, L - len(p):] = torch.tensor(p, dtype=torch.long, device=device)
            mask[i, L - len(p):] = 1
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        out = self.hf(input_ids=idx, attention_mask=mask, position_ids=pos, use_cache=True,
                      logits_to_keep=1)
        return out.past_key_values, out.logits[:, -1], mask, pos


def _selectable(cache) -> bool:
    """True for a plain key/value cache whose batch rows we may copy or drop."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    return isinstance(cache, DynamicCache) and all(
        isinstance(layer, DynamicLayer) for layer in getattr(cache, "layers", [None]))


# ---------------------------------------------------------------------------------- loading
def _transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before the first import reads it
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers
    except ImportError:
        raise ConfigError(f"Hugging Face models need transformers and gguf; {_INSTALL_HINT}") \
            from None
    return transformers


def _resolve(path: Path) -> tuple[Path, str | None]:
    """(directory, gguf file name or None) for a model directory or a .gguf file."""
    if not path.exists():
        raise InputError(f"{path}: no such file or directory (expected a Hugging Face model "
                         "directory with config.json, or a .gguf file)")
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise InputError(f"{path}: not a model (expected a Hugging Face model directory "
                             "with config.json, or a .gguf file)")
        return path.parent, path.name
    if (path / "config.json").is_file():
        return path, None
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return path, ggufs[0].name
    raise InputError(f"{path}: not a Hugging Face model directory (no config.json"
                     + (f"; it holds {len(ggufs)} .gguf files, name one" if ggufs else "")
                     + ")")


@contextlib.contextmanager
def _fast_gguf():
    """Speed up transformers' GGUF loading (about 2.5x for SmolLM2 on CPU) without changing
    what it computes: transformers builds a gguf.GGUFReader three times per load (config,
    tokenizer, weights), each parsing the whole vocabulary, and calls
    gguf.get_tensor_name_map once per module (hundreds of times) with the same arguments.
    Within this block both are memoised; the originals are restored on exit."""
    import gguf

    orig_reader, orig_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict = {}

    def reader(path, mode="r"):
        key = (str(path), mode)
        if key not in readers:
            readers[key] = orig_reader(path, mode)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = reader, functools.lru_cache(None)(orig_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = orig_reader, orig_map


def load_hf(path, device="cpu", dtype=None, chat: bool = True):
    """(HFCausalLM, HFTokenizer) from a local model directory (config.json + weights +
    tokenizer files) or a local .gguf file (dequantised by transformers to `dtype`).

    dtype: None = float32 (exact CPU arithmetic; pass torch.bfloat16 or "bfloat16" on GPU).
    chat: apply the tokenizer's chat template in encode_prompt when it has one.
    Never downloads: local_files_only=True and HF_HUB_OFFLINE=1.
    """
    path = Path(path).expanduser()
    directory, gguf = _resolve(path)
    tf = _transformers()
    if gguf is not None:
        try:
            import gguf as _gguf  # noqa: F401  (transformers needs it for .gguf files)
        except ImportError:
            raise ConfigError(f"{path}: reading .gguf files needs the gguf package; "
                              f"{_INSTALL_HINT}") from None
    if dtype is None:
        dtype = torch.float32
    elif isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise InputError(f"dtype {dtype!r} is not a torch dtype (use float32, bfloat16, "
                             "float16)")
        dtype = getattr(torch, dtype)
    kw = {"local_files_only": True}
    if gguf is not None:
        kw["gguf_file"] = gguf
    else:
        _refuse_pickled_weights(path, directory)
    with _fast_gguf() if gguf is not None else contextlib.nullcontext():
        try:
            hf_tok = tf.AutoTokenizer.from_pretrained(str(directory), **kw)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise InputError(f"{path}: cannot load a tokenizer from it "
                             f"({type(exc).__name__}: {_first_line(exc)})") from None
        try:
            hf_model = tf.AutoModelForCausalLM.from_pretrained(
                str(directory), dtype=dtype, **kw,
                **({} if gguf is not None else {"use_safetensors": True}))
        except (OSError, ValueError, KeyError, TypeError, RuntimeError,
                pickle.UnpicklingError) as exc:
            raise InputError(f"{path}: cannot load a causal language model from it "
                             f"({type(exc).__name__}: {_first_line(exc)})") from None
    hf_model.eval()
    model = HFCausalLM(hf_model.to(device), name=str(path))
    V = hf_model.get_output_embeddings().weight.shape[0]
    tok = HFTokenizer(hf_tok, vocab_size=V, chat=chat, name=str(path))
    return model.eval(), tok


PICKLED = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")  # torch.save / pickle weight files


def _refuse_pickled_weights(path: Path, directory: Path) -> None:
    """InputError when a model directory's weights are pickles only (pytorch_model.bin and
    the like, no .safetensors): unpickling runs code, and paced reads only data."""
    if any(directory.glob("*.safetensors")):
        return
    pickled = sorted(p.name for pattern in PICKLED for p in directory.glob(pattern))
    if pickled:
        raise InputError(f"{path}: its weights are pickled ({', '.join(pickled[:3])}) and "
                         "paced never unpickles (it can run code); convert them to "
                         ".safetensors, e.g. with transformers' save_pretrained("
                         "safe_serialization=True) on a machine where you trust the file")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"


def _is_paced_file(path: Path) -> bool:
    """True when a .safetensors file was written by paced_train.models.model.save_model (False for
    any other file, a corrupt one included: load_model then names what is wrong with it)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return "config" in (f.metadata() or {})
    except (OSError, ValueError, RuntimeError, SafetensorError):
        return False


def load_any(spec: str, device="cpu"):
    """(model, tokenizer, kind) for a [models] entry; kind is "gpt" or "hf".

      "shipped:student" | "shipped:teacher"  our shipped GPTs (paced_train/assets)
      path/to/model.safetensors              a GPT saved by paced_train.models.model.save_model
                                             (an HF weights file inside a directory with
                                             config.json loads that directory instead)
      path/to/dir (with config.json)         a local Hugging Face causal LM
      path/to/model.gguf                     a local GGUF file, dequantised
      "smollm2"                              SmolLM2-135M-Instruct from the local cache
                                             (`paced models fetch smollm2` puts it there)
    """
    from paced_train.models.model import load_model, shipped_path

    spec = str(spec).strip()
    if spec.startswith("shipped:"):
        model, tok, _ = load_model(shipped_path(spec.split(":", 1)[1]), device)
        return model, tok, "gpt"
    if spec.lower() == "smollm2":
        from paced_train.models.fetch import cached_smollm2

        path = cached_smollm2()
        if path is None:
            raise InputError("model 'smollm2' is not cached on this machine; run "
                             "`paced models fetch smollm2` (downloads about 93 MB once)")
        model, tok = load_hf(path, device)
        return model, tok, "hf"
    path = Path(spec).expanduser()
    if path.suffix == ".safetensors":
        if path.is_file() and not _is_paced_file(path) and (path.parent / "config.json").is_file():
            model, tok = load_hf(path.parent, device)
            return model, tok, "hf"
        model, tok, _ = load_model(path, device)
        return model, tok, "gpt"
    if path.is_dir() or path.suffix.lower() == ".gguf":
        model, tok = load_hf(path, device)
        return model, tok, "hf"
    raise InputError(f"model {spec!r}: not a known model (use shipped:student, shipped:teacher, "
                     "smollm2, a .safetensors file of ours, a Hugging Face model directory or "
                     "a .gguf file)")
