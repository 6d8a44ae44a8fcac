"""Integration (Mixture-of-Agents style): an integrator model merges every teacher's complete
trajectories into one, following the paper's merging prompt (JSON answer, labelled parts).

Real models answer with malformed JSON; it is repaired with `json_repair`. A problem whose merge
still cannot be parsed is recorded as failed with the raw text, never dropped.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import json_repair

from ..config import Config, ConfigError, ModelConfig
from ..engines import Engine, GenerateRequest
from ..prompts import FINAL_ANSWER, THINK_CLOSE
from ..records import Record, Step
from .base import ProblemRun, Trajectory, build_record
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
        strategy.integrator = load(config.integrator)
        return strategy

    def __init__(self, config, teachers, meta_prover, selection=None, integrator: Engine | None = None):
        super().__init__(config, teachers, meta_prover, selection)
        self.integrator = integrator
        self.integrator_cfg: ModelConfig = config.integrator

    def run_chunk(self, runs: list[ProblemRun]) -> Iterator[Record]:
        per_run = self.write_trajectories(runs)
        yield from self.fail([run for run in runs if run.failed])
        runs = [run for run in runs if not run.failed]
        name = f"integrator:{self.integrator_cfg.name}"
        cfg = self.integrator_cfg
        prompts = [
            self.integrator.chat_prompt(merge_prompt(run.problem.question, [t.reasoning for t in per_run[id(run)]]), cfg.system_prompt)
            for run in runs
        ]
        start = time.perf_counter()
        budget = self.search.reasoning_budget + self.search.answer_budget
        requests = [
            GenerateRequest(p, budget, cfg.temperature, cfg.top_p, (), self.seed_for(run.problem, "integrate"))
            for p, run in zip(prompts, runs)
        ]
        replies = self.integrator.generate(requests)
        share = (time.perf_counter() - start) / max(1, len(runs))
        merged = []
        for run, reply in zip(runs, replies):
            run.usage.generation_seconds += share
            run.usage.teacher_tokens[name] = run.usage.teacher_tokens.get(name, 0) + reply.tokens
            if reply.finish == "error":  # e.g. the merge prompt is longer than the integrator's context
                merged.append((run, None, reply.text, f"the integrator refused the request: {reply.error}"))
                continue
            parsed = parse_integration(reply.text)
            if parsed is None:
                merged.append((run, None, reply.text, "integration reply could not be parsed"))
                continue
            steps_in, answer = parsed
            steps = [Step(content.rstrip("\n") + "\n", name, None, 0, "marker", category) for content, category in steps_in]
            steps[-1].text += THINK_CLOSE
            steps[-1].end = "think"
            merged.append((run, Trajectory(steps=steps, finished=True), reply.text, answer))
        good = [(run, traj) for run, traj, _, _ in merged if traj is not None]
        for (_, traj), s in zip(good, self.score([(run, (), traj.reasoning) for run, traj in good])):
            traj.score = s
        records = []
        for run, traj, raw, answer in merged:
            if traj is not None and run.failed:  # the meta-prover could not score the merged trajectory
                traj, answer = None, run.failed
            if traj is None:  # `answer` holds the reason
                record = build_record(run, self.method, Trajectory(), "", "", failed=answer, raw_integration=raw)
                record.predictive_perplexity = None
            else:
                record = build_record(run, self.method, traj, f"{FINAL_ANSWER} {answer}", name, raw_integration=raw)
            records.append(record)
        self.grader.apply(records)
        yield from records
