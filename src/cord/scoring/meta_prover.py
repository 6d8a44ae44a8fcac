"""Predictive perplexity: how well the reasoning so far predicts the known answer.

    S(tau) = exp( mean_m log p_MP(a_m | question, tau, "</think> The final answer is", a_<m) ),  a = answer + "."

in (0, 1], higher is better. The question is inside the scored context (the meta-prover's own
chat template), so the score depends on the problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from ..engines.base import Engine, ScoreRequest
from ..prompts import ANSWER_END, ANSWER_LEAD, answer_lead, open_reasoning, user_turn


def predictive_perplexity(logprobs: list[float]) -> float:
    return math.exp(sum(logprobs) / len(logprobs))


class Scored(NamedTuple):
    """A selection rule's verdict on one candidate: its score (higher is better), the tokens the
    meta-prover computed for it, and why it could not be scored (its problem then fails alone)."""

    score: float
    tokens: int
    error: str | None = None
    read: int = 0  # tokens of the scored text (`tokens` of them computed, the rest from the cache)


@dataclass(frozen=True)
class ScoreItem:
    question: str
    answer: str
    steps: tuple[str, ...]  # accepted steps before the candidate
    candidate: str  # the step being judged ("" to score `steps` as they are)


def meta_prover_request(
    chat_prompt: str, steps: tuple[str, ...], candidate: str, answer: str, lead: str = ANSWER_LEAD, end: str = ANSWER_END
) -> ScoreRequest:
    """The scored text for steps + candidate: the accepted steps are the shared (cached) prefix;
    the scored tokens are the answer's and those of `end`, which closes it."""
    reasoning_end = candidate or (steps[-1] if steps else "")
    return ScoreRequest(open_reasoning(chat_prompt), tuple(steps), candidate, answer_lead(reasoning_end, lead), answer + end)


class MetaProver:
    """Scores prefixes with one engine; counts the tokens it computed."""

    def __init__(
        self,
        engine: Engine,
        system_prompt: str | None = None,
        step_instruction: str | None = None,
        lead: str = ANSWER_LEAD,
        end: str = ANSWER_END,
    ):
        self.engine = engine
        self.system_prompt, self.step_instruction, self.lead, self.end = system_prompt, step_instruction, lead, end
        self._prompts: dict[str, str] = {}

    def chat(self, question: str) -> str:
        """The meta-prover reads the question as the teachers were given it (with the instruction)."""
        if question not in self._prompts:
            self._prompts[question] = self.engine.chat_prompt(user_turn(question, self.step_instruction), self.system_prompt)
        return self._prompts[question]

    def score(self, items: list[ScoreItem], answer_only: bool = False) -> list[Scored]:
        """S and the tokens computed for each item; identical items are scored once. An item the
        engine could not score (longer than its context, refused by its server) carries the reason.
        `answer_only`: S over the answer's tokens without `end` (the paper's Eq. 3)."""
        unique: dict[ScoreItem, int] = {}
        for item in items:
            unique.setdefault(item, len(unique))
        end = "" if answer_only else self.end
        requests = [meta_prover_request(self.chat(it.question), it.steps, it.candidate, it.answer, self.lead, end) for it in unique]
        results = self.engine.score(requests) if requests else []
        scored = [
            Scored(0.0, 0, r.error) if r.error else Scored(predictive_perplexity(r.logprobs), r.new_tokens, read=r.total_tokens)
            for r in results
        ]
        seen: set[int] = set()
        out = []
        for item in items:
            index = unique[item]
            out.append(scored[index] if index not in seen else scored[index]._replace(tokens=0))
            seen.add(index)
        return out
