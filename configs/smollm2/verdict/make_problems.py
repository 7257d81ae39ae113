"""Write configs/smollm2/verdict/problems.jsonl and retention.jsonl: the pool of issue 20's
SmolLM2-135M-Instruct comparison (bench/results/smollm2_verdict/PLAN.md).

The "say the number" task of configs/smollm2/TASK.md, grown so that 40 problems per level
can be held out (5 levels: 200 held-out problems, one problem = 0.5 points of accuracy), and
a fifth level added between the easy echo and the hard sums. Every answer is a non-negative
integer that paced_train.tasks.verify checks on the FIRST number of the completion:

  difficulty 1  "Say the number 47."                    echo a 0-999 number
  difficulty 2  "Say the number forty-two in digits."   number word 0..99 -> digits
  difficulty 3  "Say the smaller number: 7 or 2."       min of two distinct digits
  difficulty 4  "Say the bigger number: 7 or 2."        max of two distinct digits
  difficulty 5  "Say the sum of 3 and 5."               sum of two digits 1..9

64 problems per level (320), each level a seeded sample of its kind (160 echo numbers, 100
words, 90 ordered pairs, 81 sums are drawn, shuffled, and the first 64 kept: measure.py's
first run measured all of them, 521 problems, and passrates.csv keeps the rows of these
320). The split into training and held-out problems is the loop's (tasks.split:
data.n_eval_per_cell = 40 per level, seeded by run.seed), so each seed holds out its own 200.

retention.jsonl: numeric general-knowledge questions ("How many days are in a week?"), a
skill never distilled; measure.py keeps those SmolLM2 answers right greedily at the start
(the rest are listed in TASK.md), so forgetting is measured on what the model knows.

Deterministic: `python configs/smollm2/verdict/make_problems.py [--seed 0]`.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

HERE = Path(__file__).parent
PER_LEVEL = 64  # 40 held out + 24 training problems per level: the training pool (120) sets
               # the cost of every pass-rate refresh (bench/results/smollm2_verdict/PLAN.md)
ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen").split()
TENS = ("twenty thirty forty fifty sixty seventy eighty ninety").split()


def word(n: int) -> str:
    """0..99 in English words ("forty-two")."""
    if n < 20:
        return ONES[n]
    t, o = divmod(n, 10)
    return TENS[t - 2] + (f"-{ONES[o]}" if o else "")


FACTS = [  # (question, answer): numeric facts; measure.py keeps those solved greedily
    ("How many days are in a week?", 7), ("How many months are in a year?", 12),
    ("How many hours are in a day?", 24), ("How many minutes are in an hour?", 60),
    ("How many seconds are in a minute?", 60), ("How many legs does a spider have?", 8),
    ("How many legs does a dog have?", 4), ("How many sides does a triangle have?", 3),
    ("How many sides does a square have?", 4), ("How many sides does a hexagon have?", 6),
    ("How many sides does an octagon have?", 8), ("How many sides does a pentagon have?", 5),
    ("How many continents are there?", 7), ("How many planets are in the solar system?", 8),
    ("How many days are in a leap year?", 366), ("How many days are in a year?", 365),
    ("How many weeks are in a year?", 52), ("How many cents are in a dollar?", 100),
    ("How many centimeters are in a meter?", 100), ("How many meters are in a kilometer?", 1000),
    ("How many grams are in a kilogram?", 1000), ("How many wheels does a bicycle have?", 2),
    ("How many wheels does a tricycle have?", 3), ("How many wheels does a car have?", 4),
    ("How many fingers are on one hand?", 5), ("How many players are on a soccer team?", 11),
    ("How many strings does a standard guitar have?", 6),
    ("How many keys are on a standard piano?", 88), ("How many colors are in a rainbow?", 7),
    ("How many hearts does an octopus have?", 3),
    ("How many bones are in the adult human body?", 206),
    ("How many teeth does an adult human have?", 32),
    ("In what year did World War II end?", 1945), ("In what year did World War I begin?", 1914),
    ("In what year did humans first land on the moon?", 1969),
    ("In what year did Columbus first reach the Americas?", 1492),
    ("In what year was the US Declaration of Independence signed?", 1776),
    ("At how many degrees Celsius does water boil at sea level?", 100),
    ("At how many degrees Fahrenheit does water freeze?", 32),
    ("How many eggs are in a dozen?", 12), ("How many years are in a century?", 100),
    ("How many years are in a decade?", 10), ("How many degrees are in a right angle?", 90),
    ("How many degrees are in a full circle?", 360),
    ("How many degrees do the angles of a triangle add up to?", 180),
    ("How many states are in the United States?", 50), ("How many days are in September?", 30),
    ("How many letters are in the English alphabet?", 26),
    ("How many chromosomes do humans have?", 46), ("How many oceans are there on Earth?", 5),
    ("How many players from one team are on a basketball court?", 5),
    ("How many hours are in a week?", 168), ("How many legs does an insect have?", 6),
    ("How many sides does a cube have?", 6), ("How many zeros are in one million?", 6),
    ("How many minutes are in a day?", 1440), ("How many days are in April?", 30),
    ("How many days are in January?", 31), ("How many milliseconds are in a second?", 1000),
    ("How many pounds are in a ton in the US?", 2000),
]


def make(seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows: list[dict] = []

    def add(level: int, prompt: str, answer: int) -> None:
        n = sum(r["difficulty"] == level for r in rows)
        rows.append({"id": f"v{level}-{n:03d}", "prompt": prompt, "answer": str(answer),
                     "difficulty": level})

    echo = list(range(10)) + rng.sample(range(10, 100), 60) + rng.sample(range(100, 1000), 90)
    rng.shuffle(echo)
    for x in echo[:PER_LEVEL]:  # the draws are kept, so a level does not depend on the cut
        add(1, f"Say the number {x}.", x)
    words = list(range(100))
    rng.shuffle(words)
    for x in words[:PER_LEVEL]:
        add(2, f"Say the number {word(x)} in digits.", x)
    pairs = [(a, b) for a in range(10) for b in range(10) if a != b]
    for a, b in rng.sample(pairs, len(pairs))[:PER_LEVEL]:
        add(3, f"Say the smaller number: {a} or {b}.", min(a, b))
    for a, b in rng.sample(pairs, len(pairs))[:PER_LEVEL]:
        add(4, f"Say the bigger number: {a} or {b}.", max(a, b))
    # no zero operand: "The sum of 4 and 0 is ..." passes on the restated operand
    sums = [(a, b) for a in range(1, 10) for b in range(1, 10)]
    for a, b in rng.sample(sums, len(sums))[:PER_LEVEL]:
        add(5, f"Say the sum of {a} and {b}.", a + b)
    return rows


def facts() -> list[dict]:
    return [{"id": f"fact-{i:03d}", "prompt": q, "answer": str(a), "difficulty": 1}
            for i, (q, a) in enumerate(FACTS)]


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} rows to {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    write(HERE / "problems.jsonl", make(args.seed))
    write(HERE / "retention_candidates.jsonl", facts())


if __name__ == "__main__":
    main()
