"""Who writes the reasoning and what has been written: a `Teacher` (a model and the requests it is
sent) and a `Trajectory` (the steps accepted so far)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ModelConfig
from ..engines import Engine, GenerateRequest
from ..engines.base import sampling
from ..prompts import teacher_prompt, user_turn
from ..records import Step
from .scheduler import BatchingEngine


class Teacher:
    """A model that writes reasoning: a teacher (or the integrator, which writes a merged trace)."""

    def __init__(self, cfg: ModelConfig, engine: BatchingEngine | Engine, step_instruction: str | None = None, role: str = "teacher"):
        """A teacher's steps and tokens are counted under its name; another role's as "role:name"."""
        self.cfg, self.engine, self.role = cfg, engine, role
        self.name = cfg.name if role == "teacher" else f"{role}:{cfg.name}"
        self.step_instruction = step_instruction
        self._prompts: dict[str, str] = {}

    def chat(self, question: str) -> str:
        """The model's chat template around the question and the step instruction."""
        if question not in self._prompts:
            self._prompts[question] = self.engine.chat_prompt(user_turn(question, self.step_instruction), self.cfg.system_prompt)
        return self._prompts[question]

    def request(self, question: str, steps: tuple[str, ...], opening: str, max_tokens: int, stop, seed) -> GenerateRequest:
        """The next step (or the rest) after the accepted `steps`, opened with `opening`."""
        pieces = (teacher_prompt(self.chat(question), ""), *steps, opening)
        return GenerateRequest(
            prompt="".join(pieces),
            max_tokens=max(1, max_tokens),
            stop=tuple(stop),
            seed=seed,
            pieces=pieces,
            **sampling(self.cfg),
        )


@dataclass
class Trajectory:
    """Reasoning steps accepted so far, and what the next step opens with."""

    steps: list[Step] = field(default_factory=list)
    tokens: int = 0
    score: float = 0.0  # the selection score (S unless a selection ablation is on)
    opening: str = ""  # what opens the next step
    finished: bool = False
    perplexity: float | None = None  # S when the selection score is something else

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(s.text for s in self.steps)

    @property
    def reasoning(self) -> str:
        return "".join(self.texts)
