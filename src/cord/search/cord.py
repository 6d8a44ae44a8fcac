"""CoRD: step-wise multi-teacher beam search scored by the meta-prover (greedy is B = 1).

Each round, every prefix in a problem's beam gets one proposed next step from every teacher
(B x K candidates); the selection rule (the meta-prover's S) scores prefix + candidate; the top B
survive. A candidate that closes the reasoning (`</think>`, end of turn, or spent budget) leaves
the beam as a finished trajectory; a problem is done when B trajectories have finished or its
beam is empty. Each problem runs its rounds on its own; the scheduler batches the calls of all
problems in flight that are ready (search/scheduler.py). With `search.teacher_schedule` (opt-in), the
teachers that propose at each phase of the trajectory come from a table fit on the first problems
(search/teacher_schedule.py).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..config import Config
from ..data import Problem
from ..engines import Completion, GenerateRequest
from ..errors import ConfigError
from ..records import KeptStep, Record, Step
from ..registry import SELECTIONS
from .base import ProblemRun, Strategy, Teacher, Trajectory
from .scheduler import Pending, can_launch, launch, rows_free, wait_for
from .state import kept_from, trajectory_from, trajectory_state
from .teacher_schedule import TeacherSchedule, kept_steps

log = logging.getLogger("cord")


@dataclass
class BeamRun(ProblemRun):
    beam: list[Trajectory] = field(default_factory=list)
    finished: list[Trajectory] = field(default_factory=list)
    kept: list[KeptStep] = field(default_factory=list)  # every step the beam kept, round by round
    # search.speculative: next-round proposals started before this round's last ones were back,
    # each (teacher name, request, pending call); taken up where the round's ranking asks the same
    ahead: list[tuple[str, GenerateRequest, Pending]] = field(default_factory=list)


@dataclass
class Candidate:
    parent: Trajectory
    teacher: Teacher
    text: str
    tokens: int
    end: str
    next_opening: str
    finished: bool
    empty: bool = False  # says nothing (only the step marker): ranks below every step with content
    score: float = 0.0


class CordSearch(Strategy):
    method = "cord"
    selections = SELECTIONS.names()
    keeps_candidates = True
    schedules_teachers = True
    chooses_cut_step_writer = True
    width = staticmethod(lambda config: config.search.beam_size)  # trajectories kept at each step

    @classmethod
    def prepare(cls, config: Config) -> None:
        super().prepare(config)
        s = config.search
        if s.speculative and s.rows_in_flight is None:
            raise ConfigError("search.speculative: needs search.rows_in_flight (proposals start early only on rows a device has free)")
        if s.speculative and s.selection != "perplexity":
            raise ConfigError(f"search.speculative: ranks candidates as they arrive, by S alone (search.selection is {s.selection!r})")

    @classmethod
    def budget_tokens(cls, config: Config, prompts: dict[str, int]) -> dict[str, tuple[int, int]]:
        # Every round each teacher proposes a step for each of the B trajectories, and the
        # meta-prover reads every candidate after its trajectory; then each writes its answer.
        s, width = config.search, cls.width(config)
        out, read = {}, 0
        for t in config.teachers:
            p, cap = prompts[t.name], t.max_step_tokens
            n = -(-s.reasoning_budget // cap)  # rounds
            sent = width * (n * p + cap * n * (n - 1) // 2) + width * (p + s.reasoning_budget)
            out[t.name] = (sent, width * (s.reasoning_budget + s.answer_budget))
            read += width * (n * prompts["meta_prover"] + cap * n * (n + 1) // 2)
        out["meta_prover"] = (read, 0)
        return out

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.beam_size = self.search.beam_size
        if self.search.selection != "perplexity":
            self.method = f"{self.method}+{self.search.selection}"
        self.table: TeacherSchedule | None = None  # search.teacher_schedule, once fit
        cfg = self.search.teacher_schedule
        if cfg is not None and cfg.table is not None:
            self.table = TeacherSchedule.from_table(cfg, [t.name for t in self.teachers])
            self._log_table("as configured")
        elif cfg is not None and cfg.table_from is not None:
            self.table = TeacherSchedule.from_run(cfg, [t.name for t in self.teachers])
            self._log_table(f"from {cfg.table_from}")

    def run(self, problems: list[Problem], finished: Iterable[Record] = ()) -> Iterator[Record]:
        """With a teacher schedule and no table yet: the first `calibration` problems (less those a
        resumed run already has) run with every teacher, then the table is fit on them and the rest
        run with it."""
        cfg = self.search.teacher_schedule
        if cfg is None or self.table is not None:
            yield from super().run(problems)
            return
        calibrated = [r for r in finished if r.schedule == "calibration"]
        split = max(0, cfg.calibration - len(calibrated))
        for record in super().run(problems[:split]):
            calibrated.append(record)
            yield record
        if problems[split:]:
            self.table = TeacherSchedule.fit(cfg, [t.name for t in self.teachers], kept_steps(calibrated))
            self._log_table(f"fit on {len(calibrated)} calibration problems")
            yield from super().run(problems[split:])

    def _log_table(self, source: str) -> None:
        log.info(f"teacher schedule {source}: {self.table.describe()}; as a written table: {self.table.written()}")

    def start(self, problem: Problem) -> BeamRun:
        run = BeamRun(problem)
        run.beam = [Trajectory(opening=self.segmenter.first_opening)]
        self.resume(run)
        return run

    def state(self, run: BeamRun) -> dict[str, Any]:
        return {
            "beam": [trajectory_state(t) for t in run.beam],
            "finished": [trajectory_state(t) for t in run.finished],
            "kept": [dataclasses.asdict(k) for k in run.kept],
        }

    def restore(self, run: BeamRun, parts: dict[str, Any]) -> None:
        beam, finished = [trajectory_from(t) for t in parts["beam"]], [trajectory_from(t) for t in parts["finished"]]
        run.beam, run.finished, run.kept = beam, finished, kept_from(parts["kept"])

    def solve(self, problem: Problem) -> Iterator[Record]:
        run = self.start(problem)
        while not self.done(run):
            self.advance(run)
            self.checkpoint(run)
        if run.ahead:
            self.meter.count("proposals_ahead_dropped", len(run.ahead))
        record = self.chosen(run)
        record.kept_steps = list(run.kept)
        if self.search.teacher_schedule is not None:
            record.schedule = "calibration" if self.table is None else "scheduled"
        yield record

    def chosen(self, run: BeamRun) -> Record:
        if run.failed:
            return self.fail(run)
        ranked = sorted(run.finished, key=lambda t: -t.score)
        if not self.selection.is_perplexity:
            # Ranked by an ablation: still report the quality metric S of what was chosen.
            kept = ranked[: self.search.keep_top_k]
            for traj, s in zip(kept, self.score(run, [(traj.texts[:-1], traj.texts[-1]) for traj in kept])):
                traj.perplexity = s
            if run.failed:
                return self.fail(run)
        return self.finish(run, ranked)

    def done(self, run: BeamRun) -> bool:
        return run.failed is not None or len(run.finished) >= self.beam_size or not run.beam

    def jobs(self, run: BeamRun, beam: list[Trajectory]) -> list[tuple[Teacher, GenerateRequest, Trajectory]]:
        """What every proposer is asked after every prefix in `beam`: (teacher, request, prefix)."""
        budget = self.search.reasoning_budget
        jobs = []
        for slot, traj in enumerate(beam):
            for teacher in self.proposers(traj):
                cap = min(teacher.cfg.max_step_tokens, budget - traj.tokens)
                seed = self.seed_for(run.problem, "step", len(traj.steps), slot, teacher.name)
                request = teacher.request(run.problem.question, traj.texts, traj.opening, cap, self.segmenter.stops, seed)
                jobs.append((teacher, request, traj))
        return jobs

    def propose(self, run: BeamRun) -> list[Candidate]:
        """One proposed next step from every teacher after every prefix in the beam."""
        jobs = self.jobs(run, run.beam)
        completions = self.generate(run, [(teacher, request) for teacher, request, _ in jobs])
        return self.candidates(run, jobs, completions)

    def candidates(self, run: ProblemRun, jobs: list, completions: list[Completion]) -> list[Candidate]:
        """The proposed steps of `jobs`' completions, closed (and counted in `run`'s usage)."""
        out = []
        for (teacher, _, traj), completion in zip(jobs, completions):
            step = self.close_step(run, teacher, traj, completion)
            out.append(Candidate(traj, teacher, step.text, completion.tokens, step.end, step.next_opening, step.finished, step.empty))
        return out

    def proposers(self, traj: Trajectory) -> list[Teacher]:
        """The teachers that propose after `traj`: all of them, or its phase's with a schedule; with
        `search.cut_step: writer`, a step cut at the cap is continued by its writer alone."""
        if self.search.cut_step == "writer" and traj.steps and traj.steps[-1].end == "cap":
            return [self.teacher(traj.steps[-1].teacher)]
        if self.table is None:
            return self.teachers
        names = self.table.teachers_at(len(traj.steps), traj.tokens)
        return [t for t in self.teachers if t.name in names]

    def advance(self, run: BeamRun) -> None:
        """One round: propose B x K candidates, score them, keep the top B (a step with nothing in
        it only where too few steps with content were proposed). A kept step names every teacher
        that proposed its text; one of them, picked by `writer`, writes on from it."""
        candidates, scored = self.propose_ahead(run) if self.speculates(run) else (self.propose(run), {})
        pool, proposers, asked = self.pool(candidates)
        todo = [c for c in pool if (id(c.parent), c.text) not in scored]
        for cand, s in zip(todo, self.rank(run, [(c.parent.texts, c.text) for c in todo], [c.parent.tokens + c.tokens for c in todo])):
            scored[(id(cand.parent), cand.text)] = s
        for cand in pool:
            cand.score = scored[(id(cand.parent), cand.text)]
        beam, finished, kept = self.select(run, sorted(pool, key=lambda c: (c.empty, -c.score)), proposers, asked)
        run.beam, run.kept = beam, run.kept + kept
        for traj in finished:
            run.finished.append(traj)
            run.usage.add_trajectory(traj.steps[-1].teacher)

    def speculates(self, run: BeamRun) -> bool:
        """Whether this round goes through `propose_ahead` (search.speculative: engines called at
        once, and rows free or proposals started ahead last round)."""
        if not self.search.speculative:
            return False
        engines = [t.engine for t in self.teachers]
        return can_launch(engines) and bool(run.ahead or rows_free(engines))

    @staticmethod
    def pool(candidates: list[Candidate]) -> tuple[list[Candidate], dict[tuple[int, str], list[str]], dict[int, list[str]]]:
        """Identical texts proposed for the same prefix as one candidate (scored once): the pool in
        proposal order, each text's proposers, and who was asked after each prefix."""
        unique: dict[tuple[int, str], Candidate] = {}
        proposers: dict[tuple[int, str], list[str]] = {}
        asked: dict[int, list[str]] = {}
        for cand in candidates:
            key = (id(cand.parent), cand.text)
            unique.setdefault(key, cand)
            proposers.setdefault(key, []).append(cand.teacher.name)
            asked.setdefault(id(cand.parent), []).append(cand.teacher.name)
        return list(unique.values()), proposers, asked

    def select(
        self, run: BeamRun, ranked: list[Candidate], proposers: dict, asked: dict
    ) -> tuple[list[Trajectory], list[Trajectory], list[KeptStep]]:
        """What the round keeps from `ranked` (best first), without changing `run`: the new beam, the
        trajectories that finished, and the kept steps."""
        beam, finished, kept = [], [], []
        for cand in self.survivors(ranked, len(run.finished)):
            teachers = proposers[(id(cand.parent), cand.text)]
            kept.append(KeptStep(len(cand.parent.steps), cand.parent.tokens, teachers, asked[id(cand.parent)]))
            writer = self.writer(run, len(cand.parent.steps), teachers)
            step = Step(cand.text, writer, cand.score, cand.tokens, cand.end, proposers=list(teachers))
            if self.search.keep_candidates:
                rivals = [c for c in ranked if c.parent is cand.parent and c is not cand]
                step.candidates = [{"text": c.text, "teacher": c.teacher.name, "score": c.score} for c in rivals]
            traj = Trajectory(
                steps=[*cand.parent.steps, step],
                tokens=cand.parent.tokens + cand.tokens,
                score=cand.score,
                opening=cand.next_opening,
                finished=cand.finished,
            )
            (finished if cand.finished else beam).append(traj)
        return beam, finished, kept

    def propose_ahead(self, run: BeamRun) -> tuple[list[Candidate], dict[tuple[int, str], float]]:
        """`propose` with `search.speculative`, for a round that starts while the run's last problems
        are in flight and the teachers' engines have rows free (`rows_free`; while problems wait to
        start, the rows are theirs) or that has proposals started ahead: each proposal a call of its
        own, scored as it comes back; proposals started ahead last round are taken up where this
        round asks the same. Once at most a quarter of the round's proposals are out and the rows
        are still free, the next round's proposals start from the ranking so far (as if the missing
        ones ranked last). The round still waits for every proposal and ranks all of them as `advance` does, so
        the record is the one the plain round gives: a next-round proposal the final ranking does
        not ask for is dropped. Returns the candidates (counted in the usage, in proposal order)
        and the S of each (prefix, text) scored on the way."""
        jobs = self.jobs(run, run.beam)
        ahead, run.ahead = run.ahead, []
        pending: list[Pending] = []
        for teacher, request, _ in jobs:
            match = next((i for i, (name, req, _) in enumerate(ahead) if name == teacher.name and req == request), None)
            pending.append(ahead.pop(match)[2] if match is not None else launch(teacher.engine, "generate", [request]))
            self.meter.count("proposals_ahead_kept" if match is not None else "proposals_sent")
        if ahead:
            self.meter.count("proposals_ahead_dropped", len(ahead))
        scratch = ProblemRun(run.problem)  # closing steps on the way counts nothing; the real count comes last
        arrived: dict[int, Candidate] = {}
        scored: dict[tuple[int, str], float] = {}
        started_ahead = False
        while True:
            for i, p in enumerate(pending):
                if p.done and i not in arrived:
                    arrived[i] = self.candidates(scratch, [jobs[i]], p.result())[0]
            new = [c for c in self.pool([arrived[i] for i in sorted(arrived)])[0] if (id(c.parent), c.text) not in scored]
            if new and run.failed is None:
                ranks = self.rank(run, [(c.parent.texts, c.text) for c in new], [c.parent.tokens + c.tokens for c in new])
                scored.update(((id(c.parent), c.text), s) for c, s in zip(new, ranks))
            if len(arrived) == len(jobs):
                break
            left = len(jobs) - len(arrived)
            if not started_ahead and run.failed is None and left <= max(1, len(jobs) // 4) and rows_free([t.engine for t in self.teachers]):
                started_ahead = True
                run.ahead = self.start_ahead(run, [arrived[i] for i in sorted(arrived)], scored)
            wait_for(pending, len(arrived) + 1)
        completions = [p.result()[0] for p in pending]
        self.calls.charge(run, [(t, r) for t, r, _ in jobs], completions, 1, sum(p.seconds for p in pending))
        return self.candidates(run, jobs, completions), scored

    def start_ahead(self, run: BeamRun, arrived: list[Candidate], scored: dict) -> list[tuple[str, GenerateRequest, Pending]]:
        """The next round's proposals after the beam the candidates scored so far would keep, started."""
        pool, proposers, asked = self.pool(arrived)
        for cand in pool:
            cand.score = scored[(id(cand.parent), cand.text)]
        beam, finished, _ = self.select(run, sorted(pool, key=lambda c: (c.empty, -c.score)), proposers, asked)
        if len(run.finished) + len(finished) >= self.beam_size or not beam:
            return []
        return [(t.name, request, launch(t.engine, "generate", [request])) for t, request, _ in self.jobs(run, beam)]

    def writer(self, run: BeamRun, index: int, proposers: list[str]) -> str:
        """Which of a kept step's proposers writes on from it (continues it if cut, writes the final
        answer if it closed the reasoning): a seeded pick, so no teacher wins every tie by its place
        in the teacher list; the others share the step's credit (`Step.proposers`)."""
        if len(proposers) == 1:
            return proposers[0]
        return proposers[self.seed_for(run.problem, "writer", index) % len(proposers)]

    def survivors(self, ranked: list[Candidate], finished: int) -> list[Candidate]:
        """The candidates kept, best first. Default: the top B - (finished so far); with
        keep_beam_width, the finished ones among the top B plus the best B live ones."""
        if not self.search.keep_beam_width:
            return ranked[: self.beam_size - finished]
        done = [c for c in ranked[: self.beam_size] if c.finished]
        live = [c for c in ranked if not c.finished][: self.beam_size]
        return sorted(done + live, key=lambda c: -c.score)


class GreedySearch(CordSearch):
    """CoRD with B = 1: the best candidate of each step, whatever search.beam_size says."""

    method = "greedy"

    width = staticmethod(lambda config: 1)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.beam_size = 1
