from cord.data import Problem
from cord.grade import extract_answer, is_correct, valid_trace


def test_math_verify_equivalence_not_string_equality():
    assert is_correct("204", "\nThe final answer is \\boxed{204}.")
    assert is_correct("\\frac{3}{4}", "so the answer is \\boxed{0.75}")
    assert is_correct("\\left( 3, \\frac{\\pi}{2} \\right)", "\\boxed{(3, \\pi/2)}")
    assert not is_correct("204", "The final answer is \\boxed{205}.")
    assert not is_correct("204", "I do not know")
    assert extract_answer("The final answer is \\boxed{32}.") == "32"
    assert extract_answer("no answer here") is None


def test_valid_trace_only_for_problems_with_reference_steps():
    from cord.tiny.tasks import generate_problems

    row = generate_problems(1, seed=5)[0]
    problem = Problem(row["id"], row["problem"], row["answer"], {k: v for k, v in row.items() if k not in ("id", "problem", "answer")})
    good = "".join(f"### Step {i}. {eq}\n" for i, eq in enumerate(row["reference_steps"], 1)) + "</think>"
    assert valid_trace(problem, good, row["answer"]) is True
    assert valid_trace(problem, good, str(int(row["answer"]) + 1)) is False
    assert valid_trace(Problem("x", "q", "1"), good, "1") is None
