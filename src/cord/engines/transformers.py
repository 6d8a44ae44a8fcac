"""Local transformers engine: batched generation and KV-cached teacher-forced scoring.

Scoring keeps the key/value cache of every scored prefix (LRU), so when the search accepts a
candidate step, the next round finds `prompt + steps` already cached and a new candidate costs
only its own tokens plus the answer tokens, not the whole trajectory.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections import OrderedDict
from pathlib import Path

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from ..config import ConfigError, ModelConfig
from .base import Completion, Engine, GenerateRequest, ScoreRequest, ScoreResult, completion
from .chat import ChatTokenizer


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    except KeyError:
        raise ConfigError(f"dtype: {dtype!r} is not one of auto, float32, float16, bfloat16") from None


class RequestSampler(LogitsProcessor):
    """Samples each row of a batch with its request's own seeded generator, temperature and top-p,
    so the tokens a request gets do not depend on what else shares its batch (or its order). It
    returns logits that leave only the sampled token, which generate()'s greedy step then takes."""

    def __init__(self, requests: list[GenerateRequest], device: str):
        self.settings = [(r.temperature, r.top_p) for r in requests]
        self.generators = []
        for r in requests:
            seed = r.seed if r.seed is not None else int(torch.randint(0, 2**31 - 1, ()).item())
            self.generators.append(torch.Generator(device=device).manual_seed(seed) if r.temperature > 0 else None)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores.float()
        chosen = scores.argmax(dim=-1)
        for i, generator in enumerate(self.generators):
            if generator is None:  # temperature 0: greedy
                continue
            temperature, top_p = self.settings[i]
            probs = torch.softmax(scores[i] / temperature, dim=-1)
            if top_p < 1.0:  # nucleus: the smallest set of tokens whose mass reaches top_p
                ordered, order = probs.sort(descending=True)
                outside = ordered.cumsum(-1) - ordered >= top_p
                probs = probs.scatter(0, order[outside], 0.0)
            chosen[i] = torch.multinomial(probs, 1, generator=generator)[0]
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, chosen[:, None], 0.0)


class TransformersEngine(Engine):
    name = "transformers"

    def __init__(
        self,
        model: str,
        dtype: str = "auto",
        device: str = "auto",
        max_batch_size: int = 64,
        reuse_kv: bool = True,
        kv_cache_entries: int = 1024,
        loaded=None,
    ):
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self.device = _resolve_device(device)
        local = Path(model).expanduser()
        if (model.startswith((".", "/", "~")) or local.exists()) and not (local / "config.json").is_file():
            raise ConfigError(f"{model}: model folder not found (no config.json)")
        self.chat = ChatTokenizer(model)
        self.tokenizer = self.chat.tokenizer
        try:  # `loaded`: a model already in memory (benchmarks of random models at real shapes); `model` gives the tokenizer
            self.model = loaded or AutoModelForCausalLM.from_pretrained(model, dtype=_resolve_dtype(dtype, self.device))
        except Exception as err:
            raise ConfigError(f"{model}: could not load model ({type(err).__name__}: {str(err).splitlines()[0]})") from None
        self.model.to(self.device).eval()
        self.max_batch_size = max_batch_size
        self.reuse_kv = reuse_kv
        # prefix pieces -> (per-layer K/V, last logits, score call that last used it)
        self._kv: OrderedDict[tuple[str, ...], tuple[list, torch.Tensor, int]] = OrderedDict()
        self._kv_entries = kv_cache_entries
        self._calls = 0
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "past_key_values" if "past_key_values" in params else "cache"
        self._stop_ids = {i for i in (self.tokenizer.eos_token_id, self.tokenizer.pad_token_id) if i is not None}
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        self._stop_ids |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])

    @classmethod
    def from_config(cls, cfg: ModelConfig, model: str) -> TransformersEngine:
        return cls(model, dtype=cfg.dtype, device=cfg.device)

    def _ids(self, piece: str) -> list[int]:
        return self.chat.ids(piece)

    # -- generation ----------------------------------------------------------

    @torch.inference_mode()
    def generate(self, requests: list[GenerateRequest]) -> list[Completion]:
        results: list[Completion | None] = [None] * len(requests)
        # A prompt that does not fit the context fails alone; the others are capped to what fits.
        context = self.context_length
        if context:
            fitted = []
            for i, r in enumerate(requests):
                n = len(self._ids(r.prompt))
                if n >= context:
                    results[i] = Completion("", 0, "error", error=f"prompt of {n} tokens does not fit the model's context of {context}")
                fitted.append(dataclasses.replace(r, max_tokens=max(1, min(r.max_tokens, context - n))))
            requests = fitted
        # Each request samples with its own seed, temperature and top-p (RequestSampler), so any
        # mix of requests shares a batch; only the stop strings (a generate() setting) split them.
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, r in enumerate(requests):
            if results[i] is None:
                groups.setdefault(r.stop, []).append(i)
        for stop, indices in groups.items():
            for start in range(0, len(indices), self.max_batch_size):
                chunk = indices[start : start + self.max_batch_size]
                outs = self._generate_split([requests[i] for i in chunk], stop)
                for i, out in zip(chunk, outs):
                    results[i] = out
        return results  # type: ignore[return-value]

    @property
    def context_length(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    def _generate_split(self, batch: list[GenerateRequest], stop: tuple[str, ...]) -> list[Completion]:
        """A batch that runs out of accelerator memory is split in halves and tried again; one
        request that still does not fit fails alone."""
        try:
            return self._generate_batch(batch, stop)
        except torch.OutOfMemoryError:
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()
            if len(batch) == 1:
                return [Completion("", 0, "error", error="out of memory generating this one request")]
            half = len(batch) // 2
            return self._generate_split(batch[:half], stop) + self._generate_split(batch[half:], stop)

    def _generate_batch(self, batch: list[GenerateRequest], stop: tuple[str, ...]) -> list[Completion]:
        tok = self.tokenizer
        tok.padding_side = "left"
        enc = tok([r.prompt for r in batch], return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        max_new = max(r.max_tokens for r in batch)
        kwargs = dict(max_new_tokens=max_new, pad_token_id=tok.pad_token_id, do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            kwargs.update(stop_strings=list(stop), tokenizer=tok)
        kwargs["logits_processor"] = LogitsProcessorList([RequestSampler(batch, self.device)])
        out = self.model.generate(**enc, **kwargs)
        generated = out[:, enc["input_ids"].shape[1] :].tolist()
        completions = []
        for r, ids in zip(batch, generated):
            ids = ids[: r.max_tokens]
            n, ended = len(ids), False
            for j, t in enumerate(ids):
                if t in self._stop_ids:
                    n, ended = j, True
                    break
            text = tok.decode(ids[:n], skip_special_tokens=False)
            done = completion(text, n, stop, hit_length=not ended)
            if done.finish == "eos":  # the end-of-turn token was generated too (padding after a stop string was not)
                done.tokens += 1
            completions.append(done)
        return completions

    # -- scoring -------------------------------------------------------------

    @torch.inference_mode()
    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        if not self.reuse_kv:
            return [
                res
                for start in range(0, len(requests), self.max_batch_size)
                for res in self._score_full(requests[start : start + self.max_batch_size])
            ]
        self._calls += 1
        results: list[ScoreResult | None] = [None] * len(requests)
        # Requests after the same accepted steps share one cached prefix and go through the
        # model as one batch.
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.prefix, []).append(i)
        for prefix, indices in groups.items():
            for start in range(0, len(indices), self.max_batch_size):
                chunk = indices[start : start + self.max_batch_size]
                for i, res in zip(chunk, self._score_group(prefix, [requests[i] for i in chunk])):
                    results[i] = res
        # A search round's prefixes were stored by the round before it: anything older is dead
        # (it would only hold memory, which on a GPU with long trajectories is large).
        for key in [k for k, v in self._kv.items() if v[2] < self._calls - 1]:
            del self._kv[key]
        return results  # type: ignore[return-value]

    def _forward(self, ids: torch.Tensor, past: list[tuple[torch.Tensor, torch.Tensor]] | None):
        from transformers import DynamicCache

        cache = DynamicCache(ddp_cache_data=past) if past else DynamicCache()
        out = self.model(input_ids=ids, use_cache=True, **{self._cache_kw: cache})
        layers = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        return out.logits.float(), layers

    def _remember(self, key: tuple[str, ...], kv, last_logits: torch.Tensor) -> None:
        self._kv[key] = (kv, last_logits, self._calls)
        self._kv.move_to_end(key)
        while len(self._kv) > self._kv_entries:
            self._kv.popitem(last=False)

    def _prefix_state(self, prefix: tuple[str, ...]):
        """KV and last logits for `prefix`, extending the longest cached leading run of pieces."""
        if not prefix:
            return None, None, 0
        for cut in range(len(prefix), 0, -1):
            hit = self._kv.get(prefix[:cut])
            if hit is not None:
                self._kv[prefix[:cut]] = (hit[0], hit[1], self._calls)
                self._kv.move_to_end(prefix[:cut])
                break
        else:
            cut, hit = 0, None
        if cut == len(prefix):
            return hit[0], hit[1], 0
        rest = [t for piece in prefix[cut:] for t in self._ids(piece)]
        past = hit[0] if hit else None
        if not rest:
            return past, hit[1], 0
        logits, kv = self._forward(torch.tensor([rest], device=self.device), past)
        self._remember(prefix, kv, logits[0, -1])
        return kv, logits[0, -1], len(rest)

    def _score_group(self, prefix: tuple[str, ...], batch: list[ScoreRequest]) -> list[ScoreResult]:
        past, last_logits, new_prefix_tokens = self._prefix_state(prefix)
        prefix_len = past[0][0].shape[-2] if past else 0
        rows, targets = [], []
        for r in batch:
            cand = self._ids(r.candidate)
            tail, positions = self.chat.tail(r.lead_in, r.target)
            rows.append(cand + tail)
            targets.append([len(cand) + p for p in positions])
        width = max(len(row) for row in rows)
        pad = self.tokenizer.pad_token_id
        # Right padding: padded positions come after every real token, so causal attention
        # keeps them from touching the scores.
        ids = torch.tensor([row + [pad] * (width - len(row)) for row in rows], device=self.device)
        n = len(rows)
        expanded = [(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in past] if past else None
        logits, kv = self._forward(ids, expanded)
        logprobs = torch.log_softmax(logits, dim=-1)
        first = torch.log_softmax(last_logits, dim=-1) if last_logits is not None else None
        results = []
        for i, (r, row, pos) in enumerate(zip(batch, rows, targets)):
            values = []
            for p in pos:
                dist = logprobs[i, p - 1] if p > 0 else first
                values.append(float(dist[row[p]]))
            # Keep this candidate's prefix + step: if it is selected, the next round starts here.
            cand_len = len(self._ids(r.candidate))
            keep = prefix_len + cand_len
            step_last = logits[i, cand_len - 1] if cand_len else last_logits
            self._remember(r.pieces, [(k[i : i + 1, :, :keep], v[i : i + 1, :, :keep]) for k, v in kv], step_last)
            share = new_prefix_tokens if i == 0 else 0
            results.append(ScoreResult(values, share + len(row), prefix_len + len(row)))
        return results

    def _score_full(self, batch: list[ScoreRequest]) -> list[ScoreResult]:
        """Reference path: whole sequences through the model, right-padded, no cache reuse."""
        sequences = [self.chat.sequence(r) for r in batch]
        width = max(len(ids) for ids, _ in sequences)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([row + [pad] * (width - len(row)) for row, _ in sequences], device=self.device)
        logits, _ = self._forward(ids, None)
        logprobs = torch.log_softmax(logits, dim=-1)
        return [
            ScoreResult([float(logprobs[i, p - 1, row[p]]) for p in positions], len(row), len(row))
            for i, (row, positions) in enumerate(sequences)
        ]
