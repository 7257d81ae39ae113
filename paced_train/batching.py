"""Pack prompts and completions into right-padded training batches.

Logits at position t predict token t+1, so for a sequence s = prompt + completion we feed
x = s[:-1], score against y = s[1:], and `mask` marks the positions of x whose next token
is a completion token -- the only positions any loss in this package looks at.
"""

from __future__ import annotations

import torch


def pack(prompts: list[list[int]], completions: list[list[int]], pad_id: int,
         device="cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, y, mask), each (B, T-1); mask is float 1.0 on completion-predicting positions."""
    seqs = [p + c for p, c in zip(prompts, completions)]
    T = max(len(s) for s in seqs)
    full = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), T - 1)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        full[i, : len(p) + len(c)] = torch.tensor(p + c)
        mask[i, len(p) - 1 : len(p) + len(c) - 1] = 1.0
    return full[:, :-1].to(device), full[:, 1:].to(device), mask.to(device)
