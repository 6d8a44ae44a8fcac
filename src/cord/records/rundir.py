"""The run directory: what a run writes, how it is read back, and when a run may resume into it.

OUT/config.yaml     the fully resolved config of the run
OUT/records.jsonl   one `Record` per finished problem (one write, flushed and fsynced)
OUT/summary.json    counts, accuracy, mean predictive perplexity, tokens, time
OUT/state/          the search state of each problem in flight after its last round (states.py)
OUT/.lock           the process id of the run writing here, locked while it runs: one run per folder
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from ..errors import ConfigError
from .atomic import atomic_write, atomic_writer
from .resume import comparable, differences, resolve_paths, short
from .schema import Record
from .states import STATES, SearchStates

RECORDS = "records.jsonl"
CONFIG = "config.yaml"
SUMMARY = "summary.json"
LOCK = ".lock"  # held (flock) by the run writing into the directory; the kernel lets go when it dies


def records_file(path: str | os.PathLike) -> Path:
    """records.jsonl of a run directory, or the records file itself."""
    path = Path(path)
    return path / RECORDS if path.is_dir() else path


def parse_line(raw: bytes, file: Path, number: int) -> Record:
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{file} line {number}: not a valid record ({err})") from None
    return Record.from_dict(data, f"{file} line {number}")


def whole_lines(file: Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, line) of every whole line; a torn last line (a crash mid-write:
    no newline after it) is left out. Reads one line at a time."""
    offset = 0
    with file.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if raw.endswith(b"\n") and raw.strip():
                yield number, offset, raw
            offset += len(raw)


def iter_records(path: str | os.PathLike) -> Iterator[Record]:
    """Records of a run directory (or a records file) in file order, one at a time."""
    file = records_file(path)
    if file.exists():
        for number, _, raw in whole_lines(file):
            yield parse_line(raw, file, number)


def read_records(path: str | os.PathLike) -> list[Record]:
    """Records of a run directory (or a records file), in memory, in input order (as every reader
    presents them); a torn last line is dropped. Readers of runs of any size use `RecordStream`
    (`read_run(...).records`) instead."""
    return list(RecordStream(records_file(path)))


HEAD = re.compile(rb'^\{"schema_version": \d+, "index": (\d+|null), "id": ("(?:[^"\\]|\\.)*")')  # how Record.to_line starts


def line_head(raw: bytes, file: Path, number: int) -> tuple[int | None, str]:
    """(index, id) of a records.jsonl line, read from its head where it leads the line."""
    head = HEAD.match(raw)
    if head:
        return (None if head.group(1) == b"null" else int(head.group(1))), json.loads(head.group(2))
    record = parse_line(raw, file, number)  # written before the index led the line
    return record.index, record.id


class RecordStream:
    """records.jsonl read as a stream in input order (`Record.index`, whatever order problems
    finished in; records without an index keep their file order, after the others). Memory is one
    record plus a (place, offset) pair per record, whatever the file's size; every pass reads the
    file again."""

    def __init__(self, file: Path):
        self.file = file
        self._places: list[tuple[bool, int, int, int]] | None = None
        self._ids: list[str] = []

    def places(self) -> list[tuple[bool, int, int, int]]:
        """(no index, index, offset, line number) of each record, in input order (scanned once,
        reading only the head of each line where it can)."""
        if self._places is None:
            places, ids = [], []
            if self.file.exists():
                for number, offset, raw in whole_lines(self.file):
                    index, problem = line_head(raw, self.file, number)
                    ids.append(problem)
                    places.append((index is None, index or 0, offset, number))
            self._places, self._ids = sorted(places), ids
        return self._places

    def ids(self) -> list[str]:
        """The records' problem ids, in file order."""
        self.places()
        return self._ids

    def __len__(self) -> int:
        return len(self.places())

    def __bool__(self) -> bool:
        return len(self) > 0

    def __iter__(self) -> Iterator[Record]:
        places = self.places()
        if not places:
            return
        with self.file.open("rb") as handle:
            for _, _, offset, number in places:
                handle.seek(offset)
                yield parse_line(handle.readline(), self.file, number)


@dataclass
class RunData:
    """A finished (or interrupted) run directory as readers see it: its records stream from disk."""

    path: Path
    config: dict
    summary: dict
    records: RecordStream


def check_run_directory(path: Path) -> None:
    """A folder that does not exist, a file, or a folder without config.yaml: one line each."""
    if not path.exists():
        raise ConfigError(f"{path}: does not exist")
    if not path.is_dir():
        raise ConfigError(f"{path}: is a file, not a cord run directory")
    if not (path / CONFIG).is_file():
        raise ConfigError(f"{path}: not a cord run directory (no {CONFIG})")


def last_line_end(handle: BinaryIO, size: int, chunk: int = 1 << 16) -> int:
    """The offset just past the file's last newline (0 if none), read from the end a chunk at a
    time: a torn last line is found without reading a file of any size whole."""
    end = size
    while end > 0:
        start = max(0, end - chunk)
        handle.seek(start)
        at = handle.read(end - start).rfind(b"\n")
        if at != -1:
            return start + at + 1
        end = start
    return 0


def read_run(path: str | os.PathLike) -> RunData:
    """config.yaml, summary.json (if written) and the records of a run directory."""
    path = Path(path)
    check_run_directory(path)
    config = yaml.safe_load((path / CONFIG).read_text()) or {}
    summary = json.loads((path / SUMMARY).read_text()) if (path / SUMMARY).is_file() else {}
    return RunData(path, config, summary, RecordStream(path / RECORDS))


class RunDirectory:
    """Owns one output directory for one config."""

    def __init__(self, path: str | Path, config: dict, overwrite: bool = False):
        """`config`: the run's config as a dict; its paths are stored resolved, so a resume from
        any working directory finds the same files."""
        self.path = Path(path)
        self.config = json.loads(json.dumps(config))
        resolve_paths(self.config)
        self.overwrite = overwrite
        self.states = SearchStates(self.path / STATES)

    def _take_lock(self, keep: bool) -> int | None:
        """Lock OUT/.lock (a second run into the folder is refused, naming the process that holds
        it); `keep`: hold it until `close`, else only look."""
        lock = self.path / LOCK
        if not keep and not lock.exists():
            return None
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(
                f"{self.path}: another cord run is writing into this folder (process {holder}); wait for it to end, or give this "
                "run another output folder (--out)"
            ) from None
        if not keep:
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def check(self) -> RecordStream:
        """Validate against what is on disk (before anything is written); return finished records."""
        if self.path.is_dir():
            self._take_lock(keep=False)
        for folder in (self.path, *self.path.parents):
            if folder.exists():
                if not folder.is_dir():
                    raise ConfigError(f"output_dir: {folder} is a file, not a directory")
                if not os.access(folder, os.W_OK | os.X_OK):
                    raise ConfigError(f"output_dir: {folder} is not writable")
                break
        config_file = self.path / CONFIG
        if self.overwrite or not config_file.exists():
            if self.path.exists() and any(self.path.iterdir()) and not config_file.exists() and not self.overwrite:
                raise ConfigError(f"{self.path}: is not empty and not a cord run directory; choose another output folder (--out)")
            return RecordStream(self.path / ".no-records")
        old = yaml.safe_load(config_file.read_text()) or {}
        then, now = comparable(old), comparable(self.config)
        if then != now:
            changed = ", ".join(f"{key} ({short(a)} there, {short(b)} now)" for key, a, b in differences(then, now)[:3])
            raise ConfigError(
                f"{self.path}: holds a run with a different config: {changed}; its finished records stay as they are: "
                "to run this config too, give it another output folder (--out)"
            )
        return RecordStream(self.path / RECORDS)

    def open(self, drop: set[str] | None = None) -> None:
        """Make the directory ready for appends; `drop`: rewrite records.jsonl without the records
        of these problems (atomically, a line at a time), e.g. the failed ones --retry-failed runs
        again."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = self._take_lock(keep=True)
        if self.overwrite:  # everything but the lock this run now holds
            for entry in self.path.iterdir():
                if entry.name != LOCK:
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        records = self.path / RECORDS
        if drop:
            with atomic_writer(records) as out:
                for number, _, raw in whole_lines(records):
                    if line_head(raw, records, number)[1] not in drop:
                        out.write(raw)
        if records.exists():  # drop a torn last line so appends start on a line boundary
            with records.open("r+b") as handle:
                size = handle.seek(0, os.SEEK_END)
                keep = last_line_end(handle, size)
                if keep != size:
                    handle.truncate(keep)
        atomic_write(self.path / CONFIG, yaml.safe_dump(self.config, sort_keys=False, allow_unicode=True))
        self._fd = os.open(self.path / RECORDS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # unbuffered: nothing held back

    def append(self, record: Record) -> None:
        """One write per record, fsynced: a crash leaves at most one torn line. A write that fails
        (disk full, quota) is cut back to the last whole record before the error is raised."""
        data = record.to_line().encode("utf-8")
        start = os.fstat(self._fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError as err:
            os.ftruncate(self._fd, start)
            where = self.path / RECORDS
            raise OSError(err.errno, f"{where}: could not write a record ({err.strerror}); the records before it are intact") from None

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write(self.path / SUMMARY, json.dumps(summary, indent=2) + "\n")

    def close(self, summary: dict[str, Any]) -> None:
        os.close(self._fd)
        try:
            self.write_summary(summary)
        finally:
            os.close(self._lock)  # the next run may come in
