"""Pass rates of SmolLM2-135M-Instruct on configs/smollm2/problems.jsonl: K samples per
problem at temperature 1.0, top_p 1.0, one seeded torch.Generator, 2 CPU threads. Writes
configs/smollm2/passrates.csv (id, difficulty, passes, K) and prints the histogram of passes
c = 0..K, the mean pass rate per difficulty, and the rollout wall time.

    .venv/bin/python configs/smollm2/measure.py [--k 8] [--max-new-tokens 12] [--seed 0]
"""
from __future__ import annotations

import argparse
import csv
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
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--problems", default=str(HERE / "problems.jsonl"))
    ap.add_argument("--out", default=str(HERE / "passrates.csv"))
    ap.add_argument("--batch", type=int, default=1024, help="rows per generate() call "
                    "(generate_and_verify's default, which `paced snr-probe` uses)")
    ap.add_argument("--show", type=int, default=0, help="print this many completions per level")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    problems = load_jsonl(args.problems)
    t0 = time.time()
    model, tok, _ = load_any("smollm2")
    t_load = time.time() - t0
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    ok, comps, ntok = generate_and_verify(model, tok, problems, args.max_new_tokens, k=args.k,
                                          temperature=1.0, top_p=1.0, generator=gen,
                                          batch=args.batch)
    t_roll = time.time() - t0
    K = args.k
    c = ok.reshape(len(problems), K).sum(1)
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "difficulty", "passes", "K"])
        for p, ci in zip(problems, c):
            w.writerow([p.id, p.difficulty, int(ci), K])
    print(f"n={len(problems)} K={K} max_new_tokens={args.max_new_tokens} seed={args.seed} "
          f"threads={args.threads} batch={args.batch}")
    print(f"load {t_load:.1f}s  rollouts {t_roll:.1f}s  tokens processed {ntok}")
    print(f"histogram c=0..{K}: {np.bincount(c, minlength=K + 1).tolist()}  "
          f"mean pass rate {ok.mean():.3f}")
    for d in sorted({p.difficulty for p in problems}):
        m = np.array([p.difficulty == d for p in problems])
        print(f"  difficulty {d}: n={m.sum()} mean {c[m].mean() / K:.3f} "
              f"hist {np.bincount(c[m], minlength=K + 1).tolist()}")
        if args.show:
            j = int(np.flatnonzero(m)[0])
            print(f"    {problems[j].prompt!r} -> {problems[j].answer}:",
                  [tok.decode(x) for x in comps[j * K:j * K + args.show]])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
