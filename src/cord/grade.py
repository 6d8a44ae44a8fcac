"""Answer checking: math-verify equivalence (gold first), an LLM judge for open-ended answers
(`grading.method`), and step-level trace validity."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from math_verify import parse, verify

from .config import GradingConfig
from .data import Problem
from .engines.base import Engine, GenerateRequest, request_seed
from .prompts import THINK_CLOSE
from .schedule import in_main_thread

if TYPE_CHECKING:
    from .records import Record


def _parse_gold(answer: str):
    text = answer if ("$" in answer or "\\boxed" in answer) else f"${answer}$"
    parsed = parse(text)
    return parsed or parse(answer)


def extract_answer(final_answer: str) -> str | None:
    """The answer stated in the text after </think> (boxed, or the last number or expression)."""
    return in_main_thread(_extract_answer, final_answer)


def is_correct(gold: str, final_answer: str) -> bool:
    # math-verify limits its time with signal alarms, which work in the main thread only
    return in_main_thread(_is_correct, gold, final_answer)


def _extract_answer(final_answer: str) -> str | None:
    parsed = parse(final_answer)
    return str(parsed[-1]) if parsed else None


def _is_correct(gold: str, final_answer: str) -> bool:
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


VERDICT = re.compile(r"\bVERDICT:\s*(CORRECT|INCORRECT)\b")
PLACEHOLDER = re.compile(r"\{(question|reference|response)\}")


def parse_verdict(reply: str) -> bool | None:
    """The judge's verdict, strictly: exactly one kind of `VERDICT: CORRECT|INCORRECT` after any
    think block; None when there is none or the reply says both."""
    found = set(VERDICT.findall(reply.rsplit(THINK_CLOSE, 1)[-1]))
    return found == {"CORRECT"} if len(found) == 1 else None


class Grader:
    """Grades final answers the way `grading.method` says, in one batch per call."""

    def __init__(self, cfg: GradingConfig, judge: Engine | None = None):
        self.cfg, self.judge = cfg, judge

    @classmethod
    def build(cls, cfg: GradingConfig, load) -> Grader:
        return cls(cfg, load(cfg.judge) if cfg.method == "judge" else None)

    def judge_prompt(self, question: str, reference: str, response: str) -> str:
        """grading.prompt with its three fields filled in one pass (other braces in it stay as they are)."""
        values = {"question": question, "reference": reference, "response": response}
        return PLACEHOLDER.sub(lambda m: values[m.group(1)], self.cfg.prompt)

    def judge_requests(self, items: list[tuple[str, str, str]]) -> list[GenerateRequest]:
        judge = self.cfg.judge
        return [
            GenerateRequest(
                prompt=self.judge.chat_prompt(self.judge_prompt(q, ref, resp), judge.system_prompt),
                max_tokens=self.cfg.max_tokens,
                temperature=judge.temperature,
                top_p=judge.top_p,
                seed=request_seed("judge", q, resp),
            )
            for q, ref, resp in items
        ]

    def grade(self, items: list[tuple[str, str, str]]) -> list[tuple[bool | None, str | None]]:
        """(correct, the judge's reply) for each (question, reference, final answer)."""
        if self.cfg.method == "none":
            return [(None, None) for _ in items]
        if self.cfg.method == "math":
            return [(is_correct(ref, resp) if resp else False, None) for _, ref, resp in items]
        graded: list[tuple[bool | None, str | None]] = [(False, None)] * len(items)
        asked = [i for i, (_, _, resp) in enumerate(items) if resp]  # no final answer: nothing to judge
        replies = self.judge.generate(self.judge_requests([items[i] for i in asked])) if asked else []
        for i, reply in zip(asked, replies):
            text = reply.text if reply.finish != "error" else f"[judge request failed: {reply.error}]"
            graded[i] = (parse_verdict(text), text)
        return graded

    def apply(self, records: list[Record]) -> None:
        """Grade every record and its alternatives (math is graded when the record is built)."""
        if self.cfg.method == "math" or not records:
            return
        targets = [(r, t) for r in records for t in (r, *r.alternatives)]
        grades = self.grade([(r.question, r.answer, t.final_answer) for r, t in targets])
        for (_, target), (correct, reply) in zip(targets, grades):
            target.correct = correct
            target.judge_reply = reply
