"""Local transformers engine: batched generation and KV-cached teacher-forced scoring.

- Generation decodes with its own loop (decode.py): every row samples with its request's seed,
  temperature and top-p and stops the moment it ends; a teacher keeps the KV of each accepted
  trajectory it read, so the next round computes only the new step, and of each step it wrote, so
  a kept step of its own is not read again.
- Scoring keeps the KV of every scored prefix (score.py), so a candidate costs only its own
  tokens plus the answer's; candidates after different prefixes share one forward pass.
- Both caches hold what the last two calls used, within `kv_cache_bytes` each (kv.py; default a
  quarter of the GPU's memory): on a GPU with long trajectories, B x problems in flight
  trajectories of KV per model would not fit, so the least recently used are computed again.
- Requests from every problem join one running batch between decode iterations (continuous.py):
  a request that arrives while others decode starts at the next iteration, one that ends leaves at
  once, and engines on one device take turns an iteration at a time. `continuous: auto` does so on
  a GPU no other model of the run shares. `continuous: false` (and a run in which the scheduler
  gathers whole batches, `Engine.whole_batches`: `search.reproducible: true`, or a shared device)
  runs the batches cord's scheduler gathers, each to its end, as before; on a GPU (`refill`) a
  batch of more than `max_batch_size` requests keeps that many rows decoding, the waiting ones
  joining as others end, and (`carry`) the last few rows of a batch resume in the next batch of
  the model instead of decoding nearly alone. Either way the calls come through `generate` and
  `score`, so a subclass that overrides them is called in every mode.
- A model's `transformers:` options (config.TransformersOptions) set the constructor's keyword
  arguments (max_batch_size, max_batch_tokens, reuse_kv, kv_cache_bytes, continuous, refill, carry).
"""

from __future__ import annotations

import dataclasses
import threading

from ...config import ModelConfig
from ..base import (
    SAMPLING_SETTINGS,
    Completion,
    Engine,
    GenerateRequest,
    ScoreRequest,
    ScoreResult,
    generate_within_context,
    score_error,
    score_within_context,
)


def placement(device: str) -> str:
    """The device a model computes on, named one way ("cuda" is the current GPU, "cuda:0" say)."""
    import torch

    where = torch.device(device)
    if where.type == "cuda" and where.index is None:
        where = torch.device("cuda", torch.cuda.current_device())
    return str(where)


class TransformersEngine(Engine):
    name = "transformers"
    options = "transformers"
    honours = frozenset(SAMPLING_SETTINGS)  # the sampler applies every one (sampling.py)

    def __init__(
        self,
        model: str,
        dtype: str = "auto",
        device: str = "auto",
        max_batch_size: int = 64,
        max_batch_tokens: int = 2**18,
        reuse_kv: bool = True,
        kv_cache_bytes: int | None = None,
        continuous: bool | str = "auto",
        refill: bool | str = "auto",
        carry: bool = True,
        loaded=None,
        gguf_file: str | None = None,
    ):
        # torch loads with the first model, not with this class: checking a config
        # or resuming a run with nothing left to do stays light.
        from .decode import Decoder
        from .kv import KVStore, default_kv_budget
        from .model import LoadedModel
        from .score import PrefixScorer

        self.lm = LoadedModel(model, dtype, device, loaded, gguf_file)
        self.device, self.model, self.chat, self.tokenizer = self.lm.device, self.lm.model, self.lm.chat, self.lm.tokenizer
        self.placement = frozenset({placement(self.device)})
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens  # rows x padded length in one scoring forward pass
        self.reuse_kv = reuse_kv
        budget = default_kv_budget(self.device) if kv_cache_bytes is None else kv_cache_bytes
        self._kv = KVStore(budget)  # scored prefix pieces -> (per-layer K/V, last logits)
        self._gen_kv = KVStore(budget)  # teacher prompt pieces (all but the opening) -> (per-layer K/V, None)
        self.decoder = Decoder(self.lm, self._gen_kv, reuse_kv)
        self.scorer = PrefixScorer(self.lm, self._kv)
        # "auto": whole batches on a CPU, where continuous batching measured slower in every case
        # (docs/benchmarks.md); on a GPU, search/scheduler.py decides by whether another model shares it.
        self.continuous = False if continuous == "auto" and self.device == "cpu" else continuous
        # "auto": a whole batch refills on a GPU, where an iteration costs about the same for 1 row or
        # 64, so a pass that waits for its longest row wastes it (docs/benchmarks.md); on a CPU
        # an iteration costs by its rows, and passes measured faster.
        self.refill = self.device != "cpu" if refill == "auto" else refill
        self.carry = carry  # a refilled batch's last rows resume in the next batch (only when the scheduler gathers batches)
        self._decoding = None  # the continuous worker, started by the first call that needs it
        self._start_lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: ModelConfig, model: str) -> TransformersEngine:
        return cls(model, dtype=cfg.dtype, device=cfg.device, gguf_file=cfg.gguf_file, **cfg.transformers.model_dump())

    @property
    def context_length(self) -> int | None:
        return self.lm.context_length

    def _ids(self, piece: str) -> list[int]:
        return self.chat.ids(piece)

    # -- generation ----------------------------------------------------------

    def _continuous(self):
        """The worker that takes requests from any thread (continuous.py), started once."""
        from .continuous import ContinuousDecoding, device_turns

        with self._start_lock:
            if self._decoding is None:
                self._decoding = ContinuousDecoding(self, device_turns(next(iter(self.placement))))
            return self._decoding

    @property
    def joins_running_batch(self) -> bool:
        """Whether a call joins the continuous worker's running batch rather than running to its end."""
        return bool(self.continuous) and not self.whole_batches

    def close(self) -> None:
        self.decoder.drop_carried()
        if self._decoding is not None:
            self._decoding.close()
            self._decoding = None

    def empty_device_cache(self) -> None:
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def priced(self, out: Completion, request: GenerateRequest) -> Completion:
        """`out` with its prompt's token count (what a provider would price as input)."""
        return dataclasses.replace(out, prompt_tokens=len(self.chat.prompt_ids(request)))

    def generate(self, requests: list[GenerateRequest]) -> list[Completion]:
        if not self.joins_running_batch:
            return self._generate_whole(requests)
        # A prompt that does not fit the context fails alone; the others are capped to what fits.
        return generate_within_context(requests, self.context_length, lambda r: len(self.chat.prompt_ids(r)), self._continuous().generate)

    def _generate_whole(self, requests: list[GenerateRequest]) -> list[Completion]:
        """`requests` as batches run to their end, nothing joining them."""
        import torch

        from .continuous import device_turns

        self._gen_kv.next_call()
        try:
            with torch.inference_mode(), device_turns(next(iter(self.placement))).turn():
                return generate_within_context(
                    requests, self.context_length, lambda r: len(self.chat.prompt_ids(r)), self._generate_fitting
                )
        finally:  # kept prefixes not used by this call or the one before are dead
            self._gen_kv.drop_unused()

    def _generate_fitting(self, requests: list[GenerateRequest]) -> list[Completion]:
        # Each request samples with its own seed, temperature and top-p (RequestSampler) and stops
        # at its own stop strings, so any mix of requests shares a batch. Refilled: one running
        # batch of max_batch_size rows that the waiting requests join, whatever their stop strings
        # (a group of its own would end in a tail of its own). Passes: of max_batch_size rows
        # each, grouped by stop strings (as passes always were, so a CPU's records do not change).
        results: list[Completion | None] = [None] * len(requests)
        if self.refill:
            chunks, decode = [list(range(len(requests)))], self._refilled
        else:
            groups: dict[tuple[str, ...], list[int]] = {}
            for i, r in enumerate(requests):
                groups.setdefault(r.stop, []).append(i)
            chunks = [ids[at : at + self.max_batch_size] for ids in groups.values() for at in range(0, len(ids), self.max_batch_size)]
            decode = self.decoder.batch
        for chunk in chunks:
            outs = self._halving(decode, [requests[i] for i in chunk], "generating")
            for i, out in zip(chunk, outs):
                results[i] = self.priced(out, requests[i])
        return results  # type: ignore[return-value]

    def _refilled(self, batch: list[GenerateRequest]) -> list[Completion]:
        # Rows carried (engines.base.CARRIED) come back in the scheduler's next batch of this
        # model; only the scheduler's whole batches (`whole_batches`) send them again.
        return self.decoder.batch(batch, self.max_batch_size, carry=self.carry and self.whole_batches)

    def _halving(self, run, batch: list, what: str) -> list:
        """`run(batch)`; a batch that runs out of accelerator memory is halved and tried again, and
        one request that still does not fit fails alone (its problem, not the run)."""
        import torch

        try:
            return run(batch)
        except torch.OutOfMemoryError:
            self.empty_device_cache()
            if len(batch) == 1:
                error = f"out of memory {what} this one request"
                return [Completion("", 0, "error", error=error) if what == "generating" else score_error(error)]
            half = len(batch) // 2
            return self._halving(run, batch[:half], what) + self._halving(run, batch[half:], what)

    # -- scoring -------------------------------------------------------------

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        if not self.joins_running_batch:
            return self._score_whole(requests)
        return score_within_context(requests, self.context_length, lambda r: len(self.chat.sequence(r)[0]), self._continuous().score)

    def _score_whole(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        import torch

        from .continuous import device_turns

        # A scored text longer than the context fails alone (a model with learned positions
        # would raise; one with RoPE would score positions it never saw).
        with torch.inference_mode(), device_turns(next(iter(self.placement))).turn():
            return score_within_context(requests, self.context_length, lambda r: len(self.chat.sequence(r)[0]), self._score_fitting)

    def _score_fitting(self, requests: list[ScoreRequest], spans: bool = True) -> list[ScoreResult]:
        """Scores of `requests`. `spans`: this call is a span of the kept-KV store's (what it and
        the call before did not read is dropped after it); the continuous worker counts its own."""
        results: list[ScoreResult | None] = [None] * len(requests)
        todo = list(range(len(requests)))
        if not self.reuse_kv:
            for chunk in self._chunks(todo, lambda i: len(self.chat.sequence(requests[i])[0])):
                for i, res in zip(chunk, self._halving(self.scorer.full, [requests[i] for i in chunk], "scoring")):
                    results[i] = res
            return results  # type: ignore[return-value]
        if spans:
            self._kv.next_call()
        # Every candidate goes through the model in one batch whatever its accepted prefix: each
        # row reads its own prefix's cached KV (right-aligned, padding masked), so a round of
        # B beams x K teachers over many problems is a few forward passes, not one per prefix.
        # Rows are ordered by prefix length so a batch pads little.
        length = self.scorer.cached_length
        todo.sort(key=lambda i: (length(requests[i].prefix), requests[i].prefix))
        for chunk in self._chunks(todo, lambda i: length(requests[i].prefix) + len(self._ids(requests[i].candidate)) + 8):
            for i, res in zip(chunk, self._halving(self.scorer.rows, [requests[i] for i in chunk], "scoring")):
                results[i] = res
        # A search round's prefixes were stored by the round before it: anything older is dead
        # (it would only hold memory, which on a GPU with long trajectories is large).
        if spans:
            self._kv.drop_unused()
        return results  # type: ignore[return-value]

    def _chunks(self, order: list[int], tokens) -> list[list[int]]:
        """`order` cut into batches of at most max_batch_size rows and max_batch_tokens padded tokens."""
        chunks, chunk, longest = [], [], 0
        for i in order:
            n = tokens(i)
            if chunk and (len(chunk) >= self.max_batch_size or (len(chunk) + 1) * max(longest, n) > self.max_batch_tokens):
                chunks.append(chunk)
                chunk, longest = [], 0
            chunk.append(i)
            longest = max(longest, n)
        return chunks + ([chunk] if chunk else [])
