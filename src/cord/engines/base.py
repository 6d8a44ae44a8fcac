"""The engine interface: every backend (transformers, vLLM, servers) implements these three calls.

- `chat_prompt`: the model's own chat template with the generation prompt, as text.
- `generate`: a batch of continuations, each with its own sampling, stop strings and token cap.
- `score`: teacher-forced log-probabilities of a target after a context, for a batch.

Engines batch whatever they are given; the search strategies hand them every request of a
round across all problems in flight at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str
    max_tokens: int
    temperature: float = 0.6
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class Completion:
    text: str  # generated text, cut before the stop string that ended it
    tokens: int  # tokens generated (including those of the stop string)
    finish: str  # "stop" (a stop string), "length" (token cap) or "eos" (end of turn)
    stop: str | None = None  # the stop string that ended it


@dataclass(frozen=True)
class ScoreRequest:
    """Log-probabilities of `target` after the concatenated `context` pieces.

    Pieces are the natural cache units (prompt, step 1, step 2, ..., the answer lead-in);
    engines may reuse work for a shared leading run of pieces. The last piece is tokenized
    together with the target, so the boundary tokenizes as in running text.
    """

    context: tuple[str, ...]
    target: str


@dataclass
class ScoreResult:
    logprobs: list[float]  # one per target token
    new_tokens: int  # tokens the engine had to compute (after any cache reuse)
    total_tokens: int  # length of the scored sequence


class Engine(ABC):
    name: str = "engine"

    @abstractmethod
    def chat_prompt(self, question: str, system: str | None = None) -> str: ...

    @abstractmethod
    def generate(self, requests: list[GenerateRequest]) -> list[Completion]: ...

    @abstractmethod
    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, str | None]:
    """Cut `text` before the earliest stop string; return (text, stop or None)."""
    best, which = len(text), None
    for stop in stops:
        at = text.find(stop)
        if at != -1 and at < best:
            best, which = at, stop
    return text[:best], which
