"""A cord engine written outside the package: teachers served by any provider whose Python client
speaks OpenAI's chat API (the `openai` SDK reaches OpenAI, DeepSeek, Together, Fireworks, Groq and
local vLLM or SGLang servers). A recipe names it by its path, with this file importable from the
working directory (or installed, and registered under the `cord.engines` entry point):

    teachers:
      - name: r1
        engine: sdk_chat_engine:SDKChatEngine
        model: deepseek-reasoner
        base_url: https://api.deepseek.com/beta
        api_key_env: DEEPSEEK_API_KEY
        engine_kwargs: {continuation: prefix}      # DeepSeek's prefix completion

The contract is `cord.engines.base.Engine`: `from_config` builds it from the model's config,
`generate` continues each request's prompt, `score` gives the prompt's log-probabilities (a chat
API has none: `can_score = False` keeps this engine from being the meta-prover). A chat API renders
the prompt with the server's template, so `chat_prompt` writes the conversation in a layout of its
own, which `messages` reads back: cord appends the reasoning so far to it, and the server continues
that partial assistant turn.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from cord.config import ModelConfig
from cord.engines.base import Completion, Engine, GenerateRequest, ScoreRequest, ScoreResult, completion, score_error
from cord.errors import ConfigError

USER, ASSISTANT = "<|user|>", "<|assistant|>"  # this engine's own prompt layout
CONTINUATIONS = ("vllm", "prefix")  # vLLM / SGLang's continue_final_message, or DeepSeek's "prefix": true


class SDKChatEngine(Engine):
    name = "sdk-chat"
    local_tokenizer = False  # the server's chat template renders the prompt
    can_score = False
    concurrent = True  # the server batches requests from every problem at once
    takes_api_key = True
    takes_engine_kwargs = True  # {continuation: vllm | prefix}

    def __init__(self, model: str, base_url: str | None, api_key: str | None, continuation: str = "vllm", workers: int = 16):
        from openai import OpenAI

        self.model, self.continuation = model, continuation
        self.client = OpenAI(base_url=base_url, api_key=api_key or "none", max_retries=3)
        self.pool = ThreadPoolExecutor(max_workers=workers)

    @classmethod
    def check(cls, cfg: ModelConfig, where: str) -> None:
        super().check(cfg, where)
        unknown = set(cfg.engine_kwargs) - {"continuation"}
        if unknown:
            raise ConfigError(f"{where}.engine_kwargs: {', '.join(sorted(unknown))} not read by {cls.name} (only continuation)")
        if cfg.engine_kwargs.get("continuation", "vllm") not in CONTINUATIONS:
            raise ConfigError(f"{where}.engine_kwargs.continuation: one of {', '.join(CONTINUATIONS)}")

    @classmethod
    def files(cls, cfg: ModelConfig) -> tuple[str, ...]:
        return ()  # nothing loads here: `model` is a name the provider knows

    @classmethod
    def where(cls, cfg: ModelConfig) -> str:
        return f"runs at {cfg.base_url or 'the provider'}"

    @classmethod
    def from_config(cls, cfg: ModelConfig, model: str) -> SDKChatEngine:
        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        url = str(cfg.base_url) if cfg.base_url else None
        return cls(model, url, key, cfg.engine_kwargs.get("continuation", "vllm"), cfg.max_concurrency)

    def chat_prompt(self, question: str, system: str | None = None) -> str:
        return f"{USER}{question}{ASSISTANT}"  # the system prompt is left to the server's template

    def messages(self, prompt: str) -> list[dict]:
        user, _, partial = prompt.removeprefix(USER).partition(ASSISTANT)
        out = [{"role": "user", "content": user}]
        if partial:
            out.append({"role": "assistant", "content": partial, **({"prefix": True} if self.continuation == "prefix" else {})})
        return out

    def _one(self, r: GenerateRequest) -> Completion:
        messages = self.messages(r.prompt)
        extra = {"continue_final_message": True, "add_generation_prompt": False} if self.continuation == "vllm" else {}
        try:
            reply = self.client.chat.completions.create(
                model=self.model,
                messages=messages,
                max_tokens=r.max_tokens,
                temperature=r.temperature,
                top_p=r.top_p,
                seed=r.seed,
                stop=list(r.stop)[:4] or None,  # OpenAI's API takes at most 4; completion() cuts at every one below
                extra_body=extra or None,
            )
        except Exception as err:  # a refused or failed request fails its problem alone
            return Completion("", 0, "error", error=f"{self.model}: {type(err).__name__}: {err}")
        choice = reply.choices[0]
        tokens = reply.usage.completion_tokens if reply.usage else 0
        return completion(choice.message.content or "", tokens, r.stop, choice.finish_reason == "length")

    def generate(self, requests: list[GenerateRequest]) -> list[Completion]:
        return list(self.pool.map(self._one, requests))

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        return [score_error(f"{self.name} cannot score: a chat API returns no prompt log-probabilities") for _ in requests]

    def close(self) -> None:
        self.pool.shutdown(wait=False)
        self.client.close()
