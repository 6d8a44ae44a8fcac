"""Gold answers as datasets hold them, cut to the final answer the meta-prover scores and grading
compares (`data.answer_format`):

- `raw`: the field as it is (the default);
- `gsm8k`: the text after the last `####` (GSM8K's worked solutions), thousands separators dropped;
- `boxed`: what the last `\\boxed{...}` holds, braces balanced (MATH-style solutions);
- `regex`: the first group of `data.answer_regex`'s first match.

Also the check behind the warning for raw answers that look like worked solutions: a meta-prover
scoring a whole solution, and math-verify reading its first number, grade every problem wrong.
It sits on a low floor: nothing from cord above `errors` is imported here.
"""

from __future__ import annotations

import re

GSM8K_MARK = "####"
BOXED = re.compile(r"\\boxed\{")
SENTENCE_END = re.compile(r"[.!?](\s|$)|\n")
WORKED_MIN_WORDS = 30  # a final answer is a number or an expression; a solution runs to sentences


def boxed_contents(text: str) -> list[str]:
    """What each \\boxed{...} holds (braces balanced)."""
    found = []
    for match in BOXED.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                found.append(text[start:i])
                break
    return found


def extract_answer(text: str, answer_format: str, regex: str | None = None) -> str | None:
    """The final answer in a gold answer field, or None when `answer_format` finds none there."""
    if answer_format == "raw":
        answer = text
    elif answer_format == "gsm8k":
        answer = text.rsplit(GSM8K_MARK, 1)[1].replace(",", "") if GSM8K_MARK in text else ""
    elif answer_format == "boxed":
        answer = (boxed_contents(text) or [""])[-1]
    elif answer_format == "regex":
        match = re.search(regex or "", text)
        answer = (match.group(1) or "") if match else ""
    else:
        raise ValueError(f"unknown answer format {answer_format!r}")
    return answer.strip() or None


def why_not_found(answer_format: str, regex: str | None = None) -> str:
    """What a gold answer lacked when `extract_answer` found nothing in it."""
    return {
        "raw": "it is empty",
        "gsm8k": f"no '{GSM8K_MARK}' followed by an answer",
        "boxed": "no \\boxed{...} with something in it",
        "regex": f"no match of {regex!r} with something in its first group",
    }[answer_format]


def looks_worked(answer: str, math_graded: bool = True) -> bool:
    """Whether a raw gold answer looks like a worked solution rather than a final answer: it holds
    GSM8K's `####`, a \\boxed{...} among other text, or (`math_graded`: a judge reads reference
    paragraphs) several sentences of text."""
    if GSM8K_MARK in answer:
        return True
    boxed = boxed_contents(answer)
    if boxed and answer.strip() != f"\\boxed{{{boxed[-1]}}}":
        return True
    return math_graded and len(answer.split()) >= WORKED_MIN_WORDS and len(SENTENCE_END.findall(answer.strip())) >= 2
