"""Curation (S1 / LIMO style): each teacher writes R complete trajectories, scored whole by the
same predictive perplexity; the best is kept. R defaults to the beam size B (the paper's equal
budget); `search.rollouts` = 2B gives "Curation x2". One teacher with R = 1 is "the teacher alone".
"""

from __future__ import annotations

from typing import Iterator

from ..data import Problem
from ..prompts import THINK_CLOSE
from .base import ProblemRun, Strategy, Trajectory, teacher_by_name


class CurationSearch(Strategy):
    method = "curation"

    def run(self, problems: list[Problem]) -> Iterator[dict]:
        rollouts = self.search.rollouts or self.search.beam_size
        for chunk in self.in_chunks(problems):
            yield from self._run_chunk([ProblemRun(p) for p in chunk], rollouts)

    def write_trajectories(self, runs: list[ProblemRun], rollouts: int) -> dict[int, list[Trajectory]]:
        """Every teacher writes `rollouts` complete trajectories per problem, each scored whole by S."""
        opening = self.segmenter.first_opening
        seed = self.next_seed()
        jobs = [
            (run, teacher, teacher.request(run.problem.question, "", opening, self.search.reasoning_budget, (THINK_CLOSE,), seed + r))
            for run in runs
            for teacher in self.teachers
            for r in range(rollouts)
        ]
        completions = self.generate(jobs, steps=0)
        written: list[tuple[ProblemRun, Trajectory]] = []
        for (run, teacher, _), completion in zip(jobs, completions):
            steps = self.whole_steps(run, teacher, opening, completion)
            run.usage.trajectories[teacher.name] = run.usage.trajectories.get(teacher.name, 0) + 1
            written.append((run, Trajectory(steps=steps, tokens=completion.tokens, finished=True)))
        scores = self.score([(run, (), traj.reasoning) for run, traj in written])
        per_run: dict[int, list[Trajectory]] = {id(run): [] for run in runs}
        for (run, traj), s in zip(written, scores):
            traj.score = traj.steps[-1].score = s
            per_run[id(run)].append(traj)
        return per_run

    def _run_chunk(self, runs: list[ProblemRun], rollouts: int) -> Iterator[dict]:
        per_run = self.write_trajectories(runs, rollouts)
        lookup = teacher_by_name(self.teachers)
        best = [(run, max(per_run[id(run)], key=lambda t: t.score)) for run in runs]
        yield from self.finish([(run, traj, lookup(traj.steps[-1].teacher)) for run, traj in best])
