"""Which of the student's parameters train ([trainable] in a config): all of them, the top N
transformer blocks, or LoRA adapters. Ours: the affordability choices of issue 20, each the
same for every arm of a comparison.

  mode = "all"   every parameter trains (the default; nothing here changes the model)
  mode = "top"   the last `top_blocks` transformer blocks and the final norm train; every
                 other parameter is frozen (requires_grad False: no gradient, and the trainer
                 gives the optimizer only trainable parameters, so no AdamW state either).
                 `head = true` also trains the output head, refused when the head is tied to
                 the input embedding (SmolLM2's is): the embedding's gradient would have to
                 run back through every block, which is what freezing them is meant to save.
  mode = "lora"  LoRA adapters (Hu et al. 2021) on the linear layers named in `lora_targets`
                 through Hugging Face `peft` (inject_adapter_in_model: the model object and
                 its class stay what they were, LlamaForCausalLM inside our HFCausalLM, so
                 forward, generation with the key/value cache and checkpoints need no
                 change); the base weights are frozen by peft. peft is an optional
                 dependency (the `lora` extra); without it this mode is a ConfigError.
                 At initialisation lora_B = 0, so the adapted model computes exactly the
                 base model's logits (tested). lora_A is drawn from a stream seeded by
                 run.seed, so a run is reproducible and a resumed run rebuilds the same
                 structure before its checkpoint overwrites the values.

configure() must run after the teacher is copied from the student (models.teacher = "self"):
the teacher is the plain initial model, never an adapted one.

The compute ledger (loop/ledger.py) charges a backward token 4 N (Kaplan et al.: 2 N for the
activation gradients, 2 N for the weight gradients). With frozen parameters both shrink, and
backward_flops_per_token() says by how much (ours, the same dense estimate):
    2 N_act + 2 N_w
N_act = the non-embedding parameters the gradient has to pass through: all of N minus the
blocks below the lowest block that holds a trainable parameter (autograd never enters them);
N_w = the trainable non-embedding parameters. All: 2N + 2N = 4N (unchanged). Top N blocks:
about 4 N_top. LoRA: 2 N + 2 N_lora (activation gradients still run through every block).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from paced_theory.errors import ConfigError

MODES = ("all", "top", "lora")
LORA_STREAM = 0x10A  # part of the adapters' seed (lora_seed): keep it
_PEFT_HINT = "install it with pip install -e '.[lora]' (or pip install peft)"


def blocks(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks of a student, bottom to top: our GPT's `blocks`, or the decoder
    layers of a Hugging Face model (HFCausalLM); ConfigError for anything else."""
    if isinstance(getattr(model, "blocks", None), nn.ModuleList):
        return list(model.blocks)
    hf = getattr(model, "hf", None)
    dec = hf.get_decoder() if hf is not None and callable(getattr(hf, "get_decoder", None)) \
        else None
    layers = getattr(dec, "layers", None)
    if isinstance(layers, nn.ModuleList):
        return list(layers)
    raise ConfigError(f"'trainable.mode': cannot find the transformer blocks of a "
                      f"{type(model).__name__} (expected our GPT's .blocks or a Hugging Face "
                      "decoder's .layers); use trainable.mode = 'all'")


def _final_norm(model: nn.Module) -> nn.Module | None:
    if isinstance(getattr(model, "ln_f", None), nn.Module):
        return model.ln_f
    hf = getattr(model, "hf", None)
    dec = hf.get_decoder() if hf is not None else None
    return getattr(dec, "norm", None)


def _head_and_embedding(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    hf = getattr(model, "hf", None)
    if hf is not None:
        return hf.get_output_embeddings(), hf.get_input_embeddings()
    return model.head, model.wte


def _embedding_params(model: nn.Module) -> set[int]:
    """ids of the input-embedding tensors (not in the ledger's N)."""
    _, emb = _head_and_embedding(model)
    out = {id(p) for p in emb.parameters()}
    wpe = getattr(model, "wpe", None)  # our GPT's learned positions
    if isinstance(wpe, nn.Module):
        out |= {id(p) for p in wpe.parameters()}
    return out


def configure(model: nn.Module, trainable, seed: int = 0) -> nn.Module:
    """Make only the parameters `trainable` (the config's [trainable] section) names
    trainable, in place; returns the model. mode "all" leaves it untouched."""
    mode = trainable.mode
    if mode == "all":
        return model
    if mode == "top":
        layers = blocks(model)
        n = trainable.top_blocks
        if not 1 <= n <= len(layers):
            raise ConfigError(f"'trainable.top_blocks' = {n}, but this student has "
                              f"{len(layers)} transformer blocks; choose 1..{len(layers)} "
                              "(or trainable.mode = 'all')")
        head, emb = _head_and_embedding(model)
        if trainable.head and head.weight is emb.weight:
            raise ConfigError("'trainable.head' = true, but this student ties its output head "
                              "to the input embedding: training it would backpropagate "
                              "through every block (no saving over trainable.mode = 'all'); "
                              "set trainable.head = false")
        model.requires_grad_(False)
        for block in layers[len(layers) - n:]:
            block.requires_grad_(True)
        norm = _final_norm(model)
        if norm is not None:
            norm.requires_grad_(True)
        if trainable.head:
            head.requires_grad_(True)
        return model
    if mode == "lora":
        return _inject_lora(model, trainable, seed)
    raise ConfigError(f"'trainable.mode' = {mode!r}; choose one of {', '.join(MODES)}")


def _inject_lora(model: nn.Module, trainable, seed: int) -> nn.Module:
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ConfigError(f"'trainable.mode' = 'lora' needs the peft package; {_PEFT_HINT}, "
                          "or use trainable.mode = 'top' or 'all'") from None
    targets = [t.strip() for t in trainable.lora_targets.split(",") if t.strip()]
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    missing = [t for t in targets if t not in names]
    if not targets or missing:
        raise ConfigError(f"'trainable.lora_targets' = {trainable.lora_targets!r}: no linear "
                          f"layer named {', '.join(missing) or '(empty list)'} in this "
                          f"student; its linear layers are {', '.join(sorted(names))}")
    cfg = LoraConfig(r=trainable.lora_rank, lora_alpha=trainable.lora_alpha,
                     target_modules=targets, lora_dropout=0.0, bias="none")
    target = getattr(model, "hf", model)  # inject into the HF model itself: same class after
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(lora_seed(seed))  # lora_A's kaiming draws
        inject_adapter_in_model(cfg, target)
    model.requires_grad_(False)
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.requires_grad_(True)
    return model


def lora_seed(seed: int) -> int:
    """The seed of the adapters' initial draws: a function of run.seed alone, independent of
    the loop's streams (loop/seeding.py; models/ does not import the loop)."""
    ss = np.random.SeedSequence([int(seed), LORA_STREAM])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the optimizer gets (each tensor once, tied weights included once)."""
    seen, out = set(), []
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def backward_flops_per_token(model: nn.Module, n_params: int) -> float:
    """FLOPs of one backward token: 2 N_act + 2 N_w (module docstring), with n_params the
    ledger's N (non-embedding parameters). 4 N when everything trains."""
    emb = _embedding_params(model)
    n_w = sum(p.numel() for p in trainable_parameters(model) if id(p) not in emb)
    layers = blocks(model) if not all(p.requires_grad for p in model.parameters()) else []
    below = 0  # non-embedding parameters of the blocks below the lowest trainable one
    if layers and not any(p.requires_grad for p in _head_and_embedding(model)[1].parameters()):
        for block in layers:
            if any(p.requires_grad for p in block.parameters()):
                break
            below += sum(p.numel() for p in block.parameters())
    return 2.0 * (n_params - below) + 2.0 * n_w


def describe(model: nn.Module, n_params: int) -> dict:
    """Trainable parameter count and the ledger's backward rate, for logs and benchmarks."""
    train = trainable_parameters(model)
    return {"trainable_params": sum(p.numel() for p in train),
            "optimizer_tensors": len(train),
            "backward_flops_per_token": backward_flops_per_token(model, n_params),
            "backward_vs_full": backward_flops_per_token(model, n_params) / (4.0 * n_params)}
