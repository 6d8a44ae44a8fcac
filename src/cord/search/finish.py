"""A problem's finished trajectories become its record (graded later by `Strategy.run`): the best
one and the runners-up kept as alternatives, each with the final answer the teacher of its last
step writes after </think>. A problem that failed gets a record that says why.

A final answer ends where the answer ends: the request stops at `</think>`, `<think>` or the step
marker, and what an engine returns past them (a server that ignores stop strings, a special
token's text) is cut (`records.quality.cut_answer`), so the text graded is the text exported.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..engines import Completion
from ..prompts import ANSWER_PREFILL, THINK, THINK_CLOSE
from ..records import Alternative, Budget, Record, Timing
from ..records.quality import cut_answer
from ..scoring import Grader, extract_answer
from .accounting import EngineCalls, ProblemRun
from .segment import Segmenter
from .teacher import Teacher, Trajectory

if TYPE_CHECKING:
    from ..config import SearchConfig

ANSWER_PREFILL_TOKENS = 32  # the pre-filled retry writes only what is left of the boxed answer


class Finisher:
    """Final answers and records of one strategy's problems."""

    def __init__(
        self,
        search: SearchConfig,
        teacher: Callable[[str], Teacher],
        seed_for: Callable[..., int],
        calls: EngineCalls,
        segmenter: Segmenter,
        grader: Grader,
    ):
        """`teacher`: a teacher by name; `seed_for(problem, *where)`: a request's sampling seed."""
        self.search, self.teacher, self.seed_for = search, teacher, seed_for
        self.calls, self.segmenter, self.grader = calls, segmenter, grader

    def finish(self, run: ProblemRun, method: str, ranked: list[Trajectory]) -> Record:
        """The problem's finished trajectories, best first, become its record: the teacher that
        wrote a trajectory's last step writes its final answer, for the best one and for the
        `keep_top_k - 1` runners-up kept as alternatives."""
        kept = ranked[: self.search.keep_top_k]
        (answer, fallback), *rest = self.answers(run, kept)
        best = kept[0]
        failed = f"final answer: {answer.error}" if answer.finish == "error" else None
        record = build_record(run, method, best, answer.text, best.steps[-1].teacher, failed=failed)
        record.answer_fallback = fallback
        record.alternatives = [alternative(traj, completion.text, why) for traj, (completion, why) in zip(kept[1:], rest)]
        for trajectory, s in zip([record, *record.alternatives], self.answer_only(run, kept)):
            trajectory.answer_only_perplexity = s
        return record

    def answers(self, run: ProblemRun, kept: list[Trajectory]) -> list[tuple[Completion, str | None]]:
        """Each trajectory's final answer, written after </think> by the teacher of its last step,
        and how it was got (`Record.answer_fallback`): None, the teacher's own; "prefilled", its
        own had nothing to grade (`gradeable`), so it was continued with ANSWER_PREFILL written
        for the teacher (the final answer is its own text, then that line); "empty", nothing to
        grade either way."""
        jobs = []
        for rank, traj in enumerate(kept):
            teacher = self.teacher(traj.steps[-1].teacher)
            where = ("answer", teacher.name) if rank == 0 else ("answer", teacher.name, "alternative", rank)
            seed = self.seed_for(run.problem, *where)
            jobs.append((teacher, teacher.request(run.problem.question, traj.texts, "", self.search.answer_budget, self.stops, seed)))
        out: list[tuple[Completion, str | None]] = [(self.cut(c), None) for c in self.calls.generate(run, jobs, steps=0)]
        retry = [i for i, (c, _) in enumerate(out) if c.finish != "error" and not self.gradeable(c.text)]
        if not retry:
            return out
        budget = min(self.search.answer_budget, ANSWER_PREFILL_TOKENS)
        again = []
        for i in retry:
            teacher, own = jobs[i][0], out[i][0].text.rstrip()
            seed = self.seed_for(run.problem, "answer", teacher.name, "prefilled", i)
            opening = own + ANSWER_PREFILL
            again.append((teacher, teacher.request(run.problem.question, kept[i].texts, opening, budget, ("\n",), seed)))
        for i, (_, request), completion in zip(retry, again, self.calls.generate(run, again, steps=0)):
            if completion.finish == "error":
                out[i] = (out[i][0], "empty")
                continue
            completion.text = request.pieces[-1] + self.cut(completion).text  # its own answer, the pre-filled line, the rest
            out[i] = (completion, "prefilled" if self.gradeable(completion.text) else "empty")
        return out

    @property
    def stops(self) -> tuple[str, ...]:
        """Where a final answer ends: a teacher that writes on has begun another turn of reasoning."""
        return (THINK_CLOSE, THINK, self.segmenter.marker)

    def cut(self, completion: Completion) -> Completion:
        """The completion's text up to where its answer ends (stop strings an engine did not honour)."""
        completion.text = cut_answer(completion.text, self.segmenter.marker)
        return completion

    def gradeable(self, final_answer: str) -> bool:
        """Whether a final answer states something to grade: with math grading, a boxed answer
        math-verify reads (what the step instruction asks for); with a judge or none, any text
        beyond a step marker."""
        if self.segmenter.is_empty(final_answer):
            return False
        return self.grader.cfg.method != "math" or ("\\boxed" in final_answer and extract_answer(final_answer) is not None)

    def answer_only(self, run: ProblemRun, kept: list[Trajectory]) -> list[float | None]:
        """S of each trajectory over its answer's tokens alone, measured when S also scores
        `search.answer_end`, so figures can be set beside the paper's; None where the two are the
        same or it could not be scored (the record stands either way)."""
        if not self.search.answer_end:
            return [None] * len(kept)
        return self.calls.answer_only(run, [(traj.texts[:-1], traj.texts[-1]) for traj in kept])


def perplexity_of(traj: Trajectory) -> float:
    """S of a trajectory (its selection score, unless an ablation ranked it by something else)."""
    return traj.score if traj.perplexity is None else traj.perplexity


def alternative(traj: Trajectory, final_answer: str, answer_fallback: str | None = None) -> Alternative:
    """A runner-up trajectory with its own final answer (graded with its record)."""
    return Alternative(
        steps=list(traj.steps),
        final_answer=final_answer,
        answer_teacher=traj.steps[-1].teacher,
        predictive_perplexity=perplexity_of(traj),
        answer_fallback=answer_fallback,
    )


def failed_record(run: ProblemRun, method: str, reason: str, **fields) -> Record:
    """The record of a problem that failed (`reason` says why), with no reasoning or S."""
    record = build_record(run, method, Trajectory(), "", "", failed=reason, **fields)
    record.predictive_perplexity = None
    return record


def build_record(run: ProblemRun, method: str, traj: Trajectory, final_answer: str, answer_teacher: str, **fields) -> Record:
    """The record of one problem, to be graded; `fields` sets the rest (failed, raw_integration)."""
    problem, usage = run.problem, run.usage
    return Record(
        id=problem.id,
        question=problem.question,
        answer=problem.answer,
        method=method,
        steps=list(traj.steps),
        final_answer=final_answer,
        answer_teacher=answer_teacher,
        predictive_perplexity=perplexity_of(traj),
        tokens=dataclasses.replace(usage.tokens, reasoning=traj.tokens),
        budget=Budget(
            dict(usage.budget.steps_proposed),
            dict(usage.budget.trajectories),
            usage.budget.meta_prover_calls,
            {t: dict(e) for t, e in usage.budget.step_ends.items()},
            dict(usage.budget.empty_steps),
        ),
        timing=Timing(round(usage.timing.generation_seconds, 4), round(usage.timing.scoring_seconds, 4)),
        seconds=round(time.perf_counter() - run.started, 4),
        failed=fields.pop("failed", None) or (None if traj.reasoning.endswith(THINK_CLOSE) else "reasoning did not close"),
        **fields,
    )
