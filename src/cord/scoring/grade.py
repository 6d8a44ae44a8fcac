"""Answer checking: math-verify equivalence (gold first), an LLM judge for open-ended answers
(`grading.method`), and step-level trace validity.

A finished problem's record is graded once, in the main thread (`Grader.grade`, called by
`Strategy.run`). math-verify limits its time with signal alarms, which work in the main thread
only, so a check made in a problem's thread (the binary-judgment ablation grades its judge's
answers while the search runs) runs without that limit.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import TYPE_CHECKING

from math_verify import parse, verify

from ..config import GradingConfig
from ..data import Problem
from ..engines.base import Engine, GenerateRequest, request_seed, sampling
from ..prompts import THINK_CLOSE
from ..registry import TRACE_CHECKERS

if TYPE_CHECKING:
    from ..records import Record

MATH_VERIFY_SECONDS = 5  # math-verify's own default, per parse and per comparison


class _NoTimeoutNotice(logging.Filter):
    """math-verify warns once that it runs without a time limit; here that is on purpose (see above)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_NoTimeoutNotice())


def _time_limit() -> int | None:
    return MATH_VERIFY_SECONDS if threading.current_thread() is threading.main_thread() else None


def _parse_gold(answer: str, limit: int | None):
    text = answer if ("$" in answer or "\\boxed" in answer) else f"${answer}$"
    parsed = parse(text, parsing_timeout=limit)
    return parsed or parse(answer, parsing_timeout=limit)


def graded_part(output: str) -> str | None:
    """The part of a model's output that grading reads: the text after its last `</think>`; None
    when the output never closes its reasoning, which grades as wrong.

    The one grading rule for records and students alike: numbers inside the reasoning never count,
    so a sample cut off mid-reasoning is wrong even when its reasoning holds the right number. Only
    the closing tag matters: a chat template may open `<think>` in the prompt, and then the output
    starts inside the reasoning without the opening tag."""
    _, closed, answer = output.rpartition(THINK_CLOSE)
    return answer if closed else None


def extract_answer(final_answer: str) -> str | None:
    """The answer stated in the text after </think> (boxed, or the last number or expression)."""
    parsed = parse(final_answer, parsing_timeout=_time_limit())
    return str(parsed[-1]) if parsed else None


def is_correct(gold: str, final_answer: str) -> bool:
    limit = _time_limit()
    predicted = parse(final_answer, parsing_timeout=limit)
    if not predicted:
        return False
    # verify returns False for a comparison that fails or times out (raise_on_error=False); its one
    # error, an alarm set outside the main thread, cannot happen: `limit` is None there
    return bool(verify(_parse_gold(gold, limit), predicted, timeout_seconds=limit, raise_on_error=False))


def valid_trace(problem: Problem, reasoning: str, predicted: str | None) -> bool | None:
    """Every step right, for problems that carry what a registered trace checker reads (the tiny
    problems' `reference_steps`); else None."""
    field = next((name for name in TRACE_CHECKERS.names() if name in problem.extra), None)
    if field is None:
        return None
    row = {"id": problem.id, "problem": problem.question, "answer": problem.answer, **problem.extra}
    return bool(TRACE_CHECKERS.load(field)(row, reasoning, predicted))


VERDICT = re.compile(r"\bVERDICT:\s*(CORRECT|INCORRECT)\b")
PLACEHOLDER = re.compile(r"\{(question|reference|response)\}")


def parse_verdict(reply: str) -> bool | None:
    """The judge's verdict, strictly: exactly one kind of `VERDICT: CORRECT|INCORRECT` after any
    think block; None when there is none or the reply says both."""
    found = set(VERDICT.findall(reply.rsplit(THINK_CLOSE, 1)[-1]))
    return found == {"CORRECT"} if len(found) == 1 else None


class Grader:
    """Grades a finished problem's record the way `grading.method` says."""

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
                seed=request_seed("judge", q, resp),
                **sampling(judge),
            )
            for q, ref, resp in items
        ]

    def verdicts(self, items: list[tuple[str, str, str]]) -> list[tuple[bool | None, str | None]]:
        """(correct, the judge's reply) for each (question, reference, final answer); no final
        answer is wrong with nothing to judge."""
        if self.cfg.method == "none":
            return [(None, None) for _ in items]
        if self.cfg.method == "math":
            return [(is_correct(ref, resp) if resp else False, None) for _, ref, resp in items]
        graded: list[tuple[bool | None, str | None]] = [(False, None)] * len(items)
        asked = [i for i, (_, _, resp) in enumerate(items) if resp]
        replies = self.judge.generate(self.judge_requests([items[i] for i in asked])) if asked else []
        for i, reply in zip(asked, replies):
            text = reply.text if reply.finish != "error" else f"[judge request failed: {reply.error}]"
            graded[i] = (parse_verdict(text), text)
        return graded

    def grade(self, problem: Problem, record: Record) -> None:
        """Fill in what the record and each of its alternatives state and whether it is right: the
        extracted answer, the verdict (with the judge's reply) and, where a checker reads the
        problem, whether every step is right."""
        targets = [record, *record.alternatives]
        # a trajectory's final_answer is what follows its reasoning's `</think>`: the same rule as a student's
        answers = [graded_part(target.reasoning + target.final_answer) or "" for target in targets]
        for target, answer in zip(targets, answers):
            target.predicted = extract_answer(answer) if answer else None
            target.valid_trace = valid_trace(problem, target.reasoning, target.predicted)
        verdicts = self.verdicts([(problem.question, problem.answer, answer) for answer in answers])
        for target, (correct, reply) in zip(targets, verdicts):
            target.correct, target.judge_reply = correct, reply
