"""The engine contract: every backend (transformers, vLLM, servers) implements these calls.

- `chat_prompt`: the model's own chat template with the generation prompt, as text.
- `generate`: a batch of continuations, each with its own sampling, stop strings and token cap.
  A request cut into `pieces` (chat prompt, accepted steps, opening) is tokenized piece by piece,
  so an engine may start it from what it kept of the same leading pieces (the transformers engine
  keeps each teacher's KV of the accepted trajectory; vLLM's prefix cache finds the same tokens).
- `score`: teacher-forced log-probabilities of a target after a context with named parts, for a
  batch. Requests that share `prompt` + `steps` share work: an engine may keep that prefix's
  state (the transformers engine keeps its KV cache) so a candidate costs its own tokens only.
- `from_config` / `check`: build from a `ModelConfig`; refuse settings the engine cannot use.

A plug-in (docs/plugins.md) overrides `generate` for generation and `score` for scoring, and cord
calls exactly those, whatever the batching mode: every call of the search goes through
`call_engine`, which checks the answer (a list of one `Completion`, or one `ScoreResult`, per
request, in order) and stops the run with one line naming the engine otherwise.

Engines batch whatever they are given. An engine marked `concurrent` (a server) or `continuous` (a
local engine whose requests join a running batch: transformers, offline vLLM) is called from each
problem's thread at once. Otherwise the scheduler (cord.search.scheduler) hands a local engine the
calls of every problem in flight that is ready as one batch, one batch at a time, with the
engine's `whole_batches` set for the run (a continuous engine then runs each call to its end);
local engines whose `placement`s (devices) do not meet run their batches at the same time, each
from a thread of its own. Adding an engine: one file under `engines/` with a subclass of `Engine`,
and one line in `cord.registry.ENGINES`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import ModelConfig
from ..errors import ConfigError

# Sampling settings a model section may set beyond temperature and top-p; None: not set (the
# engine's own default). Engines say which they apply (`Engine.honours`); `extra_body` as well.
SAMPLING_SETTINGS = ("top_k", "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty")
SAMPLING_FIELDS = ("temperature", "top_p", *SAMPLING_SETTINGS, "extra_body")  # a model section's sampling


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str
    max_tokens: int
    temperature: float = 0.6
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # The prompt cut where earlier work can be reused ("".join(pieces) == prompt): a teacher's
    # chat prompt, each accepted step, the opening. Engines tokenize piece by piece, so each round's
    # prompt extends the last round's tokens exactly (what a prefix cache needs).
    pieces: tuple[str, ...] = ()
    top_k: int | None = None
    min_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    extra_body: dict[str, Any] | None = field(default=None, hash=False)  # server engines: merged into the request JSON

    def sampling_set(self) -> dict[str, Any]:
        """The SAMPLING_SETTINGS this request sets (what an engine passes on besides temperature and top-p)."""
        return {key: value for key in SAMPLING_SETTINGS if (value := getattr(self, key)) is not None}


def sampling(cfg: ModelConfig) -> dict[str, Any]:
    """A model section's sampling, as GenerateRequest fields: what every request it is sent carries."""
    return {key: getattr(cfg, key) for key in SAMPLING_FIELDS}


def request_seed(*key) -> int:
    """A seed in [0, 2**31) from any key of strings and numbers (stable across runs and machines)."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % 2**31


@dataclass
class Completion:
    text: str  # generated text, cut before the stop string that ended it
    tokens: int  # tokens generated (including those of the stop string)
    finish: str  # "stop" (a stop string), "length" (token cap), "eos" (end of turn), "error", or CARRIED
    stop: str | None = None  # the stop string that ended it
    error: str | None = None  # finish "error": why the server refused this one request
    prompt_tokens: int = 0  # tokens of the prompt sent (what a provider prices as input)
    cached_tokens: int = 0  # of those, read from the server's prefix cache (as the server reports; 0 when it does not)


# `Completion.finish` of a request still decoding when a whole batch returned (an engine with
# `whole_batches` set may answer so): the scheduler sends the same request in the engine's next
# batch, where it resumes from where it stopped. See `Engine.whole_batches`.
CARRIED = "carried"


@dataclass(frozen=True)
class ScoreRequest:
    """Log-probabilities of `target` after prompt + steps + candidate + lead_in.

    `prompt` and `steps` are the shared prefix (the cache key: the accepted trajectory), the
    `candidate` is the step being judged, `lead_in` the text between it and the target (e.g.
    "</think> The final answer is "). Pieces are tokenized one by one, except `lead_in` and
    `target`, which are tokenized together so their boundary tokenizes as in running text.
    """

    prompt: str
    steps: tuple[str, ...] = ()
    candidate: str = ""
    lead_in: str = ""
    target: str = ""

    @property
    def prefix(self) -> tuple[str, ...]:
        """The pieces shared with other candidates after the same accepted steps."""
        return (self.prompt, *self.steps)

    @property
    def pieces(self) -> tuple[str, ...]:
        """Every piece tokenized on its own: prompt, steps, candidate."""
        return (*self.prefix, self.candidate)

    @property
    def context(self) -> str:
        return "".join(self.pieces) + self.lead_in


@dataclass
class ScoreResult:
    logprobs: list[float]  # one per target token
    new_tokens: int  # tokens the engine had to compute (after any cache reuse)
    total_tokens: int  # length of the scored sequence
    error: str | None = None  # why this one request could not be scored (its problem fails, the run goes on)


def score_error(reason: str) -> ScoreResult:
    return ScoreResult([], 0, 0, reason)


OPTION_SECTIONS = ("transformers", "openai_chat")  # ModelConfig's typed per-engine options


class Engine(ABC):
    name: str = "engine"
    chat: Any  # engines.chat.ChatTokenizer: the model's tokenizer and chat template, loaded locally
    takes_api_key: bool = False
    can_score: bool = True  # False: it cannot be the meta-prover (no prompt log-probabilities)
    concurrent: bool = False  # True: calls from several problems may run at once (a server batches them)
    # True: a local engine that batches continuously takes calls from several problems at once too,
    # unless search.reproducible asks for whole batches one at a time (`whole_batches`, search/scheduler.py)
    continuous: bool = False
    # Set by the scheduler for a run in which it gathers this engine's calls into whole batches, one
    # at a time: nothing will join a running batch, so a continuous engine runs each call to its end.
    # Such a call may answer a request that is still decoding with `finish` CARRIED (the last few rows
    # of a batch, which would decode nearly alone): the scheduler sends the same request, equal by
    # value, in the engine's next batch, and the engine resumes it there, with that batch's rows.
    whole_batches: bool = False
    model_name: str = ""  # the model as its config names it (set by `load_engine`), for messages
    # The devices a local engine computes on ({"cuda:0", "cuda:1"}); engines whose placements do not
    # meet run their batches at the same time (search/scheduler.py). None: unknown, shares every device.
    placement: frozenset[str] | None = None
    options: str | None = None  # the ModelConfig section of the options this engine reads
    takes_engine_kwargs: bool = False  # engine_kwargs passed on to a library as they are (vllm.LLM)
    local_tokenizer: bool = True  # prompts are rendered with the model's chat template here (False: by the server)
    honours: frozenset[str] = frozenset()  # the SAMPLING_SETTINGS (and extra_body) it applies; a section setting another is refused

    @classmethod
    def files(cls, cfg: ModelConfig) -> tuple[str, ...]:
        """The keys of `cfg` naming what this engine loads here (a folder or hub id to find)."""
        return ("tokenizer", "model") if cfg.tokenizer else ("model",)

    @classmethod
    def where(cls, cfg: ModelConfig) -> str:
        """Where the model runs, as this engine will place it (`cord generate --dry-run` says it)."""
        if cfg.device == "auto":
            return "device: the first GPU if one is visible, else the CPU"
        return f"device: {cfg.device}"

    @classmethod
    def check(cls, cfg: ModelConfig, where: str) -> None:
        """Refuse, before anything loads, settings this engine cannot use (one line naming the field)."""
        if cfg.api_key_env and not cls.takes_api_key:
            raise ConfigError(f"{where}.api_key_env: only server engines take an API key")
        for section in OPTION_SECTIONS:
            value = getattr(cfg, section)
            if section != cls.options and value != type(value)():
                raise ConfigError(f"{where}.{section}: set for engine {cfg.engine!r}, which does not read it")
        for key in (*SAMPLING_SETTINGS, "extra_body"):
            if getattr(cfg, key) is not None and key not in cls.honours:
                only = " (only server engines send request JSON)" if key == "extra_body" else ""
                raise ConfigError(f"{where}.{key}: engine {cfg.engine!r} cannot apply it{only}; leave it unset")
        if cfg.engine_kwargs and not cls.takes_engine_kwargs:
            keys = ", ".join(sorted(cfg.engine_kwargs))
            raise ConfigError(f"{where}.engine_kwargs: {keys} not used by engine {cfg.engine!r} (only vllm takes engine_kwargs)")

    @classmethod  # noqa: B027 - an optional hook
    def check_server(cls, cfg: ModelConfig, where: str) -> None:
        """Just before engines load: the server this engine calls answers (one line naming `where`.base_url)."""

    @classmethod
    @abstractmethod
    def from_config(cls, cfg: ModelConfig, model: str) -> Engine:
        """The engine for `cfg`; `model` is `cfg.model` resolved (tiny:<name> -> its folder)."""

    def chat_prompt(self, question: str, system: str | None = None) -> str:
        return self.chat.chat_prompt(question, system)

    # The model's context in tokens, where the engine knows it (a served model's, once asked).
    context_length: int | None = None

    def prompt_tokens(self, prompt: str) -> int | None:
        """How many tokens a rendered prompt takes (None: the engine has no local tokenizer)."""
        chat = getattr(self, "chat", None)
        return len(chat.ids(prompt)) if chat is not None else None

    @abstractmethod
    def generate(self, requests: list[GenerateRequest]) -> list[Completion]:
        """One `Completion` per request, in order (what a plug-in overrides for generation)."""

    @abstractmethod
    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        """One `ScoreResult` per request, in order (what a plug-in overrides for scoring); a request
        that cannot be scored is a `score_error`, which fails its problem alone."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


class EngineContractError(RuntimeError):
    """An engine answered a call with the wrong number or kind of results: the run stops."""


ANSWERS = {"generate": Completion, "score": ScoreResult}  # what each call returns, one per request


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def call_engine(engine: Any, method: str, requests: list, carry: bool = False) -> list:
    """`engine.generate(requests)` or `engine.score(requests)`, its answer checked: the one way the
    search calls an engine (search/scheduler.py), so a plug-in's override runs in every batching
    mode and a wrong answer is one line naming the engine, not an error far from it. `carry`: the
    caller sends CARRIED requests again (the scheduler's whole batches); no one else can."""
    results = getattr(engine, method)(requests)
    answer = ANSWERS[method].__name__
    who = f"engine {type(engine).__name__}" + (f" (model {engine.model_name})" if getattr(engine, "model_name", "") else "")
    if not isinstance(results, list) or len(results) != len(requests):
        got = counted(len(results), "result") if isinstance(results, list) else f"a {type(results).__name__}"
        raise EngineContractError(
            f"{who}: {method} returned {got} for {counted(len(requests), 'request')}; it must return one {answer} per request"
        )
    # Only an Engine is held to the types: the scheduler's tests drive it with plain stand-ins.
    wrong = next((r for r in results if not isinstance(r, ANSWERS[method])), None) if isinstance(engine, Engine) else None
    if wrong is not None:
        raise EngineContractError(f"{who}: {method} returned a {type(wrong).__name__} where a {answer} belongs (one per request)")
    if not carry and any(getattr(r, "finish", None) == CARRIED for r in results):
        where = "outside the scheduler's whole batches, which alone send a request again"
        raise EngineContractError(f"{who}: {method} answered {CARRIED!r} {where}")
    return results


def generate_within_context(
    requests: list[GenerateRequest], context: int | None, prompt_tokens: Callable[[GenerateRequest], int], run: Callable[[list], list]
) -> list[Completion]:
    """`run` on the requests whose prompt fits the model's context, each token cap cut to what
    fits after its prompt; a prompt that does not fit at all is an error completion (its problem
    fails alone). `context` None: every request goes to `run` as it is."""
    if not context:
        return run(requests)
    results: list = []
    fitting: list[int] = []
    for r in requests:
        n = prompt_tokens(r)
        if n >= context:
            results.append(Completion("", 0, "error", error=f"prompt of {n} tokens does not fit the model's context of {context}"))
        else:
            fitting.append(len(results))
            results.append(dataclasses.replace(r, max_tokens=max(1, min(r.max_tokens, context - n))))
    for i, done in zip(fitting, run([results[i] for i in fitting]) if fitting else []):
        results[i] = done
    return results


def score_within_context(
    requests: list[ScoreRequest], context: int | None, tokens: Callable[[ScoreRequest], int], run: Callable[[list], list]
) -> list[ScoreResult]:
    """`run` on the requests whose scored text fits the meta-prover's context; a longer one is an
    error result (its problem fails alone). `context` None: every request goes to `run`."""
    if not context:
        return run(requests)
    results: list = [None] * len(requests)
    for i, r in enumerate(requests):
        n = tokens(r)
        if n > context:
            results[i] = score_error(f"scored text of {n} tokens does not fit the meta-prover's context of {context}")
    fitting = [i for i, res in enumerate(results) if res is None]
    for i, res in zip(fitting, run([requests[i] for i in fitting]) if fitting else []):
        results[i] = res
    return results


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, str | None]:
    """Cut `text` before the earliest stop string; return (text, stop or None)."""
    best, which = len(text), None
    for stop in stops:
        at = text.find(stop)
        if at != -1 and at < best:
            best, which = at, stop
    return text[:best], which


def completion(text: str, tokens: int, stops: tuple[str, ...], hit_length: bool, matched: str | None = None) -> Completion:
    """How a continuation ended, the same way for every engine: a stop string found in the text
    (cut before it), else the token cap, else a stop string the server says it matched, else the
    model's end of turn."""
    cut, which = cut_at_stop(text, stops)
    if which is not None:
        return Completion(cut, tokens, "stop", which)
    if hit_length:
        return Completion(text, tokens, "length")
    if matched is not None and matched in stops:
        return Completion(text, tokens, "stop", matched)
    return Completion(text, tokens, "eos")
