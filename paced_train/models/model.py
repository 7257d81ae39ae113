"""A minimal GPT: pre-norm blocks, F.scaled_dot_product_attention, learned positions, tied
input/output embeddings, a KV cache for generation, batched sampling with temperature and
top-p from an explicit torch.Generator.

Prompts of different lengths share one generation batch by LEFT padding: every row gets
positions 0, 1, ... counted from its own first real token and an attention mask that hides
the padding, so a batched greedy decode equals decoding each prompt alone (tested).
Training batches are RIGHT padded (prompt + completion + pads, see batching.py): under causal
attention trailing pads cannot affect earlier tokens, so training needs no mask.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from paced_theory.errors import InputError

ASSETS = Path(__file__).parents[1] / "assets"  # paced_train/assets, package data


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0


class Block(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.n_head = c.n_head
        self.ln1, self.ln2 = nn.LayerNorm(c.n_embd), nn.LayerNorm(c.n_embd)
        self.qkv = nn.Linear(c.n_embd, 3 * c.n_embd, bias=False)
        self.proj = nn.Linear(c.n_embd, c.n_embd, bias=False)
        self.mlp = nn.Sequential(nn.Linear(c.n_embd, 4 * c.n_embd, bias=False), nn.GELU(),
                                 nn.Linear(4 * c.n_embd, c.n_embd, bias=False))
        self.dropout = c.dropout

    def forward(self, x, mask=None, cache=None):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is not None:  # append this step's keys/values to the cache
            if cache.get("k") is not None:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        drop = self.dropout if self.training else 0.0
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=drop)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.head.weight = self.wte.weight  # weight tying
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - (self.wpe.weight.numel() + self.wte.weight.numel() if non_embedding else 0)

    def forward(self, idx, attn_mask=None, pos=None, caches=None, positions=None):
        """Logits (B, T, V) for token ids idx (B, T).
        attn_mask: None (plain causal attention), or (B, S) with 1 for real tokens and 0 for
        padding over all S keys seen so far (cached + these T); pos: (B, T) position ids
        (default 0..T-1); caches: one dict per block, filled and extended in place;
        positions: (B, C) indices into T -> logits (B, C, V) at those positions only (the
        output head, the widest matrix, then runs on the scored tokens alone)."""
        B, T = idx.shape
        if pos is None:
            pos = torch.arange(T, device=idx.device).expand(B, T)
        if int(pos.max()) >= self.config.block_size:
            raise InputError(f"sequence of {int(pos.max()) + 1} tokens exceeds the model's "
                             f"block_size {self.config.block_size}")
        x = self.wte(idx) + self.wpe(pos)
        mask = None
        if attn_mask is not None:
            keys = attn_mask.bool()  # (B, S) over all keys (cached + new)
            S = keys.shape[1]
            causal = torch.ones(T, S, dtype=torch.bool, device=idx.device).tril(S - T)
            mask = (causal[None] & keys[:, None, :])[:, None]  # (B, 1, T, S)
            # a fully masked row (left padding attending to nothing) would give NaN: let pads
            # attend to themselves; their outputs are never used
            self_key = torch.zeros(T, S, dtype=torch.bool, device=idx.device)
            self_key[torch.arange(T), S - T + torch.arange(T)] = True
            mask = mask | self_key[None, None]
        for i, block in enumerate(self.blocks):
            x = block(x, mask, None if caches is None else caches[i])
        x = self.ln_f(x)
        if positions is not None:
            x = x.gather(1, positions.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        return self.head(x)

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], max_new_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, generator: torch.Generator | None = None, eos_id: int = 2,
                 pad_id: int = 0) -> list[list[int]]:
        """Completions (without the prompt; eos included when produced, nothing after it) for
        a batch of prompts. temperature 0 is greedy decoding; otherwise each token is drawn
        from softmax(logits / temperature) restricted to the top-p nucleus, with `generator`
        as the only source of randomness. One prompt pass fills the KV cache, then each new
        token costs one single-position forward pass. A prompt repeated in the batch (the K
        rollouts of one problem) is prefilled once and its cache copied to its rows (the
        same values; K times less prompt work). Generation stops at the block size."""
        if temperature < 0 or not 0.0 < top_p <= 1.0:
            raise InputError(f"generate: need temperature >= 0 and 0 < top_p <= 1 "
                             f"(got temperature={temperature}, top_p={top_p})")
        if not prompts:
            return []
        if min(len(p) for p in prompts) == 0:
            raise InputError("generate: every prompt needs at least one token (e.g. <bos>)")
        device = self.wte.weight.device
        B, L = len(prompts), max(len(p) for p in prompts)
        max_new_tokens = min(max_new_tokens, self.config.block_size - L)
        first: dict[tuple, int] = {}
        inverse = [first.setdefault(tuple(p), len(first)) for p in prompts]
        U = len(first)
        idx = torch.full((U, L), pad_id, dtype=torch.long, device=device)
        mask = torch.zeros(U, L, dtype=torch.long, device=device)
        for i, p in enumerate(first):
            idx[i, L - len(p):] = torch.tensor(p, device=device)
            mask[i, L - len(p):] = 1
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        caches = [{} for _ in self.blocks]
        logits = self(idx, attn_mask=mask, pos=pos, caches=caches)[:, -1]
        if U < B:  # copy each distinct prompt's cache and logits to its rows
            inv = torch.tensor(inverse, device=device)
            logits, mask, pos = logits[inv], mask[inv], pos[inv]
            for c in caches:
                c["k"], c["v"] = c["k"][inv], c["v"][inv]
        out = torch.full((B, max(max_new_tokens, 0)), pad_id, dtype=torch.long, device=device)
        done = torch.zeros(B, dtype=torch.bool, device=device)
        length = torch.zeros(B, dtype=torch.long, device=device)  # tokens kept per row
        next_pos = pos[:, -1] + 1
        for t in range(max_new_tokens):
            tok = sample_next(logits.float(), temperature, top_p, generator)
            tok = torch.where(done, torch.full_like(tok, pad_id), tok)  # finished rows idle
            out[:, t] = tok
            length += (~done).long()
            done |= tok == eos_id
            if bool(done.all()) or t == max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype, device=device)], 1)
            logits = self(tok[:, None], attn_mask=mask, pos=next_pos[:, None], caches=caches)[:, -1]
            next_pos = next_pos + 1
        return [row[:n] for row, n in zip(out.tolist(), length.tolist())]


def sample_next(logits, temperature: float, top_p: float, generator=None):
    """One token per row of logits (B, V): argmax if temperature == 0, else a draw from
    softmax(logits / temperature) restricted to the nucleus, the smallest set of most likely
    tokens whose mass reaches top_p, renormalised (Holtzman et al., 2020)."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sp, si = probs.sort(dim=-1, descending=True)
        keep = sp.cumsum(-1) - sp < top_p  # smallest prefix with mass >= top_p
        sp = sp * keep
        probs = torch.zeros_like(probs).scatter(-1, si, sp)
        probs = probs / probs.sum(-1, keepdim=True)
    if generator is not None and generator.device != probs.device:
        u = torch.rand(probs.shape[0], 1, generator=generator).to(probs.device)
    else:
        u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device)
    # inverse-CDF sampling with our own uniform draws (deterministic under the generator):
    # the first index whose cdf exceeds u * total, which always has positive probability
    cdf = probs.cumsum(-1)
    return (cdf <= u * cdf[:, -1:]).sum(-1).clamp(max=probs.shape[-1] - 1)


# ------------------------------------------------------------------------ save / load
def save_model(path, model: GPT, tokenizer, meta: dict | None = None, half: bool = True) -> None:
    """safetensors with the config, tokenizer and meta in its metadata; fp16 storage by
    default (a few MB for the shipped models). Written atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous().cpu()
             for k, v in model.state_dict().items() if k != "head.weight"}  # tied to wte
    md = {"config": json.dumps(asdict(model.config)), "tokenizer": json.dumps(tokenizer.to_dict()),
          "meta": json.dumps(meta or {})}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata=md)
    tmp.replace(path)


def load_model(path, device="cpu"):
    """(model, tokenizer, meta) from a file written by save_model (float32 weights)."""
    from safetensors import SafetensorError, safe_open

    from paced_train.models.tokenizer import CharTokenizer

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="pt") as f:
            md = f.metadata() or {}
            state = {k: f.get_tensor(k).float() for k in f.keys()}
        config = GPTConfig(**json.loads(md["config"]))
        tok = CharTokenizer.from_dict(json.loads(md["tokenizer"]))
        meta = json.loads(md.get("meta", "{}"))
    except (KeyError, ValueError, OSError, RuntimeError, SafetensorError) as exc:
        raise InputError(f"{path}: not a paced model file ({exc})") from None
    model = GPT(config)
    state["head.weight"] = state["wte.weight"]
    model.load_state_dict(state)
    return model.to(device).eval(), tok, meta


def shipped_path(name: str) -> Path:
    """paced_train/assets/<name>.safetensors for name in {teacher, student} (see its README)."""
    if name not in ("teacher", "student"):
        raise InputError(f"no shipped model {name!r}; use teacher or student")
    return ASSETS / f"{name}.safetensors"
