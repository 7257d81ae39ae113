"""Initial pass rates of SmolLM2-135M-Instruct on configs/smollm2/verdict/problems.jsonl
(K samples per problem at temperature 1, top_p 1, one seeded torch.Generator: the loop's own
generate_and_verify) and its greedy answers, plus greedy answers on the retention candidates;
writes passrates.csv (id, difficulty, passes, K, greedy) and retention.jsonl (the candidates
answered right greedily), and prints the histogram of passes per level and the timings.

    PYTHONPATH=$PWD python configs/smollm2/verdict/measure.py [--k 8] [--max-new-tokens 12]
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from paced_train.loop.rollouts import generate_and_verify
from paced_train.models.hf import load_any
from paced_train.tasks import load_jsonl

HERE = Path(__file__).parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    problems = load_jsonl(HERE / "problems.jsonl")
    facts = load_jsonl(HERE / "retention_candidates.jsonl")
    t0 = time.time()
    model, tok, _ = load_any("smollm2")
    print(f"load {time.time() - t0:.1f}s")
    t0 = time.time()
    ok, _, ntok = generate_and_verify(model, tok, problems, args.max_new_tokens, k=args.k,
                                      temperature=1.0, generator=torch.Generator()
                                      .manual_seed(args.seed))
    t_roll = time.time() - t0
    t0 = time.time()
    greedy, _, _ = generate_and_verify(model, tok, problems, args.max_new_tokens,
                                       temperature=0.0)
    fact_ok, fact_comps, _ = generate_and_verify(model, tok, facts, args.max_new_tokens,
                                                 temperature=0.0)
    t_greedy = time.time() - t0
    K = args.k
    c = ok.reshape(len(problems), K).sum(1)
    with open(HERE / "passrates.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "difficulty", "passes", "K", "greedy"])
        for p, ci, g in zip(problems, c, greedy):
            w.writerow([p.id, p.difficulty, int(ci), K, int(g)])
    kept = [p for p, g in zip(facts, fact_ok) if g]
    (HERE / "retention.jsonl").write_text("".join(
        json.dumps({"id": p.id, "prompt": p.prompt, "answer": p.answer}) + "\n" for p in kept))
    print(f"n={len(problems)} K={K} max_new_tokens={args.max_new_tokens} seed={args.seed} "
          f"threads={args.threads}; rollouts {t_roll:.1f}s ({ntok} tokens), greedy "
          f"{t_greedy:.1f}s")
    print(f"| level | n | mean pass rate | greedy acc | histogram c = 0..{K} |")
    print("|---|---|---|---|---|")
    diff = np.array([p.difficulty for p in problems])
    for d in sorted(set(diff.tolist())) + [None]:
        m = diff == d if d is not None else np.ones(len(diff), bool)
        print(f"| {d if d is not None else 'all'} | {m.sum()} | {c[m].mean() / K:.3f} | "
              f"{greedy[m].mean():.3f} | {np.bincount(c[m], minlength=K + 1).tolist()} |")
    print(f"retention: {len(kept)} of {len(facts)} facts answered right greedily")
    for p, g, comp in zip(facts, fact_ok, fact_comps):
        if not g:
            print(f"  wrong: {p.prompt!r} -> {tok.decode(comp)!r} (answer {p.answer})")


if __name__ == "__main__":
    main()
