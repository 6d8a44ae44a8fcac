"""The output directory: records written once and durably, resume, config check, summary.

    OUT/config.yaml     the fully resolved config of the run
    OUT/records.jsonl   one JSON object per finished problem (one write, flushed and fsynced)
    OUT/summary.json    counts, accuracy, mean predictive perplexity, tokens, time
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError

RECORDS = "records.jsonl"
CONFIG = "config.yaml"
SUMMARY = "summary.json"

# Keys that may change between a run and its resume without changing what a record means.
RESUMABLE_KEYS = {("output_dir",), ("data", "limit"), ("search", "problems_in_flight")}


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _strip(config: dict) -> dict:
    data = json.loads(json.dumps(config))
    for keys in RESUMABLE_KEYS:
        node = data
        for key in keys[:-1]:
            node = node.get(key, {})
        node.pop(keys[-1], None)
    return data


def read_records(path: Path) -> list[dict]:
    """Records of a run; a torn last line (a crash mid-write) is dropped."""
    file = path / RECORDS if path.is_dir() else path
    if not file.exists():
        return []
    records = []
    with file.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return records


class RunDirectory:
    """Owns one output directory for one config."""

    def __init__(self, path: str | Path, config: dict, overwrite: bool = False):
        self.path = Path(path)
        self.config = config
        self.overwrite = overwrite

    def check(self) -> list[dict]:
        """Validate against what is on disk (before anything is written); return finished records."""
        config_file = self.path / CONFIG
        if self.overwrite or not config_file.exists():
            if self.path.exists() and any(self.path.iterdir()) and not config_file.exists() and not self.overwrite:
                raise ConfigError(f"{self.path}: exists and is not a cord run directory (use --overwrite to replace it)")
            return []
        old = yaml.safe_load(config_file.read_text()) or {}
        if _strip(old) != _strip(self.config):
            raise ConfigError(f"{self.path}: holds a run with a different config (use --overwrite to replace it)")
        return read_records(self.path)

    def open(self) -> None:
        if self.overwrite and self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        records = self.path / RECORDS
        if records.exists():  # drop a torn last line so appends start on a line boundary
            raw = records.read_bytes()
            keep = raw.rfind(b"\n") + 1
            if keep != len(raw):
                with records.open("r+b") as handle:
                    handle.truncate(keep)
        atomic_write(self.path / CONFIG, yaml.safe_dump(self.config, sort_keys=False, allow_unicode=True))
        self._handle = (self.path / RECORDS).open("a", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        self._handle.write(line)  # one write per record: a crash leaves at most one torn line
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self, summary: dict[str, Any]) -> None:
        self._handle.close()
        atomic_write(self.path / SUMMARY, json.dumps(summary, indent=2) + "\n")


def summarize(records: list[dict], seconds: float | None = None) -> dict[str, Any]:
    n = len(records)
    if n == 0:
        return {"problems": 0}
    teacher_tokens: dict[str, int] = {}
    selected: dict[str, int] = {}
    for r in records:
        for name, count in r["tokens"]["teachers"].items():
            teacher_tokens[name] = teacher_tokens.get(name, 0) + count
        for step in r["steps"]:
            selected[step["teacher"]] = selected.get(step["teacher"], 0) + 1
    valid = [r["valid_trace"] for r in records if r.get("valid_trace") is not None]
    gen = sum(r["timing"]["generation_seconds"] for r in records)
    score = sum(r["timing"]["scoring_seconds"] for r in records)
    summary = {
        "method": records[0]["method"],
        "problems": n,
        "failures": sum(1 for r in records if r.get("failed")),
        "accuracy": sum(1 for r in records if r["correct"]) / n,
        "valid_trace_rate": (sum(valid) / len(valid)) if valid else None,
        "mean_predictive_perplexity": (sum(pp) / len(pp)) if (pp := [r["predictive_perplexity"] for r in records
                                                                      if r["predictive_perplexity"] is not None]) else None,
        "tokens": {
            "teachers": teacher_tokens,
            "teachers_total": sum(teacher_tokens.values()),
            "meta_prover": sum(r["tokens"]["meta_prover"] for r in records),
        },
        "selected_steps_by_teacher": selected,
        "mean_steps": sum(len(r["steps"]) for r in records) / n,
        "generation_seconds": gen,
        "scoring_seconds": score,
        "meta_prover_share": score / (gen + score) if gen + score > 0 else 0.0,
    }
    if seconds is not None:
        summary["wall_seconds"] = seconds
    return summary
