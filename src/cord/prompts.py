"""Text layout shared by teachers and the meta-prover.

Teacher prompt:   chat(question) + "<think>\n" + steps so far + opening of the next step
Meta-prover text: chat(question) + "<think>\n" + steps (+ "</think>") + " The final answer is " + answer
"""

from __future__ import annotations

THINK_OPEN = "<think>\n"
THINK_CLOSE = "</think>"
ANSWER_LEAD = " The final answer is "
STEP_MARKER = "### Step"


def teacher_prompt(chat_prompt: str, reasoning: str, opening: str = "") -> str:
    """The assistant turn opened with <think>, the reasoning so far, and the next step's opening."""
    return chat_prompt + THINK_OPEN + reasoning + opening


def answer_lead(reasoning: str) -> str:
    """What follows the reasoning in the scored text: close the think block if still open."""
    return ("" if reasoning.endswith(THINK_CLOSE) else THINK_CLOSE) + ANSWER_LEAD


def score_context(chat_prompt: str, steps: list[str] | tuple[str, ...], candidate: str) -> tuple[str, ...]:
    """Pieces of the meta-prover context for `steps + candidate` (the answer is the target)."""
    reasoning_end = candidate if candidate else (steps[-1] if steps else "")
    return (chat_prompt + THINK_OPEN, *steps, candidate, answer_lead(reasoning_end))
