"""MCTS over reasoning steps (the paper's decoding ablation, Table 6), valued by the same S.

One trajectory is kept. At each step every teacher proposes a next step (K children of the kept
prefix); `rollouts` simulations (default B) are spread over the children by UCB
(Q + c * sqrt(ln N / n), unvisited children first): each simulation completes the child's prefix
to the end and values it by S of the complete trajectory, and the value is backed up to the child.
A child that already closes the reasoning is valued by its own S.

Who completes a child (`search.mcts_rollout`; the paper does not say, cord chose by measurement,
docs/fidelity.md), named in the records' `method`:
- `greedy` (default, `mcts+cord-rollouts`): a CoRD/MCTS hybrid. The rest is written step by step
  as greedy CoRD does (every teacher proposes, S keeps the best), so the value of a step does not
  hang on one teacher solving the whole problem alone, and every teacher and the meta-prover work
  at each rollout step. Each simulation costs K proposals per remaining step; MCTS then spends
  about twice CoRD's teacher tokens, as the paper measured (589 s against 289 s a problem). cord
  reads the paper's Table 6 row as this one: Table 6 ablates CoRD's decoding (its greedy and beam
  rows are CoRD at B = 1 and B = 4).
- `teacher` (`mcts+proposer-rollouts`): the teacher that proposed the child writes the rest in
  one request. Cheaper, and each teacher values its own steps, but a heterogeneous teacher that
  cannot finish the problem alone values every step it proposes low: on the tiny specialists this
  MCTS fell below greedy decoding.

The child with the best mean value is kept (one with content before one with nothing in it,
search/segment.py), and the next step starts from it, until the kept trajectory closes. Cost per
step: K proposals plus `rollouts` rollouts to the end, several times Curation's (the paper
measured 3.4 x).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..config import Config
from ..data import Problem
from ..prompts import THINK_CLOSE
from ..records import Record, Step
from .base import ProblemRun, Strategy, Teacher, Trajectory
from .state import trajectory_from, trajectory_state


@dataclass(eq=False)
class Child:
    """A candidate next step of the kept trajectory and the rollouts that valued it."""

    traj: Trajectory
    teacher: Teacher
    empty: bool = False  # says nothing (only the step marker): kept only when every child is empty
    visits: int = 0
    value: float = 0.0

    def ucb(self, total: int, c: float) -> float:
        if self.visits == 0:
            return math.inf
        return self.value / self.visits + c * math.sqrt(math.log(total) / self.visits)

    @property
    def mean(self) -> float:
        return self.value / self.visits if self.visits else self.traj.score


@dataclass
class TreeRun(ProblemRun):
    kept: Trajectory = field(default_factory=Trajectory)
    children: list[Child] = field(default_factory=list)  # of the kept prefix once it is expanded (until then, of the one before)
    simulations: int = 0  # simulations run over `children`


class MctsSearch(Strategy):
    method = "mcts"
    ROLLOUT_NAMES = {"greedy": "mcts+cord-rollouts", "teacher": "mcts+proposer-rollouts"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.method = self.ROLLOUT_NAMES[self.search.mcts_rollout]  # the records say which MCTS wrote them

    @classmethod
    def prepare(cls, config: Config) -> None:
        super().prepare(config)
        if config.search.rollouts is None:  # simulations per step, stated in config.yaml
            config.search.rollouts = config.search.beam_size

    def start(self, problem: Problem) -> TreeRun:
        run = TreeRun(problem, kept=Trajectory(opening=self.segmenter.first_opening))
        self.resume(run)
        return run

    def state(self, run: TreeRun) -> dict[str, Any]:
        children = [
            {"traj": trajectory_state(c.traj), "teacher": c.teacher.name, "empty": c.empty, "visits": c.visits, "value": c.value}
            for c in run.children
        ]
        return {"kept": trajectory_state(run.kept), "children": children, "simulations": run.simulations}

    def restore(self, run: TreeRun, parts: dict[str, Any]) -> None:
        children = [
            Child(trajectory_from(c["traj"]), self.teacher(c["teacher"]), bool(c["empty"]), int(c["visits"]), float(c["value"]))
            for c in parts["children"]
        ]
        run.kept, run.children, run.simulations = trajectory_from(parts["kept"]), children, int(parts["simulations"])

    def solve(self, problem: Problem) -> Iterator[Record]:
        run = self.start(problem)
        while not (run.failed or run.kept.finished):
            self.step(run)
        yield self.fail(run) if run.failed else self.finish(run, [run.kept])

    def step(self, run: TreeRun) -> None:
        """One step: expand the kept prefix, simulate, keep the best child (saved after the
        expansion and after each simulation: a resumed problem goes on from there)."""
        if not (run.children and len(run.children[0].traj.steps) == len(run.kept.steps) + 1):  # not the kept prefix's yet
            self.expand(run)
            run.simulations = 0
            self.checkpoint(run)
        while run.simulations < self.search.rollouts and not run.failed:
            self.simulate(run, run.simulations)
            run.simulations += 1
            self.checkpoint(run)
        if run.failed:
            return
        run.kept = max(run.children, key=lambda child: (not child.empty, child.mean)).traj

    def expand(self, run: TreeRun) -> None:
        """Every teacher proposes a next step of the kept prefix; each child is scored by S."""
        run.children = self.proposals(run, run.kept, ("expand", len(run.kept.steps)))
        for child in run.children:
            if child.traj.finished:
                run.usage.add_trajectory(child.teacher.name)

    def proposals(self, run: TreeRun, parent: Trajectory, where: tuple) -> list[Child]:
        """One next step of `parent` from every teacher, each scored by S (`where`: the seeds' place)."""
        budget = self.search.reasoning_budget
        jobs = []
        for teacher in self.teachers:
            cap = min(teacher.cfg.max_step_tokens, budget - parent.tokens)
            seed = self.seed_for(run.problem, *where, teacher.name)
            jobs.append((teacher, teacher.request(run.problem.question, parent.texts, parent.opening, cap, self.segmenter.stops, seed)))
        children = []
        for (teacher, _), completion in zip(jobs, self.generate(run, jobs)):
            proposed = self.close_step(run, teacher, parent, completion)
            step = Step(proposed.text, teacher.name, None, completion.tokens, proposed.end)
            traj = Trajectory([*parent.steps, step], parent.tokens + completion.tokens, 0.0, proposed.next_opening, proposed.finished)
            children.append(Child(traj, teacher, proposed.empty))
        for child, s in zip(children, self.score(run, [(child.traj.texts[:-1], child.traj.texts[-1]) for child in children])):
            child.traj.score = child.traj.steps[-1].score = s
        return children

    def simulate(self, run: TreeRun, simulation: int) -> None:
        """One UCB simulation: roll the chosen child out to the end and back its value up."""
        total = 1 + sum(child.visits for child in run.children)
        child = max(run.children, key=lambda child: child.ucb(total, self.search.mcts_exploration))
        if child.traj.finished:  # a closed child's value is its own S
            child.visits, child.value = child.visits + 1, child.value + child.traj.score
            return
        if self.search.mcts_rollout == "greedy":
            value = self.greedy_rollout(run, child, simulation)
            child.visits, child.value = child.visits + 1, child.value + value
            return
        traj, teacher = child.traj, child.teacher
        seed = self.seed_for(run.problem, "rollout", len(traj.steps), teacher.name, simulation)
        request = teacher.request(
            run.problem.question, traj.texts, traj.opening, self.search.reasoning_budget - traj.tokens, (THINK_CLOSE,), seed
        )
        (completion,) = self.generate(run, [(teacher, request)], steps=0)
        steps = self.whole_steps(run, teacher, traj.opening, completion)
        complete = Trajectory([*traj.steps, *steps], traj.tokens + completion.tokens, 0.0, "", True)
        (value,) = self.score(run, [((), complete.reasoning)])
        complete.score = value
        child.visits, child.value = child.visits + 1, child.value + value
        run.usage.add_trajectory(teacher.name)

    def greedy_rollout(self, run: TreeRun, child: Child, simulation: int) -> float:
        """S of the child completed step by step by every teacher, the best step by S kept each time."""
        traj = child.traj
        while not (traj.finished or run.failed):
            where = ("rollout", len(child.traj.steps), simulation, len(traj.steps))
            traj = max(self.proposals(run, traj, where), key=lambda c: (not c.empty, c.traj.score)).traj
        run.usage.add_trajectory(traj.steps[-1].teacher)
        return traj.score
