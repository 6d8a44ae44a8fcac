"""Text layout shared by teachers, the meta-prover, the student and the shipped tiny models (defined once here).

Teacher prompt:   chat(question) + "<think>\\n" + steps so far + opening of the next step
Meta-prover text: chat(question) + "<think>\\n" + steps (+ "</think>") + " The final answer is " + answer + "."
A tiny model's reasoning: "### Step 1. 3 + 4 = 7\\n### Step 2. ...\\n</think>\\nThe final answer is \\\\boxed{7}."
"""

from __future__ import annotations

THINK = "<think>"
THINK_OPEN = THINK + "\n"
THINK_CLOSE = "</think>"
STEP_MARKER = "### Step"
FINAL_ANSWER = "The final answer is"
ANSWER_LEAD = f" {FINAL_ANSWER} "  # what the meta-prover reads before the answer it scores
# scored after the answer: without it, S of "2" would count every answer that starts with 2 (22, 204)
ANSWER_END = "."

# What follows the question in a user turn that asks for no step format (DeepSeek-R1's evaluation
# instruction): the student's, in training (`cord export`) and evaluation (`cord eval-student`)
# alike, and the teachers' under the line-break and prefix segmentations, which need no marker.
REASONING_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

# The paper embeds "### Step" in the initial prompt so that reasoning models, which were never
# trained on the format, write separated steps; without it their steps run to the token cap.
STEP_INSTRUCTION = (
    f'{REASONING_INSTRUCTION} In your thinking, start every step on a new line with "{STEP_MARKER} 1.", "{STEP_MARKER} 2.", and so on.'
)


def user_turn(question: str, instruction: str | None) -> str:
    """The user message: the question, then the instruction (none when it is empty)."""
    return f"{question}\n\n{instruction}" if instruction else question


def opens_think(chat_prompt: str) -> bool:
    """Whether the chat template's generation prompt already opened the think block."""
    return chat_prompt.endswith((THINK_OPEN, THINK))


def open_reasoning(chat_prompt: str) -> str:
    """The rendered chat prompt with the think block open. Templates of QwQ-32B and of
    DeepSeek-R1-Distill (since February 2025) already end the generation prompt with
    "<think>\n"; a second one would be text the model never saw."""
    if not opens_think(chat_prompt):
        return chat_prompt + THINK_OPEN
    return chat_prompt if chat_prompt.endswith(THINK_OPEN) else chat_prompt + "\n"


def teacher_prompt(chat_prompt: str, reasoning: str, opening: str = "") -> str:
    """The assistant turn with <think> open, the reasoning so far, and the next step's opening."""
    return open_reasoning(chat_prompt) + reasoning + opening


def answer_lead(reasoning: str, lead: str = ANSWER_LEAD) -> str:
    """What follows the reasoning in the scored text: close the think block if still open, then
    the lead-in (search.answer_lead; e.g. " The answer is: " before a reference paragraph)."""
    return ("" if reasoning.endswith(THINK_CLOSE) else THINK_CLOSE) + lead


# When a teacher's own final answer has nothing to grade (empty, a step marker, no readable answer),
# it is asked again with this written for it after </think> (search/finish.py, Finisher.answers).
ANSWER_PREFILL = f"\n{FINAL_ANSWER} \\boxed{{"

# grading.method "judge": an LLM compares a response with a reference (open-ended tasks).
JUDGE_PROMPT = (
    "You are grading a response to a question against a reference answer.\n\n"
    "Question:\n{question}\n\nReference answer:\n{reference}\n\nResponse:\n{response}\n\n"
    "Does the response reach the same conclusion as the reference answer? "
    'End your reply with one line that is exactly "VERDICT: CORRECT" or "VERDICT: INCORRECT".'
)
