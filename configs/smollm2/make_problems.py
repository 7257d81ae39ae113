"""Write configs/smollm2/problems.jsonl: the "say the number" pool for SmolLM2-135M-Instruct.

One task family, four graded levels, every answer a non-negative integer that
paced_train.tasks.verify checks on the FIRST number of the completion (extract_answer):

  difficulty 1  "Say the number 47."                  echo a 1-3 digit number       (100)
  difficulty 2  "Say the number fourteen in digits."  number word -> digits          (28)
  difficulty 3  "Say the smaller number: 7 or 2."     min of two distinct digits     (70)
  difficulty 4  "Say the sum of 3 and 5."             sum of two digits 1..9         (30)

Why this task (see TASK.md): at temperature 1 the 135M student solves almost no arithmetic
phrased as a question, and it often restates the operands first ("3 + 4 = 7"), which the
first-number extractor scores as wrong. Echoing a number is the one thing it does reliably
(pass rate about 0.65); the harder levels bring the pass rates down towards 0, so the K = 8
pass-rate histogram is populated from c = 0 to c = 8. Prompts contain no number other than
the operands, and are short (the self-distillation teacher adds the reference answer).
Caveat (level 3): "Say the smaller number: 2 or 7." is also passed by restating the question
("2 or 7."), so problems whose smaller number comes first are easier (measured 0.29 vs 0.16).

Deterministic: `python configs/smollm2/make_problems.py [--seed 0] [--out PATH]`.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen twenty").split()
TENS = {30: "thirty", 40: "forty", 50: "fifty", 60: "sixty", 70: "seventy", 80: "eighty",
        90: "ninety"}
WORDS = {**dict(enumerate(ONES)), **TENS}  # 28 number words, 0..20 and 30..90


def make(seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows: list[dict] = []

    def add(level: int, prompt: str, answer: int) -> None:
        rows.append({"id": f"say{level}-{sum(r['difficulty'] == level for r in rows):03d}",
                     "prompt": prompt, "answer": str(answer), "difficulty": level})

    # 1: echo. All ten 1-digit numbers, 45 distinct 2-digit and 45 distinct 3-digit ones.
    echo = list(range(10)) + rng.sample(range(10, 100), 45) + rng.sample(range(100, 1000), 45)
    rng.shuffle(echo)
    for x in echo:
        add(1, f"Say the number {x}.", x)
    # 2: number word -> digits, every word once.
    words = sorted(WORDS)
    rng.shuffle(words)
    for x in words:
        add(2, f"Say the number {WORDS[x]} in digits.", x)
    # 3: the smaller of two distinct digits (70 of the 90 ordered pairs).
    for a, b in rng.sample([(a, b) for a in range(10) for b in range(10) if a != b], 70):
        add(3, f"Say the smaller number: {a} or {b}.", min(a, b))
    # 4: sum of two digits 1..9 (30 of the 81 ordered pairs). No zero operand: the model
    # often restates the question ("The sum of 4 and 0 is ..."), and with b = 0 the first
    # number of that echo is the right answer, a pass that says nothing about adding.
    for a, b in rng.sample([(a, b) for a in range(1, 10) for b in range(1, 10)], 30):
        add(4, f"Say the sum of {a} and {b}.", a + b)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).with_name("problems.jsonl")))
    args = ap.parse_args()
    rows = make(args.seed)
    Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} problems to {args.out}")


if __name__ == "__main__":
    main()
