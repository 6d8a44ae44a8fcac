"""`cord.export`: the export of `cord export` from Python, for run folders or records in memory.

The source is a run folder (or several), the `Record`s `cord.generate` returns, or a
`datasets.Dataset` of records (rows as records.jsonl lines, as `cord.generate` gives for a Dataset
in). Records from Python are wrapped in a `RunData` like a run folder's (a name for the `run`
column, the config the card and the step instruction are read from), so the rows, filters,
decontamination, card and split are those of `cord export` (`export` in this package), not a
second implementation. With no path the rows come back as a `datasets.Dataset` (a `DatasetDict`
with `train` and `test` for `eval_split`): the export is written to a scratch folder and loaded
into memory from there, so a Dataset and a file of the same export hold the same rows and types.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...config import Config, to_dict
from ...errors import ConfigError
from ...prompts import REASONING_INSTRUCTION
from ...records import Record, RunData, summarize
from . import ExportReport
from . import export as export_runs
from .card import card_path
from .filters import QualityFilter
from .split import eval_path

UNNAMED = "<this dataset>"  # what the card's commands name when the rows are not written anywhere
TEST_SPLIT = "the test split"  # where the held-out rows are, in a DatasetDict


@dataclass
class Exported:
    """What `cord.export` made: the rows as a `datasets.Dataset` (a `DatasetDict` with `train` and
    `test` for an evaluation split; None when they were written to a path), the report (records
    read, rows written, each drop by reason, the files written) and the dataset card's text."""

    dataset: Any
    report: ExportReport
    card: str

    @property
    def files(self) -> list[str]:
        """The files written (none when the rows came back as a Dataset)."""
        return self.report.files

    def __str__(self) -> str:
        return "\n".join(self.report.lines())


class DatasetRecords:
    """A `datasets.Dataset` of records, read back one `Record` at a time (the Arrow table stays where
    it is): every pass reads the rows again, as a run folder's `RecordStream` does."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[Record]:
        for number, row in enumerate(self.dataset):
            row = {**row, "tokens": without_nulls(row.get("tokens") or {}), "budget": without_nulls(row.get("budget") or {})}
            yield Record.from_dict(row, f"dataset row {number}")


def without_nulls(counts: dict) -> dict:
    """Per-teacher counts as a record wrote them: Arrow gives every row the union of the keys (a
    teacher one record never asked appears there as null), which a sum over records cannot add."""
    return {k: without_nulls(v) if isinstance(v, dict) else v for k, v in counts.items() if v is not None}


def records_run(records: Iterable[Record], config: Config | dict | None, name: str | None) -> RunData:
    """Records from Python as a run folder is read: `name` for the `run` column (default: the
    config's output folder's name, else "records"), the config for the card and the step
    instruction, and the summary (accuracy) the card states."""
    settings = to_dict(config) if isinstance(config, Config) else dict(config or {})
    name = name or (Path(str(settings["output_dir"])).name if settings.get("output_dir") else "records")
    return RunData(Path(name), settings, summarize(records), records)


def as_runs(source, config: Config | dict | None, name: str | None) -> list[str | Path | RunData]:
    """Run folders as paths; records (a list, or a Dataset of records) as one RunData."""
    if isinstance(source, str | os.PathLike):
        return [source]
    if type(source).__module__.startswith("datasets"):
        if not hasattr(source, "column_names") or isinstance(source.column_names, dict):
            raise ConfigError("export: give one datasets.Dataset of records (one split), not a DatasetDict")
        return [records_run(DatasetRecords(source), config, name)]
    items = list(source)
    if not items:
        raise ConfigError("export: no run folders or records given")
    if all(isinstance(i, str | os.PathLike) for i in items):
        return items
    if all(isinstance(i, Record | dict) for i in items):
        records = [i if isinstance(i, Record) else Record.from_dict(i, f"records item {n}") for n, i in enumerate(items)]
        return [records_run(records, config, name)]
    kinds = sorted({type(i).__name__ for i in items})
    raise ConfigError(f"export: give run folders, cord Records or a datasets.Dataset of records, not {' and '.join(kinds)}")


def load_rows(path: Path, cache: Path):
    """An exported file as an in-memory `datasets.Dataset`, read by datasets' own JSON reader (the
    reader a .jsonl export is loaded with), so nothing refers to the scratch folder afterwards."""
    import datasets

    datasets.disable_progress_bars()
    return datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache), keep_in_memory=True)


def export(
    source,
    path: str | os.PathLike | None = None,
    *,
    config: Config | dict | None = None,
    name: str | None = None,
    format: str = "messages",
    keep: str = "correct",
    instruction: str | None = REASONING_INSTRUCTION,
    with_step_instruction: bool = False,
    system: str | None = None,
    quality: QualityFilter | None = None,
    decontaminate: str | None = None,
    ngram: int = 8,
    eval_split: float | int | None = None,
    margin: float | None = None,
    overwrite: bool = False,
    hub_repo: str | None = None,
    student: str | None = None,
) -> Exported:
    """Records or run folders -> a training set, as `cord export` makes it.

    `source`: a run folder, a list of them, the `Record`s `cord.generate` returns, or a
    `datasets.Dataset` of records; `config` and `name`: for records, the config that made them
    (the card and `with_step_instruction` read it) and the `run` column's value. `path`: write
    there (.jsonl, .json, .parquet or a datasets folder, as `--out`); without one the rows come back
    in `Exported.dataset`. `format`, `keep` ("correct", "valid", "all"), `instruction`, `system`,
    `quality` (a `QualityFilter`), `decontaminate`, `ngram`, `eval_split` (a share in (0, 1) or a
    whole number of problems held out: a `DatasetDict` with train and test, or a second file
    NAME.eval.SUFFIX), `margin` (the step-level formats' labels), `hub_repo`, `student`: as the
    options of `cord export`."""
    runs = as_runs(source, config, name)
    options = dict(
        fmt=format,
        keep=keep,
        instruction=instruction,
        with_step_instruction=with_step_instruction,
        system=system,
        decontaminate=decontaminate,
        ngram=ngram,
        hub_repo=hub_repo,
        student=student,
        quality=quality,
        eval_split=eval_split,
        margin=margin,
    )
    if path is not None:
        report = export_runs(runs, path, overwrite=overwrite, **options)
        return Exported(None, report, card_path(Path(path)).read_text(encoding="utf-8"))
    options["hub_repo"] = hub_repo or UNNAMED
    with tempfile.TemporaryDirectory(prefix="cord-export-") as scratch:
        out = Path(scratch) / "rows.jsonl"
        report = export_runs(runs, out, **options)
        card = card_path(out).read_text(encoding="utf-8")
        dataset = load_rows(out, Path(scratch) / "cache")
        if report.split:  # the held-out problems are the test split, not a file
            import datasets

            dataset = datasets.DatasetDict(train=dataset, test=load_rows(eval_path(out), Path(scratch) / "cache"))
            card = card.replace(report.split.describe(), report.split.held_in(TEST_SPLIT).describe())
            report.split = report.split.held_in(TEST_SPLIT)
    report.files = []  # the scratch folder is gone: nothing was written
    return Exported(dataset, report, card)
