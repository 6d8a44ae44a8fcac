"""Predictive perplexity: how well the reasoning so far predicts the known answer.

    S(tau) = exp( mean_m log p_MP(a_m | question, tau, "</think> The final answer is", a_<m) )

in (0, 1], higher is better. The question is inside the scored context (the meta-prover's own
chat template), so the score depends on the problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .engines.base import Engine, ScoreRequest
from .prompts import score_context


def predictive_perplexity(logprobs: list[float]) -> float:
    return math.exp(sum(logprobs) / len(logprobs))


@dataclass(frozen=True)
class ScoreItem:
    question: str
    answer: str
    steps: tuple[str, ...]  # accepted steps before the candidate
    candidate: str  # the step being judged ("" to score `steps` as they are)


class MetaProver:
    """Scores prefixes with one engine; counts the tokens it computed."""

    def __init__(self, engine: Engine, system_prompt: str | None = None):
        self.engine = engine
        self.system_prompt = system_prompt
        self._prompts: dict[str, str] = {}

    def _chat(self, question: str) -> str:
        if question not in self._prompts:
            self._prompts[question] = self.engine.chat_prompt(question, self.system_prompt)
        return self._prompts[question]

    def score(self, items: list[ScoreItem]) -> list[tuple[float, int]]:
        """(S, tokens computed) for each item; identical items are scored once."""
        unique: dict[ScoreItem, int] = {}
        for item in items:
            unique.setdefault(item, len(unique))
        requests = [
            ScoreRequest(score_context(self._chat(it.question), it.steps, it.candidate), it.answer)
            for it in unique
        ]
        results = self.engine.score(requests) if requests else []
        scored = [(predictive_perplexity(r.logprobs), r.new_tokens) for r in results]
        seen: set[int] = set()
        out = []
        for item in items:
            index = unique[item]
            s, tokens = scored[index]
            out.append((s, 0 if index in seen else tokens))
            seen.add(index)
        return out


# ---------------------------------------------------------------------------
# Selection ablations (paper Table 5): other ways to rank candidate prefixes.

TIME_IS_UP = (
    "Time is up. Given the time I've spent and the approaches I've tried, I should stop thinking "
    "and formulate a final answer based on what I already have."
)

STEP_JUDGE_PROMPT = (
    "Here is a problem and a partial solution. Decide whether the LAST step is correct and useful.\n\n"
    "Problem:\n{question}\n\nSolution so far:\n{steps}\n\nLast step:\n{candidate}\n\n"
    "Answer with Yes or No."
)


class BinaryJudge:
    """The judge completes prefix + "time is up" cue; its answers are graded; S = share correct."""

    def __init__(self, engine: Engine, system_prompt: str | None, rollouts: int, temperature: float, max_tokens: int, seed: int = 0):
        self.engine, self.system_prompt = engine, system_prompt
        self.rollouts, self.temperature, self.max_tokens, self.seed = rollouts, temperature, max_tokens, seed

    def prompt(self, item: ScoreItem) -> str:
        from .prompts import THINK_CLOSE, THINK_OPEN

        reasoning = "".join(item.steps) + item.candidate
        chat = self.engine.chat_prompt(item.question, self.system_prompt)
        cue = "" if reasoning.endswith(THINK_CLOSE) else TIME_IS_UP + THINK_CLOSE
        return chat + THINK_OPEN + reasoning + cue + " The final answer is:"

    def score(self, items: list[ScoreItem]) -> list[tuple[float, int]]:
        from .engines.base import GenerateRequest
        from .grade import is_correct

        self.seed += 1
        requests = [GenerateRequest(self.prompt(it), self.max_tokens, self.temperature, seed=self.seed * 7919 + r)
                    for it in items for r in range(self.rollouts)]
        outs = self.engine.generate(requests) if requests else []
        results = []
        for i, item in enumerate(items):
            chunk = outs[i * self.rollouts : (i + 1) * self.rollouts]
            right = sum(is_correct(item.answer, "The final answer is: " + c.text) for c in chunk)
            results.append((right / self.rollouts, sum(c.tokens for c in chunk)))
        return results


class StepJudge:
    """A generic LLM step judge standing in for a PRM: p(Yes) / (p(Yes) + p(No)) for the last step.

    This is a prompt, not a trained process reward model; point it at a PRM-style model to use one.
    """

    def __init__(self, engine: Engine, system_prompt: str | None = None):
        self.engine, self.system_prompt = engine, system_prompt

    def score(self, items: list[ScoreItem]) -> list[tuple[float, int]]:
        requests = []
        for it in items:
            text = STEP_JUDGE_PROMPT.format(question=it.question, steps="".join(it.steps) or "(none)", candidate=it.candidate)
            chat = self.engine.chat_prompt(text, self.system_prompt)
            requests += [ScoreRequest((chat, "", "Answer:"), " Yes"), ScoreRequest((chat, "", "Answer:"), " No")]
        results = self.engine.score(requests) if requests else []
        out = []
        for i in range(len(items)):
            yes, no = results[2 * i], results[2 * i + 1]
            p_yes, p_no = math.exp(sum(yes.logprobs)), math.exp(sum(no.logprobs))
            out.append((p_yes / (p_yes + p_no) if p_yes + p_no > 0 else 0.5, yes.new_tokens + no.new_tokens))
        return out
