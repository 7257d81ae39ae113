"""A stand-in model for generation tests: answers add problems right, everything else wrong,
and records the prompts of every generate() call."""

from __future__ import annotations

import torch

from paced_train.tasks import target_text


class ScriptedModel(torch.nn.Module):
    """A stand-in model for evaluate(): answers add problems right, everything else wrong."""

    def __init__(self, tok, problems):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.tok, self.by_prompt = tok, {tuple(tok.encode_prompt(p.prompt)): p for p in problems}
        self.calls: list[list[list[int]]] = []

    def generate(self, prompts, max_new_tokens, **kw):
        self.calls.append([list(p) for p in prompts])
        out = []
        for pr in prompts:
            p = self.by_prompt[tuple(pr)]
            text = target_text(p) if p.skill == "add" else "x"
            out.append(self.tok.encode(text) + [self.tok.eos_id])
        return out
