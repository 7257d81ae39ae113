"""Tasks: generation is seeded and exact, ids are unique, splits are disjoint, the verifier
accepts exactly the true answer, and the JSONL loader reports bad lines by file:line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paced_theory.errors import InputError
from paced_train.tasks import (
    DISTILL_SKILLS,
    RETENTION_SKILL,
    SKILLS,
    Problem,
    arithmetic_suite,
    build_problems,
    cell_counts,
    cell_size,
    extract_answer,
    load_jsonl,
    make_problem,
    make_problems,
    retention_cells,
    retention_suite,
    split,
    target_text,
    verify,
)


def _operands(p: Problem) -> tuple[int, int]:
    """Parse a prompt back into true operands (numbers are written least-significant first)."""
    lhs, rhs = p.prompt[:-1].split("+" if p.skill == "add" else "*")
    return int(lhs[::-1]), int(rhs[::-1])


def test_skills():
    assert set(DISTILL_SKILLS) == {"add", "mul"} and RETENTION_SKILL not in DISTILL_SKILLS
    assert set(SKILLS) == {*DISTILL_SKILLS, RETENTION_SKILL}


@settings(deadline=None, max_examples=40)
@given(seed=st.integers(0, 2**31), d=st.integers(1, 5), skill=st.sampled_from(DISTILL_SKILLS))
def test_arithmetic_answers_are_exact(seed, d, skill):
    for p in make_problems(skill, d, 8, seed):
        a, b = _operands(p)
        assert len(str(a)) == d  # difficulty = digits of the first operand (leading digit != 0)
        if skill == "add":
            assert len(str(b)) == d and p.answer == str(a + b)
        else:
            assert 2 <= b <= 9 and p.answer == str(a * b)
        assert p.difficulty == d and p.skill == skill and p.id.startswith(f"{skill}{d}-")
        assert target_text(p) == p.answer[::-1]
        assert verify(p, target_text(p)) and verify(p, target_text(p) + " \n")


def test_carries_are_present():
    probs = make_problems("add", 3, 200, 0)
    assert any(len(p.answer) == 4 for p in probs)  # a carry out of the top digit
    assert any(len(p.answer) == 3 for p in probs)
    # some problem carries into a middle digit: the digitwise sum without carries differs
    def no_carry(a, b):
        return sum(((a // 10**i + b // 10**i) % 10) * 10**i for i in range(3))

    assert any(no_carry(*_operands(p)) != int(p.answer) % 1000 for p in probs)


def test_generation_is_deterministic_unique_and_seeded():
    a, b = arithmetic_suite(3, 20), arithmetic_suite(3, 20)
    assert a == b and arithmetic_suite(4, 20) != a
    assert len({p.id for p in a}) == len(a) == 20 * 7
    assert len({p.prompt for p in a}) == len(a)
    # each cell has its own stream: adding cells does not change the others
    assert make_problems("add", 2, 20, 3) == [p for p in a if p.skill == "add" and
                                               p.difficulty == 2]
    only = arithmetic_suite(3, 20, add_digits=(2,), mul_digits=())
    assert only == make_problems("add", 2, 20, 3)


def test_small_cells_are_exhausted_exactly_and_overasking_is_an_error():
    assert cell_size("add", 1) == 100 and cell_size("mul", 1) == 80 and cell_size("add", 2) == 8100
    every = make_problems("mul", 1, 80, 0)
    assert len({p.prompt for p in every}) == 80
    with pytest.raises(InputError, match="only 80"):
        make_problems("mul", 1, 81, 0)
    with pytest.raises(InputError, match="unknown skill"):
        make_problems("div", 1, 1, 0)
    with pytest.raises(InputError, match="difficulty"):
        make_problem("add", 0, np.random.default_rng(0))


def test_retention_suite():
    r = retention_suite(0, 200)
    assert r == retention_suite(0, 200) and len({p.id for p in r}) == 200
    assert {p.answer for p in r} == {"<", "=", ">"}
    for p in r:
        a, b = (int(x) for x in p.prompt[4:-1].split(","))
        assert p.skill == "compare" and p.answer == ("<" if a < b else ">" if a > b else "=")
        assert verify(p, p.answer) and not verify(p, {"<": ">", ">": "=", "=": "<"}[p.answer])
    assert not {p.prompt for p in r} & {p.prompt for p in arithmetic_suite(0, 20)}


@pytest.mark.parametrize("heldout", [5, 0.25])
def test_split_is_disjoint_per_cell_and_seeded(heldout):
    probs = arithmetic_suite(1, 20)
    train, held = split(probs, heldout, seed=0)
    assert not {p.id for p in train} & {p.id for p in held}
    assert sorted(p.id for p in train + held) == sorted(p.id for p in probs)
    for s, d in {(p.skill, p.difficulty) for p in probs}:
        assert sum(p.skill == s and p.difficulty == d for p in held) == 5
    assert split(probs, heldout, seed=0) == (train, held)
    assert split(probs, heldout, seed=1)[1] != held
    tr, he = split(probs[:3], 10)  # a cell never loses all its training problems
    assert len(tr) == 1 and len(he) == 2
    with pytest.raises(InputError):
        split(probs, 1.5)


def test_verify_rejects_near_misses():
    p = Problem("x", "21+93=", "51", 2, "add")  # 12 + 39 = 51, written "15"
    assert verify(p, "15")
    for wrong in ["51", "150", "16", "", "15x", "1 5", "-15", "15.0", "١٥"]:
        assert not verify(p, wrong), wrong
    z = Problem("z", "0+0=", "0", 1, "add")
    assert verify(z, "0") and not verify(z, "00")


def test_extract_answer():
    assert extract_answer("The answer is 42.") == "42"
    assert extract_answer("work 7 #### 1,234") == "1234"
    assert extract_answer(" > because") == ">"
    assert extract_answer("-3.5 degrees") == "-3.5"
    assert extract_answer("yes") == "yes"
    assert extract_answer("   ") is None and extract_answer("#### ") is None


def test_last_number_for_chatty_models(tmp_path):
    """SmolLM2 restates the question ("3 + 4 = 7"): the first number is an operand."""
    assert extract_answer("3 + 4 = 7") == "3"
    assert extract_answer("3 + 4 = 7", "last") == "7"
    assert extract_answer("The sum of 2 and 8 is 1,010.", "last") == "1010"
    assert extract_answer("work 7 #### 12", "last") == "12"
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "What is 3+4?", "answer": 7}\n')
    first, last = load_jsonl(f)[0], load_jsonl(f, "last")[0]
    assert first.extract == "first" and last.extract == "last"
    assert not verify(first, "3 + 4 = 7") and verify(last, "3 + 4 = 7")
    assert verify(last, "7") and not verify(last, "7, not 8")


def test_verify_free_form_numeric_and_text():
    p = Problem("q", "How many?", "1000", 1, "jsonl")
    assert verify(p, "It is 1,000 apples") and verify(p, "#### 1000.0")
    assert not verify(p, "about 999") and not verify(p, "")
    t = Problem("t", "Capital?", "Paris", 1, "jsonl")
    assert verify(t, "Paris") and not verify(t, "Rome")


def test_jsonl_both_layouts(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"prompt": "1+1=", "answer": 2, "difficulty": 3, "id": "a"}) + "\n\n"
                 + json.dumps({"question": "Q?", "answer": "3 * 4 = 12\nso 1,000 #### 1,000"})
                 + "\n")
    probs = load_jsonl(f)
    assert [p.answer for p in probs] == ["2", "1000"] and probs[1].prompt == "Q?"
    assert probs[0] == Problem("a", "1+1=", "2", 3, "jsonl", source=f"{f}:1")
    assert probs[1].id == "p-3" and probs[1].difficulty == 1
    assert verify(probs[1], "It is 1000 apples") and not verify(probs[1], "12")


@pytest.mark.parametrize("body,line,needle", [
    ('{"prompt": "x"}\n', 1, "answer"),
    ('{"prompt": "x", "answer": 1}\n{oops\n', 2, "not valid JSON"),
    ('[1, 2]\n', 1, "JSON object"),
    ('{"answer": "1"}\n', 1, "prompt"),
    ('{"prompt": 3, "answer": "1"}\n', 1, "prompt"),
    ('{"prompt": "x", "answer": null}\n', 1, "answer"),
    ('{"question": "x", "answer": "no final answer ####  "}\n', 1, "empty answer"),
    ('{"prompt": "x", "answer": "1", "difficulty": "hard"}\n', 1, "difficulty"),
    ('{"prompt": "x", "answer": "1", "id": "a"}\n\n{"prompt": "y", "answer": "2", "id": "a"}\n',
     3, "duplicate id"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, body, line, needle):
    f = tmp_path / "p.jsonl"
    f.write_text(body)
    with pytest.raises(InputError, match=f"p.jsonl:{line}: .*{needle}"):
        load_jsonl(f)


def test_jsonl_missing_or_empty_file(tmp_path):
    with pytest.raises(InputError, match="nothere.jsonl"):
        load_jsonl(tmp_path / "nothere.jsonl")
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(InputError, match="e.jsonl: no problems"):
        load_jsonl(tmp_path / "e.jsonl")


def test_cells_are_capped_and_retention_cells_are_distinct():
    counts = cell_counts("add", (1, 3), (600, 600), 48, 20)
    assert counts[("add", 1)] == cell_size("add", 1) == 100  # 80 train + 20 held out
    assert counts[("add", 3)] == 620
    assert cell_counts("mul", (2,), (), 48, 10) == {("mul", 2): 58}
    with pytest.raises(InputError, match="mul1"):
        cell_counts("mul", (1,), (), 10, 80)
    ret = retention_cells(0, 30, (1,), (1,))
    assert len(ret) == 60 and len({p.id for p in ret}) == 60
    assert {p.skill for p in ret} == {"add", "mul"}


def test_jsonl_problems_and_retention_set(tiny_cfg, tmp_path):
    probs = tmp_path / "p.jsonl"
    probs.write_text("\n".join(json.dumps({"prompt": f"{i}+1=", "answer": str(i + 1)})
                               for i in range(20)))
    keep = tmp_path / "r.jsonl"
    keep.write_text('{"prompt": "say hi", "answer": "hi"}\n{"question": "2*2", '
                    '"answer": "work #### 4"}\n')
    train, held, ret = build_problems(tiny_cfg(f'data.jsonl="{probs}"',
                                               f'data.retention_jsonl="{keep}"'))
    assert len(train) + len(held) == 20 and [r.answer for r in ret] == ["hi", "4"]
    _, _, builtin = build_problems(tiny_cfg(f'data.jsonl="{probs}"'))
    assert all(p.prompt.startswith("cmp ") for p in builtin)
    keep.write_text('{"prompt": "x", "answer": "y"}\nnot json\n')
    with pytest.raises(InputError, match=r"r\.jsonl:2"):
        build_problems(tiny_cfg(f'data.retention_jsonl="{keep}"'))
