"""Which records become rows, and the rows themselves.

The filters (`--only-correct`, `--require-valid-trace`, `--all`) apply to every format; a DPO row is
kept for its pair (a right and a wrong trajectory of one problem) whatever the best trajectory's
grade, and the filter then applies to the pair's chosen trajectory. The quality filters
(filters.py) then drop flagged rows (both sides of a DPO pair) and near-duplicates. Decontamination
drops what is left that shares an n-gram with an evaluation set. Every row carries the same provenance columns
(run, method, teacher of each step, scores), with the same types for every run.

Step formats (step-dpo, stepwise) make several rows per record from the steps the search scored
(steps.py): step-dpo's rows come from the chosen trajectory, which the filters judge; stepwise
reads a record whatever its grade (the labels carry it). The quality filters and decontamination
drop a record's step rows together; near-duplicates are judged row by row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ...data.evalsets import Contamination
from ...errors import ConfigError
from ...prompts import user_turn
from ...records import Alternative, Record, RunData
from ...records.summary import answer_only_perplexity
from .filters import NearDuplicates, QualityFilter
from .formats import ExportFormat, Turns, assistant_text
from .steps import NO_CANDIDATES, StepRows

if TYPE_CHECKING:
    from . import ExportReport

KEEP = ("correct", "valid", "all")  # --only-correct (default), --require-valid-trace, --all
NO_PAIR = "no correct and wrong trajectory to pair (set search.keep_top_k > 1 when generating)"
Trajectory = Record | Alternative


def drop_reason(record: Record, keep: str) -> str | None:
    """Why the filter `keep` drops the record's best trajectory; None when it is kept."""
    if record.failed:
        return f"failed ({record.failed})" if keep != "all" else None
    if keep == "all":
        return None
    if record.correct is None:
        return "not graded (grading.method none, or the judge gave no verdict); export with --all"
    if not record.correct:
        return "incorrect final answer"
    if keep == "valid" and record.valid_trace is not True:
        return "trace not valid" if record.valid_trace is False else "trace validity unknown (only generated tiny problems carry it)"
    return None


def dpo_pair(record: Record) -> tuple[Trajectory, Trajectory] | None:
    """(chosen, rejected): the best-scored correct trajectory and the best-scored wrong one."""
    ranked = [record, *record.alternatives]
    right = [t for t in ranked if t.correct is True]
    wrong = [t for t in ranked if t.correct is False and t.final_answer]
    return (right[0], wrong[0]) if right and wrong else None


def pick(record: Record, fmt: ExportFormat, keep: str, quality: QualityFilter) -> tuple[str | None, tuple[Trajectory, Trajectory | None]]:
    """(why the record is dropped or None, (chosen, rejected)): the trajectories its row is made of."""
    if fmt.step_level:  # the filter applies where the rows come from the chosen trajectory alone (step-dpo)
        return drop_reason(record, "all" if fmt.rows_from_alternatives else keep) or quality.reason(record), (record, None)
    if not fmt.pairs:
        return drop_reason(record, keep) or quality.reason(record), (record, None)
    reason = drop_reason(record, "all")
    pair = dpo_pair(record) if reason is None else None
    if reason is None and pair is None:
        reason = NO_PAIR
    if pair is not None and keep == "valid" and pair[0].valid_trace is not True:
        reason = "chosen trajectory not a valid trace" if pair[0].valid_trace is False else "chosen trajectory's validity unknown"
    if reason is None and pair is not None:
        reason = quality.reason(pair[0], "chosen ") or quality.reason(pair[1], "rejected ")
    return reason, pair or (record, None)


def provenance(run: RunData, record: Record, chosen: Trajectory, instruction: str | None, flags: list[str]) -> dict[str, Any]:
    """Columns every format carries, with the same types for every run."""
    return {
        "id": record.id,
        "user_instruction": instruction or "",  # what follows the question in the user turn
        "run": run.path.name,
        "method": record.method,
        "answer": record.answer,
        "correct": chosen.correct,
        "valid_trace": chosen.valid_trace,
        # Eq. 3 (the answer alone), as summary.json's headline; the ranked S keeps its own name
        "predictive_perplexity": answer_only_perplexity(chosen, record.schema_version),
        "predictive_perplexity_with_end": chosen.predictive_perplexity,
        "step_teachers": [s.teacher for s in chosen.steps],  # the writer of each step
        "step_proposers": [s.proposers or [s.teacher] for s in chosen.steps],  # every teacher credited with it
        "step_scores": [s.score for s in chosen.steps],
        "answer_teacher": chosen.answer_teacher,
        "quality_flags": flags,  # records/quality.py; "near_duplicate" with --near-duplicates flag
    }


def make_row(
    run: RunData,
    record: Record,
    fmt: ExportFormat,
    picked: tuple[Trajectory, Trajectory | None],
    instruction: str | None,
    system: str | None,
    flags: list[str],
) -> dict[str, Any]:
    """The format's columns for the picked trajectories, then the provenance of the chosen one."""
    chosen, rejected = picked
    turns = Turns(
        question=user_turn(record.question, instruction),
        system=system,
        answer=assistant_text(chosen.reasoning, chosen.final_answer),
        rejected=None if rejected is None else assistant_text(rejected.reasoning, rejected.final_answer),
    )
    return {**fmt.columns(turns), **provenance(run, record, chosen, instruction, flags)}


def row_text(record: Record, picked: tuple[Trajectory, Trajectory | None]) -> str:
    """What near-duplicates are judged on: the question and the picked trajectories' text."""
    return "\n".join([record.question, *(t.reasoning + t.final_answer for t in picked if t is not None)])


def step_instruction_of(run: RunData) -> str | None:
    """The step instruction the run's teachers were given."""
    return (run.config.get("search") or {}).get("step_instruction")


def collect(
    runs: list[RunData],
    fmt: ExportFormat,
    keep: str,
    instruction: str | None,
    with_step_instruction: bool,
    system: str | None,
    contamination: Contamination | None,
    report: ExportReport,
    quality: QualityFilter,
    student: str | None = None,
    margin: float | None = None,
) -> Iterator[dict]:
    """The rows of every run's kept records, one at a time (records stream from disk), counting what
    was read, written, dropped and why in `report`. Step formats: `student` renders step-dpo's
    prompts; `margin`: the label margin on S (steps.py's default when None)."""
    near = NearDuplicates() if quality.near_duplicates != "keep" else None
    steps = StepRows(fmt, keep, student, system, margin, report) if fmt.step_level else None
    for run in runs:
        if with_step_instruction:
            instruction = step_instruction_of(run)
        quality.marker = (run.config.get("search") or {}).get("step_marker") or quality.marker
        if steps is not None:
            steps.start_run(run, instruction)
        for record in run.records:
            report.read += 1
            reason, picked = pick(record, fmt, keep, quality)
            if steps is not None:
                reason = steps.missing_candidates(record) or reason
            if reason is None and contamination is not None:
                hit = contamination.match(record.question)
                if hit:
                    report.contaminated[hit] += 1
                    reason = "contaminated"
            if reason:
                report.dropped[reason] += 1
                continue
            if steps is not None:
                made = steps.rows(run, record, quality)
            else:
                made = [(make_row(run, record, fmt, picked, instruction, system, quality.flags(picked[0])), row_text(record, picked))]
            for n, (row, text) in enumerate(made):
                original = near.first_seen(f"{record.id}#{n}", text) if near is not None else None
                if original is not None and quality.near_duplicates == "drop":
                    report.dropped[f"{'step row: ' if steps else ''}near-duplicate of a row kept (--near-duplicates)"] += 1
                    continue
                if original is not None:
                    row["quality_flags"].append("near_duplicate")
                report.written += 1
                yield row
    if steps is not None and steps.checked and not steps.any_candidates:
        raise ConfigError(NO_CANDIDATES)
