"""When a run may resume into a folder: its stored config.yaml against today's config. Keys an
older cord did not write take the values that run used (`as_today`), paths are compared resolved,
and the keys a resume may change (`RESUMABLE_KEYS`) are left out (`comparable`)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from ..config import Config, from_dict, to_dict
from ..errors import ConfigError

# Keys that may change between a run and its resume without changing what a record means: where
# the run is written, how many problems (and which shard) it takes, how many run side by side,
# whether engines take turns, and when the run stops early.
RESUMABLE_KEYS = {
    ("output_dir",),
    ("data", "limit"),
    ("data", "shard"),
    ("search", "problems_in_flight"),
    ("search", "rows_in_flight"),
    ("search", "speculative"),
    ("search", "reproducible"),
    ("max_cost",),
    ("max_failure_rate",),
    ("failure_rate_after",),
}
# What a run ran with when its config.yaml predates a key whose default changed behaviour.
LEGACY_VALUES = {("search", "step_instruction"): None, ("search", "answer_end"): "", ("search", "trajectory_style"): "steps"}
# The same, for keys that matter to one method only: (section, key) -> (method, value).
LEGACY_METHOD_VALUES = {("search", "mcts_rollout_cap"): ("mcts", False)}  # mcts before the cap: none


def _legacy_mcts(search: dict) -> None:
    """A config.yaml from before `mcts-cord` in today's keys: `search.mcts_rollout` (every method
    wrote it; missing before it existed: 'teacher') is gone, and an `mcts` run that rolled out by
    greedy CoRD ('greedy') is `mcts-cord` now (an `mcts` run by its proposer ran uncapped, above)."""
    rollout = search.pop("mcts_rollout", "teacher")
    if search.get("method") == "mcts" and "mcts_rollout_cap" not in search and rollout == "greedy":
        search["method"] = "mcts-cord"


def as_today(config: dict) -> dict:
    """A stored config.yaml in today's keys: a key it predates takes the value that run used (a
    copy; what a reader of an old run parses)."""
    data = json.loads(json.dumps(config))
    for (section, key), value in LEGACY_VALUES.items():
        if isinstance(data.get(section), dict) and key not in data[section]:
            data[section][key] = value
    if isinstance(data.get("search"), dict):
        _legacy_mcts(data["search"])
    method = (data.get("search") or {}).get("method") if isinstance(data.get("search"), dict) else None
    for (section, key), (only, value) in LEGACY_METHOD_VALUES.items():
        if method == only and isinstance(data.get(section), dict) and key not in data[section]:
            data[section][key] = value
    return data


def comparable(config: dict) -> dict:
    """A config as the resume check sees it: in today's keys (`as_today`), every key it does not
    state today's default, then resumable keys are removed."""
    data = as_today(config)
    with contextlib.suppress(ConfigError):  # a config this cord cannot read is compared as written
        data = to_dict(from_dict(Config, data))
    resolve_paths(data)
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


def resolve_paths(data: dict) -> None:
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
