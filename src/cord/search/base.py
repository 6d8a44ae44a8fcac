"""What every search strategy shares: teachers, trajectories, accounting, final answers, records.

Adding a strategy: one file under `search/` with a subclass of `Strategy` (its `solve` turns one
problem into its `Record`; the scheduler runs problems side by side and batches their engine
calls), and one line in `cord.registry.STRATEGIES`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import Config, ConfigError, ModelConfig
from ..data import Problem
from ..engines import Completion, Engine, GenerateRequest
from ..engines.base import request_seed
from ..grade import Grader, extract_answer, is_correct, valid_trace
from ..prompts import THINK_CLOSE, teacher_prompt, user_turn
from ..records import Alternative, Budget, Record, Step, Timing, Tokens
from ..registry import SELECTIONS
from ..schedule import Scheduler, engine_seconds
from ..score import MetaProver, Scored, ScoreItem
from ..segment import Segmenter

if TYPE_CHECKING:
    from ..selection import SelectionRule


class Teacher:
    def __init__(self, cfg: ModelConfig, engine: Engine, step_instruction: str | None = None):
        self.cfg, self.engine, self.name = cfg, engine, cfg.name
        self.step_instruction = step_instruction
        self._prompts: dict[str, str] = {}

    def chat(self, question: str) -> str:
        """The model's chat template around the question and the step instruction."""
        if question not in self._prompts:
            self._prompts[question] = self.engine.chat_prompt(user_turn(question, self.step_instruction), self.cfg.system_prompt)
        return self._prompts[question]

    def request(self, question: str, steps: tuple[str, ...], opening: str, max_tokens: int, stop, seed) -> GenerateRequest:
        """The next step (or the rest) after the accepted `steps`, opened with `opening`."""
        pieces = (teacher_prompt(self.chat(question), ""), *steps, opening)
        return GenerateRequest(
            prompt="".join(pieces),
            max_tokens=max(1, max_tokens),
            temperature=self.cfg.temperature,
            top_p=self.cfg.top_p,
            stop=tuple(stop),
            seed=seed,
            pieces=pieces,
        )


@dataclass
class Trajectory:
    steps: list[Step] = field(default_factory=list)
    tokens: int = 0
    score: float = 0.0  # the selection score (S unless a selection ablation is on)
    opening: str = ""  # what opens the next step
    finished: bool = False
    perplexity: float | None = None  # S when the selection score is something else

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(s.text for s in self.steps)

    @property
    def reasoning(self) -> str:
        return "".join(self.texts)


@dataclass
class Usage:
    """Budget accounting for one problem."""

    teacher_tokens: dict[str, int] = field(default_factory=dict)
    steps_proposed: dict[str, int] = field(default_factory=dict)
    trajectories: dict[str, int] = field(default_factory=dict)  # complete trajectories written
    step_ends: dict[str, dict[str, int]] = field(default_factory=dict)  # teacher -> how its proposed steps ended
    meta_prover_tokens: int = 0
    meta_prover_calls: int = 0
    generation_seconds: float = 0.0
    scoring_seconds: float = 0.0

    def add_generation(self, teacher: str, tokens: int, steps: int = 1) -> None:
        self.teacher_tokens[teacher] = self.teacher_tokens.get(teacher, 0) + tokens
        self.steps_proposed[teacher] = self.steps_proposed.get(teacher, 0) + steps

    def add_step_end(self, teacher: str, end: str) -> None:
        ends = self.step_ends.setdefault(teacher, {})
        ends[end] = ends.get(end, 0) + 1

    def add_trajectory(self, teacher: str) -> None:
        self.trajectories[teacher] = self.trajectories.get(teacher, 0) + 1


@dataclass
class ProblemRun:
    """A problem in flight: its usage and start time, plus whatever the strategy keeps."""

    problem: Problem
    usage: Usage = field(default_factory=Usage)
    started: float = field(default_factory=time.perf_counter)
    failed: str | None = None  # an engine refused one of its requests: the problem ends, recorded as failed


class Strategy:
    """A search strategy turns problems into records, batching engine calls across problems."""

    method = "base"
    selections: tuple[str, ...] = ("perplexity",)  # the search.selection values it uses
    keeps_candidates = False  # whether it can record the candidates each chosen step beat
    schedules_teachers = False  # whether search.teacher_schedule can choose who proposes each step

    @classmethod
    def prepare(cls, config: Config) -> None:
        """Refuse settings this strategy does not use and fill in its defaults (before any model
        loads, so config.yaml states them)."""
        s = config.search
        if s.selection not in cls.selections:
            raise ConfigError(
                f"search.selection: {s.selection!r} is not used by method {s.method!r} (it takes: {', '.join(cls.selections)})"
            )
        SELECTIONS.load(s.selection).prepare(config)
        if s.keep_candidates and not cls.keeps_candidates:
            raise ConfigError(f"search.keep_candidates: method {s.method!r} does not choose between step candidates (cord and greedy do)")
        if s.teacher_schedule is not None and not cls.schedules_teachers:
            raise ConfigError(f"search.teacher_schedule: method {s.method!r} has no step proposals to schedule (cord and greedy do)")

    @classmethod
    def build(cls, config: Config, load: Callable[[ModelConfig], Engine]) -> Strategy:
        """The strategy with its engines, loaded by `load` (which shares one engine per model)."""
        teachers = [Teacher(t, load(t), config.step_instruction_for(t)) for t in config.teachers]
        mp = config.meta_prover
        search = config.search
        meta_prover = MetaProver(load(mp), mp.system_prompt, config.step_instruction_for(mp), search.answer_lead, search.answer_end)
        selection = SELECTIONS.load(config.search.selection).build(config, meta_prover, load)
        strategy = cls(config, teachers, meta_prover, selection)
        strategy.grader = Grader.build(config.grading, load)
        return strategy

    def __init__(self, config: Config, teachers: list[Teacher], meta_prover: MetaProver, selection: SelectionRule | None = None):
        self.config, self.teachers, self.meta_prover = config, teachers, meta_prover
        self.search = config.search
        self.segmenter = Segmenter(self.search.segmentation, self.search.step_marker, self.search.prefill)
        self.selection = selection or SELECTIONS.load(self.search.selection)(self.search, meta_prover)
        self.grader = Grader(config.grading)  # `build` gives it its judge model, when it has one

    def run(self, problems: list[Problem], finished: Iterable[Record] = ()) -> Iterator[Record]:
        """Records as problems finish, `problems_in_flight` at a time, each advancing as soon as its
        own engine calls come back (cord.schedule: no round barrier). `finished`: the records a
        resumed run already has (a strategy that learns from earlier problems reads them)."""
        yield from Scheduler(self.engines()).run(self.solve, problems, self.search.problems_in_flight)

    def solve(self, problem: Problem) -> Iterable[Record]:
        """One problem's record, written as if it were the only one: the scheduler batches its
        engine calls with those of the other problems in flight."""
        raise NotImplementedError

    def engines(self) -> list[Engine]:
        """Every engine this strategy calls, once each."""
        engines = [t.engine for t in self.teachers] + [self.meta_prover.engine]
        others = (getattr(self, "integrator", None), getattr(self.selection, "engine", None), self.grader.judge)
        engines += [e for e in others if e is not None]
        return list({id(e): e for e in engines}.values())

    def seed_for(self, problem: Problem, *where) -> int:
        """The sampling seed of one request: the run's seed, the problem, and where in the search
        the request stands (step, beam slot, teacher, rollout). Two teachers, or one model at two
        temperatures, never share a sample path, and a record does not depend on batching,
        problems_in_flight or resume order."""
        return request_seed(self.search.seed, problem.id, *where)

    def teacher(self, name: str) -> Teacher:
        return next(t for t in self.teachers if t.name == name)

    # -- batched engine calls with time attribution ------------------------

    def generate(self, jobs: list[tuple[ProblemRun, Teacher, GenerateRequest]], steps: int = 1) -> list[Completion]:
        """Run all jobs, one batched call per engine; charge each problem its share of the time.

        `steps`: reasoning steps each completion counts as (0 for final answers and whole
        trajectories, which the caller counts itself)."""
        by_engine: dict[int, list[int]] = {}
        for i, (_, teacher, _) in enumerate(jobs):
            by_engine.setdefault(id(teacher.engine), []).append(i)
        results: list[Completion | None] = [None] * len(jobs)
        with engine_seconds() as seconds:
            for indices in by_engine.values():
                engine = jobs[indices[0]][1].engine
                for i, completion in zip(indices, engine.generate([jobs[i][2] for i in indices])):
                    results[i] = completion
        share = seconds[0] / max(1, len(jobs))
        for (run, teacher, _), completion in zip(jobs, results):
            run.usage.generation_seconds += share
            run.usage.add_generation(teacher.name, completion.tokens, steps)
            if completion.finish == "error" and run.failed is None:
                run.failed = f"teacher {teacher.name}: {completion.error}"
        return results  # type: ignore[return-value]

    def score(self, jobs: list[tuple[ProblemRun, tuple[str, ...], str]]) -> list[float]:
        """S for each (problem, accepted steps, candidate step), from the meta-prover."""
        return self._charged(jobs, lambda items: self.meta_prover.score(items))

    def rank(self, jobs: list[tuple[ProblemRun, tuple[str, ...], str]], lengths: list[int]) -> list[float]:
        """The configured selection rule's score for each candidate (S for the method itself)."""
        if not self.selection.uses_meta_prover:
            items = [ScoreItem(run.problem.question, run.problem.answer, steps, cand) for run, steps, cand in jobs]
            return self._failures(jobs, self.selection.rank(items, lengths))
        return self._charged(jobs, lambda items: self.selection.rank(items, lengths))

    def _charged(self, jobs, scorer) -> list[float]:
        items = [ScoreItem(run.problem.question, run.problem.answer, steps, cand) for run, steps, cand in jobs]
        with engine_seconds() as seconds:
            scored = scorer(items)
        share = seconds[0] / max(1, len(jobs))
        for (run, _, _), result in zip(jobs, scored):
            run.usage.scoring_seconds += share
            run.usage.meta_prover_tokens += result.tokens
            run.usage.meta_prover_calls += 1
        return self._failures(jobs, scored)

    @staticmethod
    def _failures(jobs, scored: list[Scored]) -> list[float]:
        """The scores; a candidate that could not be scored fails its problem (the reason kept) and
        ranks last."""
        for (run, _, _), result in zip(jobs, scored):
            if result.error and run.failed is None:
                run.failed = f"scoring: {result.error}"
        return [float("-inf") if result.error else result.score for result in scored]

    # -- shared pieces of every strategy ------------------------------------

    def close_step(self, opening: str, completion: Completion, tokens_before: int) -> tuple[str, str, str, bool]:
        """(text, end, next opening, finished) of one proposed step; a spent reasoning budget
        closes the reasoning at once (SPEC: append </think>)."""
        closed = self.segmenter.close(opening, completion)
        if not closed.finished and tokens_before + completion.tokens >= self.search.reasoning_budget:
            return closed.text + THINK_CLOSE, "budget", closed.next_opening, True
        return closed.text, closed.end, closed.next_opening, closed.finished

    def whole_steps(self, run: ProblemRun, teacher: Teacher, opening: str, completion: Completion) -> list[Step]:
        """A completion that ran to </think> (or its budget), split post hoc into attributed steps."""
        end = {"stop": "think", "eos": "eos"}.get(completion.finish, "budget")
        texts = self.segmenter.split(opening + completion.text + THINK_CLOSE)
        steps = [Step(text, teacher.name, None, 0, "marker") for text in texts]
        steps[-1].end = end
        steps[-1].tokens = completion.tokens  # whole-completion count, on the closing step
        run.usage.add_generation(teacher.name, 0, len(steps))
        for step in steps:
            run.usage.add_step_end(teacher.name, step.end)
        return steps

    # -- finishing -----------------------------------------------------------

    def fail(self, runs: list[ProblemRun]) -> Iterator[Record]:
        """The records of problems an engine failed on (`run.failed` says why); others go on."""
        for run in runs:
            record = build_record(run, self.method, Trajectory(), "", "", failed=run.failed)
            record.predictive_perplexity = None
            yield record

    def finish(self, items: list[tuple[ProblemRun, list[Trajectory]]]) -> Iterator[Record]:
        """Each problem's finished trajectories, best first, become its record: the teacher that
        wrote a trajectory's last step writes its final answer, for the best one and for the
        `keep_top_k - 1` runners-up kept as alternatives."""
        jobs = []
        for run, ranked in items:
            for rank, traj in enumerate(ranked[: self.search.keep_top_k]):
                teacher = self.teacher(traj.steps[-1].teacher)
                where = ("answer", teacher.name) if rank == 0 else ("answer", teacher.name, "alternative", rank)
                request = teacher.request(
                    run.problem.question, traj.texts, "", self.search.answer_budget, (), self.seed_for(run.problem, *where)
                )
                jobs.append((run, teacher, request))
        completions = iter(self.generate(jobs, steps=0) if jobs else [])
        records = []
        for run, ranked in items:
            kept = [(traj, next(completions)) for traj in ranked[: self.search.keep_top_k]]
            (best, answer), others = kept[0], kept[1:]
            failed = f"final answer: {answer.error}" if answer.finish == "error" else None
            record = build_record(run, self.method, best, answer.text, best.steps[-1].teacher, failed=failed)
            record.alternatives = [alternative(run, traj, completion.text) for traj, completion in others]
            records.append(record)
        self.grader.apply(records)
        yield from records


def alternative(run: ProblemRun, traj: Trajectory, final_answer: str) -> Alternative:
    predicted = extract_answer(final_answer) if final_answer else None
    return Alternative(
        steps=list(traj.steps),
        final_answer=final_answer,
        answer_teacher=traj.steps[-1].teacher,
        predicted=predicted,
        correct=is_correct(run.problem.answer, final_answer) if final_answer else False,
        predictive_perplexity=traj.score if traj.perplexity is None else traj.perplexity,
        valid_trace=valid_trace(run.problem, traj.reasoning, predicted),
    )


def build_record(run: ProblemRun, method: str, traj: Trajectory, final_answer: str, answer_teacher: str, **fields) -> Record:
    """The record of one problem; `fields` sets the rest (failed, raw_integration)."""
    problem, usage = run.problem, run.usage
    predicted = extract_answer(final_answer) if final_answer else None
    return Record(
        id=problem.id,
        question=problem.question,
        answer=problem.answer,
        method=method,
        steps=list(traj.steps),
        final_answer=final_answer,
        answer_teacher=answer_teacher,
        predicted=predicted,
        correct=is_correct(problem.answer, final_answer) if final_answer else False,
        predictive_perplexity=traj.score if traj.perplexity is None else traj.perplexity,
        tokens=Tokens(dict(usage.teacher_tokens), usage.meta_prover_tokens, traj.tokens),
        budget=Budget(
            dict(usage.steps_proposed), dict(usage.trajectories), usage.meta_prover_calls, {t: dict(e) for t, e in usage.step_ends.items()}
        ),
        timing=Timing(round(usage.generation_seconds, 4), round(usage.scoring_seconds, 4)),
        seconds=round(time.perf_counter() - run.started, 4),
        valid_trace=valid_trace(problem, traj.reasoning, predicted),
        failed=fields.pop("failed", None) or (None if traj.reasoning.endswith(THINK_CLOSE) else "reasoning did not close"),
        **fields,
    )
