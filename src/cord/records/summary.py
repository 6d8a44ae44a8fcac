"""A run's summary (summary.json, `cord evaluate`): counts, accuracy, predictive perplexity,
tokens, time, how steps ended (and how many said nothing), how final answers were got, and the
warnings they call for."""

from __future__ import annotations

import sys
from typing import Any

from .schema import Record


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


def answer_warnings(records: list[Record]) -> list[str]:
    """A line when final answers had to be asked for again, or had nothing to grade at all."""
    n = len(records)
    prefilled = sum(r.answer_fallback == "prefilled" for r in records)
    empty = sum(r.answer_fallback == "empty" for r in records)
    warnings = []
    if prefilled:
        warnings.append(
            f"{prefilled} of {n} final answers were written after a pre-filled 'The final answer is \\boxed{{' "
            "(the teacher's own answer had nothing to grade); see answer_fallback in the records"
        )
    if empty:
        warnings.append(f"{empty} of {n} final answers had nothing to grade even when pre-filled; they count as wrong")
    return warnings


def summarize(records: list[Record], seconds: float | None = None) -> dict[str, Any]:
    n = len(records)
    if n == 0:
        return {"problems": 0}
    teacher_tokens: dict[str, int] = {}
    selected: dict[str, int] = {}
    step_ends: dict[str, dict[str, int]] = {}
    empty_steps: dict[str, int] = {}
    for r in records:
        for name, count in r.tokens.teachers.items():
            teacher_tokens[name] = teacher_tokens.get(name, 0) + count
        for step in r.steps:
            selected[step.teacher] = selected.get(step.teacher, 0) + 1
        for name, ends in r.budget.step_ends.items():
            mine = step_ends.setdefault(name, {})
            for end, count in ends.items():
                mine[end] = mine.get(end, 0) + count
        for name, count in r.budget.empty_steps.items():
            empty_steps[name] = empty_steps.get(name, 0) + count
    valid = [r.valid_trace for r in records if r.valid_trace is not None]
    graded = [r for r in records if r.correct is not None]
    perplexities = [r.predictive_perplexity for r in records if r.predictive_perplexity is not None]
    answer_only = [r.answer_only_perplexity for r in records if r.answer_only_perplexity is not None]
    gen = sum(r.timing.generation_seconds for r in records)
    score = sum(r.timing.scoring_seconds for r in records)
    summary = {
        "method": records[0].method,
        "problems": n,
        "failures": sum(1 for r in records if r.failed),
        "accuracy": (sum(1 for r in graded if r.correct) / len(graded)) if graded else None,
        "ungraded": n - len(graded),
        "valid_trace_rate": (sum(valid) / len(valid)) if valid else None,
        "mean_predictive_perplexity": (sum(perplexities) / len(perplexities)) if perplexities else None,
        # over the answer's tokens alone (the paper's Eq. 3) where S also scores search.answer_end
        "mean_answer_only_perplexity": (sum(answer_only) / len(answer_only)) if answer_only else None,
        "tokens": {
            "teachers": teacher_tokens,
            "teachers_total": sum(teacher_tokens.values()),
            "meta_prover": sum(r.tokens.meta_prover for r in records),
        },
        "selected_steps_by_teacher": selected,
        "step_ends": step_ends,
        "empty_steps": empty_steps,
        "fallback_answers": sum(r.answer_fallback == "prefilled" for r in records),
        "empty_answers": sum(r.answer_fallback == "empty" for r in records),
        "warnings": step_format_warnings(step_ends) + empty_step_warnings(step_ends, empty_steps) + answer_warnings(records),
        "mean_steps": sum(len(r.steps) for r in records) / n,
        "generation_seconds": gen,
        "scoring_seconds": score,
        "meta_prover_share": score / (gen + score) if gen + score > 0 else 0.0,
    }
    if seconds is not None:
        summary["wall_seconds"] = seconds
    return summary
