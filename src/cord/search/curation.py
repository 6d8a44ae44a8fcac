"""Curation (S1 / LIMO style): each teacher writes R complete trajectories, scored whole by the
same predictive perplexity; the best is kept. R defaults to the beam size B (the paper's equal
budget); `search.rollouts` = 2B gives "Curation x2". One teacher with R = 1 is "the teacher alone".
"""

from __future__ import annotations

from collections.abc import Iterator

from ..config import Config
from ..data import Problem
from ..prompts import THINK_CLOSE
from ..records import Record
from .base import ProblemRun, Strategy, Trajectory


class CurationSearch(Strategy):
    method = "curation"

    @classmethod
    def prepare(cls, config: Config) -> None:
        super().prepare(config)
        if config.search.rollouts is None:  # the paper's equal budget, written out so config.yaml states it
            config.search.rollouts = config.search.beam_size

    def solve(self, problem: Problem) -> Iterator[Record]:
        yield from self.run_chunk([ProblemRun(problem)])

    def write_trajectories(self, runs: list[ProblemRun]) -> dict[int, list[Trajectory]]:
        """Every teacher writes `rollouts` complete trajectories per problem, each scored whole by S."""
        opening, budget = self.segmenter.first_opening, self.search.reasoning_budget
        jobs = [
            (
                run,
                teacher,
                teacher.request(
                    run.problem.question, (), opening, budget, (THINK_CLOSE,), self.seed_for(run.problem, "rollout", teacher.name, r)
                ),
            )
            for run in runs
            for teacher in self.teachers
            for r in range(self.search.rollouts)
        ]
        completions = self.generate(jobs, steps=0)
        written: list[tuple[ProblemRun, Trajectory]] = []
        for (run, teacher, _), completion in zip(jobs, completions):
            steps = self.whole_steps(run, teacher, opening, completion)
            run.usage.add_trajectory(teacher.name)
            written.append((run, Trajectory(steps=steps, tokens=completion.tokens, finished=True)))
        scores = self.score([(run, (), traj.reasoning) for run, traj in written])
        per_run: dict[int, list[Trajectory]] = {id(run): [] for run in runs}
        for (run, traj), s in zip(written, scores):
            traj.score = traj.steps[-1].score = s
            per_run[id(run)].append(traj)
        return per_run

    def run_chunk(self, runs: list[ProblemRun]) -> Iterator[Record]:
        per_run = self.write_trajectories(runs)
        yield from self.fail([run for run in runs if run.failed])
        yield from self.finish([(run, sorted(per_run[id(run)], key=lambda t: -t.score)) for run in runs if not run.failed])
