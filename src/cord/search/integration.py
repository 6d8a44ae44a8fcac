"""Integration (Mixture-of-Agents style): an integrator model merges every teacher's complete
trajectories into one (JSON answer, labelled parts).

The prompt (MERGE_PROMPT) is cord's wording of what the paper says its prompt does (traces in
`<reasoning_step_i>` tags, one merged flow, four part categories, a JSON answer); the paper's own
text (its Table 17) is not in the summary cord was built from.

K x B complete trajectories rarely fit one integrator request at real lengths (12 of 16K tokens
is about 200K). When the integrator's context is known and the whole merge does not fit in it
with room left for the reply (reasoning_budget + answer_budget), the traces merge in rounds:
consecutive traces are grouped so that each group's prompt fits, each group is merged into one
trace, and so on until one merge holds them all. A trace too long to share a merge with any other
fails its problem with the reason. With no known context (a chat API), everything goes in one
request and a refusal fails the problem.

Real models answer with malformed JSON; it is repaired with `json_repair`. A problem whose merge
still cannot be parsed is recorded as failed with the raw text, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import json_repair

from ..config import Config
from ..data import Problem
from ..engines import Completion, GenerateRequest
from ..engines.base import sampling
from ..errors import ConfigError
from ..prompts import FINAL_ANSWER, THINK_CLOSE
from ..records import Record, Step
from .base import ProblemRun, Teacher, Trajectory
from .curation import CurationRun, CurationSearch
from .finish import build_record, failed_record

CATEGORIES = ("Progressive Reasoning", "Verification", "Multi-method Validation", "Error Correction")

MERGE_PROMPT = """You are given {n} reasoning traces written for the same problem, each inside <reasoning_step_i> tags.
Merge them into ONE coherent reasoning flow: keep the parts that are consistent and correct, drop repetition, and keep useful checks.
Write the merged reasoning as consecutive steps, each starting with "### Step k.", and label each step with one category: {categories}.
Answer with JSON only, in this form:
{{"integrated_step1": {{"content": "### Step 1. ...", "category": "Progressive Reasoning"}}, \
"integrated_step2": {{"content": "### Step 2. ...", "category": "Verification"}}, "answer_part": ["\\\\boxed{{...}}"]}}

Problem:
{question}

{traces}"""


def merge_prompt(question: str, traces: list[str]) -> str:
    body = "\n\n".join(f"<reasoning_step_{i}>\n{t}\n</reasoning_step_{i}>" for i, t in enumerate(traces, 1))
    return MERGE_PROMPT.format(n=len(traces), categories=", ".join(CATEGORIES), question=question, traces=body)


def parse_integration(text: str) -> tuple[list[tuple[str, str | None]], str] | None:
    """(steps as (content, category), answer text) from an integrator reply, or None if unusable."""
    start = text.find("{")
    if start == -1:
        return None
    try:
        data = json_repair.loads(text[start:])
    except (ValueError, RecursionError):  # nesting too deep to repair (json.loads may hit it first)
        return None
    if isinstance(data, list):
        data = next((d for d in data if isinstance(d, dict)), None)
    if not isinstance(data, dict):
        return None
    numbered = []
    for key, value in data.items():
        match = re.fullmatch(r"integrated_step_?(\d+)", str(key))
        if not match:
            continue
        if isinstance(value, dict):
            content, category = value.get("content"), value.get("category")
        else:
            content, category = value, None
        if isinstance(content, str) and content.strip():
            numbered.append((int(match.group(1)), content.strip(), category if isinstance(category, str) else None))
    answer = data.get("answer_part")
    if isinstance(answer, list):
        answer = " ".join(str(a) for a in answer)
    if not numbered or not isinstance(answer, str) or not answer.strip():
        return None
    numbered.sort()
    return [(c, cat) for _, c, cat in numbered], answer.strip()


def merged_trace(reply: str) -> str:
    """A merge reply's steps as one trace for the next round (its answer part is not carried)."""
    steps, _ = parse_integration(reply)  # type: ignore[misc]
    return "".join(content.rstrip("\n") + "\n" for content, _ in steps) + THINK_CLOSE


@dataclass
class IntegrationRun(CurationRun):
    traces: list[str] | None = None  # what the merge rounds so far left to merge (None: none ran)
    merge_rounds: int = 0


class IntegrationSearch(CurationSearch):
    method = "integration"

    @classmethod
    def budget_tokens(cls, config: Config, prompts: dict[str, int]) -> dict[str, tuple[int, int]]:
        # Curation's trajectories, then the integrator reads them all and writes one.
        out = super().budget_tokens(config, prompts)
        s, rollouts = config.search, config.search.rollouts or config.search.beam_size
        merged = len(config.teachers) * rollouts * (s.reasoning_budget + s.answer_budget)
        out[f"integrator:{config.integrator.name}"] = (prompts["integrator"] + merged, s.reasoning_budget + s.answer_budget)
        return out

    @classmethod
    def prepare(cls, config: Config) -> None:
        super().prepare(config)
        if config.integrator is None:
            raise ConfigError("integrator: method 'integration' needs an integrator model")

    @classmethod
    def build(cls, config: Config, load) -> IntegrationSearch:
        strategy = super().build(config, load)
        strategy.integrator = Teacher(config.integrator, strategy.scheduler.batching(load(config.integrator)), role="integrator")
        return strategy

    integrator: Teacher  # writes the merged trajectory; its tokens are counted as "integrator:<name>"

    def solve(self, problem: Problem) -> Iterator[Record]:
        run = IntegrationRun(problem)
        written = self.write_trajectories(run)
        yield self.fail(run) if run.failed else self.integrate(run, written)

    def state(self, run: IntegrationRun) -> dict[str, Any]:
        return {**super().state(run), "traces": run.traces, "merge_rounds": run.merge_rounds}

    def restore(self, run: IntegrationRun, parts: dict[str, Any]) -> None:
        traces, rounds = parts["traces"], int(parts["merge_rounds"])
        super().restore(run, parts)
        run.traces, run.merge_rounds = traces, rounds

    def prompt(self, question: str, traces: list[str]) -> str:
        return self.integrator.engine.chat_prompt(merge_prompt(question, traces), self.integrator.cfg.system_prompt)

    def groups(self, question: str, traces: list[str]) -> list[list[str]]:
        """Consecutive traces grouped so that each group's merge prompt leaves room for the reply
        in the integrator's context; one group when the context or the prompt's size is unknown."""
        engine, reply = self.integrator.engine, self.search.reasoning_budget + self.search.answer_budget
        room = engine.context_length - reply if engine.context_length else None
        whole = engine.prompt_tokens(self.prompt(question, traces)) if room is not None else None
        if whole is None or whole <= room:  # unknown, or everything fits: one merge, no packing
            return [traces]
        groups: list[list[str]] = []
        for trace in traces:
            if groups and engine.prompt_tokens(self.prompt(question, [*groups[-1], trace])) <= room:
                groups[-1].append(trace)
            else:
                groups.append([trace])
        return groups

    def merge(self, run: ProblemRun, groups: list[list[str]], where: tuple) -> list[tuple[Completion, str | None]]:
        """Each group's merge reply and why it is unusable (None when it parsed)."""
        cfg = self.integrator.cfg
        budget = self.search.reasoning_budget + self.search.answer_budget
        # the single merge keeps the seed it always had; round merges get their own
        seeds = [self.seed_for(run.problem, *where, g) for g in range(len(groups))] if where else [self.seed_for(run.problem, "integrate")]
        jobs = [
            (self.integrator, GenerateRequest(self.prompt(run.problem.question, group), budget, seed=seed, **sampling(cfg)))
            for group, seed in zip(groups, seeds)
        ]
        out = []
        for reply in self.generate(run, jobs, steps=0):
            if reply.finish == "error":  # e.g. the merge prompt is longer than the integrator's context
                out.append((reply, f"the integrator refused the request: {reply.error}"))
            else:
                out.append((reply, None if parse_integration(reply.text) is not None else "integration reply could not be parsed"))
        return out

    def integrate(self, run: IntegrationRun, written: list[Trajectory]) -> Record:
        """The integrator's merge of every trajectory (in rounds when they do not fit its context
        at once, each saved), parsed and scored; a failed record (with the raw reply) when it
        refuses, cannot be parsed, or cannot be scored."""
        traces = run.traces if run.traces is not None else [t.reasoning for t in written]
        question, rounds = run.problem.question, run.merge_rounds
        while len(groups := self.groups(question, traces)) > 1:
            if all(len(group) == 1 for group in groups):
                context = self.integrator.engine.context_length
                return self._failed(
                    run,
                    None,
                    f"integration: no two traces fit one merge in the integrator's context of {context} tokens "
                    f"with {self.search.reasoning_budget + self.search.answer_budget} left for its reply",
                )
            rounds += 1
            merged = self.merge(run, [g for g in groups if len(g) > 1], ("integrate", "round", rounds))
            for reply, why in merged:
                if why:
                    return self._failed(run, reply.text, f"round {rounds}: {why}")
            replies = iter(merged)
            traces = [group[0] if len(group) == 1 else merged_trace(next(replies)[0].text) for group in groups]
            run.traces, run.merge_rounds = traces, rounds
            self.checkpoint(run)
        ((reply, why),) = self.merge(run, groups, ())
        if why:
            return self._failed(run, reply.text, why if not rounds else f"final merge after {rounds} round(s): {why}")
        steps_in, answer = parse_integration(reply.text)  # type: ignore[misc]
        name = self.integrator.name
        steps = [Step(content.rstrip("\n") + "\n", name, None, 0, "marker", category) for content, category in steps_in]
        steps[-1].text += THINK_CLOSE
        steps[-1].end = "think"
        traj = Trajectory(steps=steps, finished=True)
        (traj.score,) = self.score(run, [((), traj.reasoning)])
        if run.failed:  # the meta-prover could not score the merged trajectory
            return self._failed(run, reply.text, run.failed)
        return build_record(run, self.method, traj, f"{FINAL_ANSWER} {answer}", name, raw_integration=reply.text)

    def _failed(self, run: ProblemRun, raw: str | None, reason: str) -> Record:
        return failed_record(run, self.method, reason, raw_integration=raw)
