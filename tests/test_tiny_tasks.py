import json
import random

import pytest

from cord.tiny import tasks
from cord.tiny.tasks import SKILLS, check_trace, generate_problems, implied_answer, parse_equation, reasoning_text


def _trace(steps):
    return reasoning_text(steps)


def test_generator_is_deterministic_and_seeded():
    a = generate_problems(50, seed=3)
    b = generate_problems(50, seed=3)
    c = generate_problems(50, seed=4)
    assert a == b
    assert a != c
    assert len({r["id"] for r in a}) == 50


def test_rows_are_consistent():
    for mix in ("mixed",) + SKILLS:
        for r in generate_problems(200, seed=1, mix=mix):
            assert set(r) >= {"id", "problem", "answer", "skills", "reference_steps"}
            assert 2 <= len(r["reference_steps"]) == len(r["skills"]) <= 4
            prev = None
            for eq, skill in zip(r["reference_steps"], r["skills"]):
                a, op, b, c = parse_equation(eq)
                assert tasks.SKILL_OF_OP[op] == skill
                assert tasks.apply_op(a, op, b) == c and 1 <= c <= 99
                if op == "/":
                    assert a % b == 0
                if prev is not None:
                    assert a == prev
                prev = c
            assert r["answer"] == str(prev)
            assert check_trace(r, _trace(r["reference_steps"]), r["answer"])
            if mix == "mixed":
                assert len(set(r["skills"])) >= 2
            else:
                assert set(r["skills"]) == {mix}


def test_all_skills_appear_in_mixed():
    rows = generate_problems(300, seed=0)
    seen = {s for r in rows for s in r["skills"]}
    assert seen == set(SKILLS)


def test_unknown_mix():
    with pytest.raises(ValueError):
        generate_problems(3, seed=0, mix="pow")


ROW = {
    "id": "x",
    "problem": "...",
    "answer": "32",
    "skills": ["addsub", "mul", "addsub"],
    "reference_steps": ["7 + 5 = 12", "12 * 3 = 36", "36 - 4 = 32"],
}


def test_check_trace_accepts_valid():
    good = "<think>\n### Step 1. 7 + 5 = 12\n### Step 2. Triple it: 12 * 3 = 36\n### Step 3. 36 - 4 = 32\n</think>"
    assert check_trace(ROW, good, "32")
    assert check_trace(ROW, good, "\\boxed{32}")
    assert check_trace(ROW, good.replace("*", "x"), "32")


@pytest.mark.parametrize(
    "bad",
    [
        # wrong arithmetic
        "### Step 1. 7 + 5 = 12\n### Step 2. 12 * 3 = 35\n### Step 3. 35 - 3 = 32\n",
        # wrong operation (right arithmetic, right final value by accident is still invalid)
        "### Step 1. 7 + 5 = 12\n### Step 2. 12 + 24 = 36\n### Step 3. 36 - 4 = 32\n",
        # does not use the previous result
        "### Step 1. 7 + 5 = 12\n### Step 2. 12 * 3 = 36\n### Step 3. 36 - 4 = 32\n".replace("36 - 4", "37 - 5"),
        # missing step
        "### Step 1. 7 + 5 = 12\n### Step 2. 12 * 3 = 36\n",
        # extra step
        "### Step 1. 7 + 5 = 12\n### Step 2. 12 * 3 = 36\n### Step 3. 36 - 4 = 32\n### Step 4. 32 + 0 = 32\n",
        # misnumbered
        "### Step 1. 7 + 5 = 12\n### Step 3. 12 * 3 = 36\n### Step 3. 36 - 4 = 32\n",
        # unparsable step
        "### Step 1. 7 + 5 = 12\n### Step 2. multiply by three\n### Step 3. 36 - 4 = 32\n",
        # wrong start value
        "### Step 1. 8 + 4 = 12\n### Step 2. 12 * 3 = 36\n### Step 3. 36 - 4 = 32\n",
    ],
)
def test_check_trace_rejects_invalid(bad):
    assert not check_trace(ROW, "<think>\n" + bad + "</think>", "32")


def test_check_trace_requires_right_prediction():
    good = _trace(ROW["reference_steps"])
    assert not check_trace(ROW, good, "36")
    assert not check_trace(ROW, good, None)


def test_implied_answer_propagates_errors():
    assert implied_answer(ROW, "<think>\n### Step 1. 7 + 5 = 12\n</think>") == 32
    assert implied_answer(ROW, "<think>\n### Step 1. 7 + 6 = 13\n</think>") == 35
    assert implied_answer(ROW, _trace(ROW["reference_steps"])) == 32


def test_cli_writes_jsonl(tmp_path):
    out = tmp_path / "sub" / "problems.jsonl"
    assert tasks.main(["--n", "7", "--seed", "5", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 7
    for r in rows:
        assert isinstance(r["id"], str) and isinstance(r["problem"], str)
        assert r["answer"].isdigit()
        assert r["reference_steps"] and r["skills"]
    assert rows == generate_problems(7, 5)
    out2 = tmp_path / "mul.jsonl"
    tasks.main(["--n", "3", "--seed", "5", "--out", str(out2), "--mix", "mul"])
    assert all(set(json.loads(line)["skills"]) == {"mul"} for line in out2.read_text().splitlines())


def test_problems_of_a_set_number_of_operations():
    rows = generate_problems(20, seed=4, mix="addsub", steps=1)
    assert all(len(r["reference_steps"]) == 1 and r["id"].startswith("addsub1-s4-") for r in rows)
    assert rows == generate_problems(20, seed=4, mix="addsub", steps=1) and generate_problems(3, 4, "addsub")[0]["id"].startswith("addsub-")
    with pytest.raises(ValueError, match="mixed problems take 2 to 4 operations"):
        generate_problems(2, seed=0, steps=1)


def test_the_free_layout_is_checked_sentence_by_sentence_and_checks_are_not_operations():
    good = "<think>\nFirst, 7 + 5 = 12. Let me check: 7 + 5 = 12.\n\nSecond, 12 * 3 = 36. Third, 36 - 4 = 32.\n</think>"
    assert tasks.parse_steps(good) == [(1, (7, "+", 5, 12)), (2, (12, "*", 3, 36)), (3, (36, "-", 4, 32))]
    assert check_trace(ROW, good, "32")
    assert not check_trace(ROW, good.replace("12 * 3 = 36", "12 + 24 = 36"), "32")  # wrong operation
    assert not check_trace(ROW, good.replace("36 - 4 = 32.", "36 - 4 = 32. Then four."), "32")  # a sentence that is no operation
    assert implied_answer(ROW, "<think>\nFirst, 7 + 6 = 13. Let me check: 7 + 6 = 13.\n\n</think>") == 35
    assert check_trace(ROW, "<think>\n7 + 5 = 12. 12 * 3 = 36. 36 - 4 = 32.\n</think>", "32")  # ordinals are layout, not validity


def test_the_free_layout_writes_every_operation_once_and_checks_restate_one():
    rng = random.Random(0)
    for _ in range(50):
        row = tasks.make_problem(rng, "mixed")
        pieces = tasks.free_layout(rng, row["reference_steps"])
        text = "".join(t for t, _ in pieces)
        assert "###" not in text and text.endswith(".\n")
        assert check_trace(row, "<think>\n" + text + "</think>", row["answer"])
        stated = [i for t, i in pieces if i is not None]
        assert sorted(set(stated)) == list(range(len(row["reference_steps"])))
