"""Typed configuration: pydantic models that check themselves and fill their defaults whenever they
are built (from YAML, from dotted command-line overrides, or in Python) and on every assignment,
with one-line errors that name the field.

A run is described whole by one `Config`; `config.yaml` in the output directory is
`to_dict(config)`, so a run can be reproduced and resumed from it. What only one strategy or one
engine uses is checked by that class (`Strategy.prepare`, `Engine.check`) before any model loads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from .prompts import ANSWER_END, ANSWER_LEAD, JUDGE_PROMPT, REASONING_INSTRUCTION, STEP_INSTRUCTION, STEP_MARKER
from .registry import ENGINES, SELECTIONS, STRATEGIES


class ConfigError(ValueError):
    """Bad configuration or input; the message names the field or file."""


class Located(ValueError):
    """A check made on a whole section that is about one field of it (named relative to the section)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _numbers_as_text(value: Any) -> Any:
    """YAML reads `name: 7` or a command line's `name=7` as a number; a text field takes it as text."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _share(value: float) -> float:
    if not 0 < value <= 1:
        raise ValueError(f"must be in (0, 1], got {value}")
    return value


Text = Annotated[str, BeforeValidator(_numbers_as_text)]
Count = Annotated[int, Field(ge=1)]  # a whole number >= 1
Share = Annotated[float, AfterValidator(_share)]  # in (0, 1]


def one_of(value: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
    return value


class Section(BaseModel):
    """Strict types (an integer is not "3"), unknown keys refused, checked again on assignment; a
    section built or changed in Python fails with the same one-line ConfigError as a YAML file."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)

    def __init__(self, **data: Any):
        if _validating.get():  # a section inside one being validated: its errors join the outer's
            super().__init__(**data)
            return
        with _validation():
            super().__init__(**data)

    def __setattr__(self, name: str, value: Any) -> None:
        if _validating.get():
            super().__setattr__(name, value)
            return
        with _validation():
            super().__setattr__(name, value)


SCORING_METHODS = ("next-token", "prompt-logprobs")
CONTINUATIONS = ("vllm", "prefix")


class TransformersOptions(Section):
    """What the local transformers engine reads (engine: transformers)."""

    max_batch_size: Count = 64  # rows of one decode or scoring pass
    max_batch_tokens: Count = 2**18  # rows x padded length of one scoring pass
    reuse_kv: bool = True  # keep each teacher's and the meta-prover's KV of the accepted prefixes
    kv_cache_bytes: Count | None = None  # per kept-KV store; None: a quarter of the GPU's memory (4 GiB on a CPU)


class OpenAIChatOptions(Section):
    """What the chat-completions engine reads (engine: openai-chat)."""

    # how the partial assistant turn is continued: vLLM's continue_final_message (also SGLang's), or
    # a last assistant message marked "prefix" (DeepSeek's and Moonshot's prefix completion)
    continuation: Text = "vllm"

    _continuation = field_validator("continuation")(lambda v: one_of(v, CONTINUATIONS))


class ModelConfig(Section):
    """One model: a teacher, the meta-prover, an integrator, a PRM or a judge."""

    name: Text = ""  # empty: the last part of `model` (two unnamed teachers of one model must be named)
    model: Text  # local folder, hub id, a .gguf file, or "<source>:<name>" (tiny:, real:) for a packaged model
    gguf_file: Text | None = None  # a GGUF file inside `model` (a folder or hub id), read as transformers reads GGUF
    engine: Text = "transformers"  # a name in cord.registry.ENGINES
    system_prompt: Text | None = None  # None: the one the model's chat template inserts, if any
    step_instruction: Text | None = None  # this model's own step instruction ("" for none); None: search.step_instruction
    temperature: float = Field(0.6, ge=0)  # paper: 0.6 for every teacher
    top_p: Share = 1.0
    max_step_tokens: Count = 1024  # a step that runs longer is cut (recorded as end="cap")
    dtype: Text = "auto"  # auto: bfloat16 on CUDA, float32 on CPU
    device: Text = "auto"
    # server engines (openai, sglang, openai-chat): one URL or several serving the same model (load spread)
    base_url: str | list[str] | None = None
    api_key_env: Text | None = None  # name of the environment variable holding the key
    tokenizer: Text | None = None  # local folder or hub id for the chat template (default: model)
    max_concurrency: Count = 64  # requests in flight per engine
    request_timeout: float = 600.0  # seconds per request
    max_retries: int = Field(8, ge=0)  # with exponential backoff (server restarts, 5xx, timeouts)
    max_model_len: Count | None = None
    # meta-prover on vllm / openai: "next-token" (one 1-token request per answer token, which reads
    # the prefix cache; exact) or "prompt-logprobs" (echo: re-reads the whole trajectory each time)
    scoring: Text = "next-token"
    transformers: TransformersOptions = Field(default_factory=TransformersOptions)  # engine: transformers
    openai_chat: OpenAIChatOptions = Field(default_factory=OpenAIChatOptions)  # engine: openai-chat
    # engine: vllm only: vllm.LLM(...) arguments, passed as they are (e.g. {tensor_parallel_size: 4})
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _options_given_as_engine_kwargs(cls, data: Any) -> Any:
        """Before typed options, engine_kwargs carried them too (config.yaml of older runs, recipes)."""
        if not isinstance(data, dict) or not isinstance(data.get("engine_kwargs"), dict):
            return data
        data, kwargs = dict(data), dict(data["engine_kwargs"])
        engine = data.get("engine", "transformers")
        section, keys = {"transformers": ("transformers", TransformersOptions), "openai-chat": ("openai_chat", OpenAIChatOptions)}.get(
            engine, (None, None)
        )
        if section and isinstance(data.get(section, {}), dict):
            moved = {k: kwargs.pop(k) for k in list(kwargs) if k in keys.model_fields}
            if moved:
                data[section] = {**data.get(section, {}), **moved}
                data["engine_kwargs"] = kwargs
        return data

    @field_validator("model")
    @classmethod
    def _names_a_model(cls, value: str) -> str:
        if not value:
            raise ValueError("must name a model")
        return value

    _engine = field_validator("engine")(lambda v: one_of(v, ENGINES.names()))
    _scoring = field_validator("scoring")(lambda v: one_of(v, SCORING_METHODS))

    @field_validator("base_url", mode="before")
    @classmethod
    def _urls(cls, value: Any) -> Any:
        if value is None or isinstance(value, str) or (isinstance(value, list) and all(isinstance(u, str) for u in value)):
            return value
        raise ValueError(f"expected a URL or a list of URLs, got {value!r}")

    @model_validator(mode="after")
    def _named(self) -> ModelConfig:
        if not self.name:
            self.name = Path(self.model.split(":", 1)[-1]).name
        return self


SCHEDULE_POSITIONS = ("step", "tokens")


class TeacherScheduleConfig(Section):
    """Beyond the paper, opt-in (cord, greedy): which teachers propose at each phase of a
    trajectory, from each teacher's hit rate by position (the paper's Figure 2). See
    cord/search/teacher_schedule.py."""

    by: Text = "step"  # a phase is a step index (step) or reasoning tokens so far (tokens)
    width: Count = 1  # steps or tokens per phase
    # the first problems run with every teacher; the steps their beams kept fit the table
    calibration: Count = 32
    # per phase: the fewest teachers that between them proposed this share of the kept steps
    coverage: Share = 0.9
    min_kept: Count = 16  # a phase with fewer kept steps in calibration keeps every teacher
    table_from: Text | None = None  # fit the table from an earlier run directory instead (no calibration)
    # or write it by hand (e.g. from run.log), no calibration: phase -> the teachers that propose
    # there, e.g. {0: [qwq], 1: [qwq, r1]}; a phase not listed asks every teacher
    table: dict[int, list[str]] | None = None

    _by = field_validator("by")(lambda v: one_of(v, SCHEDULE_POSITIONS))

    @field_validator("table", mode="before")
    @classmethod
    def _phases(cls, table: Any) -> Any:
        """Phase keys as whole numbers (a command-line override gives "0"); each a list of names."""
        if not isinstance(table, dict):
            return table
        out = {}
        for key, names in table.items():
            if isinstance(key, bool) or not (isinstance(key, int) or (isinstance(key, str) and key.isdigit())) or int(key) < 0:
                raise ValueError(f"a phase is a whole number >= 0, got {key!r}")
            if not isinstance(names, list) or not names:
                raise Located(str(key), f"expected a list of teacher names, got {names!r}")
            out[int(key)] = names
        return out

    @model_validator(mode="after")
    def _one_source(self) -> TeacherScheduleConfig:
        if self.table is not None and self.table_from is not None:
            raise ValueError("set table or table_from, not both")
        if self.table_from is not None and not (Path(self.table_from) / "records.jsonl").is_file():
            raise Located("table_from", f"{self.table_from} is not a cord run directory (no records.jsonl)")
        return self


SEGMENTATIONS = ("prompt", "linebreak", "prefix")
MCTS_ROLLOUTS = ("teacher", "greedy")


class SearchConfig(Section):
    method: Text = "cord"  # a name in cord.registry.STRATEGIES: cord | greedy | curation | integration | mcts
    beam_size: Count = 4  # B (paper: 4); greedy is B = 1
    # false (the default): a finished trajectory leaves the beam, which narrows to B minus the
    # finished; true: the beam keeps B live prefixes until B trajectories have finished
    keep_beam_width: bool = False
    # finished trajectories kept per record, best first: the chosen one plus keep_top_k - 1
    # `alternatives` (each with its own final answer), e.g. for `cord export --format dpo`
    keep_top_k: Count = 1
    # cord / greedy: each chosen step keeps the candidates that lost to it (shown by `cord report`)
    keep_candidates: bool = False
    # curation / integration / mcts: complete trajectories per teacher (default B, the paper's
    # equal budget; 2B gives "Curation x2")
    rollouts: Count | None = None
    reasoning_budget: Count = 16384  # paper: 16,384 reasoning + 4,096 answer tokens
    answer_budget: Count = 4096
    segmentation: Text = "prompt"  # prompt (### Step) | linebreak | prefix
    step_marker: Text = STEP_MARKER
    # appended to the question in every model's user turn (teachers and meta-prover); "" for none.
    # Unless set: STEP_INSTRUCTION (asks for "### Step k.") with prompt segmentation,
    # REASONING_INSTRUCTION (no step format) with linebreak and prefix
    step_instruction: Text | None = STEP_INSTRUCTION
    # what opens the first step after <think>; unless set: the step marker with prompt
    # segmentation, else nothing
    prefill: Text | None = None
    # what the meta-prover reads between the reasoning (after </think>) and the answer it scores;
    # for open-ended tasks whose target is a reference paragraph, e.g. " The answer is: "
    answer_lead: Text = ANSWER_LEAD
    # scored right after the answer, so S is the probability of the whole answer ("2"), not of every
    # answer that starts with it ("22", "204"); "" for a reference paragraph that ends its own sentence
    answer_end: Text = ANSWER_END
    # how candidates are ranked (cord.registry.SELECTIONS; cord and greedy only): perplexity (the
    # method) or an ablation (paper Table 5):
    # random, max_length, binary_judgment (judge answers after a "time is up" cue, graded,
    # averaged over judge_rollouts), step_judge (the meta-prover asked whether the last step is
    # correct, p(Yes): a generic LLM step judge standing in for a PRM, not a trained PRM)
    selection: Text = "perplexity"
    judge_rollouts: Count = 10
    judge_temperature: float = 0.6
    # selection "prm": each step is followed by prm_step_tag; the score is p(good) / (p(good) + p(bad))
    # of the PRM's next token after the last tag (Math-Shepherd's format by default)
    prm_step_tag: Text = " \u043a\u0438"
    prm_good: Text = "+"
    prm_bad: Text = "-"
    mcts_exploration: float = 1.0  # UCB constant c
    # who completes an MCTS child in a simulation (the paper does not say): greedy (every teacher
    # proposes each step, S keeps the best) or teacher (its proposer alone, one request); greedy
    # by measurement (docs/fidelity.md): with teacher, MCTS fell below greedy decoding
    mcts_rollout: Text = "greedy"
    # null (the paper): every teacher proposes after every prefix; set (e.g. `{}`): see TeacherScheduleConfig
    teacher_schedule: TeacherScheduleConfig | None = None
    problems_in_flight: Count = 16  # problems advanced together so engine calls batch across them
    seed: int = 0

    _method = field_validator("method")(lambda v: one_of(v, STRATEGIES.names()))
    _selection = field_validator("selection")(lambda v: one_of(v, SELECTIONS.names()))
    _segmentation = field_validator("segmentation")(lambda v: one_of(v, SEGMENTATIONS))
    _mcts_rollout = field_validator("mcts_rollout")(lambda v: one_of(v, MCTS_ROLLOUTS))

    _derived: set[str] = PrivateAttr(default_factory=set)  # keys filled in from the segmentation

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("prefill", "step_instruction"):
            self._derived.discard(name)  # set now: no longer follows the segmentation
        super().__setattr__(name, value)

    @model_validator(mode="after")
    def _by_segmentation(self) -> SearchConfig:
        """`prefill` and `step_instruction` not set follow the segmentation (also when it changes
        later), so a line-break or prefix run sends no "### Step" instruction: the ablations
        compare segmenters, not instructions. Filled in when the config is built, so config.yaml
        states them."""
        prompt = self.segmentation == "prompt"
        follows = {"prefill": self.step_marker if prompt else "", "step_instruction": STEP_INSTRUCTION if prompt else REASONING_INSTRUCTION}
        for key, value in follows.items():
            if key in self._derived or key not in self.model_fields_set or (key == "prefill" and self.prefill is None):
                self.__dict__[key] = value
                self._derived.add(key)
        return self


class TinyTasksConfig(Section):
    """Generated tiny arithmetic problems (the embedded default's data; the `tiny` plug-in)."""

    n: Count = 50
    seed: int = 0
    mix: Text = "mixed"  # mixed (two or more skills), or one skill: addsub, mul, div
    steps: Count | None = None  # operations per problem; None: 2 to 4


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


class DataConfig(Section):
    tiny: TinyTasksConfig | None = None  # generate problems instead of reading a file
    path: Text | None = None  # JSONL, JSON or parquet file
    dataset: Text | None = None  # Hugging Face dataset name (datasets.load_dataset)
    subset: Text | None = None
    split: Text = "train"
    id_field: Text = "id"
    question_field: Text = "problem"
    answer_field: Text = "answer"
    limit: Count | None = None
    shard: Text | None = None  # "I/N": every N-th problem from the I-th (after limit); see cord/shards.py

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_shard(value, "")
            except ConfigError as err:
                raise ValueError(str(err).removeprefix(": ")) from None
        return value


GRADING_METHODS = ("math", "judge", "none")


class GradingConfig(Section):
    """How a record's final answer is graded: math (math-verify equivalence with the reference),
    judge (a model compares the response with the reference: open-ended tasks), none (ungraded:
    `correct` is null, export with --all)."""

    method: Text = "math"
    judge: ModelConfig | None = None  # grading.method judge: any engine; temperature 0 is usual
    prompt: Text = JUDGE_PROMPT  # with {question}, {reference} and {response}
    max_tokens: Count = 1024  # the judge's reply

    _method = field_validator("method")(lambda v: one_of(v, GRADING_METHODS))

    @field_validator("prompt")
    @classmethod
    def _fields(cls, prompt: str) -> str:
        missing = [key for key in ("{question}", "{reference}", "{response}") if key not in prompt]
        if missing:
            raise ValueError(f"must contain {', '.join(missing)}")
        return prompt

    @model_validator(mode="after")
    def _judge(self) -> GradingConfig:
        if (self.method == "judge") != (self.judge is not None):
            raise Located("judge", "set a judge model exactly when grading.method is judge")
        return self


class Config(Section):
    teachers: list[ModelConfig]
    meta_prover: ModelConfig
    integrator: ModelConfig | None = None  # method "integration" (paper: GPT-5-mini)
    prm: ModelConfig | None = None  # selection "prm": a process reward model (e.g. peiyi9979/math-shepherd-mistral-7b-prm)
    search: SearchConfig = Field(default_factory=SearchConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    grading: GradingConfig = Field(default_factory=GradingConfig)
    output_dir: Text = "runs/cord"

    @field_validator("teachers")
    @classmethod
    def _teachers(cls, teachers: list[ModelConfig]) -> list[ModelConfig]:
        if not teachers:
            raise ValueError("at least one teacher is required (K >= 1)")
        return teachers

    @model_validator(mode="after")
    def _across_sections(self) -> Config:
        names: list[str] = []
        for i, teacher in enumerate(self.teachers):
            if teacher.name in names:
                raise Located(f"teachers.{i}.name", f"duplicate teacher name {teacher.name!r}")
            names.append(teacher.name)
        schedule = self.search.teacher_schedule
        for phase, chosen in ((schedule.table or {}) if schedule else {}).items():
            unknown = [n for n in chosen if n not in names]
            if unknown:
                where = f"search.teacher_schedule.table.{phase}"
                raise Located(where, f"{unknown[0]!r} is not a teacher (teachers: {', '.join(names)})")
        return self

    def step_instruction_for(self, model: ModelConfig) -> str | None:
        return self.search.step_instruction if model.step_instruction is None else model.step_instruction


# ---------------------------------------------------------------------------
# building, loading, one-line errors


def _message(error: dict) -> tuple[str, str]:
    """(dotted field, what is wrong) of one pydantic error, in cord's words."""
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    where = ".".join(str(part) for part in error["loc"])
    cause = ctx.get("error")
    if isinstance(cause, Located):
        return ".".join(p for p in (where, cause.field) if p), str(cause)
    if value is None and kind.endswith("_type"):
        return where, "must not be empty"
    texts = {
        "int_type": f"expected an integer, got {value!r}",
        "bool_type": f"expected true/false, got {value!r}",
        "float_type": f"expected a number, got {value!r}",
        "string_type": f"expected a string, got {value!r}",
        "list_type": f"expected a list, got {type(value).__name__}",
        "dict_type": f"expected a mapping, got {type(value).__name__}",
        "model_type": f"expected a mapping, got {type(value).__name__}",
        "missing": "required",
        "greater_than_equal": f"must be >= {ctx.get('ge', 0):g}, got {value!r}",
    }
    return where, texts.get(kind, str(cause) if cause is not None else error["msg"])


def error_line(err: ValidationError, where: str = "") -> str:
    """The first problem of a validation error as one line naming the field; unknown keys all at once."""
    errors = err.errors()
    prefix = f"{where}." if where else ""
    unknown = [prefix + ".".join(str(p) for p in e["loc"]) for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        return f"unknown config key(s): {', '.join(unknown)}"
    field, text = _message(errors[0])
    field = prefix + field if field else where
    return f"{field}: {text}" if field else text


_validating: ContextVar[bool] = ContextVar("cord_config_validating", default=False)


@contextlib.contextmanager
def _validation(where: str = "") -> Iterator[None]:
    """While a section is validated, the sections inside it report to it; a failure leaves as one
    ConfigError line."""
    token = _validating.set(True)
    try:
        yield
    except ValidationError as err:
        raise ConfigError(error_line(err, where)) from None
    finally:
        _validating.reset(token)


def from_dict(cls: type[Section], data: Any, where: str = "") -> Any:
    """`cls` built from plain data (YAML, JSON, a dump), checked; a ConfigError names the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    with _validation(where):
        return cls.model_validate(data)


def to_dict(model: BaseModel) -> dict:
    return model.model_dump()


def checked(config: Config) -> Config:
    """The config built again from its data: checks made across sections see any assignment made
    since it was built (e.g. a teacher renamed into a duplicate)."""
    return from_dict(Config, to_dict(config))


def _parse_scalar(text: str) -> Any:
    """Command-line values are YAML scalars: 2 -> int, 0.5 -> float, null -> None."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(data: dict, dotted: str) -> None:
    """Apply `a.b.0.c=value` to a nested dict/list in place (missing sections are made)."""
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


def read_yaml(path: str | Path) -> dict:
    """A YAML file's top-level mapping; one-line errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load(cls: type[Section], path: str | Path | None = None, overrides: list[str] = ()) -> Any:
    """`cls` from a YAML file (optional) and dotted `key=value` overrides, checked."""
    data = read_yaml(path) if path is not None else {}
    for item in overrides:
        apply_override(data, item)
    return from_dict(cls, data)


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    return load(Config, path, overrides)
