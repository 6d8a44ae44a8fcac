"""A whole run: its models, search, data and grading in one `Config`, which `config.yaml` in the
output directory holds as `to_dict(config)`, so a run can be reproduced and resumed from it."""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PrivateAttr, SerializeAsAny, field_validator, model_validator

from ..errors import ConfigError
from ..prompts import JUDGE_PROMPT
from ..registry import PROBLEM_GENERATORS
from .base import Count, Located, Section, Text, nested
from .model import ModelConfig
from .search import SearchConfig


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


@dataclass(frozen=True)
class GeneratedBy:
    """Validates `data.<name>` with the section of the problem generator registered as `name`: a
    plug-in's own section, reached through cord.registry.PROBLEM_GENERATORS, never imported here."""

    name: str

    def section(self) -> type[Section]:
        return PROBLEM_GENERATORS.load(self.name)

    def __call__(self, value: Any) -> Any:
        return value if value is None else nested(self.section(), value)


AnswerFormat = Literal["raw", "gsm8k", "boxed", "regex"]  # data/answers.py takes the final answer each way
ANSWER_FORMATS: tuple[str, ...] = typing.get_args(AnswerFormat)


class DataConfig(Section):
    """The problems: a file, a hub dataset, or generated ones, mapped to id / question / answer."""

    tiny: Annotated[SerializeAsAny[Section] | None, BeforeValidator(GeneratedBy("tiny"))] = Field(
        None, description="generate problems with the tiny plug-in instead of reading a file (data.tiny.* below)"
    )
    path: Text | None = Field(None, description="a .jsonl, .json or .parquet file of problems")
    dataset: Text | None = Field(None, description="a Hugging Face dataset name or folder (datasets.load_dataset)")
    subset: Text | None = Field(None, description="the dataset's configuration name")
    split: Text = Field("train", description="the dataset's split")
    id_field: Text = Field("id", description="the field holding a problem's id (its row number when missing)")
    question_field: Text = Field("problem", description="the field holding the question")
    answer_field: Text = Field("answer", description="the field holding the reference answer")
    answer_format: AnswerFormat = Field(
        "raw",
        description="how to take the final answer from answer_field: raw (as it is), gsm8k (after the last ####), boxed "
        "(the last \\boxed{...}), regex (the first group of answer_regex); a row with none is refused",
    )
    answer_regex: Text | None = Field(None, description='answer_format regex: a regex with a group, e.g. "The answer is:? (.+)"')
    limit: Count | None = Field(None, description="the first N problems")
    shard: Text | None = Field(None, description='"I/N": every N-th problem from the I-th (after limit); see cord/shards.py')
    # Whether answers are graded by math-verify (set by `Config` from grading.method): a judge reads
    # whole reference paragraphs, so only then is a long raw answer worth a warning (data/answers.py).
    _math_graded: bool = PrivateAttr(True)

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_shard(value, "")
            except ConfigError as err:
                raise ValueError(str(err).removeprefix(": ")) from None
        return value

    @field_validator("answer_regex")
    @classmethod
    def _answer_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                groups = re.compile(value).groups
            except re.error as err:
                raise ValueError(f"not a regular expression ({err})") from None
            if not groups:
                raise ValueError("needs a group, e.g. (.+), holding the answer")
        return value

    @model_validator(mode="after")
    def _regex_with_its_format(self) -> DataConfig:
        if (self.answer_format == "regex") != (self.answer_regex is not None):
            raise Located("answer_regex", "set answer_regex exactly when data.answer_format is regex")
        return self


class GradingConfig(Section):
    """How a record's final answer is graded: math (math-verify equivalence with the reference),
    judge (a model compares the response with the reference: open-ended tasks), none (ungraded:
    `correct` is null, export with --all)."""

    method: Literal["math", "judge", "none"] = Field("math", description="math (math-verify), judge (a model), none (ungraded)")
    judge: ModelConfig | None = Field(None, description="grading.method judge: any engine; temperature 0 is usual")
    prompt: Text = Field(JUDGE_PROMPT, description="the judge's prompt, with {question}, {reference} and {response}")
    max_tokens: Count = Field(1024, description="the judge's reply, in tokens")

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
    """A whole run. What only one strategy or one engine uses is checked by that class
    (`Strategy.prepare`, `Engine.check`) before any model loads."""

    teachers: list[ModelConfig] = Field(description="the K teachers that propose steps (each a model section)")
    meta_prover: ModelConfig = Field(description="the model whose predictive perplexity S scores every candidate")
    integrator: ModelConfig | None = Field(None, description='method "integration": the model that merges the traces (paper: GPT-5-mini)')
    prm: ModelConfig | None = Field(
        None, description='selection "prm": a process reward model (e.g. peiyi9979/math-shepherd-mistral-7b-prm)'
    )
    search: SearchConfig = Field(default_factory=SearchConfig, description="the search strategy and its settings")
    data: DataConfig = Field(default_factory=DataConfig, description="the problems")
    grading: GradingConfig = Field(default_factory=GradingConfig, description="how final answers are graded")
    output_dir: Text = Field("runs/cord", description="the run directory (records.jsonl, config.yaml, summary.json, run.log)")
    max_cost: float | None = Field(
        None,
        gt=0,
        description="USD: the run stops once its records cost this much (the models' prices); finished problems are kept, "
        "and the same command with a higher max_cost resumes",
    )
    max_failure_rate: float | None = Field(
        0.5,
        gt=0,
        le=1,
        description="the run stops once more than this share of the problems it ran failed (counted from the "
        "failure_rate_after-th); finished work is kept, and the same command with --retry-failed resumes; null: never stops",
    )
    failure_rate_after: Count = Field(20, description="problems a run finishes before max_failure_rate applies")

    @field_validator("teachers")
    @classmethod
    def _teachers(cls, teachers: list[ModelConfig]) -> list[ModelConfig]:
        if not teachers:
            raise ValueError("at least one teacher is required (K >= 1)")
        return teachers

    @model_validator(mode="after")
    def _across_sections(self) -> Config:
        self.data._math_graded = self.grading.method == "math"
        names: list[str] = []
        for i, teacher in enumerate(self.teachers):
            if teacher.name in names:
                raise Located(f"teachers.{i}.name", f"duplicate teacher name {teacher.name!r}")
            names.append(teacher.name)
        if self.max_cost is not None and not any(model.price for _, model in self.models()):
            raise Located("max_cost", "needs a price on at least one model (e.g. teachers.0.price: {input: 0.5, output: 2.0})")
        schedule = self.search.teacher_schedule
        for phase, chosen in ((schedule.table or {}) if schedule else {}).items():
            unknown = [n for n in chosen if n not in names]
            if unknown:
                where = f"search.teacher_schedule.table.{phase}"
                raise Located(where, f"{unknown[0]!r} is not a teacher (teachers: {', '.join(names)})")
        return self

    def step_instruction_for(self, model: ModelConfig) -> str | None:
        return self.search.step_instruction if model.step_instruction is None else model.step_instruction

    def models(self) -> list[tuple[str, ModelConfig]]:
        """(where, section) of every model the run loads: teachers, meta-prover, integrator, PRM, judge."""
        out = [(f"teachers.{i}", t) for i, t in enumerate(self.teachers)] + [("meta_prover", self.meta_prover)]
        out += [(key, getattr(self, key)) for key in ("integrator", "prm") if getattr(self, key) is not None]
        return out + ([("grading.judge", self.grading.judge)] if self.grading.judge is not None else [])
