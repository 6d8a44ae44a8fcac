"""Teacher scheduling by position: beyond the paper, opt-in with `search.teacher_schedule`.

The paper's Figure 2 shows that which teacher's step the search keeps depends on where in the
trajectory the step stands. Here the first `calibration` problems run as the paper does, every
teacher proposing after every prefix, and each step their beams keep records which teachers
proposed its very text (`Record.kept_steps`). Per phase (a step index, or reasoning tokens so far,
in bins of `width`) the table keeps the fewest teachers that between them proposed `coverage` of
the kept steps: a greedy set cover, ties going to the teacher listed first. A phase seen fewer
than `min_kept` times keeps every teacher. The problems after calibration ask only their phase's
teachers, so a teacher whose steps the search rarely keeps at some phase stops spending tokens there.

The table is a function of the calibration records alone (counts, not their order), so a resumed
or re-batched run fits the same table; it is not updated after calibration. `table_from` fits it
on an earlier run's records instead, and `table` takes it as written (no calibration either).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import yaml

from ..config import TeacherScheduleConfig
from ..errors import ConfigError
from ..records import KeptStep, Record, read_records


@dataclass
class TeacherSchedule:
    teachers: list[str]  # every teacher, in config order
    by: str = "step"
    width: int = 1
    phases: dict[int, list[str]] = field(default_factory=dict)  # phase -> the teachers that propose there
    kept: dict[int, int] = field(default_factory=dict)  # phase -> kept steps it was fit on

    def phase(self, step: int, tokens: int) -> int:
        return (step if self.by == "step" else tokens) // self.width

    def teachers_at(self, step: int, tokens: int) -> list[str]:
        """Who proposes the step after a prefix of `step` steps and `tokens` reasoning tokens."""
        return self.phases.get(self.phase(step, tokens), self.teachers)

    @classmethod
    def fit(cls, cfg: TeacherScheduleConfig, teachers: list[str], kept_steps: Iterable[KeptStep]) -> TeacherSchedule:
        """The table from kept steps after which every teacher was asked (others are skipped:
        a teacher that was not asked could not have proposed the step)."""
        table = cls(list(teachers), cfg.by, cfg.width)
        by_phase: dict[int, list[set[str]]] = {}
        everyone = set(teachers)
        for kept in kept_steps:
            if set(kept.asked) >= everyone:
                by_phase.setdefault(table.phase(kept.step, kept.tokens), []).append(set(kept.teachers) & everyone)
        for phase, proposers in sorted(by_phase.items()):
            table.kept[phase] = len(proposers)
            if len(proposers) >= cfg.min_kept:
                table.phases[phase] = cover(teachers, proposers, cfg.coverage)
        return table

    @classmethod
    def from_table(cls, cfg: TeacherScheduleConfig, teachers: list[str]) -> TeacherSchedule:
        """The table written in the config (`table`: phase -> teachers, names checked by
        the config)."""
        table = cls(list(teachers), cfg.by, cfg.width)
        table.phases = {phase: [t for t in teachers if t in names] for phase, names in sorted((cfg.table or {}).items())}
        return table

    @classmethod
    def from_run(cls, cfg: TeacherScheduleConfig, teachers: list[str]) -> TeacherSchedule:
        """The table fit on an earlier run directory's records (`table_from`), which must have
        asked every one of `teachers`."""
        where = f"search.teacher_schedule.table_from: {cfg.table_from}"
        kept = kept_steps(read_records(cfg.table_from))
        if not kept:
            raise ConfigError(f"{where}: no kept steps to fit the teacher schedule on (a cord or greedy run's records are needed)")
        seen = {t for k in kept for t in k.asked}
        if not seen >= set(teachers):
            missing = ", ".join(t for t in teachers if t not in seen)
            raise ConfigError(f"{where}: teacher(s) {missing} never proposed in that run; the teacher names must match")
        return cls.fit(cfg, teachers, kept)

    def describe(self) -> str:
        """One line per fitted phase, for run.log."""
        unit = "step" if self.by == "step" else "tokens"
        lines = []
        for phase in sorted(set(self.kept) | set(self.phases)):
            start, end = phase * self.width, (phase + 1) * self.width - 1
            span = f"{unit} {start}" if self.width == 1 else f"{unit} {start}-{end}"
            who = ", ".join(self.phases.get(phase, self.teachers))
            lines.append(f"{span}: {who}" + (f" ({self.kept[phase]} kept steps)" if phase in self.kept else ""))
        lines.append(f"later: {', '.join(self.teachers)}")
        return "; ".join(lines)

    def written(self) -> str:
        """The table as `search.teacher_schedule.table` takes it (YAML), to pin a fitted table."""
        return yaml.safe_dump(self.phases, default_flow_style=True, width=10**6).strip()


def kept_steps(records: Iterable[Record]) -> list[KeptStep]:
    """The kept steps of the problems that did not fail."""
    return [k for r in records if not r.failed for k in r.kept_steps or ()]


def cover(teachers: list[str], proposers: list[set[str]], coverage: float) -> list[str]:
    """The fewest teachers (greedy set cover) whose proposals include `coverage` of the kept
    steps, in config order."""
    chosen: list[str] = []
    uncovered = list(proposers)
    need = coverage * len(proposers)
    while len(proposers) - len(uncovered) < need - 1e-9:
        best = max(teachers, key=lambda t: (sum(t in p for p in uncovered), -teachers.index(t)))
        if not any(best in p for p in uncovered):
            break  # the rest were proposed by no teacher
        chosen.append(best)
        uncovered = [p for p in uncovered if best not in p]
    return [t for t in teachers if t in chosen] or list(teachers)
