"""One model's section (a teacher, the meta-prover, an integrator, a PRM or a judge) and the typed
options of the engines that read them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..registry import ENGINES
from .base import Count, Section, Share, Text, registered

EngineName = registered(ENGINES)


class TransformersOptions(Section):
    """What the local transformers engine reads (engine: transformers)."""

    max_batch_size: Count = Field(64, description="rows of one decode or scoring pass")
    max_batch_tokens: Count = Field(2**18, description="rows x padded length of one scoring pass")
    reuse_kv: bool = Field(
        True,
        description="keep each teacher's and the meta-prover's KV of the accepted prefixes, and each teacher's of the steps it "
        "wrote (32 tokens or more), so a kept step is not read again by the teacher that wrote it",
    )
    kv_cache_bytes: Count | None = Field(None, description="per kept-KV store; null: a quarter of the GPU's memory (4 GiB on a CPU)")
    continuous: Literal["auto"] | bool = Field(
        "auto",
        description="requests from every problem join one running batch between decode iterations (true); false: the "
        "batches the scheduler gathers, each run to its end; auto: continuous on a GPU no other local model of the run "
        "shares, whole batches on a CPU or a shared GPU (where they measured faster)",
    )
    refill: Literal["auto"] | bool = Field(
        "auto",
        description="a whole batch of more than max_batch_size requests: a row leaves as it ends and the waiting requests "
        "join (true), so the batch lasts about its tokens over max_batch_size iterations; false: passes of max_batch_size "
        "rows, each as long as its longest row; auto: true on a GPU, false on a CPU (where passes measured faster)",
    )
    carry: bool = Field(
        True,
        description="a refilled whole batch returns once nothing waits and at most a quarter of its rows still decode; they "
        "resume in the model's next batch, with its rows, so a batch does not end in a few rows decoding alone (the same "
        "steps and answers; scores may differ in their last digits); false: every batch runs its last rows to their end",
    )


class OpenAIChatOptions(Section):
    """What the chat-completions engine reads (engine: openai-chat)."""

    continuation: Literal["vllm", "prefix"] = Field(
        "vllm",
        description="how the partial assistant turn is continued: vLLM's continue_final_message (also SGLang's), or a last "
        "assistant message marked \"prefix\" (DeepSeek's and Moonshot's prefix completion)",
    )


class Price(Section):
    """What a model's tokens cost, in USD per million tokens: a provider's list prices, or for
    your own GPUs their hourly cost over the tokens they serve an hour."""

    input: float = Field(ge=0, description="per million prompt tokens sent")
    output: float = Field(ge=0, description="per million tokens generated")
    cached_input: float | None = Field(
        None, ge=0, description="per million prompt tokens read from the provider's prefix cache; null: the input price"
    )

    def cost(self, prompt: int, cached: int, generated: int) -> float:
        """USD for `prompt` tokens sent (`cached` of them from the cache) and `generated` tokens."""
        cached_price = self.input if self.cached_input is None else self.cached_input
        return ((prompt - cached) * self.input + cached * cached_price + generated * self.output) / 1e6


class ModelConfig(Section):
    """One model: a teacher, the meta-prover, an integrator, a PRM or a judge."""

    name: Text = Field("", description="empty: the last part of `model` (two unnamed teachers of one model must be named)")
    model: Text = Field(description='local folder, hub id, a .gguf file, or "<source>:<name>" (tiny:, real:) for a packaged model')
    gguf_file: Text | None = Field(None, description="a GGUF file inside `model` (a folder or hub id), read as transformers reads GGUF")
    engine: EngineName = Field("transformers", description="the engine that runs the model (cord.registry.ENGINES)")
    system_prompt: Text | None = Field(None, description="null: the one the model's chat template inserts, if any")
    step_instruction: Text | None = Field(
        None, description='this model\'s own step instruction ("" for none); null: search.step_instruction'
    )
    temperature: float = Field(0.6, ge=0, description="sampling temperature (paper: 0.6 for every teacher)")
    top_p: Share = Field(1.0, description="nucleus sampling mass")
    # Sampling settings beyond the paper's (a model card's, e.g. QwQ-32B's top_k and presence_penalty):
    # null is not set, so the engine's default applies (a vLLM server's: the model's generation_config).
    top_k: Count | None = Field(None, description="sample among the k most likely tokens only; null: not set (all tokens)")
    min_p: float | None = Field(
        None, ge=0, le=1, description="0 to 1: drop tokens less likely than min_p times the most likely one; null: not set"
    )
    presence_penalty: float | None = Field(
        None,
        ge=-2,
        le=2,
        description="-2 to 2: subtracted from the logit of every token generated so far (against repetition); null: not set",
    )
    frequency_penalty: float | None = Field(
        None, ge=-2, le=2, description="-2 to 2: subtracted from a token's logit once per time it was generated so far; null: not set"
    )
    repetition_penalty: float | None = Field(
        None,
        gt=0,
        description="> 0: divides the positive logits (multiplies the negative) of the tokens in the prompt or generated so "
        "far; 1: none; null: not set",
    )
    extra_body: dict[str, Any] | None = Field(
        None,
        description="server engines: fields merged as they are into each generation request's JSON, last (the OpenAI "
        "SDK's extra_body), e.g. {chat_template_kwargs: {enable_thinking: true}}; null: none",
    )
    max_step_tokens: Count = Field(1024, description='a step that runs longer is cut (recorded as end="cap")')
    dtype: Text = Field("auto", description="auto: bfloat16 on CUDA, float32 on CPU")
    device: Text = Field("auto", description='local engines: "cpu", "cuda", "cuda:I" or "cuda:I,J" (GPUs of its own); auto picks')
    base_url: str | list[str] | None = Field(
        None, description="server engines (openai, sglang, openai-chat): one URL, or several serving the same model (load spread)"
    )
    api_key_env: Text | None = Field(None, description="name of the environment variable holding the server's API key")
    tokenizer: Text | None = Field(None, description="local folder or hub id for the chat template (default: model)")
    max_concurrency: Count = Field(64, description="server engines: requests in flight per engine")
    request_timeout: float = Field(600.0, description="server engines: seconds per request")
    max_retries: int = Field(8, ge=0, description="server engines: retries with exponential backoff (restarts, 5xx, timeouts)")
    max_model_len: Count | None = Field(None, description="the model's context in tokens; null: what the engine reports")
    scoring: Literal["next-token", "prompt-logprobs"] = Field(
        "next-token",
        description="meta-prover on vllm / openai: next-token (one 1-token request per answer token, which reads the prefix "
        "cache; exact) or prompt-logprobs (echo: re-reads the whole trajectory each time)",
    )
    price: Price | None = Field(
        None, description="USD per million tokens {input, output, cached_input}: summary.json, evaluate and the report show the cost"
    )
    transformers: TransformersOptions = Field(default_factory=TransformersOptions, description="engine: transformers")
    openai_chat: OpenAIChatOptions = Field(default_factory=OpenAIChatOptions, description="engine: openai-chat")
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="engine: vllm: vllm.LLM(...) arguments, passed as they are (e.g. {tensor_parallel_size: 4}), and "
        "continuous: false to run whole batches instead of joining vLLM's running batch; a plug-in engine's own options",
    )

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
