"""A run's summary (summary.json, `cord evaluate`): counts, accuracy, predictive perplexity,
tokens, time, how steps ended (and how many said nothing), how final answers were got, the quality
flags of the chosen trajectories, and the warnings they call for.

The headline `mean_predictive_perplexity` is the paper's Eq. 3, S over the answer's tokens alone.
S as the search ranked by, which also scores `search.answer_end` (a closing "."), is
`mean_predictive_perplexity_with_end`. Summaries written before both keys existed hold S with the
end under `mean_predictive_perplexity` and Eq. 3 under `mean_answer_only_perplexity`, which stays
(the same figure as the headline now) for tools that read it.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable
from typing import Any

from .quality import FLAGS, assess
from .schema import Alternative, Record

# The first record schema that writes answer_only_perplexity (null there: the same as S). Records
# before it may have scored search.answer_end without keeping Eq. 3 apart, so theirs is unknown.
ANSWER_ONLY_SCHEMA = 5


def answer_only_perplexity(trajectory: Record | Alternative, schema_version: int) -> float | None:
    """The paper's Eq. 3 of a trajectory (`schema_version`: its record's): S over the answer's
    tokens alone, without search.answer_end; None when unknown or not scored."""
    if trajectory.answer_only_perplexity is not None:
        return trajectory.answer_only_perplexity
    return trajectory.predictive_perplexity if schema_version >= ANSWER_ONLY_SCHEMA else None


def peak_memory() -> dict:
    """Peak resident memory of this process (and of finished child processes), and the peak GPU memory
    torch reserved here, per device. Engines in other processes (vLLM workers, servers) are not in it."""
    import resource

    peak = {
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # Linux: KiB
        "children_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }
    torch = sys.modules.get("torch")  # only if an engine loaded it
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        peak["gpu_mb"] = {f"cuda:{i}": round(torch.cuda.max_memory_reserved(i) / 2**20, 1) for i in range(torch.cuda.device_count())}
    return peak


CAP_WARNING_SHARE = 0.25  # more of a teacher's steps than this ending at the cap: it ignores the step format


def step_format_warnings(step_ends: dict[str, dict[str, int]]) -> list[str]:
    """One line per teacher whose steps mostly run to the per-step cap instead of ending at a marker."""
    warnings = []
    for name, ends in sorted(step_ends.items()):
        total = sum(ends.values())
        if total and ends.get("cap", 0) / total > CAP_WARNING_SHARE:
            warnings.append(
                f"teacher {name} does not follow the step format: {ends['cap']} of its {total} proposed steps "
                f"({ends['cap'] / total:.0%}) ended at max_step_tokens; check its prompt with `cord generate --dry-run`"
            )
    return warnings


EMPTY_WARNING_SHARE = 0.25  # more of a teacher's proposed steps than this empty: it writes step markers, not steps


def empty_step_warnings(step_ends: dict[str, dict[str, int]], empty_steps: dict[str, int]) -> list[str]:
    """One line per teacher whose proposed steps are mostly empty (only the step marker)."""
    warnings = []
    for name, empty in sorted(empty_steps.items()):
        total = sum(step_ends.get(name, {}).values())
        if total and empty / total > EMPTY_WARNING_SHARE:
            warnings.append(
                f"teacher {name} proposed {empty} empty steps of its {total} ({empty / total:.0%}: only the step marker); "
                "they rank below every step with content"
            )
    return warnings


def answer_warnings(n: int, prefilled: int, empty: int) -> list[str]:
    """A line when final answers had to be asked for again, or had nothing to grade at all."""
    warnings = []
    if prefilled:
        warnings.append(
            f"{prefilled} of {n} final answers were written after a pre-filled 'The final answer is \\boxed{{' "
            "(the teacher's own answer had nothing to grade); see answer_fallback in the records"
        )
    if empty:
        warnings.append(f"{empty} of {n} final answers had nothing to grade even when pre-filled; they count as wrong")
    return warnings


def add_counts(into: dict[str, int], counts: dict[str, int]) -> None:
    for key, count in counts.items():
        into[key] = into.get(key, 0) + count


class Totals:
    """A run's summary, built one record at a time: memory stays the same whatever the number of
    records (a run adds each record as it finishes; readers stream records.jsonl through it)."""

    def __init__(self):
        self.n = self.failures = self.graded = self.correct = self.steps = 0
        self.valid = self.valid_known = self.prefilled = self.empty_answers = 0
        self.method: str | None = None
        self.teacher_tokens: dict[str, int] = {}
        self.selected: dict[str, float] = {}
        self.step_ends: dict[str, dict[str, int]] = {}
        self.empty_steps: dict[str, int] = {}
        self.quality: Counter = Counter()
        self.answer_only = [0.0, 0]  # sum, count: Eq. 3
        self.with_end = [0.0, 0]  # S as ranked, search.answer_end scored too
        self.meta_prover = 0
        self.generation = self.scoring = 0.0
        self.cost: float = 0.0
        self.priced = 0  # records with a cost

    def add(self, r: Record) -> None:
        self.n += 1
        self.method = self.method or r.method
        add_counts(self.teacher_tokens, r.tokens.teachers)
        for step in r.steps:  # a step several teachers proposed is credited 1/n to each
            add_counts(self.selected, step.credit)
        for name, ends in r.budget.step_ends.items():
            add_counts(self.step_ends.setdefault(name, {}), ends)
        add_counts(self.empty_steps, r.budget.empty_steps)
        self.failures += bool(r.failed)
        self.graded += r.correct is not None
        self.correct += bool(r.correct)
        self.valid_known += r.valid_trace is not None
        self.valid += r.valid_trace is True
        eq3 = answer_only_perplexity(r, r.schema_version)
        for total, value in ((self.answer_only, eq3), (self.with_end, r.predictive_perplexity)):
            if value is not None:
                total[0] += value
                total[1] += 1
        self.meta_prover += r.tokens.meta_prover
        self.generation += r.timing.generation_seconds
        self.scoring += r.timing.scoring_seconds
        self.prefilled += r.answer_fallback == "prefilled"
        self.empty_answers += r.answer_fallback == "empty"
        self.steps += len(r.steps)
        if r.cost is not None:
            self.cost += r.cost
            self.priced += 1
        if not r.failed:  # records from before the quality pass are assessed here
            self.quality.update((r.quality or assess(r)).flags)

    def summary(self, seconds: float | None = None) -> dict[str, Any]:
        n = self.n
        if n == 0:
            return {"problems": 0}
        gen, score = self.generation, self.scoring
        mean = lambda total: total[0] / total[1] if total[1] else None
        summary = {
            "method": self.method,
            "problems": n,
            "failures": self.failures,
            "accuracy": self.correct / self.graded if self.graded else None,
            "ungraded": n - self.graded,
            "correct": self.correct,
            "valid_trace_rate": self.valid / self.valid_known if self.valid_known else None,
            "mean_predictive_perplexity": mean(self.answer_only),  # Eq. 3, the paper's figure
            "mean_predictive_perplexity_with_end": mean(self.with_end),
            "mean_answer_only_perplexity": mean(self.answer_only),  # the headline's older name, kept
            "tokens": {
                "teachers": self.teacher_tokens,
                "teachers_total": sum(self.teacher_tokens.values()),
                "meta_prover": self.meta_prover,
            },
            "selected_steps_by_teacher": {name: round(n, 3) for name, n in self.selected.items()},  # 1/n each of n proposers
            "step_ends": self.step_ends,
            "empty_steps": self.empty_steps,
            "fallback_answers": self.prefilled,
            "empty_answers": self.empty_answers,
            # the quality pass (records/quality.py) over each chosen trajectory: flag -> records
            "quality_flags": {flag: self.quality[flag] for flag in FLAGS if self.quality[flag]},
            "warnings": step_format_warnings(self.step_ends)
            + empty_step_warnings(self.step_ends, self.empty_steps)
            + answer_warnings(n, self.prefilled, self.empty_answers),
            "mean_steps": self.steps / n,
            "generation_seconds": gen,
            "scoring_seconds": score,
            "meta_prover_share": score / (gen + score) if gen + score > 0 else 0.0,
        }
        if self.priced:  # USD at the models' prices (config: each model's `price`)
            summary["cost"] = {"total": self.cost, "per_problem": self.cost / self.priced, "priced_problems": self.priced}
        if seconds is not None:
            summary["wall_seconds"] = seconds
        return summary


def summarize(records: Iterable[Record], seconds: float | None = None) -> dict[str, Any]:
    """The summary of `records` (any iterable: a list, or a run's `RecordStream`), in one pass."""
    totals = Totals()
    for record in records:
        totals.add(record)
    return totals.summary(seconds)
