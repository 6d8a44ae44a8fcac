"""CoRD: step-wise multi-teacher beam search scored by the meta-prover (greedy is B = 1).

Each round, every prefix in a problem's beam gets one proposed next step from every teacher
(B x K candidates); the meta-prover scores prefix + candidate; the top B survive. A candidate
that closes the reasoning (`</think>`, end of turn, or spent budget) leaves the beam as a
finished trajectory; a problem is done when B trajectories have finished or its beam is empty.
All problems in flight advance together, so every round is one batched call per engine.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Iterator

from ..data import Problem
from ..score import BinaryJudge, StepJudge
from .base import ProblemRun, Step, Strategy, Teacher, Trajectory, teacher_by_name


@dataclass
class BeamRun(ProblemRun):
    beam: list[Trajectory] = field(default_factory=list)
    finished: list[Trajectory] = field(default_factory=list)


@dataclass
class Candidate:
    run: BeamRun
    parent: Trajectory
    teacher: Teacher
    text: str
    tokens: int
    end: str
    next_opening: str
    finished: bool
    score: float = 0.0


class CordSearch(Strategy):
    method = "cord"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.beam_size = 1 if self.search.method == "greedy" else self.search.beam_size
        self.method = self.search.method
        s, mp = self.search, self.meta_prover
        self.judge = None
        if s.selection == "binary_judgment":
            self.judge = BinaryJudge(mp.engine, mp.system_prompt, s.judge_rollouts, s.judge_temperature, min(s.answer_budget, 64), s.seed)
        elif s.selection == "step_judge":
            self.judge = StepJudge(mp.engine, mp.system_prompt)
        if s.selection != "perplexity":
            self.method = f"{self.method}+{s.selection}"

    def run(self, problems: list[Problem]) -> Iterator[dict]:
        pending = deque(problems)
        active: list[BeamRun] = []
        while pending or active:
            while pending and len(active) < self.search.problems_in_flight:
                run = BeamRun(pending.popleft())
                run.beam = [Trajectory(opening=self.segmenter.first_opening)]
                active.append(run)
            self.advance(active)
            done = [run for run in active if len(run.finished) >= self.beam_size or not run.beam]
            active = [run for run in active if len(run.finished) < self.beam_size and run.beam]
            best = [(run, self._best(run)) for run in done]
            if self.search.selection != "perplexity" and best:
                # Ranked by an ablation: still report the quality metric S of what was chosen.
                for (run, traj), s in zip(best, self.score([(run, traj.texts[:-1], traj.texts[-1]) for run, traj in best])):
                    traj.perplexity = s
            yield from self.finish([(run, traj, self._last_teacher(traj)) for run, traj in best])

    def _best(self, run: BeamRun) -> Trajectory:
        return max(run.finished, key=lambda t: t.score)

    def _last_teacher(self, traj: Trajectory) -> Teacher:
        return teacher_by_name(self.teachers)(traj.steps[-1].teacher)

    def propose(self, active: list[BeamRun]) -> list[Candidate]:
        budget = self.search.reasoning_budget
        seed = self.next_seed()
        jobs = []
        for run in active:
            for traj in run.beam:
                for teacher in self.teachers:
                    cap = min(teacher.cfg.max_step_tokens, budget - traj.tokens)
                    request = teacher.request(run.problem.question, traj.reasoning, traj.opening, cap, self.segmenter.stops, seed)
                    jobs.append((run, teacher, request, traj))
        completions = self.generate([(run, teacher, request) for run, teacher, request, _ in jobs])
        candidates = []
        for (run, teacher, _, traj), completion in zip(jobs, completions):
            text, end, next_opening, finished = self.close_step(traj.opening, completion, traj.tokens)
            candidates.append(Candidate(run, traj, teacher, text, completion.tokens, end, next_opening, finished))
        return candidates

    def advance(self, active: list[BeamRun]) -> None:
        candidates = self.propose(active)
        # Identical texts proposed for the same prefix are one candidate (scored once).
        unique: dict[tuple[int, int, str], Candidate] = {}
        for cand in candidates:
            unique.setdefault((id(cand.run), id(cand.parent), cand.text), cand)
        pool = list(unique.values())
        scores = self.select_scores(pool)
        for cand, s in zip(pool, scores):
            cand.score = s
        for run in active:
            mine = sorted((c for c in pool if c.run is run), key=lambda c: -c.score)
            room = self.beam_size - len(run.finished)
            run.beam = []
            for cand in mine[:room]:
                step = Step(cand.text, cand.teacher.name, cand.score, cand.tokens, cand.end)
                traj = Trajectory(
                    steps=[*cand.parent.steps, step],
                    tokens=cand.parent.tokens + cand.tokens,
                    score=cand.score,
                    opening=cand.next_opening,
                    finished=cand.finished,
                )
                if cand.finished:
                    run.finished.append(traj)
                    counts = run.usage.trajectories
                    counts[step.teacher] = counts.get(step.teacher, 0) + 1
                else:
                    run.beam.append(traj)

    def select_scores(self, pool: list[Candidate]) -> list[float]:
        """Predictive perplexity of prefix + candidate, or the configured selection ablation."""
        selection = self.search.selection
        if selection == "random":
            return [self.rng.random() for _ in pool]
        if selection == "max_length":
            return [float(c.parent.tokens + c.tokens) for c in pool]
        return self.score([(c.run, c.parent.texts, c.text) for c in pool], scorer=self.judge)
