"""`mcts-cord`: a CoRD/MCTS hybrid, MCTS whose rollouts are greedy CoRD (search/mcts.py has the tree).

The tree is MCTS's (one trajectory kept, K children a step, `rollouts` simulations a step by UCB),
but a simulation completes the child step by step as greedy CoRD does: every teacher proposes each
rollout step, the meta-prover scores them, S keeps the best. A step's value then does not hang on
one teacher solving the whole problem alone, and every teacher and the meta-prover work at each
rollout step: each simulation costs K proposals per remaining step, and there is no total cap, so
the cost grows with the number of steps (about twice CoRD's teacher tokens on the tiny heterogeneous
teachers). It was cord's `mcts` before the paper's MCTS (§4.4: proposer rollouts under the other
methods' trajectory budget) took that name; it reproduced the paper's order beam > MCTS > greedy
on the tiny heterogeneous teachers (docs/fidelity.md). The records say `mcts+cord-rollouts`.
"""

from __future__ import annotations

from .mcts import Child, MctsSearch, TreeRun


class MctsCordSearch(MctsSearch):
    method = uncapped_method = "mcts+cord-rollouts"

    @property
    def rollout_budget(self) -> None:
        return None  # `rollouts` simulations every step, as this hybrid always ran

    def rollout(self, run: TreeRun, child: Child, simulation: int) -> float:
        """S of the child completed step by step by every teacher, the best step by S kept each time."""
        traj = child.traj
        while not (traj.finished or run.failed):
            where = ("rollout", len(child.traj.steps), simulation, len(traj.steps))
            traj = max(self.proposals(run, traj, where), key=lambda c: (not c.empty, c.traj.score)).traj
        run.usage.add_trajectory(traj.steps[-1].teacher)
        return traj.score
