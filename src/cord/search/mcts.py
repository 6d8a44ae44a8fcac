"""MCTS over reasoning steps (paper's decoding ablation), valued by the same predictive perplexity.

Each iteration, per problem: select a leaf by UCB (Q + c * sqrt(ln N_parent / N_child)), expand
it with one proposed step from every teacher, roll each child out to a complete trajectory with
the teacher that proposed it, value it by S of the complete trajectory, and back the value up.
Budget: `rollouts` (default B) iterations, i.e. B complete trajectories per teacher, as Curation.
The best complete trajectory by S is the record.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..config import Config
from ..data import Problem
from ..prompts import THINK_CLOSE
from ..records import Record, Step
from .base import ProblemRun, Strategy, Trajectory


@dataclass(eq=False)
class Node:
    traj: Trajectory
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    visits: int = 0
    value: float = 0.0

    def ucb(self, c: float) -> float:
        if self.visits == 0:
            return math.inf
        return self.value / self.visits + c * math.sqrt(math.log(self.parent.visits + 1) / self.visits)


@dataclass
class TreeRun(ProblemRun):
    root: Node | None = None
    best: Trajectory | None = None


class MctsSearch(Strategy):
    method = "mcts"

    @classmethod
    def prepare(cls, config: Config) -> None:
        super().prepare(config)
        if config.search.rollouts is None:  # B iterations: Curation's budget, stated in config.yaml
            config.search.rollouts = config.search.beam_size

    def start(self, problem: Problem) -> TreeRun:
        return TreeRun(problem, root=Node(Trajectory(opening=self.segmenter.first_opening)))

    def run(self, problems: list[Problem]) -> Iterator[Record]:
        for chunk in self.in_chunks(problems):
            runs = [self.start(p) for p in chunk]
            for _ in range(self.search.rollouts):
                self.iterate(runs)
            yield from self.finish([(run, run.best) for run in runs])

    def _select(self, root: Node) -> Node:
        node = root
        while node.children:
            open_children = [ch for ch in node.children if not (ch.traj.finished and ch.visits)]
            node = max(open_children or node.children, key=lambda ch: ch.ucb(self.search.mcts_exploration))
            if node.traj.finished:
                break
        return node

    def iterate(self, runs: list[TreeRun]) -> None:
        budget = self.search.reasoning_budget
        leaves = [(run, self._select(run.root)) for run in runs]
        # Expansion: every teacher proposes the next step of each selected leaf.
        seed = self.next_seed()
        jobs = [(run, leaf, teacher) for run, leaf in leaves if not leaf.traj.finished for teacher in self.teachers]
        requests = [
            (
                run,
                t,
                t.request(
                    run.problem.question,
                    leaf.traj.reasoning,
                    leaf.traj.opening,
                    min(t.cfg.max_step_tokens, budget - leaf.traj.tokens),
                    self.segmenter.stops,
                    seed,
                ),
            )
            for run, leaf, t in jobs
        ]
        completions = self.generate(requests)
        children = []
        for (run, leaf, teacher), completion in zip(jobs, completions):
            text, end, next_opening, finished = self.close_step(leaf.traj.opening, completion, leaf.traj.tokens)
            step = Step(text, teacher.name, None, completion.tokens, end)
            child = Node(
                Trajectory([*leaf.traj.steps, step], leaf.traj.tokens + completion.tokens, 0.0, next_opening, finished), parent=leaf
            )
            leaf.children.append(child)
            children.append((run, child, teacher))
        scores = self.score([(run, child.traj.texts[:-1], child.traj.texts[-1]) for run, child, _ in children])
        for (_, child, _), s in zip(children, scores):
            child.traj.score = child.traj.steps[-1].score = s
        # Rollout: each open child is completed by the teacher that proposed it.
        open_children = [(run, child, t) for run, child, t in children if not child.traj.finished]
        rollouts = self.generate(
            steps=0,
            jobs=[
                (
                    run,
                    t,
                    t.request(
                        run.problem.question, child.traj.reasoning, child.traj.opening, budget - child.traj.tokens, (THINK_CLOSE,), seed + 1
                    ),
                )
                for run, child, t in open_children
            ],
        )
        completed: list[tuple[TreeRun, Node, Trajectory]] = []
        for (run, child, teacher), completion in zip(open_children, rollouts):
            steps = self.whole_steps(run, teacher, child.traj.opening, completion)
            completed.append((run, child, Trajectory([*child.traj.steps, *steps], child.traj.tokens + completion.tokens, 0.0, "", True)))
        values = self.score([(run, (), traj.reasoning) for run, _, traj in completed])
        for (run, child, traj), value in zip(completed, values):
            traj.score = value
            self._backup(run, child, traj)
        for run, child, _ in children:
            if child.traj.finished:
                self._backup(run, child, child.traj)
        for run, leaf in leaves:
            if leaf.traj.finished:  # a finished leaf re-selected: its known value is backed up again
                self._backup(run, leaf, leaf.traj, new=False)

    def _backup(self, run: TreeRun, node: Node, complete: Trajectory, new: bool = True) -> None:
        if new:
            run.usage.add_trajectory(complete.steps[-1].teacher)
        if run.best is None or complete.score > run.best.score:
            run.best = complete
        while node is not None:
            node.visits += 1
            node.value += complete.score
            node = node.parent
