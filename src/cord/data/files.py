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
from collections.abc import Iterable
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


def write_rows(rows: Iterable[dict], path: str | os.PathLike) -> int:
    """`rows` in the container `path`'s suffix names (exactly as written: anything but .jsonl, .json
    and .parquet is a datasets folder); returns how many. Rows stream: each is written as it comes
    to a JSON-lines file under a temporary name, which becomes the container (parquet and datasets
    folders through datasets' own chunked JSON reader, whose Arrow cache is on disk), then is
    renamed: memory stays bounded whatever the number of rows, a failure leaves nothing, no reader
    sees half a file, and nothing is written when there are no rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        lines, count, schema = tmp / "rows.jsonl", 0, {}
        with lines.open("w", encoding="utf-8") as handle:  # by hand: pandas' writer rounds floats and escapes "/"
            for row in rows:
                check_schema(schema, row, count)
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
        if count:
            target = tmp / path.name
            _write(lines, target, tmp / "cache")
            if path.is_dir():
                shutil.rmtree(path)
            os.replace(target, path)
        return count
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_schema(schema: dict[str, str], row: dict, number: int) -> None:
    """Every row has the first row's columns, each value of one JSON kind (null fits any): what a
    parquet file or a datasets folder needs, checked for every container."""
    kinds = {key: "number" if isinstance(v, int | float) and not isinstance(v, bool) else type(v).__name__ for key, v in row.items()}
    if number == 0:
        schema.update(kinds)
        return
    if set(kinds) != set(schema):
        raise ConfigError(f"row {number}: columns {sorted(kinds)} differ from the first row's {sorted(schema)}")
    for key, kind in kinds.items():
        if kind != "NoneType":
            if schema[key] == "NoneType":
                schema[key] = kind
            elif schema[key] != kind:
                raise ConfigError(f"row {number}: column {key!r} holds a {kind}, the rows before it a {schema[key]}")


def _write(lines: Path, target: Path, cache: Path) -> None:
    if target.suffix == ".jsonl":
        os.replace(lines, target)
    elif target.suffix == ".json":  # one array, as LLaMA-Factory's own datasets are written
        with lines.open(encoding="utf-8") as rows, target.open("w", encoding="utf-8") as out:
            out.write("[")
            for i, line in enumerate(rows):
                row = json.dumps(json.loads(line), ensure_ascii=False, indent=1).replace("\n", "\n ")
                out.write(("," if i else "") + "\n " + row)
            out.write("\n]\n")
    else:
        import datasets

        datasets.disable_progress_bars()
        dataset = datasets.load_dataset("json", data_files=str(lines), split="train", cache_dir=str(cache))
        if target.suffix == ".parquet":
            dataset.to_parquet(target)
        else:
            dataset.save_to_disk(str(target))
