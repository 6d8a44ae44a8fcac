"""Problems in: JSONL, JSON, parquet or a Hugging Face dataset, mapped to `Problem`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, DataConfig, parse_shard
from ..registry import PROBLEM_GENERATORS

UTF8_BOM = b"\xef\xbb\xbf"


@dataclass
class Problem:
    id: str
    question: str
    answer: str
    extra: dict[str, Any] = field(default_factory=dict)  # other fields, e.g. reference_steps


def _read_jsonl(path: Path) -> list[tuple[str, Any]]:
    """Rows of a JSONL file; a UTF-8 byte-order mark and CRLF line ends (Windows tools) read like any other."""
    rows = []
    for number, raw in enumerate(path.read_bytes().removeprefix(UTF8_BOM).split(b"\n"), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path} line {number}: not UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})") from None
        if not line.strip():
            continue
        try:
            rows.append((f"{path} line {number}", json.loads(line)))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} line {number}: not valid JSON ({err.msg})") from None
    return rows


def _read_json(path: Path) -> list[tuple[str, Any]]:
    raw = path.read_bytes().removeprefix(UTF8_BOM)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path} line {line}: not UTF-8 (byte 0x{raw[err.start]:02x})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} line {err.lineno}: not valid JSON ({err.msg})") from None
    if isinstance(data, dict):  # {"data": [...]} or {"train": [...]}
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise ConfigError(f"{path}: expected a list of problems or a mapping holding one list")
        data = lists[0]
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a list of problems")
    return [(f"{path} item {i}", row) for i, row in enumerate(data)]


def _read_with_datasets(kind: str, **kwargs: Any) -> Iterable[tuple[str, Any]]:
    import datasets

    datasets.disable_progress_bars()
    try:
        ds = datasets.load_dataset(kind, **kwargs)
    except Exception as err:
        label = kwargs.get("data_files") or kind
        raise ConfigError(f"{label}: could not load dataset ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    return [(f"{kind} row {i}", row) for i, row in enumerate(ds)]


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
        generate = PROBLEM_GENERATORS.load("tiny")
        try:
            generated = generate(cfg.tiny.n, cfg.tiny.seed, cfg.tiny.mix, **({"steps": cfg.tiny.steps} if cfg.tiny.steps else {}))
        except ValueError as err:
            raise ConfigError(f"data.tiny: {err}") from None
        rows = [(f"tiny problem {i}", row) for i, row in enumerate(generated)]
    elif cfg.path:
        path = Path(cfg.path)
        if path.is_dir():
            raise ConfigError(f"{path}: is a directory, not a data file (data.path)")
        if not path.is_file():
            raise ConfigError(f"{path}: data file not found (data.path)")
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            rows = _read_jsonl(path)
        elif suffix == ".json":
            rows = _read_json(path)
        elif suffix == ".parquet":
            loaded = _read_with_datasets("parquet", data_files=str(path), split="train")
            rows = [(f"{path} row {i}", row) for i, (_, row) in enumerate(loaded)]
        else:
            raise ConfigError(f"{path}: unknown data format {suffix!r} (use .jsonl, .json or .parquet)")
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
    """Map raw rows (each with a location for error messages) to problems, checking every field."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for index, (where, row) in enumerate(rows):
        if cfg.limit is not None and len(problems) >= cfg.limit:
            break
        if not isinstance(row, dict):
            raise ConfigError(f"{where}: expected an object, got {type(row).__name__}")
        question = row.get(cfg.question_field)
        answer = row.get(cfg.answer_field)
        for value, key, name in ((question, cfg.question_field, "question_field"), (answer, cfg.answer_field, "answer_field")):
            if value is None or (isinstance(value, str) and not value.strip()):
                raise ConfigError(f"{where}: missing or empty field {key!r} (data.{name})")
        problem_id = row.get(cfg.id_field)
        problem_id = str(index) if problem_id is None else str(problem_id)
        if problem_id in seen:
            raise ConfigError(f"{where}: duplicate id {problem_id!r} (data.id_field)")
        seen.add(problem_id)
        used = {cfg.id_field, cfg.question_field, cfg.answer_field}
        extra = {k: v for k, v in row.items() if k not in used}
        problems.append(Problem(problem_id, str(question), str(answer).strip(), extra))
    return problems
