"""Selection rules: how the candidate prefixes of a search step are ranked (higher is better).

`perplexity` is the method (S from the meta-prover, meta_prover.py); the others are the paper's
ablations (Table 5). Each rule is one class registered in `cord.registry.SELECTIONS`; a rule
receives the candidates as `ScoreItem`s (question, answer, accepted steps, candidate) with the
token length of each prefix, and returns a `Scored` (score, meta-prover tokens computed, and the
reason when a candidate could not be scored) for each.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..config import Config, ModelConfig, SearchConfig
from ..engines.base import Engine, GenerateRequest, ScoreRequest, request_seed
from ..errors import ConfigError
from ..prompts import FINAL_ANSWER, THINK_CLOSE, open_reasoning
from .grade import is_correct
from .meta_prover import MetaProver, Scored, ScoreItem


class SelectionRule:
    uses_meta_prover = True  # its time and tokens are charged to the meta-prover
    is_perplexity = False  # its score is S itself; otherwise S of the chosen trajectory is computed apart

    @classmethod
    def prepare(cls, config: Config) -> None:
        """Refuse a config this rule cannot run with (before any model loads)."""

    @classmethod
    def build(cls, config: Config, meta_prover: MetaProver, load: Callable[[ModelConfig], Engine]) -> SelectionRule:
        """The rule with any engine of its own, loaded by `load`."""
        return cls(config.search, meta_prover)

    def __init__(self, search: SearchConfig, meta_prover: MetaProver):
        self.search, self.meta_prover = search, meta_prover

    def rank(self, items: list[ScoreItem], lengths: list[int]) -> list[Scored]:
        raise NotImplementedError


class Perplexity(SelectionRule):
    """Predictive perplexity S of prefix + candidate (the paper's method)."""

    is_perplexity = True

    def rank(self, items, lengths):
        return self.meta_prover.score(items)


class RandomChoice(SelectionRule):
    """A uniformly random score: selection by chance. The draw is hashed from search.seed and the
    candidate, so it does not depend on batching or order."""

    uses_meta_prover = False

    def rank(self, items, lengths):
        return [Scored(request_seed(self.search.seed, "random", it.question, it.steps, it.candidate) / 2**31, 0) for it in items]


class MaxLength(SelectionRule):
    """The longest prefix (in tokens) wins."""

    uses_meta_prover = False

    def rank(self, items, lengths):
        return [Scored(float(n), 0) for n in lengths]


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

    def prompt(self, item: ScoreItem) -> str:
        reasoning = "".join(item.steps) + item.candidate
        cue = "" if reasoning.endswith(THINK_CLOSE) else TIME_IS_UP + THINK_CLOSE
        return open_reasoning(self.meta_prover.chat(item.question)) + reasoning + cue + f" {FINAL_ANSWER}:"

    def rank(self, items, lengths):
        requests = [
            GenerateRequest(
                self.prompt(it), self.max_tokens, self.temperature, seed=request_seed(self.search.seed, "judge", self.prompt(it), r)
            )
            for it in items
            for r in range(self.rollouts)
        ]
        outs = self.meta_prover.engine.generate(requests) if requests else []
        results = []
        for i, item in enumerate(items):
            chunk = outs[i * self.rollouts : (i + 1) * self.rollouts]
            right = sum(is_correct(item.answer, f"{FINAL_ANSWER}: " + c.text) for c in chunk)
            error = next((c.error for c in chunk if c.finish == "error"), None)
            results.append(Scored(right / self.rollouts, sum(c.tokens for c in chunk), error))
        return results


def preference(engine: Engine, pairs: list[tuple[ScoreRequest, ScoreRequest]]) -> list[tuple[float, int, str | None]]:
    """For each pair of scored texts (a verdict and its opposite): p(a) / (p(a) + p(b)), 0.5 when
    both are 0; the tokens computed for both; why either could not be scored."""
    results = engine.score([r for pair in pairs for r in pair]) if pairs else []
    out = []
    for a, b in zip(results[::2], results[1::2]):
        p_a, p_b = math.exp(sum(a.logprobs)), math.exp(sum(b.logprobs))
        out.append((p_a / (p_a + p_b) if p_a + p_b > 0 else 0.5, a.new_tokens + b.new_tokens, a.error or b.error))
    return out


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
        pairs = []
        for it in items:
            text = STEP_JUDGE_PROMPT.format(question=it.question, steps="".join(it.steps) or "(none)", candidate=it.candidate)
            chat = engine.chat_prompt(text, system)
            pairs.append((ScoreRequest(chat, lead_in="Answer:", target=" Yes"), ScoreRequest(chat, lead_in="Answer:", target=" No")))
        return [Scored(p, tokens, error) for p, tokens, error in preference(engine, pairs)]


def math_shepherd_text(question: str, steps: list[str], tag: str, verdicts: list[str] | None = None) -> str:
    """Math-Shepherd's layout, which `prm` scores and a PRM trains on: the question, then each step
    (stripped, without </think>) followed by `tag`, one step a line. With `verdicts` (one token per
    step, e.g. "+" / "-"), each tag is followed by its step's verdict: the text a PRM learns from,
    with the loss on the verdicts alone."""
    verdicts = verdicts if verdicts is not None else [""] * len(steps)
    lines = [f"{step.replace(THINK_CLOSE, '').strip()}{tag}{verdict}" for step, verdict in zip(steps, verdicts, strict=True)]
    return f"{question} " + "\n".join(lines)


class ProcessReward(SelectionRule):
    """A trained process reward model (the `prm` model) judges the last step, in Math-Shepherd's
    format by default: the question, then every step followed by `prm_step_tag`; the score is
    p(good) / (p(good) + p(bad)) for the PRM's next token after the last tag (`prm_good`,
    `prm_bad`). Any causal-LM PRM that reads its verdict as a next token fits (set the tag and
    labels); PRMs with a classification head are not supported."""

    uses_meta_prover = False

    @classmethod
    def prepare(cls, config: Config) -> None:
        if config.prm is None:
            raise ConfigError("prm: selection 'prm' needs a process reward model (prm.model)")

    @classmethod
    def build(cls, config, meta_prover, load):
        return cls(config.search, meta_prover, load(config.prm))

    def __init__(self, search, meta_prover, engine: Engine | None = None):
        super().__init__(search, meta_prover)
        self.engine = engine

    def text(self, item: ScoreItem) -> str:
        return math_shepherd_text(item.question, [*item.steps, item.candidate], self.search.prm_step_tag)

    def rank(self, items, lengths):
        good, bad, tag = self.search.prm_good, self.search.prm_bad, self.search.prm_step_tag
        pairs = []
        for it in items:
            prompt = self.text(it)[: -len(tag)]  # the last tag is the lead-in the verdict follows
            pairs.append((ScoreRequest(prompt, lead_in=tag, target=good), ScoreRequest(prompt, lead_in=tag, target=bad)))
        return [Scored(p, 0, error and f"prm: {error}") for p, _, error in preference(self.engine, pairs)]
