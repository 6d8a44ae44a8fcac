"""MCTS over reasoning steps as §4.4 of the paper describes it (Table 6), valued by the same S.

One trajectory is kept. At each step every teacher proposes a next step (K children of the kept
prefix); up to `rollouts` simulations (default B) are spread over the children by UCB
(Q + c * sqrt(ln N / n), unvisited children first). A simulation completes the child's prefix to
the end in one request to the teacher that proposed it (a proposer rollout), values it by S of the
complete trajectory and backs the value up to the child; a child that already closes the reasoning
is valued by its own S, at no cost.

The budget (`search.mcts_rollout_cap`, on by default): the paper runs MCTS "under the same budget
of trajectories" as the other methods. cord reads that as Curation's: `rollouts` (default B)
complete trajectories per teacher, K x B for the problem, so a problem spends at most K x rollouts
rollouts in all, `rollouts` a step from the first step on (with B = 4 and K = 3: rollouts over the
first three steps). Once they are spent, every further step is chosen by S of the children alone.
A step that ran out midway compares the children it rolled out by their mean value, the others by
their own S. The records say `mcts`. `mcts_rollout_cap: false` runs `rollouts` simulations every
step without a total (cord's MCTS before the cap; records `mcts+proposer-rollouts`).

The child with the best mean value is kept (one with content before one with nothing in it,
search/segment.py), and the next step starts from it, until the kept trajectory closes. The
CoRD/MCTS hybrid whose rollouts are greedy CoRD is `mcts-cord` (search/mcts_cord.py).
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
    rollouts_spent: int = 0  # rollouts to the end over the whole problem (what the cap counts)


class MctsSearch(Strategy):
    method = "mcts"
    uncapped_method = "mcts+proposer-rollouts"  # the records' name without the total cap (cord before it)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.rollout_budget is None:
            self.method = self.uncapped_method  # the records say which MCTS wrote them

    @classmethod
    def prepare(cls, config: Config) -> None:
        super().prepare(config)
        if config.search.rollouts is None:  # simulations per step, stated in config.yaml
            config.search.rollouts = config.search.beam_size

    @property
    def rollout_budget(self) -> int | None:
        """Rollouts a problem may spend in all: K x rollouts, the trajectories Curation writes; None: no cap."""
        return len(self.teachers) * self.search.rollouts if self.search.mcts_rollout_cap else None

    def start(self, problem: Problem) -> TreeRun:
        run = TreeRun(problem, kept=Trajectory(opening=self.segmenter.first_opening))
        self.resume(run)
        return run

    def state(self, run: TreeRun) -> dict[str, Any]:
        children = [
            {"traj": trajectory_state(c.traj), "teacher": c.teacher.name, "empty": c.empty, "visits": c.visits, "value": c.value}
            for c in run.children
        ]
        return {
            "kept": trajectory_state(run.kept),
            "children": children,
            "simulations": run.simulations,
            "rollouts_spent": run.rollouts_spent,
        }

    def restore(self, run: TreeRun, parts: dict[str, Any]) -> None:
        children = [
            Child(trajectory_from(c["traj"]), self.teacher(c["teacher"]), bool(c["empty"]), int(c["visits"]), float(c["value"]))
            for c in parts["children"]
        ]
        spent = int(parts.get("rollouts_spent", 0))  # absent from states saved before the cap, whose runs have none
        run.kept, run.children, run.simulations = trajectory_from(parts["kept"]), children, int(parts["simulations"])
        run.rollouts_spent = spent

    def solve(self, problem: Problem) -> Iterator[Record]:
        run = self.start(problem)
        while not (run.failed or run.kept.finished):
            self.step(run)
        yield self.fail(run) if run.failed else self.finish(run, [run.kept])

    def may_simulate(self, run: TreeRun) -> bool:
        """Whether this step runs another simulation: fewer than `rollouts` so far, and rollouts left."""
        budget = self.rollout_budget
        return run.simulations < self.search.rollouts and (budget is None or run.rollouts_spent < budget)

    def step(self, run: TreeRun) -> None:
        """One step: expand the kept prefix, simulate, keep the best child (saved after the
        expansion and after each simulation: a resumed problem goes on from there)."""
        if not (run.children and len(run.children[0].traj.steps) == len(run.kept.steps) + 1):  # not the kept prefix's yet
            self.expand(run)
            run.simulations = 0
            self.checkpoint(run)
        while self.may_simulate(run) and not run.failed:
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
        if child.traj.finished:  # a closed child's value is its own S: no rollout spent
            value = child.traj.score
        else:
            value = self.rollout(run, child, simulation)
            run.rollouts_spent += 1
        child.visits, child.value = child.visits + 1, child.value + value

    def rollout(self, run: TreeRun, child: Child, simulation: int) -> float:
        """S of the child completed to the end by its proposer, in one request."""
        traj, teacher = child.traj, child.teacher
        seed = self.seed_for(run.problem, "rollout", len(traj.steps), teacher.name, simulation)
        request = teacher.request(
            run.problem.question, traj.texts, traj.opening, self.search.reasoning_budget - traj.tokens, (THINK_CLOSE,), seed
        )
        (completion,) = self.generate(run, [(teacher, request)], steps=0)
        steps = self.whole_steps(run, teacher, traj.opening, completion)
        complete = Trajectory([*traj.steps, *steps], traj.tokens + completion.tokens, 0.0, "", True)
        (value,) = self.score(run, [((), complete.reasoning)])
        run.usage.add_trajectory(teacher.name)
        return value
