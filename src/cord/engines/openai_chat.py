"""OpenAI-compatible chat engine (`/v1/chat/completions`) for models with no local tokenizer:
hosted models, or a server whose chat template should be the one that renders the prompt.

The conversation is sent as messages and the partial assistant turn (`<think>` + the reasoning
so far + the next step's opening) is continued, not answered:
- `continuation: vllm` (default): vLLM's `continue_final_message` (with `add_generation_prompt`
  off), also accepted by SGLang;
- `continuation: prefix`: the last assistant message marked `"prefix": true` (DeepSeek's and
  Moonshot's prefix-completion mode).
Set it with `openai_chat: {continuation: prefix}`. It can be a teacher or the integrator (the
paper's integrator is GPT-5-mini); it cannot be the meta-prover, since chat APIs return no
log-probabilities of the prompt. A request the server refuses (a prompt longer than the model's
context) comes back as a completion with `finish="error"`, so that problem fails alone.
"""

from __future__ import annotations

from ..config import ModelConfig
from ..errors import ConfigError
from .base import Completion, GenerateRequest, ScoreRequest, ScoreResult, completion
from .openai import OpenAIEngine, RequestRefused, with_usage
from .server import generation_fields

# The rendered "chat prompt" of this engine is its own reversible layout, parsed back into
# messages when the request is sent (a local template would not be the server's).
SYSTEM, USER, ASSISTANT = "<|cord:system|>", "<|cord:user|>", "<|cord:assistant|>"


class OpenAIChatEngine(OpenAIEngine):
    name = "openai-chat"
    local_tokenizer = False
    can_score = False
    options = "openai_chat"

    def __init__(self, *args, continuation: str = "vllm", **kwargs):
        super().__init__(*args, **kwargs)
        self.continuation = continuation

    @classmethod
    def build(cls, cfg: ModelConfig, model: str) -> OpenAIChatEngine:
        return cls(model, continuation=cfg.openai_chat.continuation, **cls.transport(cfg))

    def chat_prompt(self, question: str, system: str | None = None) -> str:
        return (f"{SYSTEM}{system}" if system else "") + f"{USER}{question}{ASSISTANT}"

    def messages(self, prompt: str) -> list[dict]:
        """Messages from a prompt in this engine's layout; the text after the assistant tag is
        the partial assistant turn to continue."""
        head, _, partial = prompt.partition(ASSISTANT)
        system, _, user = head.rpartition(USER)
        out = [{"role": "system", "content": system.removeprefix(SYSTEM)}] if system else []
        out.append({"role": "user", "content": user})
        if partial:
            final = {"role": "assistant", "content": partial}
            if self.continuation == "prefix":
                final["prefix"] = True
            out.append(final)
        return out

    def _generate_body(self, r: GenerateRequest) -> dict:
        messages = self.messages(r.prompt)
        body = {"model": self.model, "messages": messages, **generation_fields(r)}
        if messages[-1]["role"] == "assistant" and self.continuation == "vllm":
            body.update(continue_final_message=True, add_generation_prompt=False)
        return body | (r.extra_body or {})

    def generate(self, requests: list[GenerateRequest]) -> list[Completion]:
        replies = self._run("/v1/chat/completions", [self._generate_body(r) for r in requests], refusals=True)
        out = []
        for r, reply in zip(requests, replies):
            if isinstance(reply, RequestRefused):
                out.append(Completion("", 0, "error", error=str(reply)))
                continue
            choice = reply["choices"][0]
            tokens = (reply.get("usage") or {}).get("completion_tokens") or 0
            matched = choice.get("stop_reason", choice.get("matched_stop"))
            text = (choice.get("message") or {}).get("content") or ""
            done = completion(
                text,
                tokens,
                r.stop,
                hit_length=choice.get("finish_reason") == "length",
                matched=matched if isinstance(matched, str) else None,
            )
            out.append(with_usage(done, reply))
        return out

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        raise ConfigError(f"{self.model}: engine 'openai-chat' cannot score (chat APIs return no prompt log-probabilities)")
