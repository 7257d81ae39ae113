"""Can SmolLM2's pass rates come from one teacher-forced forward (rollouts.source =
"likelihood") instead of K rollouts? Issue 20, affordability choice (d).

The likelihood source needs a task whose verifier accepts ONE completion string, tokenised
one way. The comparison's task (configs/smollm2/verdict/) is scored on the first number of a
free-form completion ("The number is 47." passes), which is not one string: its pass rate is
not a likelihood, and loop/likelihood.check_source refuses it (and any non-character
tokenizer). The nearest task that is one: "the completion STARTS with the answer's digits,
and the next token is not a digit" (a prefix rule). In SmolLM2's vocabulary the only tokens
holding a digit are the ten single digits (checked below), so that event has exactly one
token path, and its probability is exact from one forward pass (ours):

    P_prefix = prod_j p(d_j | prompt, d_<j)
               * (1 - sum over t digit or special (not eos) of p(t | prompt, d))

This script prints, per level of the pool, the mean P_prefix of the student (plain prompt)
and of the self-distillation teacher (the privileged prompt of the config), next to the
first-number pass rate of configs/smollm2/verdict/passrates.csv: whether the prefix task
spreads, and whether the teacher would pull the student towards it.

    PYTHONPATH=$PWD python bench/smollm2_likelihood_check.py [--per-level 24]
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from paced_train.config import load_config  # noqa: E402
from paced_train.loop.batching import completion_index, pack  # noqa: E402
from paced_train.models.hf import load_any  # noqa: E402
from paced_train.tasks import load_jsonl, privileged_prompt  # noqa: E402

POOL = ROOT / "configs" / "smollm2" / "verdict"


def digit_tokens(tok) -> tuple[list[int], list[int]]:
    """(ids of the tokens whose text contains a digit, those that are not one digit)."""
    texts = tok.hf.convert_ids_to_tokens(list(range(tok.n_tokens)))
    dec = [tok.hf.convert_tokens_to_string([t]) for t in texts]
    has = [i for i, t in enumerate(dec) if re.search(r"\d", t)]
    return has, [i for i in has if not re.fullmatch(r"\d", dec[i])]


@torch.no_grad()
def prefix_probability(model, tok, prompts: list[str], answers: list[str]) -> np.ndarray:
    digits = [tok.encode(str(d))[0] for d in range(10)]
    other_special = [i for i in tok.hf.all_special_ids if i != tok.eos_id]
    enc = [tok.encode_prompt(p) for p in prompts]
    comps = [tok.encode(a) + [tok.eos_id] for a in answers]
    x, _, _ = pack(enc, comps, tok.pad_id)
    idx, mask = completion_index(enc, comps)
    logp = torch.log_softmax(model(x, positions=idx).float(), -1)
    C = idx.shape[1]
    y = torch.tensor([c + [0] * (C - len(c)) for c in comps])
    picked = logp.gather(-1, y[..., None])[..., 0] * mask
    last = torch.tensor([len(c) - 1 for c in comps])
    rows = torch.arange(len(comps))
    answer = picked.sum(1) - picked[rows, last]            # log prod p(d_j | ...)
    nxt = logp[rows, last].exp()                           # next-token distribution
    stop = 1 - nxt[:, digits].sum(1) - nxt[:, other_special].sum(1)
    return (answer.exp() * stop).numpy()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-level", type=int, default=24)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = load_config(ROOT / "configs" / "smollm2" / "verdict.toml")
    model, tok, _ = load_any("smollm2")
    model.eval()
    has, multi = digit_tokens(tok)
    print(f"tokens holding a digit: {len(has)}; of them not a single digit: {len(multi)} "
          f"(0 means the prefix event has one token path)")
    problems = load_jsonl(POOL / "problems.jsonl")
    rates = {}
    if (POOL / "passrates.csv").is_file():
        with open(POOL / "passrates.csv") as f:
            rates = {r["id"]: int(r["passes"]) / int(r["K"]) for r in csv.DictReader(f)}
    print("| level | n | first-number pass rate (K rollouts) | student P_prefix | "
          "teacher P_prefix (privileged prompt) | teacher > student |")
    print("|---|---|---|---|---|---|")
    t0 = time.time()
    for level in sorted({p.difficulty for p in problems}):
        ps = [p for p in problems if p.difficulty == level][:a.per_level]
        s = prefix_probability(model, tok, [p.prompt for p in ps], [p.answer for p in ps])
        t = prefix_probability(model, tok, [privileged_prompt(p, cfg.loss.privileged_template)
                                            for p in ps], [p.answer for p in ps])
        first = np.mean([rates[p.id] for p in ps]) if rates else float("nan")
        print(f"| {level} | {len(ps)} | {first:.3f} | {s.mean():.3f} (range {s.min():.3f}-"
              f"{s.max():.3f}) | {t.mean():.3f} | {(t > s).mean():.2f} |")
    print(f"\n{time.time() - t0:.0f} s for the forward passes, {a.threads} thread(s)")


if __name__ == "__main__":
    main()
