"""The quality pass: what in a trajectory would teach a student a bad habit, written into its record.

Real reasoning teachers loop, overrun their budgets, leak tags and end their answers late; small
ones write empty steps. `assess` reads one trajectory (a record or a runner-up) and says, without
judging the answer's correctness (grading does that):
- how the reasoning closed: by the teacher (`</think>`, end of turn) or forced by the budget;
- who wrote the final answer: the teacher, the teacher after cord pre-filled the answer line, or
  nobody;
- how much of the text repeats itself (loops), as the share of word n-grams seen before;
- the empty steps kept, the steps cut at the token cap and who continued each;
- stray tags: a `<think>` inside the reasoning, a `</think>` before its end, tags or a step marker
  in the answer, a special token's text anywhere;
- a boxed answer that is a computation (`\\boxed{3+4=7}`), which math-verify grades by its
  right-hand side but a student should not learn to write;
- the reasoning's length in tokens.
`flags` names each finding; `cord export` drops rows by flag (results/export/rows.py) and
`cord evaluate` counts them.
"""

from __future__ import annotations

import re

from ..data.answers import boxed_contents
from ..prompts import STEP_MARKER, THINK, THINK_CLOSE
from .schema import Alternative, Quality, Record

REPEAT_NGRAM = 6  # words: long enough that arithmetic ("3 + 4 = 7") rarely repeats by chance
REPEATED_SHARE_LIMIT = 0.3  # above it the text loops (flag "repetitive")
STEP_NUMBER = re.compile(r"^\s*\d+\s*[.:)]?")
# chat-template tokens as text: <|im_end|>, <|endoftext|>, DeepSeek's fullwidth-bar tokens, <eos>, </s>
FULL_BAR = "\uff5c"  # DeepSeek-R1 writes <\uff5cend\u2581of\u2581sentence\uff5c>
SPECIAL_TOKEN = re.compile(
    rf"<\|[^|<>\s]{{1,40}}\|>|<{FULL_BAR}[^{FULL_BAR}<>]{{1,40}}{FULL_BAR}>|</?s>|<eos>|<bos>|<end_of_turn>|<start_of_turn>"
)
TAG = re.compile(rf"{re.escape(THINK_CLOSE)}|{re.escape(THINK)}|{SPECIAL_TOKEN.pattern}")

# What each flag means (the help of `cord export --drop-flagged` and the dataset card read this).
FLAGS = {
    "budget_forced": "the reasoning was closed by the budget, not by the teacher",
    "unclosed": "the reasoning never closed",
    "answer_prefilled": "the teacher's own answer had nothing to grade; cord wrote 'The final answer is \\boxed{' for it",
    "answer_missing": "no final answer",
    "repetitive": f"more than {REPEATED_SHARE_LIMIT:.0%} of the text repeats word {REPEAT_NGRAM}-grams seen before (loops)",
    "empty_steps": "a kept step says nothing (only a marker, tags or whitespace)",
    "cut_steps": "a step was cut at the teacher's token cap",
    "cut_continued_by_other": "a step cut at the cap was continued by another teacher",
    "stray_tags": "a <think>, </think>, step marker or special token's text where it does not belong",
    "boxed_computation": "the boxed answer is a computation (\\boxed{3+4=7}), not a result",
}


def says_nothing(text: str, marker: str = STEP_MARKER) -> bool:
    """Whether a step (or a final answer) says nothing: no letter or digit once tags, special
    tokens' text, the step marker and the step's number are taken away."""
    body = TAG.sub("", text).strip().lstrip("#").lstrip()
    marker = marker.lstrip("#").lstrip()
    if marker and body.startswith(marker):
        body = STEP_NUMBER.sub("", body[len(marker) :], count=1)
    return not any(ch.isalnum() for ch in body)


def cut_answer(text: str, marker: str = STEP_MARKER) -> str:
    """A final answer ends where the answer ends: before the first `</think>`, `<think>`, step
    marker or special token's text (a teacher that ran on wrote a second turn of reasoning)."""
    ends = [m.start() for m in TAG.finditer(text)]
    if marker and marker in text:
        ends.append(text.index(marker))
    return text[: min(ends)].rstrip() if ends else text


def repeated_share(text: str, n: int = REPEAT_NGRAM) -> float:
    """The share of the text's word n-grams that appeared earlier in it (0: none; near 1: a loop)."""
    words = text.split()
    total = len(words) - n + 1
    if total < n:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    repeated = 0
    for i in range(total):
        gram = tuple(words[i : i + n])
        repeated += gram in seen
        seen.add(gram)
    return round(repeated / total, 4)


def is_computation(boxed: str) -> bool:
    """`3+4=7`: an equation whose left side is not a bare name (`x = 5` and `f(x)=2x` are results)."""
    if "=" not in boxed or any(op in boxed for op in ("<", ">", "\\le", "\\ge", "\\ne")):
        return False
    left = boxed.split("=", 1)[0].strip()
    return bool(re.search(r"\d", left)) and bool(re.search(r"[-+*/^]|\\times|\\cdot|\\frac", left))


def stray_tags(reasoning: str, final_answer: str, marker: str) -> list[str]:
    found = []
    if THINK in reasoning:
        found.append(f"{THINK} in reasoning")
    if THINK_CLOSE in reasoning.removesuffix(THINK_CLOSE):
        found.append(f"{THINK_CLOSE} inside reasoning")
    for tag in (THINK, THINK_CLOSE):
        if tag in final_answer:
            found.append(f"{tag} in answer")
    if marker and marker in final_answer:
        found.append("step marker in answer")
    for where, text in (("reasoning", reasoning), ("answer", final_answer)):
        found += sorted({f"{m.group()} in {where}" for m in SPECIAL_TOKEN.finditer(text)})
    return found


def assess(trajectory: Record | Alternative, marker: str = STEP_MARKER) -> Quality:
    """The quality pass over one trajectory (a record or one of its alternatives)."""
    steps = trajectory.steps
    reasoning, answer = trajectory.reasoning, trajectory.final_answer
    end = steps[-1].end if steps else None
    quality = Quality(
        reasoning_end=end,
        answer={"prefilled": "prefilled", "empty": "missing"}.get(trajectory.answer_fallback or "", "teacher"),
        repeated_share=repeated_share(reasoning + "\n" + answer),
        empty_steps=sum(says_nothing(s.text, marker) for s in steps),
        cut_steps=[
            {"step": i, "teacher": s.teacher, "continued_by": steps[i + 1].teacher if i + 1 < len(steps) else None}
            for i, s in enumerate(steps)
            if s.end == "cap"
        ],
        stray_tags=stray_tags(reasoning, answer, marker),
        boxed_computation=any(is_computation(b) for b in boxed_contents(answer)),
        reasoning_tokens=sum(s.tokens for s in steps),
    )
    if not answer.strip() and quality.answer == "teacher":
        quality.answer = "missing"
    quality.flags = flags_of(quality, reasoning)
    return quality


def flags_of(q: Quality, reasoning: str, repeat_limit: float = REPEATED_SHARE_LIMIT) -> list[str]:
    """The names (FLAGS) of what the pass found, in FLAGS' order."""
    found = {
        "budget_forced": q.reasoning_end == "budget",
        "unclosed": bool(reasoning) and not reasoning.endswith(THINK_CLOSE),
        "answer_prefilled": q.answer == "prefilled",
        "answer_missing": q.answer == "missing",
        "repetitive": q.repeated_share > repeat_limit,
        "empty_steps": q.empty_steps > 0,
        "cut_steps": bool(q.cut_steps),
        "cut_continued_by_other": any(c["continued_by"] not in (None, c["teacher"]) for c in q.cut_steps),
        "stray_tags": bool(q.stray_tags),
        "boxed_computation": q.boxed_computation,
    }
    return [name for name in FLAGS if found[name]]
