"""Verifiable tasks with graded difficulty, and a JSONL loader for user problem sets.

Skills (all answers checked exactly):
  add      a+b with two n-digit operands (difficulty n; carries included)
  mul      a*b with an n-digit a and a 1-digit b (difficulty n)
  compare  "cmp a,b" -> one of < = > with operands of up to n digits; used ONLY as the
           retention set that measures forgetting (never in distillation data)
Number format: in arithmetic prompts and answers every number is written least-significant
digit first ("21+93=" asks for 12 + 39 and is answered "15", i.e. 51). Each answer digit then
depends on aligned input digits and a carry, the format in which small transformers learn
addition with carries quickly (cf. Lee et al., "Teaching Arithmetic to Small Transformers",
2023); with operands in the usual order our 0.45M-parameter teacher stayed below 10 % on
3-digit addition after 4000 steps. `Problem.answer` holds the true answer in the usual
order; `target_text` gives the completion a model is trained to write and `verify` undoes
the reversal. JSONL problems keep their text as written.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paced_theory.errors import InputError

DISTILL_SKILLS = ("add", "mul")
RETENTION_SKILL = "compare"
REVERSED = {"add", "mul"}


@dataclass(frozen=True)
class Problem:
    id: str
    prompt: str
    answer: str
    difficulty: int
    skill: str


def _ndigit(rng: np.random.Generator, n: int) -> int:
    return int(rng.integers(10 ** (n - 1) if n > 1 else 0, 10**n))


def _rev(x: int) -> str:
    return str(x)[::-1]


def make_problem(skill: str, difficulty: int, rng: np.random.Generator) -> Problem:
    n = int(difficulty)
    if n < 1:
        raise InputError(f"difficulty must be >= 1 (got {difficulty})")
    if skill == "add":
        a, b = _ndigit(rng, n), _ndigit(rng, n)
        prompt, answer = f"{_rev(a)}+{_rev(b)}=", str(a + b)
    elif skill == "mul":
        a, b = _ndigit(rng, n), int(rng.integers(2, 10))
        prompt, answer = f"{_rev(a)}*{b}=", str(a * b)
    elif skill == "compare":
        a, b = _ndigit(rng, int(rng.integers(1, n + 1))), _ndigit(rng, int(rng.integers(1, n + 1)))
        if rng.random() < 0.15:
            b = a
        prompt, answer = f"cmp {a},{b}=", "<" if a < b else (">" if a > b else "=")
    else:
        raise InputError(f"unknown skill {skill!r}; use add, mul or compare")
    pid = f"{skill}{n}-" + hashlib.sha1(prompt.encode()).hexdigest()[:10]
    return Problem(pid, prompt, answer, n, skill)


def make_problems(skill: str, difficulty: int, n: int, seed: int) -> list[Problem]:
    """n distinct problems (distinct prompts) of one skill and difficulty, deterministic in seed."""
    rng = np.random.default_rng([seed, _skill_code(skill), int(difficulty)])
    seen, out = set(), []
    for _ in range(50 * n + 100):
        p = make_problem(skill, difficulty, rng)
        if p.prompt not in seen:
            seen.add(p.prompt)
            out.append(p)
            if len(out) == n:
                break
    return out


def _skill_code(skill: str) -> int:
    return int(hashlib.sha1(skill.encode()).hexdigest()[:8], 16)


def arithmetic_suite(seed: int = 0, n_per_cell: int = 64, add_digits=(1, 2, 3, 4),
                     mul_digits=(1, 2, 3)) -> list[Problem]:
    out: list[Problem] = []
    for d in add_digits:
        out += make_problems("add", d, n_per_cell, seed)
    for d in mul_digits:
        out += make_problems("mul", d, n_per_cell, seed)
    return out


def retention_suite(seed: int = 0, n: int = 128, max_digits: int = 3) -> list[Problem]:
    return make_problems(RETENTION_SKILL, max_digits, n, seed + 7919)


def split(problems: list[Problem], n_heldout_per_cell: int, seed: int = 0):
    """(train, heldout): per (skill, difficulty) cell the last n_heldout problems after a
    seeded shuffle are held out. Prompts are distinct within a cell, so the sets are disjoint."""
    rng = np.random.default_rng(seed)
    cells: dict[tuple, list[Problem]] = {}
    for p in problems:
        cells.setdefault((p.skill, p.difficulty), []).append(p)
    train, held = [], []
    for key in sorted(cells):
        items = cells[key]
        order = rng.permutation(len(items))
        k = min(n_heldout_per_cell, len(items) - 1)
        held += [items[i] for i in order[len(items) - k:]]
        train += [items[i] for i in order[: len(items) - k]]
    return train, held


def target_text(problem: Problem) -> str:
    """The completion a model should write (reversed digits for arithmetic)."""
    return problem.answer[::-1] if problem.skill in REVERSED else problem.answer


_NUM = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_answer(text: str) -> str | None:
    """The answer in a model's completion: after '####' if present, else the first token
    that looks like a number or a comparison sign, else the stripped first line."""
    if "####" in text:
        text = text.split("####", 1)[1]
    text = text.strip()
    if not text:
        return None
    if text[0] in "<>=":
        return text[0]
    m = _NUM.search(text)
    if m:
        return m.group(0).replace(",", "")
    return text.splitlines()[0].strip()


def verify(problem: Problem, completion: str) -> bool:
    """Exact check of a completion (as decoded, up to eos) against the problem's answer."""
    if problem.skill in REVERSED:
        return completion.strip() == target_text(problem)
    got = extract_answer(completion)
    if got is None:
        return False
    want = problem.answer.strip().replace(",", "")
    try:
        return float(got) == float(want)
    except ValueError:
        return got == want


def load_jsonl(path) -> list[Problem]:
    """User problems: {"prompt", "answer"} or {"question", "answer": "... #### 42"} per line.
    Optional "id" and "difficulty". Errors name the file and line."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    out = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{lineno}: expected a JSON object")
        prompt = row.get("prompt", row.get("question"))
        answer = row.get("answer")
        if not isinstance(prompt, str) or answer is None:
            raise InputError(f"{path}:{lineno}: needs a string 'prompt' (or 'question') and "
                             "an 'answer'")
        answer = str(answer)
        if "####" in answer:
            answer = answer.split("####", 1)[1].strip()
        answer = answer.replace(",", "").strip()
        if not answer:
            raise InputError(f"{path}:{lineno}: empty answer")
        try:
            difficulty = int(row.get("difficulty", 1))
        except (TypeError, ValueError):
            raise InputError(f"{path}:{lineno}: 'difficulty' must be an integer") from None
        pid = str(row.get("id", f"{path.stem}-{lineno}"))
        out.append(Problem(pid, prompt, answer, difficulty, "jsonl"))
    if not out:
        raise InputError(f"{path}: no problems found")
    return out
