"""The run directory: what a run writes, how it is read back, and when a run may resume into it.

OUT/config.yaml     the fully resolved config of the run
OUT/records.jsonl   one `Record` per finished problem (one write, flushed and fsynced)
OUT/summary.json    counts, accuracy, mean predictive perplexity, tokens, time
OUT/.lock           the process id of the run writing here, locked while it runs: one run per folder
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config import Config, from_dict, to_dict
from ..errors import ConfigError
from .schema import Record

RECORDS = "records.jsonl"
CONFIG = "config.yaml"
SUMMARY = "summary.json"
LOCK = ".lock"  # held (flock) by the run writing into the directory; the kernel lets go when it dies


def read_records(path: str | os.PathLike) -> list[Record]:
    """Records of a run directory (or a records file); a torn last line (a crash mid-write) is dropped."""
    path = Path(path)
    file = path / RECORDS if path.is_dir() else path
    if not file.exists():
        return []
    lines = file.read_bytes().split(b"\n")
    records = []
    for number, raw in enumerate(lines[:-1], 1):  # the piece after the last newline is torn or empty
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{file} line {number}: not a valid record ({err})") from None
        records.append(Record.from_dict(data, f"{file} line {number}"))
    return records


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@dataclass
class RunData:
    """A finished (or interrupted) run directory as readers see it."""

    path: Path
    config: dict
    summary: dict
    records: list[Record]


def read_run(path: str | os.PathLike) -> RunData:
    """config.yaml, summary.json (if written) and the records of a run directory."""
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise ConfigError(f"{path}: not a cord run directory (no {CONFIG})")
    config = yaml.safe_load((path / CONFIG).read_text()) or {}
    summary = json.loads((path / SUMMARY).read_text()) if (path / SUMMARY).is_file() else {}
    return RunData(path, config, summary, read_records(path))


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the file gets what open() would give it
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Keys that may change between a run and its resume without changing what a record means: where
# the run is written, how many problems (and which shard) it takes, how many run side by side, and
# whether engines take turns.
RESUMABLE_KEYS = {("output_dir",), ("data", "limit"), ("data", "shard"), ("search", "problems_in_flight"), ("search", "reproducible")}
# What a run ran with when its config.yaml predates a key whose default changed behaviour.
LEGACY_VALUES = {("search", "step_instruction"): None, ("search", "answer_end"): ""}
# The same, for keys that matter to one method only: (section, key) -> (method, value).
LEGACY_METHOD_VALUES = {("search", "mcts_rollout"): ("mcts", "teacher")}


def comparable(config: dict) -> dict:
    """A config as the resume check sees it: a key its config.yaml predates takes the value that
    run used, every other key today's default, then resumable keys are removed."""
    data = json.loads(json.dumps(config))
    for (section, key), value in LEGACY_VALUES.items():
        if isinstance(data.get(section), dict) and key not in data[section]:
            data[section][key] = value
    method = (data.get("search") or {}).get("method") if isinstance(data.get("search"), dict) else None
    for (section, key), (only, value) in LEGACY_METHOD_VALUES.items():
        if method == only and isinstance(data.get(section), dict) and key not in data[section]:
            data[section][key] = value
    with contextlib.suppress(ConfigError):  # a config this cord cannot read is compared as written
        data = to_dict(from_dict(Config, data))
    _resolve_paths(data)
    for keys in RESUMABLE_KEYS:
        node = data
        for key in keys[:-1]:
            node = node.get(key, {})
        node.pop(keys[-1], None)
    return data


def local_path(value: object) -> object:
    """A path that names an existing file or folder, made absolute (`p.jsonl` and `/abs/p.jsonl` are
    one file); anything else (a hub id, a tiny: name) as it is."""
    if isinstance(value, str) and value and ":" not in value.split("/")[0]:
        path = Path(value).expanduser()
        if path.exists():
            return str(path.resolve())
    return value


def _resolve_paths(data: dict) -> None:
    """Every path a config names (data, schedule table, models, tokenizers), absolute, in place."""
    if isinstance(data.get("data"), dict):
        data["data"]["path"] = local_path(data["data"].get("path"))
    schedule = (data.get("search") or {}).get("teacher_schedule")
    if isinstance(schedule, dict):
        schedule["table_from"] = local_path(schedule.get("table_from"))
    models = [*(data.get("teachers") or []), *(data.get(k) for k in ("meta_prover", "integrator", "prm"))]
    models.append((data.get("grading") or {}).get("judge"))
    for model in models:
        if isinstance(model, dict):
            for key in ("model", "tokenizer"):
                if key in model:
                    model[key] = local_path(model[key])


def short(value: object, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def differences(then: dict, now: dict, where: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, value there, value now) for every leaf on which two configs differ."""
    out = []
    for key in sorted(set(then) | set(now), key=str):
        a, b = then.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{where}{key}.")
        elif a != b:
            out.append((f"{where}{key}", a, b))
    return out


class RunDirectory:
    """Owns one output directory for one config."""

    def __init__(self, path: str | Path, config: dict, overwrite: bool = False):
        self.path = Path(path)
        self.config = config
        self.overwrite = overwrite

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

    def check(self) -> list[Record]:
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
            return []
        old = yaml.safe_load(config_file.read_text()) or {}
        then, now = comparable(old), comparable(self.config)
        if then != now:
            changed = ", ".join(f"{key} ({short(a)} there, {short(b)} now)" for key, a, b in differences(then, now)[:3])
            raise ConfigError(
                f"{self.path}: holds a run with a different config: {changed}; its finished records stay as they are: "
                "to run this config too, give it another output folder (--out)"
            )
        return read_records(self.path)

    def open(self, keep: list[Record] | None = None) -> None:
        """Make the directory ready for appends; `keep`: rewrite records.jsonl with these records
        only (atomically), e.g. without the failed ones that --retry-failed runs again."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = self._take_lock(keep=True)
        if self.overwrite:  # everything but the lock this run now holds
            for entry in self.path.iterdir():
                if entry.name != LOCK:
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        records = self.path / RECORDS
        if keep is not None:
            atomic_write(records, "".join(r.to_line() for r in keep))
        if records.exists():  # drop a torn last line so appends start on a line boundary
            raw = records.read_bytes()
            keep = raw.rfind(b"\n") + 1
            if keep != len(raw):
                with records.open("r+b") as handle:
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
