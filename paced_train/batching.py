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


def completion_index(prompts: list[list[int]], completions: list[list[int]],
                     device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(index, mask), each (B, C) with C the longest completion: index[i, j] is the position
    of pack()'s x whose logits predict completion token j of row i (0 past the row's end,
    where mask is 0). With it, two packings of the same completions behind DIFFERENT prompts
    (a teacher with privileged context) are scored token for token: pass it to a model's
    forward as `positions` to get logits (B, C, V) at those positions only."""
    C = max(len(c) for c in completions)
    index = torch.zeros(len(prompts), C, dtype=torch.long)
    mask = torch.zeros(len(prompts), C)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        index[i, : len(c)] = torch.arange(len(p) - 1, len(p) + len(c) - 1)
        mask[i, : len(c)] = 1.0
    return index.to(device), mask.to(device)

