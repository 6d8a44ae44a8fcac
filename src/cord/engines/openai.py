"""OpenAI-compatible HTTP engine (vLLM serve, SGLang, llama.cpp server, hosted providers).

- Prompts are rendered locally from the model's chat template, tokenized locally (no special
  tokens added: a template that writes BOS gets exactly one) and sent to `/v1/completions` as
  token ids, so continuing a partial `<think>` works on every server and the server computes
  exactly the tokens that were scored and cached.
- Scoring (`scoring: next-token`, the default) sends one request per answer token a_m: the scored
  context plus a_<m as token ids, `max_tokens` 1, `temperature` 0, `allowed_token_ids` [a_m],
  `logprobs` 0, and reads the sampled token's log-prob (exactly the prompt log-prob). These read
  vLLM's prefix cache; `echo` requests do not. `scoring: prompt-logprobs` uses `echo` + `logprobs`
  (one request per candidate, the whole prompt computed again), for servers without
  `allowed_token_ids`. A server that ignores `allowed_token_ids` is detected (the token it returns
  is not the one asked for) and is an error.
- Async under the hood: a bounded number of requests in flight, per-request timeouts, retries
  with exponential backoff (tenacity) on connection errors, timeouts, 429 and 5xx (waiting what a
  429 / 503 asks for in Retry-After, up to 5 minutes, instead), and the load
  spread over several base URLs serving the same model. A base URL may end in `/v1` or not
  (engines.server); every server must answer GET /v1/models before a run starts.
- Sampling settings beyond temperature and top-p (top_k, min_p, the penalties) go in the request
  JSON when set (vLLM and SGLang read top_k, min_p and repetition_penalty as extra fields), and a
  section's `extra_body` is merged in last, as it is.
- The local tokenizer is checked against the server's (on every echo request; once per engine with
  next-token scoring): the server's decoding of a scored prompt must give back the text that was
  tokenized, else the scores would be of other text, and the call fails with an error naming both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging

from ..config import ModelConfig
from ..errors import ConfigError
from .base import (
    SAMPLING_SETTINGS,
    Completion,
    Engine,
    GenerateRequest,
    ScoreRequest,
    ScoreResult,
    completion,
    generate_within_context,
    score_error,
    score_within_context,
)
from .chat import ChatTokenizer
from .server import (
    api_key_from,
    auth_headers,
    generation_fields,
    parse_retry_after,
    served_models,
    server_roots,
)


class ServerError(RuntimeError):
    pass


class RequestRefused(ServerError):
    """The server answered one request with a 4xx (e.g. a prompt longer than the model's context)."""


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after  # seconds the server asked for (Retry-After on 429 / 503)


def with_usage(done: Completion, reply: dict) -> Completion:
    """`done` with the prompt tokens the server's usage reports, and those it read from its cache."""
    usage = reply.get("usage") or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return dataclasses.replace(done, prompt_tokens=usage.get("prompt_tokens") or 0, cached_tokens=cached)


class OpenAIEngine(Engine):
    name = "openai"
    takes_api_key = True
    concurrent = True
    honours = frozenset({*SAMPLING_SETTINGS, "extra_body"})

    def __init__(
        self,
        model: str,
        base_url: str | list[str],
        tokenizer: str | None = None,
        api_key_env: str | None = None,
        max_concurrency: int = 64,
        request_timeout: float = 600.0,
        max_retries: int = 8,
        scoring: str = "next-token",
    ):
        self.model, self.scoring = model, scoring
        self._tokenizer_checked = False
        self.urls = server_roots(base_url)
        self.chat = ChatTokenizer(tokenizer or model) if self.local_tokenizer else None
        self.api_key = api_key_from(api_key_env)
        self.max_concurrency, self.timeout, self.max_retries = max_concurrency, request_timeout, max_retries
        self._next_url = itertools.cycle(range(len(self.urls)))
        self._in_flight = [0] * len(self.urls)
        self.retries = 0
        self.context_length: int | None = None  # the served max_model_len, when the server says it

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIEngine(model={self.model!r}, urls={self.urls})"

    @classmethod
    def where(cls, cfg: ModelConfig) -> str:
        return f"runs on the server at {cfg.base_url}"

    @classmethod
    def files(cls, cfg: ModelConfig) -> tuple[str, ...]:
        if not cls.local_tokenizer:
            return ()  # `model` is a name the server knows
        return ("tokenizer",) if cfg.tokenizer else ("model",)

    @classmethod
    def check(cls, cfg: ModelConfig, where: str) -> None:
        super().check(cfg, where)
        if not cfg.base_url:
            raise ConfigError(f"{where}.base_url: engine {cfg.engine!r} needs the server's URL")

    @staticmethod
    def transport(cfg: ModelConfig) -> dict:
        """The settings every server engine takes from its ModelConfig."""
        keys = ("base_url", "api_key_env", "max_concurrency", "request_timeout", "max_retries")
        return {key: getattr(cfg, key) for key in keys}

    @classmethod
    def from_config(cls, cfg: ModelConfig, model: str) -> OpenAIEngine:
        """The engine for `cfg`, once its servers answer (every server engine: `build`, then this check)."""
        engine = cls.build(cfg, model)
        engine.check_reachable(cfg.name or model)
        return engine

    @classmethod
    def build(cls, cfg: ModelConfig, model: str) -> OpenAIEngine:
        """The engine for `cfg`, its servers not yet asked."""
        from . import resolve_model

        return cls(model, tokenizer=resolve_model(cfg.tokenizer) if cfg.tokenizer else None, scoring=cfg.scoring, **cls.transport(cfg))

    @classmethod
    def check_server(cls, cfg: ModelConfig, where: str) -> None:
        served_models(server_roots(cfg.base_url), api_key_from(cfg.api_key_env, where), cfg.request_timeout, where)

    def check_reachable(self, where: str) -> None:
        """Every base URL answers (GET /v1/models), else one line naming `where`.base_url. vLLM
        also says the model's context (`max_model_len`): prompts are then checked and capped
        here, as the local engines do, instead of sending requests the server must refuse."""
        cards = served_models(self.urls, self.api_key, self.timeout, where)
        lengths = [card.get("max_model_len") for card in cards if card.get("id") == self.model]
        if lengths and all(isinstance(n, int) and n > 0 for n in lengths):
            self.context_length = min(lengths)

    # -- transport -----------------------------------------------------------

    def _pick_url(self) -> int:
        """Least requests in flight; ties broken round-robin."""
        start = next(self._next_url)
        order = [(start + k) % len(self.urls) for k in range(len(self.urls))]
        return min(order, key=lambda i: self._in_flight[i])

    def _log_retry(self, state) -> None:
        """Each retry and its reason, in OUT/run.log (the `cord` logger)."""
        err = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        logging.getLogger("cord.engines").warning(
            f"{self.model}: attempt {state.attempt_number} failed ({type(err).__name__}: {str(err)[:200]}); retrying in {wait:.1f} s"
        )

    async def _post(self, client, path: str, body: dict) -> dict:
        import httpx
        from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

        backoff = wait_exponential_jitter(max=20)  # 1, 2, 4, ... s plus jitter

        def wait(state) -> float:  # what the server asked for (Retry-After), else the backoff
            asked = getattr(state.outcome.exception(), "retry_after", None) if state.outcome else None
            return backoff(state) if asked is None else asked

        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait,
            retry=retry_if_exception_type((_Retryable, httpx.TransportError)),
            reraise=True,
            before_sleep=self._log_retry,
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self.retries += 1
                index = self._pick_url()
                self._in_flight[index] += 1
                try:
                    response = await client.post(self.urls[index] + path, json=body)
                finally:
                    self._in_flight[index] -= 1
                if response.status_code == 429 or response.status_code >= 500:
                    asked = parse_retry_after(response.headers.get("retry-after"))
                    raise _Retryable(f"HTTP {response.status_code} from {self.urls[index]}", asked)
                if response.status_code != 200:
                    raise RequestRefused(f"{self.urls[index]}{path}: HTTP {response.status_code}: {response.text[:300]}")
                return response.json()
        raise AssertionError("unreachable")

    def _run(self, path: str, bodies: list[dict], refusals: bool = False) -> list[dict | RequestRefused]:
        """POST every body concurrently; `refusals`: a request the server refuses (4xx), or that
        still fails after every retry while the server answers, comes back as a RequestRefused
        instead of failing the batch. A server no longer accepting connections fails the batch."""
        import httpx

        async def main() -> list:
            headers = auth_headers(self.api_key)
            limits = httpx.Limits(max_connections=self.max_concurrency)
            gate = asyncio.Semaphore(self.max_concurrency)
            async with httpx.AsyncClient(timeout=self.timeout, headers=headers, limits=limits) as client:

                async def one(body):
                    async with gate:
                        try:
                            return await self._post(client, path, body)
                        except RequestRefused as err:
                            if refusals:
                                return RequestRefused(f"{self.model}: {err}")
                            raise
                        except (_Retryable, httpx.TransportError) as err:
                            # The server kept failing this request: its problem fails, the run goes on.
                            # A server that cannot be connected to at all stops the run (resumable).
                            if refusals and not isinstance(err, httpx.ConnectError):
                                return RequestRefused(
                                    f"{', '.join(self.urls)}: failed after {self.max_retries} retries ({type(err).__name__}: {err})"
                                )
                            raise

                return await asyncio.gather(*(one(b) for b in bodies))

        try:
            return asyncio.run(main())
        except (ServerError, _Retryable) as err:
            raise ServerError(f"{self.model}: {err}") from None
        except httpx.TransportError as err:
            where = ", ".join(self.urls)
            raise ServerError(
                f"{where} ({self.model}): server unreachable after {self.max_retries} retries ({type(err).__name__})"
            ) from None

    # -- generation ----------------------------------------------------------

    def _generate_body(self, r: GenerateRequest) -> dict:
        body = {"model": self.model, "prompt": self.chat.prompt_ids(r), "n": 1, "skip_special_tokens": False, **generation_fields(r)}
        if r.stop:
            body["include_stop_str_in_output"] = True  # vLLM: lets us tell a stop string from end of turn
        return body | (r.extra_body or {})

    def generate(self, requests: list[GenerateRequest]) -> list[Completion]:
        # A prompt longer than the served context, or a request the server refuses (4xx), fails
        # its problem only; a cap that would overflow the context is cut to fit.
        return generate_within_context(requests, self.context_length, lambda r: len(self.chat.prompt_ids(r)), self._generate_fitting)

    def _generate_fitting(self, requests: list[GenerateRequest]) -> list[Completion]:
        replies = self._run("/v1/completions", [self._generate_body(r) for r in requests], refusals=True)
        return [
            Completion("", 0, "error", error=str(reply)) if isinstance(reply, RequestRefused) else self._completion(r, reply)
            for r, reply in zip(requests, replies)
        ]

    def _completion(self, r: GenerateRequest, reply: dict) -> Completion:
        choice = reply["choices"][0]
        tokens = (reply.get("usage") or {}).get("completion_tokens") or 0
        matched = choice.get("stop_reason", choice.get("matched_stop"))  # vLLM / SGLang
        done = completion(
            self.chat.clean(choice.get("text") or ""),
            tokens,
            r.stop,
            hit_length=choice.get("finish_reason") == "length",
            matched=matched if isinstance(matched, str) else None,
        )
        return with_usage(done, reply)

    # -- scoring -------------------------------------------------------------

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        return score_within_context(requests, self.context_length, lambda r: len(self.chat.sequence(r)[0]), self._score)

    def _score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        if self.scoring != "next-token":
            return self._score_echo(requests)
        if not self._tokenizer_checked and requests:
            self._score_echo(requests[:1])  # one echo request checks the local tokenizer against the server's
        pairs = [self.chat.next_token_prompts(r) for r in requests]
        bodies = [
            self._one_token_body(ids, allowed_token_ids=[token], logprobs=0, return_tokens_as_token_ids=True)
            for request_pairs in pairs
            for ids, token in request_pairs
        ]
        replies = iter(self._run("/v1/completions", bodies, refusals=True))
        results = []
        for request_pairs in pairs:
            values, computed, refused = [], 0, None
            for ids, token in request_pairs:
                reply = next(replies)
                if isinstance(reply, RequestRefused) or refused:
                    refused = refused or str(reply)
                    continue
                logprobs = reply["choices"][0].get("logprobs") or {}
                if (logprobs.get("tokens") or [None])[0] != f"token_id:{token}":
                    raise ServerError(
                        f"{self.model}: the server did not return the log-prob of the requested token (it ignores allowed_token_ids "
                        "or return_tokens_as_token_ids); set scoring: prompt-logprobs for this model"
                    )
                values.append(float(logprobs["token_logprobs"][0]))
                usage = reply.get("usage") or {}
                cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
                computed += len(ids) - cached  # every prompt token unless the server reports its cache hits
            results.append(score_error(refused) if refused else ScoreResult(values, computed, len(request_pairs[-1][0]) + 1))
        return results

    def _one_token_body(self, ids: list[int], **fields) -> dict:
        return {"model": self.model, "prompt": ids, "max_tokens": 1, "temperature": 0.0, "skip_special_tokens": False, **fields}

    def _score_echo(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        sequences = [self.chat.sequence(r) for r in requests]
        bodies = [self._one_token_body(ids, echo=True, logprobs=1) for ids, _ in sequences]
        replies = self._run("/v1/completions", bodies, refusals=True)
        results = []
        for r, (ids, positions), reply in zip(requests, sequences, replies):
            if isinstance(reply, RequestRefused):
                results.append(score_error(str(reply)))
                continue
            choice = reply["choices"][0]
            logprobs = choice.get("logprobs") or {}
            values, offsets = logprobs.get("token_logprobs") or [], logprobs.get("text_offset") or []
            if len(values) < len(ids):
                raise ServerError(f"{self.model}: no prompt log-probabilities in the reply (does the server support echo?)")
            self._check_tokenizer(r, choice.get("text") or "", offsets, len(ids))
            self._tokenizer_checked = True
            results.append(ScoreResult([float(values[p]) for p in positions], len(ids), len(ids)))
        return results

    def _check_tokenizer(self, request: ScoreRequest, echoed: str, offsets: list[int], n: int) -> None:
        """The server read our token ids back as our text, or the local tokenizer is not the model's."""
        sent = request.context + request.target
        server_text = echoed[: offsets[n]] if len(offsets) > n else echoed
        if server_text != sent:
            at = next((i for i, (a, b) in enumerate(zip(sent, server_text)) if a != b), min(len(sent), len(server_text)))
            raise ServerError(
                f"{self.model}: the local tokenizer ({self.chat.name}) does not match the server's: the server reads the scored "
                f"prompt as {server_text[at : at + 30]!r} where it says {sent[at : at + 30]!r}; set `tokenizer` to the served model's"
            )
