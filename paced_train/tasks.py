"""Verifiable tasks with graded difficulty, and a JSONL loader for user problem sets.

Skills (every answer is checked exactly by `verify`):
  add      a+b, both operands with n digits (difficulty n; carries included)
  mul      a*b, a with n digits, b a single digit in 2..9 (difficulty n)
  compare  "cmp a,b=" -> one of < = >, operands of 1..n digits. The RETENTION skill: it is
           never distilled, only measured, so a drop in it is forgetting.

Number format (ours). In arithmetic prompts and answers every number is written least-
significant digit first: "21+93=" asks for 12 + 39 and is answered "15", i.e. 51. Each answer
digit then depends only on the aligned operand digits and one carry, which is the order in
which tiny transformers learn carrying quickly (Lee et al., "Teaching Arithmetic to Small
Transformers", 2023); with operands in the usual order a 0.45M-parameter model stayed below
10 % on 3-digit addition after 4000 steps. `Problem.answer` holds the TRUE answer in the usual
order ("51"); `target_text` gives the completion a model is trained to write ("15"), and
`verify` reverses the completion back and compares it with the true answer. Comparison
problems and JSONL problems are written and checked as they are.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paced_theory.errors import ConfigError, InputError

DISTILL_SKILLS = ("add", "mul")
RETENTION_SKILL = "compare"
SKILLS = (*DISTILL_SKILLS, RETENTION_SKILL)
REVERSED = frozenset(DISTILL_SKILLS)  # skills whose numbers are written least-significant first


@dataclass(frozen=True)
class Problem:
    id: str
    prompt: str
    answer: str  # the true answer, in the usual digit order
    difficulty: int
    skill: str
    extract: str = "first"  # free-form answers: the "first" or the "last" number counts
    source: str = ""        # "path:LINE" of a JSONL problem (for error messages)


# ------------------------------------------------------------------------ generation
def _ndigit(rng: np.random.Generator, n: int) -> int:
    """A uniform n-digit number (1-digit numbers include 0)."""
    return int(rng.integers(10 ** (n - 1) if n > 1 else 0, 10**n))


def _rev(x: int) -> str:
    return str(x)[::-1]


def cell_size(skill: str, difficulty: int) -> int:
    """How many distinct problems a (skill, difficulty) cell has: make_problems can give no more."""
    n = int(difficulty)
    span = 10**n - (10 ** (n - 1) if n > 1 else 0)  # count of n-digit numbers
    if skill == "add":
        return span * span
    if skill == "mul":
        return span * 8
    if skill == "compare":
        total = sum(10**k - (10 ** (k - 1) if k > 1 else 0) for k in range(1, n + 1))
        return total * total
    raise InputError(f"unknown skill {skill!r}; use one of {', '.join(SKILLS)}")


def make_problem(skill: str, difficulty: int, rng: np.random.Generator) -> Problem:
    """One random problem of a skill and difficulty, drawn with `rng`."""
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
        a, b = (_ndigit(rng, int(rng.integers(1, n + 1))) for _ in range(2))
        if rng.random() < 0.15:  # ties are rare by chance; make "=" a real class
            b = a
        prompt, answer = f"cmp {a},{b}=", "<" if a < b else (">" if a > b else "=")
    else:
        raise InputError(f"unknown skill {skill!r}; use one of {', '.join(SKILLS)}")
    # the prompt determines the problem, so a hash of it is a stable, unique id
    pid = f"{skill}{n}-" + hashlib.sha1(prompt.encode()).hexdigest()[:10]
    return Problem(pid, prompt, answer, n, skill)


def _skill_code(skill: str) -> int:
    return int(hashlib.sha1(skill.encode()).hexdigest()[:8], 16)


def make_problems(skill: str, difficulty: int, n: int, seed: int) -> list[Problem]:
    """n distinct problems (distinct prompts, hence ids) of one cell, deterministic in seed.
    Each cell has its own random stream, so adding a cell never changes the others."""
    size = cell_size(skill, difficulty)
    if n > size:
        raise InputError(f"asked for {n} {skill} problems of difficulty {difficulty}, but that "
                         f"cell has only {size} distinct problems; ask for fewer")
    rng = np.random.default_rng([seed, _skill_code(skill), int(difficulty)])
    seen: dict[str, Problem] = {}
    while len(seen) < n:  # terminates: n <= size and every problem has positive probability
        p = make_problem(skill, difficulty, rng)
        seen.setdefault(p.prompt, p)
    return list(seen.values())


def arithmetic_suite(seed: int = 0, n_per_cell: int = 64, add_digits=(1, 2, 3, 4),
                     mul_digits=(1, 2, 3), per_cell: dict | None = None) -> list[Problem]:
    """The distillation problems: n_per_cell problems for every add and mul difficulty, or
    per_cell[(skill, digits)] for the cells it names."""
    per_cell = per_cell or {}
    out: list[Problem] = []
    for skill, digits in (("add", add_digits), ("mul", mul_digits)):
        for d in digits:
            out += make_problems(skill, d, per_cell.get((skill, d), n_per_cell), seed)
    return out


def cell_counts(skill: str, digits, counts, n_default: int, n_heldout: int) -> dict:
    """{(skill, d): training problems + n_heldout} per cell: counts[i] (or n_default) training
    problems, capped at what the cell holds beyond its n_heldout held-out problems, so one
    pool size serves large cells and small ones (add1 has 100 problems, mul1 80)."""
    out = {}
    for i, d in enumerate(digits):
        size = cell_size(skill, d)
        if size <= n_heldout:
            raise InputError(f"the {skill}{d} cell has {size} distinct problems, not more than "
                             f"data.n_eval_per_cell = {n_heldout}: hold out fewer or drop it")
        want = counts[i] if counts else n_default
        out[(skill, d)] = min(want, size - n_heldout) + n_heldout
    return out


def retention_cells(seed: int, n: int, add_digits=(), mul_digits=()) -> list[Problem]:
    """A retention set of never-trained arithmetic cells: n problems per cell (capped at the
    cell's size), from a stream distinct from the training suite's."""
    out: list[Problem] = []
    for skill, digits in (("add", add_digits), ("mul", mul_digits)):
        for d in digits:
            out += make_problems(skill, d, min(n, cell_size(skill, d)), seed + 7919)
    return out


def retention_suite(seed: int = 0, n: int = 128, max_digits: int = 3) -> list[Problem]:
    """The forgetting probe: n comparison problems (operands of 1..max_digits digits)."""
    return make_problems(RETENTION_SKILL, max_digits, n, seed + 7919)


def split(problems: list[Problem], heldout: int | float, seed: int = 0):
    """(train, heldout) lists. Per (skill, difficulty) cell, after a seeded shuffle, the last
    `heldout` problems (an int count, or a float fraction in (0, 1)) are held out; at least
    one problem of every cell stays in train. Problems are split by id, and ids are distinct
    within a suite, so the two lists are disjoint."""
    if isinstance(heldout, float) and not 0.0 < heldout < 1.0:
        raise InputError(f"split: a held-out fraction must be in (0, 1) (got {heldout})")
    if not isinstance(heldout, float) and int(heldout) < 0:
        raise InputError(f"split: held-out count must be >= 0 (got {heldout})")
    rng = np.random.default_rng(seed)
    cells: dict[tuple, list[Problem]] = {}
    for p in problems:
        cells.setdefault((p.skill, p.difficulty), []).append(p)
    train, held = [], []
    for key in sorted(cells):
        items = cells[key]
        k = round(heldout * len(items)) if isinstance(heldout, float) else int(heldout)
        k = min(k, len(items) - 1)
        order = rng.permutation(len(items))
        held += [items[i] for i in order[len(items) - k:]]
        train += [items[i] for i in order[: len(items) - k]]
    return train, held


def check_prompts(problems: list[Problem], encode, max_tokens: int | None = None) -> None:
    """Encode the prompt of every JSONL problem with `encode` (a tokenizer's encode_prompt),
    so that text the tokenizer cannot read, or a prompt of max_tokens tokens or more (the
    model's context: no room left for an answer), fails at the start of a run, before
    anything is written, naming the file and line: InputError("path:LINE: ...")."""
    for p in problems:
        if not p.source:
            continue
        try:
            n = len(encode(p.prompt))
        except InputError as exc:
            raise InputError(f"{p.source}: {exc}") from None
        if max_tokens is not None and n >= max_tokens:
            raise InputError(f"{p.source}: the prompt is {n} tokens long and the model reads at "
                             f"most {max_tokens} (prompt and answer together); shorten or "
                             "drop this problem")


# ---------------------------------------------------------------------- verification
def target_text(problem: Problem) -> str:
    """The completion a model is trained to write: the answer least-significant digit first
    for add/mul, the answer as is otherwise."""
    return problem.answer[::-1] if problem.skill in REVERSED else problem.answer


def canonical_answer(problem: Problem) -> str | None:
    """The one completion text `verify` accepts, or None when a task accepts many.

    add/mul qualify: verify accepts exactly the reversed answer digits, up to surrounding
    whitespace and pad tokens (decoded to nothing), so the canonical completion is
    target_text + eos and every other accepted string needs the model to emit whitespace
    or pad where it is trained to emit digits or eos (measured: <= 2e-5 of the accepted
    mass on the shipped and trained students, issue 17). compare and JSONL problems do not:
    verify reads the first sign or number of any completion ("<x" and "< " both pass)."""
    return target_text(problem) if problem.skill in REVERSED else None


def privileged_prompt(problem: Problem, template: str) -> str:
    """The teacher's prompt in self-distillation: `template` with {prompt} and {answer} (the
    completion the student should write, `target_text`) filled in."""
    return template.format(prompt=problem.prompt, answer=target_text(problem))


_NUM = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_answer(text: str, which: str = "first") -> str | None:
    """The answer in a free-form completion: the text after '####' if present; then a leading
    comparison sign, else the first number (which="first") or the last one (which="last":
    for chatty models that restate the question, "3 + 4 = 7"), commas dropped, else the
    first line."""
    if "####" in text:
        text = text.split("####", 1)[1]
    text = text.strip()
    if not text:
        return None
    if text[0] in "<>=":
        return text[0]
    nums = _NUM.findall(text)
    if nums:
        return (nums[-1] if which == "last" else nums[0]).replace(",", "")
    return text.splitlines()[0].strip()


def verify(problem: Problem, completion: str) -> bool:
    """Exact check of a completion (decoded up to eos) against the problem's true answer.
    add/mul: the completion must be the digits of the answer, least-significant first, and
    nothing else; it is reversed back and compared with `answer` (so "15" solves 12+39, while
    "150", "15 " + junk or "51" do not). Others: `extract_answer`, then numeric equality
    when both sides are numbers, string equality otherwise."""
    if problem.skill in REVERSED:
        got = completion.strip()
        return got.isascii() and got.isdigit() and got[::-1] == problem.answer
    got = extract_answer(completion, problem.extract)
    if got is None:
        return False
    want = problem.answer.strip()
    try:
        return float(got) == float(want.replace(",", ""))
    except ValueError:
        return got == want


# ----------------------------------------------------------------------------- JSONL
def load_jsonl(path, extract: str = "first") -> list[Problem]:
    """User problems, one JSON object per line: {"prompt": ..., "answer": ...}, or the GSM8K
    layout {"question": ..., "answer": "worked solution ... #### 42"} (the answer is what
    follows '####'). Optional "id" and integer "difficulty" (default 1). Blank lines are
    skipped. Every error names the file and line: InputError("path:LINE: ...")."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    out, seen = [], set()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not valid JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(row, dict):
            raise InputError(f"{where}: expected a JSON object with 'prompt' and 'answer'")
        key = "prompt" if "prompt" in row else "question"
        prompt, answer = row.get(key), row.get("answer")
        if not isinstance(prompt, str) or not prompt:
            raise InputError(f"{where}: needs a non-empty string 'prompt' (or 'question')")
        if not isinstance(answer, str | int | float) or isinstance(answer, bool):
            raise InputError(f"{where}: needs an 'answer' (a string or a number)")
        answer = str(answer)
        if "####" in answer:  # GSM8K: the final answer follows the worked solution
            answer = answer.rsplit("####", 1)[1]
        answer = answer.strip()
        if _NUM.fullmatch(answer):
            answer = answer.replace(",", "")
        if not answer:
            raise InputError(f"{where}: empty answer (after '####' for the GSM8K layout)")
        difficulty = row.get("difficulty", 1)
        if not isinstance(difficulty, int) or isinstance(difficulty, bool):
            raise InputError(f"{where}: 'difficulty' must be an integer (got {difficulty!r})")
        pid = str(row.get("id", f"{path.stem}-{lineno}"))
        if pid in seen:
            raise InputError(f"{where}: duplicate id {pid!r}; ids must be unique")
        seen.add(pid)
        out.append(Problem(pid, prompt, answer, difficulty, "jsonl", extract, where))
    if not out:
        raise InputError(f"{path}: no problems found (expected one JSON object per line)")
    return out


def build_problems(cfg) -> tuple[list[Problem], list[Problem], list[Problem]]:
    """(train, heldout, retention) of a RunConfig's [data] section: data.jsonl or the
    arithmetic suite, split per cell; the retention set is never distilled, only measured:
    data.retention_jsonl, retention_{add,mul}_digits cells, else n_retention built-in
    `compare` problems."""
    d = cfg.data
    if d.jsonl:
        problems = load_jsonl(d.jsonl, d.extract)
    else:
        per_cell = {**cell_counts("add", d.add_digits, d.add_counts, d.n_train_per_cell,
                                  d.n_eval_per_cell),
                    **cell_counts("mul", d.mul_digits, d.mul_counts, d.n_train_per_cell,
                                  d.n_eval_per_cell)}
        problems = arithmetic_suite(cfg.run.seed, 0, d.add_digits, d.mul_digits, per_cell)
    train, heldout = split(problems, d.n_eval_per_cell, cfg.run.seed)
    if not heldout:  # every cell keeps one problem for training: too few to hold any out
        raise ConfigError(f"{d.jsonl or 'the arithmetic suite'}: {len(problems)} problem(s) "
                          f"leave no held-out problem with data.n_eval_per_cell = "
                          f"{d.n_eval_per_cell} (each difficulty keeps one for training); "
                          "give at least 2 problems per difficulty")
    if d.retention_jsonl:
        retention = load_jsonl(d.retention_jsonl, d.extract)
    elif d.retention_add_digits or d.retention_mul_digits:
        retention = retention_cells(cfg.run.seed, d.n_retention, d.retention_add_digits,
                                    d.retention_mul_digits)
    else:
        retention = retention_suite(cfg.run.seed, d.n_retention)
    return train, heldout, retention
