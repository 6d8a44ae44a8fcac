"""`Strategy`: what every search strategy is, what a new one writes and what it can call.

A new strategy is one file under `search/` with a subclass of `Strategy`, and one line in
`cord.registry.STRATEGIES`. It writes:
- `solve(problem)`: yield the problem's record, written as if the problem were alone (its engines
  are the scheduler's batching engines: the calls of the problems in flight share batches);
- where it needs them: the class attributes, `prepare` (refuse settings, fill defaults), `build`
  (load more engines), and a `ProblemRun` subclass for what it keeps of a problem in flight.
It reads `self.search` (the settings), `self.teachers` and `self.segmenter` (`first_opening`,
`stops`), and calls, each charging the problem's `ProblemRun` what it spends:
- `seed_for(problem, *where)` and `Teacher.request`: what a teacher is asked;
- `generate`: the completions; `score` / `rank`: S / the selection rule's score of candidates;
- `close_step` (one proposed step) or `whole_steps` (a whole trajectory cut into steps), and
  `run.usage.add_trajectory(teacher)` for each trajectory that finishes;
- `finish(run, ranked)`: the record. A call that fails sets `run.failed`: the strategy stops the
  problem and returns `fail(run)`;
- `checkpoint(run)` after each round it finishes and `resume(run)` when a problem starts: the
  problem's state (what `state` returns; `restore` puts it back) is saved in the run folder, so an
  interrupted run loses at most the round in progress (records/states.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..config import Config, ModelConfig
from ..data import Problem
from ..engines import Completion, Engine, GenerateRequest
from ..engines.base import request_seed
from ..errors import ConfigError
from ..records import Record, Step
from ..records.quality import assess
from ..registry import SELECTIONS
from ..scoring import Grader, MetaProver
from .accounting import EngineCalls, ProblemRun, record_cost
from .finish import Finisher, failed_record
from .meter import Meter
from .scheduler import Scheduler
from .segment import Segmenter
from .state import STATE_VERSION, usage_from, usage_state
from .steps import ProposedStep, StepCloser
from .teacher import Teacher, Trajectory

if TYPE_CHECKING:
    from ..records.states import SearchStates
    from ..scoring.selection import SelectionRule

log = logging.getLogger("cord")

__all__ = ["ProblemRun", "Strategy", "Teacher", "Trajectory"]  # what a strategy imports


class Strategy:
    """A search strategy turns problems into records, one problem at a time in each `solve`."""

    method = "base"
    selections: tuple[str, ...] = ("perplexity",)  # the search.selection values it uses
    keeps_candidates = False  # whether it can record the candidates each chosen step beat
    schedules_teachers = False  # whether search.teacher_schedule can choose who proposes each step
    chooses_cut_step_writer = False  # whether search.cut_step: writer applies (steps proposed round by round)
    checkpoints: SearchStates | None = None  # a run into a folder sets it: problems' states saved round by round

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
        if s.cut_step == "writer" and not cls.chooses_cut_step_writer:
            raise ConfigError(f"search.cut_step: method {s.method!r} does not propose steps round by round (cord and greedy do)")
        if s.teacher_schedule is not None and not cls.schedules_teachers:
            raise ConfigError(f"search.teacher_schedule: method {s.method!r} has no step proposals to schedule (cord and greedy do)")

    @classmethod
    def build(cls, config: Config, load: Callable[[ModelConfig], Engine]) -> Strategy:
        """The strategy with its engines, loaded by `load` (which shares one engine per model) and
        handed to it as the scheduler's batching engines."""
        scheduler = Scheduler(config.search.reproducible, config.search.rows_in_flight)
        engine = lambda model: scheduler.batching(load(model))
        teachers = [Teacher(t, engine(t), cls.teacher_instruction(config, t)) for t in config.teachers]
        mp, search = config.meta_prover, config.search
        meta_prover = MetaProver(engine(mp), mp.system_prompt, cls.meta_prover_instruction(config), search.answer_lead, search.answer_end)
        selection = SELECTIONS.load(search.selection).build(config, meta_prover, engine)
        grader = Grader.build(config.grading, engine)
        return cls(config, teachers, meta_prover, selection, grader=grader, scheduler=scheduler)

    def __init__(
        self,
        config: Config,
        teachers: list[Teacher],
        meta_prover: MetaProver,
        selection: SelectionRule | None = None,
        grader: Grader | None = None,
        scheduler: Scheduler | None = None,
    ):
        """`scheduler`: the one whose batching engines the teachers and the meta-prover hold."""
        self.config, self.teachers, self.meta_prover = config, teachers, meta_prover
        self.search = config.search
        self.segmenter = Segmenter(self.search.segmentation, self.search.step_marker, self.search.prefill)
        self.selection = selection or SELECTIONS.load(self.search.selection)(self.search, meta_prover)
        self.grader = grader or Grader(config.grading)
        self.scheduler = scheduler or Scheduler(config.search.reproducible, config.search.rows_in_flight)
        self.meter = Meter()  # tokens and steps as they happen (the progress bar, run.log)
        self.calls = EngineCalls(meta_prover, self.selection, self.meter)
        self.step_closer = StepCloser(self.segmenter, self.search.reasoning_budget, self.meter)
        self.finisher = Finisher(self.search, self.teacher, self.seed_for, self.calls, self.segmenter, self.grader)

    def run(self, problems: list[Problem], finished: Iterable[Record] = ()) -> Iterator[Record]:
        """Records as problems finish, `problems_in_flight` at a time, each advancing as soon as its
        own engine calls come back (search/scheduler.py: no round barrier), graded and given the
        quality pass (records/quality.py) and priced (`record_cost`) here in the main thread.
        `finished`: the records a resumed run already has (a strategy that learns from earlier
        problems reads them)."""

        def solved(problem: Problem) -> list[tuple[Problem, Record]]:
            return [(problem, record) for record in self.solve(problem)]

        for problem, record in self.scheduler.run(solved, problems, self.search.problems_in_flight):
            self.meter.done(problem.id)
            self.grader.grade(problem, record)
            record.index = problem.index
            for trajectory in (record, *record.alternatives):
                trajectory.quality = assess(trajectory, self.segmenter.marker)
            record.cost = record_cost(self.config, record.tokens)
            yield record

    @classmethod
    def teacher_instruction(cls, config: Config, teacher: ModelConfig) -> str | None:
        """What follows the question in a teacher's user turn (`cord generate --dry-run` shows it)."""
        return config.step_instruction_for(teacher)

    @classmethod
    def meta_prover_instruction(cls, config: Config) -> str | None:
        """What follows the question in the meta-prover's user turn: the instruction the teachers
        were given, so S reads each trajectory after the question it was written for."""
        return config.step_instruction_for(config.meta_prover)

    @classmethod
    def teacher_opening(cls, config: Config) -> str:
        """What cord writes after <think> before a teacher continues."""
        s = config.search
        return Segmenter(s.segmentation, s.step_marker, s.prefill).first_opening

    @classmethod
    def teacher_stops(cls, config: Config) -> str:
        """Where a teacher's request stops, in a line (the dry run shows it)."""
        s = config.search
        return Segmenter(s.segmentation, s.step_marker, s.prefill).describe_stops()

    @classmethod
    def budget_tokens(cls, config: Config, prompts: dict[str, int]) -> dict[str, tuple[int, int]] | None:
        """One problem's tokens if every trajectory ran to search.reasoning_budget in steps that
        each run to the writer's max_step_tokens, for `cord generate --dry-run`'s estimate: per
        writer (prompt tokens sent, tokens generated), and "meta_prover": (tokens read, 0).
        `prompts`: each model's prompt tokens for a problem. None: no such scenario for the method."""
        return None

    def solve(self, problem: Problem) -> Iterable[Record]:
        """One problem's record, written as if it were the only one: the scheduler batches its
        engine calls with those of the other problems in flight."""
        raise NotImplementedError

    def engines(self) -> list[Any]:
        """Every engine this strategy calls, once each."""
        return self.scheduler.engines

    def seed_for(self, problem: Problem, *where) -> int:
        """The sampling seed of one request: the run's seed, the problem, and where in the search
        the request stands (step, beam slot, teacher, rollout). Two teachers, or one model at two
        temperatures, never share a sample path, and a record does not depend on batching,
        problems_in_flight or resume order."""
        return request_seed(self.search.seed, problem.id, *where)

    def teacher(self, name: str) -> Teacher:
        return next(t for t in self.teachers if t.name == name)

    # -- what a strategy calls (accounting.py, steps.py, finish.py) ----------

    def generate(self, run: ProblemRun, jobs: list[tuple[Teacher, GenerateRequest]], steps: int = 1) -> list[Completion]:
        """Each (writer, request)'s completion; `steps`: reasoning steps each counts as (0: the caller counts)."""
        return self.calls.generate(run, jobs, steps)

    def score(self, run: ProblemRun, jobs: list[tuple[tuple[str, ...], str]]) -> list[float]:
        """S for each (accepted steps, candidate step); one that cannot be scored fails the problem."""
        return self.calls.score(run, jobs)

    def rank(self, run: ProblemRun, jobs: list[tuple[tuple[str, ...], str]], lengths: list[int]) -> list[float]:
        """The selection rule's score for each (accepted steps, candidate step) of `lengths` tokens."""
        return self.calls.rank(run, jobs, lengths)

    def close_step(self, run: ProblemRun, teacher: Teacher, parent: Trajectory, completion: Completion) -> ProposedStep:
        """The step `teacher` proposed after `parent` (its `completion`), closed and counted."""
        return self.step_closer.close(run, teacher, parent, completion)

    def whole_steps(self, run: ProblemRun, teacher: Teacher, opening: str, completion: Completion) -> list[Step]:
        """A completion that ran to </think> (or its budget) after `opening`, cut into steps and counted."""
        return self.step_closer.split(run, teacher, opening, completion)

    def finish(self, run: ProblemRun, ranked: list[Trajectory]) -> Record:
        """The record of the problem's finished trajectories, best first (final answers written)."""
        return self.finisher.finish(run, self.method, ranked)

    def state(self, run: ProblemRun) -> dict[str, Any]:
        """What the strategy keeps of a problem after a round, as JSON-ready parts (its usage and
        time are saved besides). A strategy that saves rounds writes this and `restore`."""
        return {}

    def restore(self, run: ProblemRun, parts: dict[str, Any]) -> None:
        """Put `state`'s parts back into a fresh `run`: read every part first, then assign, so a
        state it cannot read leaves `run` fresh."""

    def checkpoint(self, run: ProblemRun) -> None:
        """Save the problem's state after a round it finished (in a run folder, while it has not failed)."""
        if self.checkpoints is None or run.failed:
            return
        run.rounds += 1
        elapsed = time.perf_counter() - run.started
        state = {"version": STATE_VERSION, "method": self.method, "rounds": run.rounds, "elapsed": elapsed}
        self.checkpoints.save(run.problem.id, {**state, "usage": usage_state(run.usage), **self.state(run)})
        self.meter.count("rounds_saved")

    def resume(self, run: ProblemRun) -> bool:
        """Whether `run` now stands where the problem's last saved round left it (its usage, time
        and round count as they were then); False: nothing usable was saved, `run` is as it was."""
        state = self.checkpoints.load(run.problem.id) if self.checkpoints is not None else None
        if state is None:
            return False
        where = f"problem {run.problem.id}: saved state"
        if state.get("version") != STATE_VERSION or state.get("method") != self.method:
            log.warning(f"{where} is of {state.get('method')!r} version {state.get('version')}, not this run's; it starts again")
            return False
        try:
            usage, rounds, elapsed = usage_from(state["usage"]), int(state["rounds"]), float(state["elapsed"])
            self.restore(run, state)
        except (KeyError, TypeError, ValueError, StopIteration) as err:  # StopIteration: a teacher no longer configured
            log.warning(f"{where} cannot be read ({type(err).__name__}: {err}); it starts again")
            return False
        run.usage, run.rounds, run.started = usage, rounds, time.perf_counter() - elapsed
        self.meter.count("problems_resumed")
        log.info(f"problem {run.problem.id} resumes after its saved round {rounds}")
        return True

    def fail(self, run: ProblemRun) -> Record:
        """The record of a problem that failed (`run.failed` says why); the others go on."""
        return failed_record(run, self.method, run.failed)
