"""Records: the one definition of the JSONL schema, and the output directory that holds them.

    OUT/config.yaml     the fully resolved config of the run
    OUT/records.jsonl   one `Record` per finished problem (one write, flushed and fsynced)
    OUT/summary.json    counts, accuracy, mean predictive perplexity, tokens, time

Every reader (resume, `cord evaluate`, export, reports) goes through `Record.from_dict`, which
also reads files written before `schema_version` existed (version 0: optional keys absent).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import Config, ConfigError, from_dict, to_dict, validate

RECORDS = "records.jsonl"
CONFIG = "config.yaml"
SUMMARY = "summary.json"

# 1: `schema_version` written; every key below always present (null where it does not apply);
#    steps carry `category`. 0: files from before (no version; valid_trace, failed,
#    raw_integration and step categories only where they applied). 2: `alternatives` and
#    `judge_reply` written; `correct` may be null (grading.method none, or a judge reply with no
#    verdict); steps carry `candidates` (null unless search.keep_candidates). 3: `kept_steps`
#    (cord, greedy) and `schedule` (search.teacher_schedule) written.
SCHEMA_VERSION = 3


@dataclass
class Step:
    """One reasoning step of a trajectory and who wrote it."""

    text: str
    teacher: str
    score: float | None = None  # selection score of the prefix ending here (S unless an ablation)
    tokens: int = 0  # tokens the teacher generated for it
    end: str = "marker"  # marker | think | cap | eos | budget (see segment.py)
    category: str | None = None  # Integration's label for the step (Progressive Reasoning, ...)
    # search.keep_candidates (CoRD): the other candidates proposed after the same prefix, best first
    # ({"text", "teacher", "score"} each); null when not kept
    candidates: list[dict[str, Any]] | None = None


@dataclass
class KeptStep:
    """A step the beam kept in some round (CoRD), whether or not its trajectory was chosen in the
    end: where it stood, which teachers proposed its text, and which were asked."""

    step: int  # its index in the trajectory (0: the first step)
    tokens: int  # reasoning tokens before it
    teachers: list[str] = field(default_factory=list)  # proposed this very text
    asked: list[str] = field(default_factory=list)  # proposed a step after the same prefix


@dataclass
class Tokens:
    teachers: dict[str, int] = field(default_factory=dict)  # generated, per teacher (all proposals)
    meta_prover: int = 0  # tokens the meta-prover computed (after cache reuse)
    reasoning: int = 0  # tokens in the chosen trajectory's reasoning


@dataclass
class Budget:
    steps_proposed: dict[str, int] = field(default_factory=dict)
    trajectories: dict[str, int] = field(default_factory=dict)  # complete trajectories written
    meta_prover_calls: int = 0
    # how every proposed step ended, per teacher: {teacher: {marker|think|cap|eos|budget: count}}
    step_ends: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class Timing:
    generation_seconds: float = 0.0
    scoring_seconds: float = 0.0


@dataclass
class Alternative:
    """Another finished trajectory of the same problem, kept with `search.keep_top_k` (for DPO
    pairs and rejection sampling); a record's alternatives follow the chosen one, best first."""

    steps: list[Step] = field(default_factory=list)
    final_answer: str = ""
    answer_teacher: str = ""
    predicted: str | None = None
    correct: bool = False
    predictive_perplexity: float | None = None
    valid_trace: bool | None = None
    judge_reply: str | None = None

    @property
    def reasoning(self) -> str:
        return "".join(step.text for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "reasoning": self.reasoning}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alternative:
        data = {k: v for k, v in data.items() if k != "reasoning"}
        return cls(**{**data, "steps": [Step(**s) for s in data.get("steps") or []]})


@dataclass
class Record:
    """What a search strategy produced for one problem."""

    id: str
    question: str
    answer: str
    method: str
    steps: list[Step] = field(default_factory=list)
    final_answer: str = ""  # the text after </think>
    answer_teacher: str = ""  # who wrote the final answer
    predicted: str | None = None  # the answer extracted from final_answer
    correct: bool | None = False  # math-verify equivalence with `answer` (grading.method); None: not graded
    predictive_perplexity: float | None = None  # S of the chosen reasoning
    tokens: Tokens = field(default_factory=Tokens)
    budget: Budget = field(default_factory=Budget)
    timing: Timing = field(default_factory=Timing)
    seconds: float = 0.0  # wall time of the problem, start to record
    valid_trace: bool | None = None  # generated tiny problems only: every step right
    failed: str | None = None  # why the problem has no usable trajectory
    raw_integration: str | None = None  # Integration: the integrator's reply as received
    judge_reply: str | None = None  # grading.method judge: the judge's reply (its verdict line decides `correct`)
    alternatives: list[Alternative] = field(default_factory=list)  # search.keep_top_k - 1 runners-up
    # cord / greedy: every step the beam kept, round by round (search.teacher_schedule fits its
    # table from these); null for the other methods
    kept_steps: list[KeptStep] | None = None
    # search.teacher_schedule: "calibration" (every teacher proposed; the table is fit from these
    # records) or "scheduled" (the table chose who proposed); null without a schedule
    schedule: str | None = None
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept

    @property
    def reasoning(self) -> str:
        """The chosen reasoning: the steps joined (ends with </think> when it closed)."""
        return "".join(step.text for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        for f in dataclasses.fields(self):
            if f.name in ("schema_version", "extra"):
                continue
            value = getattr(self, f.name)
            data[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
            if f.name == "steps":
                data["steps"] = [dataclasses.asdict(s) for s in self.steps]
                data["reasoning"] = self.reasoning
            elif f.name == "alternatives":
                data["alternatives"] = [a.to_dict() for a in self.alternatives]
            elif f.name == "kept_steps" and self.kept_steps is not None:
                data["kept_steps"] = [dataclasses.asdict(k) for k in self.kept_steps]
        data.update({k: v for k, v in self.extra.items() if k not in data})
        return data

    def to_line(self) -> str:
        """The record as one line of records.jsonl."""
        return json.dumps(self.to_dict(), ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "record") -> Record:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
        version = data.get("schema_version", 0)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ConfigError(f"{where}: schema_version {version!r} is newer than this cord reads ({SCHEMA_VERSION}); upgrade cord")
        missing = [k for k in ("id", "question", "answer", "method") if k not in data]
        if missing:
            raise ConfigError(f"{where}: missing field(s) {', '.join(missing)}")
        known = {f.name for f in dataclasses.fields(cls)} | {"reasoning"}
        try:
            steps = [Step(**s) for s in data.get("steps") or []]
            return cls(
                id=str(data["id"]),
                question=data["question"],
                answer=data["answer"],
                method=data["method"],
                steps=steps,
                final_answer=data.get("final_answer", ""),
                answer_teacher=data.get("answer_teacher", ""),
                predicted=data.get("predicted"),
                correct=None if data.get("correct", False) is None else bool(data.get("correct", False)),
                predictive_perplexity=data.get("predictive_perplexity"),
                tokens=Tokens(**data.get("tokens", {})),
                budget=Budget(**data.get("budget", {})),
                timing=Timing(**data.get("timing", {})),
                seconds=data.get("seconds", 0.0),
                valid_trace=data.get("valid_trace"),
                failed=data.get("failed"),
                raw_integration=data.get("raw_integration"),
                judge_reply=data.get("judge_reply"),
                alternatives=[Alternative.from_dict(a) for a in data.get("alternatives") or []],
                kept_steps=None if data.get("kept_steps") is None else [KeptStep(**k) for k in data["kept_steps"]],
                schedule=data.get("schedule"),
                schema_version=version,
                extra={k: v for k, v in data.items() if k not in known},
            )
        except TypeError as err:  # an unexpected key inside steps / tokens / budget / timing / alternatives
            raise ConfigError(f"{where}: {err}") from None


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


# Keys that may change between a run and its resume without changing what a record means.
RESUMABLE_KEYS = {("output_dir",), ("data", "limit"), ("search", "problems_in_flight")}
# What a run ran with when its config.yaml predates a key whose default changed behaviour.
LEGACY_VALUES = {("search", "step_instruction"): None, ("search", "answer_end"): ""}


def comparable(config: dict) -> dict:
    """A config as the resume check sees it: a key its config.yaml predates takes the value that
    run used, every other key today's default, then resumable keys are removed."""
    data = json.loads(json.dumps(config))
    for (section, key), value in LEGACY_VALUES.items():
        if isinstance(data.get(section), dict) and key not in data[section]:
            data[section][key] = value
    try:
        resolved = from_dict(Config, data)
        validate(resolved)
        data = to_dict(resolved)
    except ConfigError:
        pass
    for keys in RESUMABLE_KEYS:
        node = data
        for key in keys[:-1]:
            node = node.get(key, {})
        node.pop(keys[-1], None)
    return data


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

    def check(self) -> list[Record]:
        """Validate against what is on disk (before anything is written); return finished records."""
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
                raise ConfigError(f"{self.path}: exists and is not a cord run directory (use --overwrite to replace it)")
            return []
        old = yaml.safe_load(config_file.read_text()) or {}
        then, now = comparable(old), comparable(self.config)
        if then != now:
            changed = ", ".join(f"{key} ({short(a)} there, {short(b)} now)" for key, a, b in differences(then, now)[:3])
            raise ConfigError(f"{self.path}: holds a run with a different config: {changed} (use --overwrite to replace it)")
        return read_records(self.path)

    def open(self, keep: list[Record] | None = None) -> None:
        """Make the directory ready for appends; `keep`: rewrite records.jsonl with these records
        only (atomically), e.g. without the failed ones that --retry-failed runs again."""
        if self.overwrite and self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
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
        self.write_summary(summary)


CAP_WARNING_SHARE = 0.25  # more of a teacher's steps than this ending at the cap: it ignores the step format


def step_format_warnings(step_ends: dict[str, dict[str, int]]) -> list[str]:
    """One line per teacher whose steps mostly run to the per-step cap instead of ending at a marker."""
    warnings = []
    for name, ends in sorted(step_ends.items()):
        total = sum(ends.values())
        if total and ends.get("cap", 0) / total > CAP_WARNING_SHARE:
            warnings.append(
                f"teacher {name} does not follow the step format: {ends['cap']} of its {total} proposed steps "
                f"({ends['cap'] / total:.0%}) ended at max_step_tokens; check its prompt with `cord generate --dry-run`"
            )
    return warnings


def summarize(records: list[Record], seconds: float | None = None) -> dict[str, Any]:
    n = len(records)
    if n == 0:
        return {"problems": 0}
    teacher_tokens: dict[str, int] = {}
    selected: dict[str, int] = {}
    step_ends: dict[str, dict[str, int]] = {}
    for r in records:
        for name, count in r.tokens.teachers.items():
            teacher_tokens[name] = teacher_tokens.get(name, 0) + count
        for step in r.steps:
            selected[step.teacher] = selected.get(step.teacher, 0) + 1
        for name, ends in r.budget.step_ends.items():
            mine = step_ends.setdefault(name, {})
            for end, count in ends.items():
                mine[end] = mine.get(end, 0) + count
    valid = [r.valid_trace for r in records if r.valid_trace is not None]
    graded = [r for r in records if r.correct is not None]
    perplexities = [r.predictive_perplexity for r in records if r.predictive_perplexity is not None]
    gen = sum(r.timing.generation_seconds for r in records)
    score = sum(r.timing.scoring_seconds for r in records)
    summary = {
        "method": records[0].method,
        "problems": n,
        "failures": sum(1 for r in records if r.failed),
        "accuracy": (sum(1 for r in graded if r.correct) / len(graded)) if graded else None,
        "ungraded": n - len(graded),
        "valid_trace_rate": (sum(valid) / len(valid)) if valid else None,
        "mean_predictive_perplexity": (sum(perplexities) / len(perplexities)) if perplexities else None,
        "tokens": {
            "teachers": teacher_tokens,
            "teachers_total": sum(teacher_tokens.values()),
            "meta_prover": sum(r.tokens.meta_prover for r in records),
        },
        "selected_steps_by_teacher": selected,
        "step_ends": step_ends,
        "warnings": step_format_warnings(step_ends),
        "mean_steps": sum(len(r.steps) for r in records) / n,
        "generation_seconds": gen,
        "scoring_seconds": score,
        "meta_prover_share": score / (gen + score) if gen + score > 0 else 0.0,
    }
    if seconds is not None:
        summary["wall_seconds"] = seconds
    return summary
