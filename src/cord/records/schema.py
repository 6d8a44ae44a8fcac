"""The record schema: one `Record` per problem, a line of records.jsonl.

Every reader (resume, `cord evaluate`, export, reports) goes through `Record.from_dict`, which
also reads files written before `schema_version` existed (version 0: optional keys absent).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

# 1: `schema_version` written; every key below always present (null where it does not apply);
#    steps carry `category`. 0: files from before (no version; valid_trace, failed,
#    raw_integration and step categories only where they applied). 2: `alternatives` and
#    `judge_reply` written; `correct` may be null (grading.method none, or a judge reply with no
#    verdict); steps carry `candidates` (null unless search.keep_candidates). 3: `kept_steps`
#    (cord, greedy) and `schedule` (search.teacher_schedule) written. 4: `answer_fallback` (record
#    and alternatives) and `budget.empty_steps` written. 5: `answer_only_perplexity` (record and
#    alternatives) written. 6: `quality` (record and alternatives: records/quality.py) and `index`
#    (the problem's place in the input; first after schema_version on the line) written. 7: `cost`
#    and `tokens.prompts` / `tokens.cached` / `tokens.meta_prover_read` (what cost is priced on). 8: steps
#    carry `proposers` (cord, greedy: every teacher that proposed the step's text; absent: the writer alone).
SCHEMA_VERSION = 8


@dataclass
class Quality:
    """What the quality pass found in one trajectory (records/quality.py, which runs the pass)."""

    reasoning_end: str | None = None  # think | eos | budget | cap | marker (how its last step ended)
    answer: str = "teacher"  # teacher | prefilled | missing
    repeated_share: float = 0.0
    empty_steps: int = 0
    cut_steps: list[dict[str, Any]] = field(default_factory=list)  # {"step", "teacher", "continued_by"}
    stray_tags: list[str] = field(default_factory=list)  # "<think> in reasoning", ...
    boxed_computation: bool = False
    reasoning_tokens: int = 0
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Quality | None:
        return None if data is None else cls(**data)


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
    # cord, greedy: every teacher that proposed this very text after the same prefix, in proposal
    # order; `teacher` is the one of them that wrote on (search/cord.py `writer`). Null: `teacher` alone
    proposers: list[str] | None = None

    @property
    def credit(self) -> dict[str, float]:
        """Each proposer's share of the step: 1/n to each of its n proposers (the paper's Figure 2
        and `selected_steps_by_teacher` count these)."""
        names = self.proposers or [self.teacher]
        return {name: 1 / len(names) for name in names}


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
    prompts: dict[str, int] = field(default_factory=dict)  # prompt tokens sent, per writer (teachers, integrator)
    cached: dict[str, int] = field(default_factory=dict)  # of those, read from the server's prefix cache (as it reported)
    meta_prover_read: int = 0  # tokens the meta-prover read (the scored texts); read - computed came from its cache


@dataclass
class Budget:
    steps_proposed: dict[str, int] = field(default_factory=dict)
    trajectories: dict[str, int] = field(default_factory=dict)  # complete trajectories written
    meta_prover_calls: int = 0
    # how every proposed step ended, per teacher: {teacher: {marker|think|cap|eos|budget: count}}
    step_ends: dict[str, dict[str, int]] = field(default_factory=dict)
    # proposed steps with nothing in them (only the step marker: search/segment.py), per teacher
    empty_steps: dict[str, int] = field(default_factory=dict)


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
    answer_only_perplexity: float | None = None  # as Record.answer_only_perplexity
    valid_trace: bool | None = None
    judge_reply: str | None = None
    answer_fallback: str | None = None  # as Record.answer_fallback
    quality: Quality | None = None  # as Record.quality

    @property
    def reasoning(self) -> str:
        return "".join(step.text for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "reasoning": self.reasoning}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alternative:
        data = {k: v for k, v in data.items() if k != "reasoning"}
        steps = [Step(**s) for s in data.get("steps") or []]
        return cls(**{**data, "steps": steps, "quality": Quality.from_dict(data.get("quality"))})


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
    # null: the teacher's own answer; "prefilled": its answer was empty or had nothing to grade, so it
    # was asked again with "The final answer is \boxed{" written for it (final_answer starts there)
    answer_fallback: str | None = None
    predicted: str | None = None  # the answer extracted from final_answer
    correct: bool | None = False  # math-verify equivalence with `answer` (grading.method); None: not graded
    predictive_perplexity: float | None = None  # S of the chosen reasoning
    # S over the answer's tokens alone (the paper's Eq. 3), where S above also scores
    # search.answer_end after the answer: set beside the paper's figures; null when they are the same
    answer_only_perplexity: float | None = None
    tokens: Tokens = field(default_factory=Tokens)
    budget: Budget = field(default_factory=Budget)
    timing: Timing = field(default_factory=Timing)
    seconds: float = 0.0  # wall time of the problem, start to record
    cost: float | None = None  # USD at the models' prices (null: no model has a price)
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
    # the quality pass (records/quality.py): how the reasoning closed, who wrote the answer, loops,
    # empty and cut steps, stray tags; null in records written before it existed
    quality: Quality | None = None
    index: int | None = None  # the problem's place in the input (readers present records in this order)
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept

    @property
    def reasoning(self) -> str:
        """The chosen reasoning: the steps joined (ends with </think> when it closed)."""
        return "".join(step.text for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        # index first: a reader that only orders records finds it without parsing the whole line
        data: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "index": self.index}
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
                answer_fallback=data.get("answer_fallback"),
                predicted=data.get("predicted"),
                correct=None if data.get("correct", False) is None else bool(data.get("correct", False)),
                predictive_perplexity=data.get("predictive_perplexity"),
                answer_only_perplexity=data.get("answer_only_perplexity"),
                tokens=Tokens(**data.get("tokens", {})),
                budget=Budget(**data.get("budget", {})),
                timing=Timing(**data.get("timing", {})),
                seconds=data.get("seconds", 0.0),
                cost=data.get("cost"),
                valid_trace=data.get("valid_trace"),
                failed=data.get("failed"),
                raw_integration=data.get("raw_integration"),
                judge_reply=data.get("judge_reply"),
                alternatives=[Alternative.from_dict(a) for a in data.get("alternatives") or []],
                kept_steps=None if data.get("kept_steps") is None else [KeptStep(**k) for k in data["kept_steps"]],
                schedule=data.get("schedule"),
                quality=Quality.from_dict(data.get("quality")),
                index=data.get("index"),
                schema_version=version,
                extra={k: v for k, v in data.items() if k not in known},
            )
        except TypeError as err:  # an unexpected key inside steps / tokens / budget / timing / alternatives
            raise ConfigError(f"{where}: {err}") from None
