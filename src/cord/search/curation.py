"""Curation (S1 / LIMO style): each teacher writes R complete trajectories, scored whole by the
same predictive perplexity; the best is kept. R defaults to the beam size B (the paper's equal
budget); `search.rollouts` = 2B gives "Curation x2". One teacher with R = 1 is "the teacher alone".
"""

from __future__ import annotations

from typing import Iterator

from ..data import Problem
from ..prompts import THINK_CLOSE
from .base import ProblemRun, Step, Strategy, Trajectory, teacher_by_name


class CurationSearch(Strategy):
    method = "curation"

    def run(self, problems: list[Problem]) -> Iterator[dict]:
        rollouts = self.search.rollouts or self.search.beam_size
        chunk = max(1, self.search.problems_in_flight)
        for start in range(0, len(problems), chunk):
            runs = [ProblemRun(p) for p in problems[start : start + chunk]]
            yield from self._run_chunk(runs, rollouts)

    def _run_chunk(self, runs: list[ProblemRun], rollouts: int) -> Iterator[dict]:
        opening = self.segmenter.first_opening
        seed = self.next_seed()
        jobs = [
            (run, teacher, teacher.request(run.problem.question, "", opening, self.search.reasoning_budget, (THINK_CLOSE,), seed + r))
            for run in runs
            for teacher in self.teachers
            for r in range(rollouts)
        ]
        completions = self.generate(jobs)
        trajectories = []
        for (run, teacher, _), completion in zip(jobs, completions):
            body = opening + completion.text
            if completion.finish == "stop":
                end = "think"
            else:
                end = "eos" if completion.finish == "eos" else "budget"
            reasoning = body + THINK_CLOSE
            steps = [Step(text, teacher.name, None, 0, "marker") for text in self.segmenter.split(reasoning)]
            steps[-1].end = end
            steps[-1].tokens = completion.tokens  # whole-trajectory count, on the closing step
            run.usage.steps_proposed[teacher.name] += len(steps) - 1
            run.usage.trajectories[teacher.name] = run.usage.trajectories.get(teacher.name, 0) + 1
            trajectories.append((run, Trajectory(steps=steps, tokens=completion.tokens, finished=True)))
        scores = self.score([(run, (), traj.reasoning) for run, traj in trajectories])
        best: dict[int, tuple[ProblemRun, Trajectory]] = {}
        for (run, traj), s in zip(trajectories, scores):
            traj.score = s
            traj.steps[-1].score = s
            if id(run) not in best or s > best[id(run)][1].score:
                best[id(run)] = (run, traj)
        lookup = teacher_by_name(self.teachers)
        yield from self.finish([(run, traj, lookup(traj.steps[-1].teacher)) for run, traj in best.values()])
