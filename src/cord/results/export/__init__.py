"""`cord export`: run directories -> a training set for TRL or LLaMA-Factory.

    cord export RUN_DIR... --format messages|prompt-completion|sharegpt|alpaca|dpo --out PATH

The user turn is the question and the student instruction (`--student-instruction`, by default the
one `cord eval-student` sends: the student is trained on the prompt it is evaluated on; `cord train`
records it beside the model and `eval-student` reads it from there), or the question and the step
instruction the teachers were given (`--with-step-instruction`). PATH decides the container
(`data/files.py`): `.jsonl`, `.json` (one JSON array, as LLaMA-Factory's own datasets are),
`.parquet`, or otherwise a `datasets` folder (`save_to_disk`).

Each format is one class (`formats.py`); which records become rows is `rows.py`; the card beside the
data `card.py`, LLaMA-Factory's dataset_info.json `llama_factory.py`, the upload `hub.py`. Everything
is checked before anything is written; nothing is written when nothing is left to write.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ...data.evalsets import Contamination, load_eval_sets
from ...data.files import FILE_SUFFIXES, write_rows
from ...engines import resolve_model
from ...engines.chat import ChatTokenizer
from ...errors import ConfigError
from ...prompts import REASONING_INSTRUCTION
from ...records import RunData, atomic_write, read_run
from .card import card_path, check_card, dataset_card
from .cli import parser, print_report
from .filters import QualityFilter
from .formats import FORMATS, ExportFormat
from .hub import push_to_hub
from .llama_factory import read_llama_factory_info, write_llama_factory_info
from .rows import KEEP, collect
from .split import SplitCounts, checked_split, eval_path, write_split

__all__ = ["FORMATS", "ExportFormat", "ExportReport", "QualityFilter", "card_path", "export", "main", "push_to_hub"]


@dataclass
class ExportReport:
    """What an export read, wrote and dropped (and why), and the files it wrote."""

    read: int = 0
    written: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> count
    contaminated: Counter = field(default_factory=Counter)  # evaluation set -> count
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    split: SplitCounts | None = None  # --eval-split: the rows and problems on each side
    step_labels: str | None = None  # step-level formats: the label rule and margin (steps.py), for the card

    def lines(self) -> list[str]:
        out = [f"read {self.read} records, wrote {self.written} rows"]
        out += [f"split: {self.split.describe()}"] if self.split else []
        out += [f"dropped {n}: {reason}" for reason, n in sorted(self.dropped.items())]
        out += [f"decontamination: {n} shared an n-gram with {name}" for name, n in sorted(self.contaminated.items())]
        return out


def export(
    run_dirs: list[str | Path | RunData],
    out: str | Path,
    fmt: str = "messages",
    keep: str = "correct",
    instruction: str | None = REASONING_INSTRUCTION,
    with_step_instruction: bool = False,
    system: str | None = None,
    decontaminate: str | None = None,
    ngram: int = 8,
    overwrite: bool = False,
    hub_repo: str | None = None,
    student: str | None = None,
    quality: QualityFilter | None = None,
    eval_split: float | int | str | None = None,
    margin: float | None = None,
) -> ExportReport:
    """The runs' records as a training set at `out`, its card, and its dataset_info.json entry.
    The user turn is the question and `instruction` ("" or None: the question alone), or each run's
    step instruction with `with_step_instruction`; `hub_repo`: the repository it will be pushed to
    (the card's commands name it); `student`: the model to be trained on it, whose chat template is
    checked for dropping the reasoning; `quality`: the quality filters (filters.py; default: the
    default flags dropped, near-duplicates dropped); `eval_split`: a share in (0, 1) or a whole number
    of problems written apart, beside `out` (split.py); `run_dirs` may hold `RunData` already read
    (records from Python: api.py)."""
    quality = quality or QualityFilter()
    out = Path(out)
    form = checked_format(fmt, keep, out, overwrite)
    split = checked_split(eval_split)
    if split is not None and eval_path(out).exists() and not overwrite:
        raise ConfigError(f"{eval_path(out)}: already exists (use --overwrite to replace it)")
    llama_factory = form.llama_factory and out.suffix in FILE_SUFFIXES
    info = read_llama_factory_info(out) if llama_factory else None
    if llama_factory and split is not None:
        read_llama_factory_info(eval_path(out))  # its entry's name is free, checked before anything is written
    runs = [p if isinstance(p, RunData) else read_run(p) for p in run_dirs]
    contamination = Contamination(load_eval_sets(decontaminate), ngram) if decontaminate else None
    report = ExportReport()
    if student and form.rendered_by_chat_template and ChatTokenizer(resolve_model(student)).drops_reasoning():
        report.warnings.append(dropped_reasoning_warning(student))
    card = lambda: dataset_card(
        runs, form, keep, report, decontaminate, ngram, hub_repo or str(out), instruction, with_step_instruction, quality.describe()
    )
    check_card(card())  # its metadata parses as the hub's does, before anything is written
    rows = collect(runs, form, keep, instruction, with_step_instruction, system, contamination, report, quality, student, margin)
    if split is None:
        written = write_rows(rows, out)  # rows stream to disk; none: nothing is written
    else:
        report.split = write_split(rows, out, split)
        written = report.split is not None
    if not written:
        raise ConfigError(f"nothing to export: {'; '.join(report.lines())}")
    atomic_write(card_path(out), card())
    report.files += [str(out), str(card_path(out))] + ([str(report.split.eval_file)] if report.split else [])
    if info is not None:
        report.files.append(str(write_llama_factory_info(form, out, bool(system), info)))
        if report.split:  # LLaMA-Factory's eval_dataset names it
            write_llama_factory_info(form, report.split.eval_file, bool(system), read_llama_factory_info(report.split.eval_file))
    return report


def checked_format(fmt: str, keep: str, out: Path, overwrite: bool) -> ExportFormat:
    """The format named `fmt`, once the request is known to be one that can be written."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if keep not in KEEP:
        raise ConfigError(f"keep: {keep!r} is not one of {', '.join(KEEP)}")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out}: already exists (use --overwrite to replace it)")
    if FORMATS[fmt].files_only and out.suffix not in FILE_SUFFIXES:
        raise ConfigError(f"{out}: LLaMA-Factory reads files; give --out a .json, .jsonl or .parquet name for --format {fmt}")
    return FORMATS[fmt]


def dropped_reasoning_warning(student: str) -> str:
    return (
        f"{student}'s chat template drops <think>...</think> from the assistant turns it renders: a trainer given these "
        "conversations trains on final answers alone; train with `cord train` (it renders prompt and completion itself) "
        "or export --format prompt-completion and give the trainer the text"
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.eval_split and args.push_to_hub:  # the upload takes one dataset: the evaluation file would stay behind unsaid
        raise ConfigError("--eval-split: not with --push-to-hub (it uploads the training file alone); push the two files yourself")
    report = export(
        args.runs,
        args.out,
        args.format,
        args.keep or "correct",
        args.student_instruction,
        args.with_step_instruction,
        args.system_prompt,
        args.decontaminate,
        args.ngram,
        args.overwrite,
        args.push_to_hub,
        args.student,
        QualityFilter.from_options(args.drop_flagged, args.keep_flagged, args.max_repeated_share, args.near_duplicates),
        eval_split=args.eval_split,
        margin=args.margin,
    )
    print_report(report)
    if args.push_to_hub:
        push_to_hub(args.out, args.push_to_hub, args.runs, args.private)
        print(f"pushed to https://huggingface.co/datasets/{args.push_to_hub}", file=sys.stderr)
    return 0
