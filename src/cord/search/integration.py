"""Integration (Mixture-of-Agents style): an integrator model merges every teacher's complete
trajectories into one, following the paper's merging prompt (JSON answer, labelled parts).

Real models answer with malformed JSON; it is repaired with `json_repair`. A problem whose merge
still cannot be parsed is recorded as failed with the raw text, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import json_repair

from ..config import Config, ConfigError
from ..data import Problem
from ..engines import GenerateRequest
from ..prompts import FINAL_ANSWER, THINK_CLOSE
from ..records import Record, Step
from .base import ProblemRun, Teacher, Trajectory, build_record
from .curation import CurationSearch

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
    except Exception:
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


class IntegrationSearch(CurationSearch):
    method = "integration"

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
        run = ProblemRun(problem)
        written = self.write_trajectories(run)
        yield self.fail(run) if run.failed else self.integrate(run, written)

    def integrate(self, run: ProblemRun, written: list[Trajectory]) -> Record:
        """The integrator's merge of every trajectory, parsed and scored; a failed record (with
        the raw reply) when it refuses, cannot be parsed, or cannot be scored."""
        cfg = self.integrator.cfg
        prompt = self.integrator.engine.chat_prompt(merge_prompt(run.problem.question, [t.reasoning for t in written]), cfg.system_prompt)
        budget = self.search.reasoning_budget + self.search.answer_budget
        request = GenerateRequest(prompt, budget, cfg.temperature, cfg.top_p, (), self.seed_for(run.problem, "integrate"))
        (reply,) = self.generate(run, [(self.integrator, request)], steps=0)
        if reply.finish == "error":  # e.g. the merge prompt is longer than the integrator's context
            return self._failed(run, reply.text, f"the integrator refused the request: {reply.error}")
        parsed = parse_integration(reply.text)
        if parsed is None:
            return self._failed(run, reply.text, "integration reply could not be parsed")
        steps_in, answer = parsed
        name = self.integrator.name
        steps = [Step(content.rstrip("\n") + "\n", name, None, 0, "marker", category) for content, category in steps_in]
        steps[-1].text += THINK_CLOSE
        steps[-1].end = "think"
        traj = Trajectory(steps=steps, finished=True)
        (traj.score,) = self.score(run, [((), traj.reasoning)])
        if run.failed:  # the meta-prover could not score the merged trajectory
            return self._failed(run, reply.text, run.failed)
        return build_record(run, self.method, traj, f"{FINAL_ANSWER} {answer}", name, raw_integration=reply.text)

    def _failed(self, run: ProblemRun, raw: str, reason: str) -> Record:
        record = build_record(run, self.method, Trajectory(), "", "", failed=reason, raw_integration=raw)
        record.predictive_perplexity = None
        return record
