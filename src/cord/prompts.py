"""Text layout shared by teachers, the meta-prover and the shipped tiny models (defined once here).

Teacher prompt:   chat(question) + "<think>\\n" + steps so far + opening of the next step
Meta-prover text: chat(question) + "<think>\\n" + steps (+ "</think>") + " The final answer is " + answer
A tiny model's reasoning: "### Step 1. 3 + 4 = 7\\n### Step 2. ...\\n</think>\\nThe final answer is \\\\boxed{7}."
"""

from __future__ import annotations

THINK = "<think>"
THINK_OPEN = THINK + "\n"
THINK_CLOSE = "</think>"
STEP_MARKER = "### Step"
FINAL_ANSWER = "The final answer is"
ANSWER_LEAD = f" {FINAL_ANSWER} "  # what the meta-prover reads before the answer it scores


def teacher_prompt(chat_prompt: str, reasoning: str, opening: str = "") -> str:
    """The assistant turn opened with <think>, the reasoning so far, and the next step's opening."""
    return chat_prompt + THINK_OPEN + reasoning + opening


def answer_lead(reasoning: str) -> str:
    """What follows the reasoning in the scored text: close the think block if still open."""
    return ("" if reasoning.endswith(THINK_CLOSE) else THINK_CLOSE) + ANSWER_LEAD


def step_heading(number: int) -> str:
    """`### Step 3.`: how a step opens in the prompt-guided layout."""
    return f"{STEP_MARKER} {number}."


def boxed_answer(answer: str) -> str:
    """The final-answer text after </think> in the shipped tiny models' layout."""
    return f"\n{FINAL_ANSWER} \\boxed{{{answer}}}."
