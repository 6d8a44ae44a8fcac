"""Selection rules: how the candidate prefixes of a search step are ranked (higher is better).

`perplexity` is the method (S from the meta-prover, score.py); the others are the paper's
ablations (Table 5). Each rule is one class registered in `cord.registry.SELECTIONS`; a rule
receives the candidates as `ScoreItem`s (question, answer, accepted steps, candidate) with the
token length of each prefix, and returns (score, meta-prover tokens computed) for each.
"""

from __future__ import annotations

import math
import random

from .config import SearchConfig
from .engines.base import GenerateRequest, ScoreRequest
from .grade import is_correct
from .prompts import FINAL_ANSWER, THINK_CLOSE, THINK_OPEN
from .score import MetaProver, ScoreItem


class SelectionRule:
    uses_meta_prover = True  # its time and tokens are charged to the meta-prover
    is_perplexity = False  # its score is S itself; otherwise S of the chosen trajectory is computed apart

    def __init__(self, search: SearchConfig, meta_prover: MetaProver):
        self.search, self.meta_prover = search, meta_prover

    def rank(self, items: list[ScoreItem], lengths: list[int]) -> list[tuple[float, int]]:
        raise NotImplementedError


class Perplexity(SelectionRule):
    """Predictive perplexity S of prefix + candidate (the paper's method)."""

    is_perplexity = True

    def rank(self, items, lengths):
        return self.meta_prover.score(items)


class RandomChoice(SelectionRule):
    """A uniformly random score: selection by chance (seeded by search.seed)."""

    uses_meta_prover = False

    def __init__(self, search, meta_prover):
        super().__init__(search, meta_prover)
        self.rng = random.Random(search.seed)

    def rank(self, items, lengths):
        return [(self.rng.random(), 0) for _ in items]


class MaxLength(SelectionRule):
    """The longest prefix (in tokens) wins."""

    uses_meta_prover = False

    def rank(self, items, lengths):
        return [(float(n), 0) for n in lengths]


TIME_IS_UP = (
    "Time is up. Given the time I've spent and the approaches I've tried, I should stop thinking "
    "and formulate a final answer based on what I already have."
)


class BinaryJudgment(SelectionRule):
    """The meta-prover completes prefix + the "time is up" cue `judge_rollouts` times; its answers
    are graded against the known answer; the score is the share that is right."""

    def __init__(self, search, meta_prover):
        super().__init__(search, meta_prover)
        self.rollouts, self.temperature = search.judge_rollouts, search.judge_temperature
        self.max_tokens = min(search.answer_budget, 64)
        self.seed = search.seed

    def prompt(self, item: ScoreItem) -> str:
        reasoning = "".join(item.steps) + item.candidate
        cue = "" if reasoning.endswith(THINK_CLOSE) else TIME_IS_UP + THINK_CLOSE
        return self.meta_prover.chat(item.question) + THINK_OPEN + reasoning + cue + f" {FINAL_ANSWER}:"

    def rank(self, items, lengths):
        self.seed += 1
        requests = [
            GenerateRequest(self.prompt(it), self.max_tokens, self.temperature, seed=self.seed * 7919 + r)
            for it in items
            for r in range(self.rollouts)
        ]
        outs = self.meta_prover.engine.generate(requests) if requests else []
        results = []
        for i, item in enumerate(items):
            chunk = outs[i * self.rollouts : (i + 1) * self.rollouts]
            right = sum(is_correct(item.answer, f"{FINAL_ANSWER}: " + c.text) for c in chunk)
            results.append((right / self.rollouts, sum(c.tokens for c in chunk)))
        return results


STEP_JUDGE_PROMPT = (
    "Here is a problem and a partial solution. Decide whether the LAST step is correct and useful.\n\n"
    "Problem:\n{question}\n\nSolution so far:\n{steps}\n\nLast step:\n{candidate}\n\n"
    "Answer with Yes or No."
)


class StepJudge(SelectionRule):
    """A generic LLM step judge standing in for a PRM: p(Yes) / (p(Yes) + p(No)) for the last step,
    asked of the meta-prover. This is a prompt, not a trained process reward model."""

    def rank(self, items, lengths):
        engine, system = self.meta_prover.engine, self.meta_prover.system_prompt
        requests = []
        for it in items:
            text = STEP_JUDGE_PROMPT.format(question=it.question, steps="".join(it.steps) or "(none)", candidate=it.candidate)
            chat = engine.chat_prompt(text, system)
            requests += [ScoreRequest(chat, lead_in="Answer:", target=" Yes"), ScoreRequest(chat, lead_in="Answer:", target=" No")]
        results = engine.score(requests) if requests else []
        out = []
        for i in range(len(items)):
            yes, no = results[2 * i], results[2 * i + 1]
            p_yes, p_no = math.exp(sum(yes.logprobs)), math.exp(sum(no.logprobs))
            out.append((p_yes / (p_yes + p_no) if p_yes + p_no > 0 else 0.5, yes.new_tokens + no.new_tokens))
        return out
