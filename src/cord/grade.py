"""Answer checking: math-verify equivalence (gold first), and step-level trace validity."""

from __future__ import annotations

from math_verify import parse, verify

from .data import Problem


def _parse_gold(answer: str):
    text = answer if ("$" in answer or "\\boxed" in answer) else f"${answer}$"
    parsed = parse(text)
    return parsed or parse(answer)


def extract_answer(final_answer: str) -> str | None:
    """The answer stated in the text after </think> (boxed, or the last number or expression)."""
    parsed = parse(final_answer)
    return str(parsed[-1]) if parsed else None


def is_correct(gold: str, final_answer: str) -> bool:
    predicted = parse(final_answer)
    if not predicted:
        return False
    try:
        return bool(verify(_parse_gold(gold), predicted))
    except Exception:
        return False


def valid_trace(problem: Problem, reasoning: str, predicted: str | None) -> bool | None:
    """Step-by-step check for generated tiny problems (they carry `reference_steps`); else None."""
    if "reference_steps" not in problem.extra:
        return None
    from .tiny.tasks import check_trace

    row = {"id": problem.id, "problem": problem.question, "answer": problem.answer, **problem.extra}
    return bool(check_trace(row, reasoning, predicted))
