"""Rows in and out of files, by suffix: `.jsonl`, `.json` (one array, or a mapping holding one),
`.parquet`, or else a `datasets` folder (`save_to_disk`).

The one reader and writer of row files for the whole project (problems, exports, a student's
training data), so every container reads the same everywhere: a UTF-8 byte-order mark and CRLF
line ends (Windows tools) read like any other file, and a bad row is named by file and line. It sits
on a low floor: nothing from cord above `config` is imported here.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..errors import ConfigError

UTF8_BOM = b"\xef\xbb\xbf"
FILE_SUFFIXES = (".jsonl", ".json", ".parquet")  # a file of rows; any other path is a datasets folder


def read_rows(path: str | os.PathLike, what: str = "rows") -> list[tuple[str, Any]]:
    """Every row of the file or folder, each with where it is ("p.jsonl line 3") for error messages.
    `what` names what a JSON file's list should hold, in its error message."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".parquet":
        return [(f"{path} row {i}", row) for i, row in enumerate(load_dataset(path))]
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        return _read_json(path, what)
    raise ConfigError(f"{path}: unknown data format {suffix!r} (use .jsonl, .json, .parquet or a datasets folder)")


def load_dataset(path: str | os.PathLike):
    """The file or folder as a `datasets.Dataset` (JSON through datasets' own reader), e.g. to upload it."""
    import datasets

    datasets.disable_progress_bars()
    path = Path(path)
    try:
        if path.is_dir():
            return datasets.load_from_disk(str(path))
        kind = "parquet" if path.suffix.lower() == ".parquet" else "json"
        return datasets.load_dataset(kind, data_files=str(path), split="train")
    except Exception as err:
        first = (str(err).splitlines() or [""])[0]
        raise ConfigError(f"{path}: could not load dataset ({type(err).__name__}: {first})") from None


def _read_jsonl(path: Path) -> list[tuple[str, Any]]:
    """One JSON value a line; blank lines are skipped, a bad line is named by its number."""
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


def _read_json(path: Path, what: str) -> list[tuple[str, Any]]:
    """One JSON array, or a mapping holding exactly one list ({"data": [...]}, {"train": [...]})."""
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
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise ConfigError(f"{path}: expected a list of {what} or a mapping holding one list")
        data = lists[0]
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a list of {what}")
    return [(f"{path} item {i}", row) for i, row in enumerate(data)]


def write_rows(rows: list[dict], path: str | os.PathLike) -> None:
    """`rows` in the container `path`'s suffix names (exactly as written: anything but .jsonl, .json
    and .parquet is a datasets folder). Written under a temporary name and renamed, so a failure
    leaves nothing and no reader sees half a file; every row must share one schema (datasets checks
    it for every container)."""
    import datasets

    datasets.disable_progress_bars()
    dataset = datasets.Dataset.from_list(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        target = tmp / path.name
        _write(rows, dataset, target)
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write(rows: list[dict], dataset, target: Path) -> None:
    if target.suffix == ".jsonl":  # by hand: pandas' writer rounds floats to 10 digits and escapes "/"
        target.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    elif target.suffix == ".json":  # one array, as LLaMA-Factory's own datasets are written
        target.write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    elif target.suffix == ".parquet":
        dataset.to_parquet(target)
    else:
        dataset.save_to_disk(str(target))
