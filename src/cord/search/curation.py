"""Curation (S1 / LIMO style): each teacher writes R complete trajectories, scored whole by the
same predictive perplexity; the best is kept. R defaults to the beam size B (the paper's equal
budget); `search.rollouts` = 2B gives "Curation x2". One teacher with R = 1 is "the teacher alone".
Teachers write in their own style by default, as the paper's baselines do (§5): the plain reasoning
instruction and nothing pre-filled after <think> (`search.trajectory_style: own`); `steps` asks for
CoRD's step instruction and pre-fill.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..config import Config, ModelConfig
from ..data import Problem
from ..prompts import REASONING_INSTRUCTION, THINK_CLOSE
from ..records import Record
from .base import ProblemRun, Strategy, Trajectory
from .state import trajectory_from, trajectory_state


@dataclass
class CurationRun(ProblemRun):
    written: list[Trajectory] = field(default_factory=list)  # every teacher's complete trajectories
    scored: bool = False  # whether `written` holds their scores


class CurationSearch(Strategy):
    method = "curation"

    @classmethod
    def prepare(cls, config: Config) -> None:
        super().prepare(config)
        if config.search.rollouts is None:  # the paper's equal budget, written out so config.yaml states it
            config.search.rollouts = config.search.beam_size

    @classmethod
    def teacher_instruction(cls, config: Config, teacher: ModelConfig) -> str | None:
        # The paper's baselines write in the model's own style (§5): no step format asked for,
        # unless the model's section names its own instruction.
        if config.search.trajectory_style == "own" and teacher.step_instruction is None:
            return REASONING_INSTRUCTION
        return super().teacher_instruction(config, teacher)

    @classmethod
    def meta_prover_instruction(cls, config: Config) -> str | None:
        # In the teachers' own style the meta-prover reads the plain instruction they were given too.
        return cls.teacher_instruction(config, config.meta_prover)

    @classmethod
    def teacher_opening(cls, config: Config) -> str:
        return "" if config.search.trajectory_style == "own" else super().teacher_opening(config)

    @classmethod
    def teacher_stops(cls, config: Config) -> str:
        return str([THINK_CLOSE])  # a whole trajectory, to the end of the reasoning

    @classmethod
    def budget_tokens(cls, config: Config, prompts: dict[str, int]) -> dict[str, tuple[int, int]]:
        # Each teacher writes `rollouts` whole trajectories and their answers; each is scored whole.
        s, rollouts = config.search, config.search.rollouts or config.search.beam_size
        out = {
            t.name: (rollouts * (2 * prompts[t.name] + s.reasoning_budget), rollouts * (s.reasoning_budget + s.answer_budget))
            for t in config.teachers
        }
        out["meta_prover"] = (len(config.teachers) * rollouts * (prompts["meta_prover"] + s.reasoning_budget), 0)
        return out

    def solve(self, problem: Problem) -> Iterator[Record]:
        run = CurationRun(problem)
        written = self.write_trajectories(run)
        yield self.fail(run) if run.failed else self.finish(run, sorted(written, key=lambda t: -t.score))

    def state(self, run: CurationRun) -> dict[str, Any]:
        return {"written": [trajectory_state(t) for t in run.written], "scored": run.scored}

    def restore(self, run: CurationRun, parts: dict[str, Any]) -> None:
        written, scored = [trajectory_from(t) for t in parts["written"]], bool(parts["scored"])
        run.written, run.scored = written, scored

    def write_trajectories(self, run: CurationRun) -> list[Trajectory]:
        """Every teacher writes `rollouts` complete trajectories (saved once written; a resumed
        problem has them already), each scored whole by S."""
        if not self.resume(run):
            run.written = self.new_trajectories(run)
            self.checkpoint(run)
        if not (run.failed or run.scored):
            for traj, s in zip(run.written, self.score(run, [((), traj.reasoning) for traj in run.written])):
                traj.score = traj.steps[-1].score = s
            run.scored = True
        return run.written

    def new_trajectories(self, run: CurationRun) -> list[Trajectory]:
        """Every teacher's `rollouts` complete trajectories, not yet scored."""
        opening, budget = self.teacher_opening(self.config), self.search.reasoning_budget
        jobs = [
            (
                teacher,
                teacher.request(
                    run.problem.question, (), opening, budget, (THINK_CLOSE,), self.seed_for(run.problem, "rollout", teacher.name, r)
                ),
            )
            for teacher in self.teachers
            for r in range(self.search.rollouts)
        ]
        written = []
        for (teacher, _), completion in zip(jobs, self.generate(run, jobs, steps=0)):
            steps = self.whole_steps(run, teacher, opening, completion)
            run.usage.add_trajectory(teacher.name)
            written.append(Trajectory(steps=steps, tokens=completion.tokens, finished=True))
        return written
