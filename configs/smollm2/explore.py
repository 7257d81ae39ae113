"""Exploration harness (not part of the final pool): for each candidate task, K=8 samples at
temperature 1.0, top_p 1.0 from SmolLM2-135M-Instruct, verified by paced_train.tasks.verify;
prints the histogram of passes c (c = 0..K), wall time, and a few completions.

    .venv/bin/python configs/smollm2/explore.py CANDIDATE [CANDIDATE ...]
"""
from __future__ import annotations

import random
import sys
import time

import numpy as np
import torch

from paced_train.loop.rollouts import generate_and_verify
from paced_train.models.hf import load_any
from paced_train.tasks import Problem

W = "zero one two three four five six seven eight nine ten eleven twelve".split()


def P(i, prompt, answer, d=1):
    return Problem(f"x{i}", prompt, str(answer), d, "jsonl")


def cands(name, rng, n=40):
    out = []
    for i in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        if name == "add_q":
            out.append(P(i, f"What is {a}+{b}? Reply with just the number.", a + b))
        elif name == "add_bare":
            out.append(P(i, f"{a}+{b}=", a + b))
        elif name == "add_fewshot":
            out.append(P(i, f"2+3=5\n4+1=5\n{a}+{b}=", a + b))
        elif name == "add_words":
            out.append(P(i, f"What is {W[a]} plus {W[b]}? Answer in digits.", a + b))
        elif name == "next_q":
            out.append(P(i, f"What number comes after {a}? Reply with just the number.", a + 1))
        elif name == "next_words":
            out.append(P(i, f"What number comes after {W[a]}? Answer in digits.", a + 1))
        elif name == "word2digit":
            out.append(P(i, f"Write the number {W[a]} in digits.", a))
        elif name == "copy_num":
            d = rng.randint(1, 6)
            x = rng.randint(10 ** (d - 1) if d > 1 else 0, 10 ** d - 1)
            out.append(P(i, f"Repeat this number: {x}", x, d))
        elif name == "bigger":
            while b == a:
                b = rng.randint(0, 9)
            out.append(P(i, f"Which is bigger, {a} or {b}? Reply with just the number.", max(a, b)))
        elif name == "mul_q":
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            out.append(P(i, f"What is {a}*{b}? Reply with just the number.", a * b))
        elif name == "sub_q":
            a, b = sorted((a, b), reverse=True)
            out.append(P(i, f"What is {a}-{b}? Reply with just the number.", a - b))
        elif name == "count_letters":
            w = rng.choice("cat dog sun a an tree house apple go it bird fish".split())
            out.append(P(i, f"How many letters are in the word \"{w}\"? "
                            "Reply with just the number.", len(w)))
        elif name == "answer_is":
            out.append(P(i, f"Q: {a}+{b}\nA: The answer is", a + b))
        elif name == "say_num":
            out.append(P(i, f"Say the number {a}.", a))
        elif name == "type_num":
            d = rng.randint(1, 4)
            x = rng.randint(10 ** (d - 1) if d > 1 else 0, 10 ** d - 1)
            out.append(P(i, f"Type {x} and nothing else.", x, d))
        elif name == "repeat_after":
            d = rng.randint(1, 4)
            x = rng.randint(10 ** (d - 1) if d > 1 else 0, 10 ** d - 1)
            out.append(P(i, f"Repeat after me: {x}", x, d))
        elif name == "copy_num_short":
            d = rng.randint(1, 3)
            x = rng.randint(10 ** (d - 1) if d > 1 else 0, 10 ** d - 1)
            out.append(P(i, f"Repeat this number: {x}", x, d))
        elif name == "bigger_first":
            a, b = sorted(rng.sample(range(10), 2), reverse=True)
            out.append(P(i, f"Which is bigger, {a} or {b}? Reply with just the number.", a))
        elif name == "bigger_second":
            a, b = sorted(rng.sample(range(10), 2))
            out.append(P(i, f"Which is bigger, {a} or {b}? Reply with just the number.", b))
        elif name == "w2d_short":
            out.append(P(i, f"Write {W[a]} as a digit.", a))
        elif name == "w2d_conv":
            out.append(P(i, f"Convert the word \"{W[a]}\" to a number.", a))
        elif name == "w2d_eq":
            out.append(P(i, f"{W[a]} =", a))
        elif name == "w2d_what":
            out.append(P(i, f"What digit is \"{W[a]}\"?", a))
        elif name == "how_many_items":
            items = " ".join(["apple"] * max(a, 1))
            out.append(P(i, f"How many apples: {items}", max(a, 1), max(a, 1)))
        elif name == "number_in_sentence":
            out.append(P(i, f"I have {a} cats. How many cats do I have?", a))
        elif name == "add_words_sentence":
            out.append(P(i, f"I have {W[a]} cats and get {W[b]} more. "
                            "How many cats do I have now?", a + b))
        elif name.startswith("say_d"):  # say_dN: N-digit numbers
            d = int(name[5:])
            x = rng.randint(10 ** (d - 1) if d > 1 else 0, 10 ** d - 1)
            out.append(P(i, f"Say the number {x}.", x, d))
        elif name == "say_word":
            out.append(P(i, f"Say the number {W[a]} in digits.", a))
        elif name == "say_next":
            out.append(P(i, f"Say the number after {a}.", a + 1))
        elif name == "say_sum":
            out.append(P(i, f"Say the sum of {a} and {b}.", a + b))
        elif name == "say_short":
            out.append(P(i, f"Say {a}.", a))
        elif name == "say_only":
            out.append(P(i, f"Say the number {a}. Reply with just the number.", a))
        elif name == "reply_num":
            out.append(P(i, f"Reply with the number {a}.", a))
        elif name == "write_num":
            out.append(P(i, f"Write the number {a}.", a))
        elif name == "fav_num":
            out.append(P(i, f"My favorite number is {a}. What is my favorite number?", a))
        elif name == "say_bigger":
            while b == a:
                b = rng.randint(0, 9)
            out.append(P(i, f"Say the bigger number: {a} or {b}.", max(a, b)))
        elif name == "say_smaller":
            while b == a:
                b = rng.randint(0, 9)
            out.append(P(i, f"Say the smaller number: {a} or {b}.", min(a, b)))
        elif name == "say_double":
            out.append(P(i, f"Say the number {a} twice.", a))
        elif name == "count_from":
            out.append(P(i, f"Count from {a} to {a + 4}.", a))
        elif name == "count_up":
            out.append(P(i, f"Count up from {a}.", a))
        elif name == "copy_exact":
            out.append(P(i, f"Copy exactly: {a}", a))
        elif name == "bare_num":
            out.append(P(i, f"{a}", a))
        elif name == "write_d3":
            x = rng.randint(100, 999)
            out.append(P(i, f"Write the number {x}.", x, 3))
        else:
            raise SystemExit(f"unknown candidate {name}")
    return out


def main():
    torch.set_num_threads(2)
    K, T = 8, 1.0
    mnt = int(sys.argv[1])
    model, tok, _ = load_any("smollm2")
    for name in sys.argv[2:]:
        probs = cands(name, random.Random(0))
        g = torch.Generator().manual_seed(0)
        t = time.time()
        ok, comps, ntok = generate_and_verify(model, tok, probs, mnt, k=K, temperature=T,
                                              top_p=1.0, generator=g)
        dt = time.time() - t
        c = ok.reshape(len(probs), K).sum(1)
        hist = np.bincount(c, minlength=K + 1)
        print(f"== {name}: n={len(probs)} K={K} mnt={mnt} wall={dt:.1f}s tokens={ntok} "
              f"mean={ok.mean():.3f} hist={hist.tolist()}")
        for j in range(0, len(probs), 10):
            print("   ", repr(probs[j].prompt), "->", probs[j].answer, "|",
                  [tok.decode(x) for x in comps[j * K:j * K + 3]])
        sys.stdout.flush()


if __name__ == "__main__":
    main()
