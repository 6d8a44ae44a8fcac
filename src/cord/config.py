"""Typed configuration: dataclasses loaded from YAML, overridable with dotted keys.

A run is described whole by one `Config`; `config.yaml` in the output directory is
`to_dict(config)`, so a run can be reproduced and resumed from it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .prompts import ANSWER_END, ANSWER_LEAD, JUDGE_PROMPT, STEP_INSTRUCTION, STEP_MARKER
from .registry import ENGINES, SELECTIONS, STRATEGIES


class ConfigError(ValueError):
    """Bad configuration or input; the message names the field or file."""


SEGMENTATIONS = ("prompt", "linebreak", "prefix")


@dataclass
class ModelConfig:
    """One model: a teacher, the meta-prover, or an integrator."""

    name: str = ""
    model: str = ""  # local folder, hub id, or "tiny:<name>" for a shipped tiny model
    engine: str = "transformers"  # a name in cord.registry.ENGINES
    system_prompt: str | None = None  # None: the one the model's chat template inserts, if any
    step_instruction: str | None = None  # this model's own step instruction ("" for none); None: search.step_instruction
    temperature: float = 0.6  # paper: 0.6 for every teacher
    top_p: float = 1.0
    max_step_tokens: int = 1024  # a step that runs longer is cut (recorded as end="cap")
    dtype: str = "auto"  # auto: bfloat16 on CUDA, float32 on CPU
    device: str = "auto"
    # server engines (openai, sglang): one URL or several serving the same model (load spread)
    base_url: str | list[str] | None = None
    api_key_env: str | None = None  # name of the environment variable holding the key
    tokenizer: str | None = None  # local folder or hub id for the chat template (default: model)
    max_concurrency: int = 64  # requests in flight per engine
    request_timeout: float = 600.0  # seconds per request
    max_retries: int = 8  # with exponential backoff (server restarts, 5xx, timeouts)
    max_model_len: int | None = None
    # the engine's own options: vllm.LLM(...) arguments for vllm (e.g. {tensor_parallel_size: 4});
    # max_batch_size, max_batch_tokens, reuse_kv, kv_cache_bytes for transformers
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    # meta-prover on vllm / openai: "next-token" (one 1-token request per answer token, which reads
    # the prefix cache; exact) or "prompt-logprobs" (echo: re-reads the whole trajectory each time)
    scoring: str = "next-token"


SCORING_METHODS = ("next-token", "prompt-logprobs")


SCHEDULE_POSITIONS = ("step", "tokens")


@dataclass
class TeacherScheduleConfig:
    """Beyond the paper, opt-in (cord, greedy): which teachers propose at each phase of a
    trajectory, from each teacher's hit rate by position (the paper's Figure 2). See
    cord/search/teacher_schedule.py."""

    by: str = "step"  # a phase is a step index (step) or reasoning tokens so far (tokens)
    width: int = 1  # steps or tokens per phase
    # the first problems run with every teacher; the steps their beams kept fit the table
    calibration: int = 32
    # per phase: the fewest teachers that between them proposed this share of the kept steps
    coverage: float = 0.9
    min_kept: int = 16  # a phase with fewer kept steps in calibration keeps every teacher
    table_from: str | None = None  # fit the table from an earlier run directory instead (no calibration)
    # or write it by hand (e.g. from run.log), no calibration: phase -> the teachers that propose
    # there, e.g. {0: [qwq], 1: [qwq, r1]}; a phase not listed asks every teacher
    table: dict[int, list[str]] | None = None


@dataclass
class SearchConfig:
    method: str = "cord"  # a name in cord.registry.STRATEGIES: cord | greedy | curation | integration | mcts
    beam_size: int = 4  # B (paper: 4); greedy is B = 1
    # false (the default): a finished trajectory leaves the beam, which narrows to B minus the
    # finished; true: the beam keeps B live prefixes until B trajectories have finished
    keep_beam_width: bool = False
    # finished trajectories kept per record, best first: the chosen one plus keep_top_k - 1
    # `alternatives` (each with its own final answer), e.g. for `cord export --format dpo`
    keep_top_k: int = 1
    # cord / greedy: each chosen step keeps the candidates that lost to it (shown by `cord report`)
    keep_candidates: bool = False
    # curation / integration / mcts: complete trajectories per teacher (default B, the paper's
    # equal budget; 2B gives "Curation x2")
    rollouts: int | None = None
    reasoning_budget: int = 16384  # paper: 16,384 reasoning + 4,096 answer tokens
    answer_budget: int = 4096
    segmentation: str = "prompt"  # prompt (### Step) | linebreak | prefix
    step_marker: str = STEP_MARKER
    # appended to the question in every model's user turn (teachers and meta-prover); null for none
    step_instruction: str | None = STEP_INSTRUCTION
    # what opens the first step after <think>; null: the step marker with prompt segmentation, else nothing
    prefill: str | None = None
    # what the meta-prover reads between the reasoning (after </think>) and the answer it scores;
    # for open-ended tasks whose target is a reference paragraph, e.g. " The answer is: "
    answer_lead: str = ANSWER_LEAD
    # scored right after the answer, so S is the probability of the whole answer ("2"), not of every
    # answer that starts with it ("22", "204"); "" for a reference paragraph that ends its own sentence
    answer_end: str = ANSWER_END
    # how candidates are ranked (cord.registry.SELECTIONS; cord and greedy only): perplexity (the
    # method) or an ablation (paper Table 5):
    # random, max_length, binary_judgment (judge answers after a "time is up" cue, graded,
    # averaged over judge_rollouts), step_judge (the meta-prover asked whether the last step is
    # correct, p(Yes): a generic LLM step judge standing in for a PRM, not a trained PRM)
    selection: str = "perplexity"
    judge_rollouts: int = 10
    judge_temperature: float = 0.6
    # selection "prm": each step is followed by prm_step_tag; the score is p(good) / (p(good) + p(bad))
    # of the PRM's next token after the last tag (Math-Shepherd's format by default)
    prm_step_tag: str = " \u043a\u0438"
    prm_good: str = "+"
    prm_bad: str = "-"
    mcts_exploration: float = 1.0  # UCB constant c
    # null (the paper): every teacher proposes after every prefix; set (e.g. `{}`): see TeacherScheduleConfig
    teacher_schedule: TeacherScheduleConfig | None = None
    problems_in_flight: int = 16  # problems advanced together so engine calls batch across them
    seed: int = 0


@dataclass
class TinyTasksConfig:
    """Generated tiny arithmetic problems (the embedded default's data)."""

    n: int = 50
    seed: int = 0
    mix: str = "mixed"


@dataclass
class DataConfig:
    tiny: TinyTasksConfig | None = None  # generate problems instead of reading a file
    path: str | None = None  # JSONL, JSON or parquet file
    dataset: str | None = None  # Hugging Face dataset name (datasets.load_dataset)
    subset: str | None = None
    split: str = "train"
    id_field: str = "id"
    question_field: str = "problem"
    answer_field: str = "answer"
    limit: int | None = None
    shard: str | None = None  # "I/N": every N-th problem from the I-th (after limit); see cord/shards.py


GRADING_METHODS = ("math", "judge", "none")


@dataclass
class GradingConfig:
    """How a record's final answer is graded: math (math-verify equivalence with the reference),
    judge (a model compares the response with the reference: open-ended tasks), none (ungraded:
    `correct` is null, export with --all)."""

    method: str = "math"
    judge: ModelConfig | None = None  # grading.method judge: any engine; temperature 0 is usual
    prompt: str = JUDGE_PROMPT  # with {question}, {reference} and {response}
    max_tokens: int = 1024  # the judge's reply


@dataclass
class Config:
    teachers: list[ModelConfig] = field(default_factory=list)
    meta_prover: ModelConfig = field(default_factory=ModelConfig)
    integrator: ModelConfig | None = None  # method "integration" (paper: GPT-5-mini)
    prm: ModelConfig | None = None  # selection "prm": a process reward model (e.g. peiyi9979/math-shepherd-mistral-7b-prm)
    search: SearchConfig = field(default_factory=SearchConfig)
    data: DataConfig = field(default_factory=DataConfig)
    grading: GradingConfig = field(default_factory=GradingConfig)
    output_dir: str = "runs/cord"

    def step_instruction_for(self, model: ModelConfig) -> str | None:
        return self.search.step_instruction if model.step_instruction is None else model.step_instruction


# ---------------------------------------------------------------------------
# dict <-> dataclass, strict about unknown keys and types


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True  # noqa: UP007 - built at run time
    return tp, False


def _coerce(value: Any, tp: Any, where: str) -> Any:
    tp, optional = _strip_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: must not be empty")
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):  # e.g. str | list[str]
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} does not fit {tp}")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [_coerce(v, item_tp, f"{where}.{i}") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def from_dict(cls: type, data: dict, where: str = "") -> Any:
    """Build dataclass `cls` from `data`; unknown keys are an error that names them."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown config key(s): {', '.join(prefix + k for k in unknown)}")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}" if where else key)
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    return dataclasses.asdict(obj)


def _parse_scalar(text: str) -> Any:
    """Command-line values are YAML scalars: 2 -> int, 0.5 -> float, null -> None."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(data: dict, dotted: str) -> None:
    """Apply `a.b.0.c=value` to a nested dict/list in place."""
    if "=" not in dotted:
        raise ConfigError(f"override {dotted!r}: expected key=value")
    key, raw = dotted.split("=", 1)
    parts = key.strip().split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override {key}: no list item {where}")
            if last:
                node[int(part)] = _parse_scalar(raw)
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = _parse_scalar(raw)
            else:
                if part not in node or node[part] is None:
                    node[part] = {}
                node = node[part]
        else:
            raise ConfigError(f"override {key}: {where} is not a section")


def load_dataclass(cls: type, path: str | Path | None = None, overrides: list[str] = ()) -> Any:
    """Dataclass `cls` from a YAML file (optional) and dotted `key=value` overrides, strictly typed."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    # Overrides apply to the full default tree so any key can be set without the YAML naming it.
    merged = to_dict(from_dict(cls, data))
    for item in overrides:
        apply_override(merged, item)
    return from_dict(cls, merged)


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    config = load_dataclass(Config, path, overrides)
    validate(config)
    return config


def validate(config: Config) -> None:
    """Checks every run needs. What only one strategy or engine uses is checked by that class
    (`Strategy.prepare`, `Engine.check`) before any model loads."""
    s = config.search
    for value, registry in ((s.method, STRATEGIES), (s.selection, SELECTIONS)):
        complaint = registry.unknown(value)
        if complaint:
            raise ConfigError(complaint)
    if s.beam_size < 1:
        raise ConfigError(f"search.beam_size: must be >= 1, got {s.beam_size}")
    if s.rollouts is not None and s.rollouts < 1:
        raise ConfigError(f"search.rollouts: must be >= 1, got {s.rollouts}")
    if s.segmentation not in SEGMENTATIONS:
        raise ConfigError(f"search.segmentation: {s.segmentation!r} is not one of {', '.join(SEGMENTATIONS)}")
    if s.prefill is None:  # written out, so config.yaml states what opens the reasoning
        s.prefill = s.step_marker if s.segmentation == "prompt" else ""
    for key in ("reasoning_budget", "answer_budget", "problems_in_flight", "judge_rollouts", "keep_top_k"):
        if getattr(s, key) < 1:
            raise ConfigError(f"search.{key}: must be >= 1, got {getattr(s, key)}")
    if not config.teachers:
        raise ConfigError("teachers: at least one teacher is required (K >= 1)")
    names = set()
    for i, teacher in enumerate(config.teachers):
        _validate_model(teacher, f"teachers.{i}")
        if teacher.name in names:
            raise ConfigError(f"teachers.{i}.name: duplicate teacher name {teacher.name!r}")
        names.add(teacher.name)
    _validate_model(config.meta_prover, "meta_prover")
    if config.integrator is not None:
        _validate_model(config.integrator, "integrator")
    if config.prm is not None:
        _validate_model(config.prm, "prm")
    g = config.grading
    if g.method not in GRADING_METHODS:
        raise ConfigError(f"grading.method: {g.method!r} is not one of {', '.join(GRADING_METHODS)}")
    if (g.method == "judge") != (g.judge is not None):
        raise ConfigError("grading.judge: set a judge model exactly when grading.method is judge")
    if g.judge is not None:
        _validate_model(g.judge, "grading.judge")
    missing = [key for key in ("{question}", "{reference}", "{response}") if key not in g.prompt]
    if missing:
        raise ConfigError(f"grading.prompt: must contain {', '.join(missing)}")
    if g.max_tokens < 1:
        raise ConfigError(f"grading.max_tokens: must be >= 1, got {g.max_tokens}")
    if s.teacher_schedule is not None:
        _validate_schedule(s.teacher_schedule, [t.name for t in config.teachers])
    d = config.data
    if d.limit is not None and d.limit < 1:
        raise ConfigError(f"data.limit: must be >= 1, got {d.limit}")
    if d.shard is not None:
        parse_shard(d.shard)


def _validate_schedule(t: TeacherScheduleConfig, teachers: list[str]) -> None:
    where = "search.teacher_schedule"
    if t.table is not None:
        if t.table_from is not None:
            raise ConfigError(f"{where}: set table or table_from, not both")
        t.table = {_phase(key, f"{where}.table"): names for key, names in t.table.items()}  # a command-line override gives "0"
        for phase, names in t.table.items():
            if not isinstance(names, list) or not names:
                raise ConfigError(f"{where}.table.{phase}: expected a list of teacher names, got {names!r}")
            unknown = [n for n in names if n not in teachers]
            if unknown:
                raise ConfigError(f"{where}.table.{phase}: {unknown[0]!r} is not a teacher (teachers: {', '.join(teachers)})")
    if t.by not in SCHEDULE_POSITIONS:
        raise ConfigError(f"{where}.by: {t.by!r} is not one of {', '.join(SCHEDULE_POSITIONS)}")
    for key in ("width", "calibration", "min_kept"):
        if getattr(t, key) < 1:
            raise ConfigError(f"{where}.{key}: must be >= 1, got {getattr(t, key)}")
    if not 0 < t.coverage <= 1:
        raise ConfigError(f"{where}.coverage: must be in (0, 1], got {t.coverage}")
    if t.table_from is not None and not (Path(t.table_from) / "records.jsonl").is_file():
        raise ConfigError(f"{where}.table_from: {t.table_from} is not a cord run directory (no records.jsonl)")


def _phase(key: Any, where: str) -> int:
    if isinstance(key, bool) or not (isinstance(key, int) or (isinstance(key, str) and key.isdigit())) or int(key) < 0:
        raise ConfigError(f"{where}: a phase is a whole number >= 0, got {key!r}")
    return int(key)


def parse_shard(spec: str, where: str = "data.shard") -> tuple[int, int]:
    """`"I/N"` -> (I, N) with 0 <= I < N."""
    index, _, count = str(spec).partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise ConfigError(f"{where}: expected I/N (e.g. 0/4), got {spec!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"{where}: expected I/N with 0 <= I < N, got {spec!r}")
    return i, n


def _validate_model(m: ModelConfig, where: str) -> None:
    if not m.model:
        raise ConfigError(f"{where}.model: must name a model")
    if not m.name:
        m.name = Path(m.model.split(":", 1)[-1]).name
    complaint = ENGINES.unknown(m.engine, f"{where}.engine")
    if complaint:
        raise ConfigError(complaint)
    if m.temperature < 0:
        raise ConfigError(f"{where}.temperature: must be >= 0, got {m.temperature}")
    if not 0 < m.top_p <= 1:
        raise ConfigError(f"{where}.top_p: must be in (0, 1], got {m.top_p}")
    if m.max_step_tokens < 1:
        raise ConfigError(f"{where}.max_step_tokens: must be >= 1, got {m.max_step_tokens}")
    if m.scoring not in SCORING_METHODS:
        raise ConfigError(f"{where}.scoring: {m.scoring!r} is not one of {', '.join(SCORING_METHODS)}")
