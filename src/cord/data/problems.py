"""Problems in: JSONL, JSON, parquet or a Hugging Face dataset, mapped to `Problem`."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import DataConfig, parse_shard
from ..errors import ConfigError
from .answers import extract_answer, looks_worked, why_not_found
from .files import FILE_SUFFIXES, read_rows

log = logging.getLogger("cord")


@dataclass
class Problem:
    id: str
    question: str
    answer: str
    extra: dict[str, Any] = field(default_factory=dict)  # other fields, e.g. reference_steps
    index: int | None = None  # its place in the input (records are presented in this order)


def _read_with_datasets(kind: str, **kwargs: Any) -> Iterable[tuple[str, Any]]:
    import datasets

    datasets.disable_progress_bars()
    saved = Path(kind)
    try:
        if (saved / "state.json").is_file() or (saved / "dataset_dict.json").is_file():  # Dataset.save_to_disk's folder
            ds = datasets.load_from_disk(str(saved))
            if isinstance(ds, datasets.DatasetDict):
                if kwargs["split"] not in ds:
                    raise ConfigError(f"{kind}: no split {kwargs['split']!r} (data.split); it has {', '.join(ds)}")
                ds = ds[kwargs["split"]]
        else:
            ds = datasets.load_dataset(kind, **kwargs)
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(f"{kind}: could not load dataset ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    return [(f"{kind} row {i}", row) for i, row in enumerate(ds)]


def read_data_path(path: Path) -> list[tuple[str, Any]]:
    """The rows of data.path, a file (a datasets folder is refused: data.dataset loads those)."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a data file (data.path)")
    if not path.is_file():
        raise ConfigError(f"{path}: data file not found (data.path)")
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise ConfigError(f"{path}: unknown data format {suffix!r} (use .jsonl, .json or .parquet)")
    return read_rows(path, what="problems")


def select_shard(problems: list[Problem], spec: str | None) -> list[Problem]:
    """Shard `spec` ("I/N", data.shard) of `problems`: every N-th from the I-th; all when None."""
    if spec is None:
        return problems
    i, n = parse_shard(spec)
    return problems[i::n]


def load_problems(cfg: DataConfig) -> list[Problem]:
    if sum(bool(x) for x in (cfg.path, cfg.dataset, cfg.tiny)) > 1:
        raise ConfigError("data: set only one of data.path, data.dataset, data.tiny")
    if cfg.tiny:
        try:
            generated = cfg.tiny.rows()
        except ValueError as err:
            raise ConfigError(f"data.tiny: {err}") from None
        rows = [(f"tiny problem {i}", row) for i, row in enumerate(generated)]
    elif cfg.path:
        rows = read_data_path(Path(cfg.path))
    elif cfg.dataset:
        kwargs: dict[str, Any] = {"split": cfg.split}
        if cfg.subset:
            kwargs["name"] = cfg.subset
        rows = _read_with_datasets(cfg.dataset, **kwargs)
    else:
        raise ConfigError("data: set data.path or data.dataset (or pass --data PATH)")

    problems = problems_from_rows(rows, cfg)
    if not problems:
        raise ConfigError(f"{cfg.path or cfg.dataset}: no problems found")
    return problems


def problems_from_rows(rows: Iterable[tuple[str, Any]], cfg: DataConfig) -> list[Problem]:
    """Map raw rows (each with a location for error messages) to problems, checking every field;
    each gold answer is cut to its final answer as data.answer_format says."""
    problems: list[Problem] = []
    seen: set[str] = set()
    unanswered: list[str] = []  # rows in which data.answer_format finds no final answer
    worked: list[tuple[str, str]] = []  # (where, answer) of raw answers that look like worked solutions
    for index, (where, row) in enumerate(rows):
        if cfg.limit is not None and len(problems) + len(unanswered) >= cfg.limit:
            break
        if not isinstance(row, dict):
            raise ConfigError(f"{where}: expected an object, got {type(row).__name__}")
        question = row.get(cfg.question_field)
        answer = row.get(cfg.answer_field)
        for value, key, name in ((question, cfg.question_field, "question_field"), (answer, cfg.answer_field, "answer_field")):
            if value is None or (isinstance(value, str) and not value.strip()):
                fields = f"; the row has {', '.join(map(repr, row))}" if key not in row else ""
                raise ConfigError(f"{where}: missing or empty field {key!r} (data.{name}){fields}")
        gold = extract_answer(str(answer), cfg.answer_format, cfg.answer_regex)
        if gold is None:
            unanswered.append(where)
            continue
        if cfg.answer_format == "raw" and looks_worked(gold, cfg._math_graded):
            worked.append((where, gold))
        problem_id = row.get(cfg.id_field)
        problem_id = str(index) if problem_id is None else str(problem_id)
        if problem_id in seen:
            raise ConfigError(f"{where}: duplicate id {problem_id!r} (data.id_field)")
        seen.add(problem_id)
        used = {cfg.id_field, cfg.question_field, cfg.answer_field}
        extra = {k: v for k, v in row.items() if k not in used}
        problems.append(Problem(problem_id, str(question), gold, extra, index))
    if unanswered:
        total = len(problems) + len(unanswered)
        raise ConfigError(
            f"{unanswered[0]}: no final answer in field {cfg.answer_field!r} (data.answer_format {cfg.answer_format}: "
            f"{why_not_found(cfg.answer_format, cfg.answer_regex)}); {len(unanswered)} of {total} rows have none"
        )
    if worked:
        where, answer = worked[0]
        log.warning(
            f"{len(worked)} of {len(problems)} gold answers ({cfg.answer_field!r}) look like worked solutions, not final answers ({where}: "
            f"{excerpt(answer)}); the meta-prover scores them and grading compares with them whole: set data.answer_format "
            "(--answer-format) to gsm8k, boxed, or regex with data.answer_regex, to take the final answer from them"
        )
    return problems


def excerpt(text: str, head: int = 40, tail: int = 30) -> str:
    """A long text's start and end on one line (a worked solution's end holds its answer)."""
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= head + tail + 5 else f"{flat[:head]} ... {flat[-tail:]}")
