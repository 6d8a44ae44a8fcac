"""The dataset card written beside an export: Hugging Face's YAML metadata and a Markdown summary of
what was kept, the user turn, the source runs (from their config.yaml and summary.json) and how to
train on it. It is parsed as the hub parses it before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from ...data.files import FILE_SUFFIXES
from ...errors import ConfigError
from ...prompts import REASONING_INSTRUCTION
from ...records import RunData
from .formats import ExportFormat

if TYPE_CHECKING:
    from . import ExportReport

KEPT = {"correct": "correct final answers", "valid": "correct final answers whose every step is right", "all": "every record"}
ABOUT = (
    "Trajectories written step by step by several teacher models, each step chosen by a meta-prover's predictive "
    "perplexity (collaborative step-wise multi-teacher decoding, CoRD)."
)


def card_path(out: Path) -> Path:
    """Where the card goes: README.md inside a datasets folder, FILE.README.md beside a file (the
    whole file name: m.json's and m.parquet's cards are two files)."""
    return out / "README.md" if out.suffix not in FILE_SUFFIXES else out.with_name(out.name + ".README.md")


def size_category(n: int) -> str:
    """The hub's size category of `n` rows."""
    return "n<1K" if n < 1000 else "1K<n<10K" if n < 10_000 else "10K<n<100K" if n < 100_000 else "n>100K"


def metadata(fmt: ExportFormat, rows: int) -> list[str]:
    """The YAML front matter the hub reads."""
    meta = {
        "license": "other",
        "task_categories": ["text-generation"],
        "tags": ["reasoning", "chain-of-thought", "distillation", "cord", f"format-{fmt.name}"],
        "size_categories": [size_category(rows)],
    }
    return ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---"]


QUESTION_ONLY = "none: `prompt` is the question alone (the text a process reward model reads)"


def user_turn_line(instruction: str | None, with_step_instruction: bool) -> str:
    """What the user turn of every row holds (the student is evaluated on the same)."""
    if with_step_instruction:
        return "the question, then the step instruction the teachers were given (`user_instruction` column)"
    if not instruction:
        return "the question alone (evaluate with `cord eval-student --instruction ''`)"
    return f"the question, a blank line, then {instruction!r} (the `user_instruction` column; evaluate with the same)"


def run_lines(run: RunData) -> list[str]:
    """One source run: method, teachers, meta-prover and accuracy."""
    c, s = run.config, run.summary
    teachers = ", ".join(f"{t.get('name')} ({t.get('model')}, T={t.get('temperature')})" for t in c.get("teachers") or [])
    search = c.get("search") or {}
    acc = s.get("accuracy")
    return [
        f"### {run.path.name}",
        "",
        f"- method: {search.get('method')}, beam size {search.get('beam_size')}, reasoning budget {search.get('reasoning_budget')}",
        f"- teachers: {teachers}",
        f"- meta-prover: {(c.get('meta_prover') or {}).get('model')}",
        f"- problems: {s.get('problems', len(run.records))}, accuracy: {'-' if acc is None else f'{100 * acc:.1f}%'}",
        "",
    ]


def dataset_card(
    runs: list[RunData],
    fmt: ExportFormat,
    keep: str,
    report: ExportReport,
    decontaminated: str | None,
    ngram: int,
    name: str = "<this dataset>",
    instruction: str | None = REASONING_INSTRUCTION,
    with_step_instruction: bool = False,
    quality: str | None = None,
) -> str:
    """The card's text; `name`: the file, folder or hub repository its commands name; `quality`:
    the quality filters in a line."""
    lines = [*metadata(fmt, report.written), "", "# Long chain-of-thought data made with cord", "", ABOUT, ""]
    lines += [
        f"- format: `{fmt.name}`; rows kept: {fmt.kept(KEPT[keep])}",
        f"- rows: {report.written} {'step rows from' if fmt.step_level else 'of'} {report.read} records",
        f"- user turn: {user_turn_line(instruction, with_step_instruction) if fmt.needs_student or not fmt.step_level else QUESTION_ONLY}",
    ]
    if fmt.step_level:  # set by the export once it knows the margin (steps.py StepRows)
        lines.append(f"- step labels: {report.step_labels or 'steps.py defaults'}")
    if quality:
        lines.append(f"- quality filters: {quality}")
    if report.split:  # --eval-split
        lines.append(f"- evaluation split: {report.split.describe()}")
    lines += [f"- dropped {c}: {reason}" for reason, c in sorted(report.dropped.items())]
    if decontaminated:
        lines.append(f"- decontaminated against {decontaminated} ({ngram}-gram word overlap)")
    lines += ["", "## Source runs", ""]
    for run in runs:
        lines += run_lines(run)
    lines += ["## Train", ""] + fmt.train_lines(name) + [""]
    return "\n".join(lines)


def check_card(text: str) -> None:
    """Parse the card as the hub does, so a malformed card fails here and not at upload."""
    from huggingface_hub import DatasetCard

    card = DatasetCard(text)
    if not card.data.to_dict().get("task_categories"):
        raise ConfigError("dataset card: metadata did not parse")
