"""Local transformers engine: batched generation and KV-cached teacher-forced scoring.

- Generation decodes token by token with its own loop (not `generate()`): each row samples with
  its request's seed, temperature and top-p, and stops the moment it ends (stop string, end of
  turn, cap); once half the batch has ended, the ended rows leave it (one copy of the live rows'
  KV, not one per ending row), so a round does not pay for its longest step on every row. A
  teacher keeps the KV of each accepted trajectory it read, so the next round computes only the
  new step.
- Scoring keeps the KV of every scored prefix, so when the search accepts a candidate step, the
  next round finds `prompt + steps` already cached and a candidate costs only its own tokens plus
  the answer's. A candidate's entry holds only its step's KV, after its prefix's entry (one copy of
  the prefix for all its candidates). Candidates after different prefixes share one forward pass
  (each row reads its own prefix's KV, padded and masked), which computes logits only where the
  answer is read (at a 152K-token vocabulary, logits at every token would be the pass's largest
  tensor).
- Both caches hold what the last two calls used, within `kv_cache_bytes` each (kv_store.py;
  default a quarter of the GPU's memory): on a GPU with long trajectories, B x problems in flight
  trajectories of KV per model would not fit, so the least recently used are computed again.
- `engine_kwargs` in a model's config set the constructor's keyword arguments (max_batch_size,
  max_batch_tokens, reuse_kv, kv_cache_bytes).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from ..config import ConfigError, ModelConfig
from .base import (
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
from .decoding import RequestSampler, growing_layer_class
from .kv_store import KVStore, default_kv_budget


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


def _chain_length(chain: list) -> int:
    """Tokens in a chain of KV segments (KVStore.get)."""
    return sum(segment[0][0].shape[-2] for segment in chain)


def _chain_id(chain: list) -> tuple[int, ...]:
    """The same for two chains of the same kept segments (two KVStore.get of one key)."""
    return tuple(id(segment) for segment in chain)


def _row_span(layers: list, row: int, lo: int, hi: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One row's positions lo:hi of a batch's per-layer K/V, copied: a view would keep the whole
    batch's KV alive and escape the store's budget."""
    return [(k[row : row + 1, :, lo:hi].clone(), v[row : row + 1, :, lo:hi].clone()) for k, v in layers]


def _joined(chain: list) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A chain of KV segments as one per-layer (K, V)."""
    if len(chain) == 1:
        return chain[0]
    return [(torch.cat([seg[i][0] for seg in chain], dim=2), torch.cat([seg[i][1] for seg in chain], dim=2)) for i in range(len(chain[0]))]


class TransformersEngine(Engine):
    name = "transformers"

    def __init__(
        self,
        model: str,
        dtype: str = "auto",
        device: str = "auto",
        max_batch_size: int = 64,
        max_batch_tokens: int = 2**18,
        reuse_kv: bool = True,
        kv_cache_bytes: int | None = None,
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
        self.max_batch_tokens = max_batch_tokens  # rows x padded length in one scoring forward pass
        self.reuse_kv = reuse_kv
        budget = default_kv_budget(self.device) if kv_cache_bytes is None else kv_cache_bytes
        self._kv = KVStore(budget)  # scored prefix pieces -> (per-layer K/V, last logits)
        self._gen_kv = KVStore(budget)  # teacher prompt pieces (all but the opening) -> (per-layer K/V, None)
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "past_key_values" if "past_key_values" in params else "cache"
        self._keeps_last_logits = "logits_to_keep" in params
        self._enders: dict[tuple[str, ...], torch.Tensor] = {}
        self._growing_layer = growing_layer_class()
        self._stop_ids = {i for i in (self.tokenizer.eos_token_id, self.tokenizer.pad_token_id) if i is not None}
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        self._stop_ids |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])

    # The share of a decode batch's rows that must have ended before their KV is dropped (the cache
    # compacted: a copy of every live row's KV). Until then an ended row rides along, its KV read
    # by every pass. Counted over CoRD's 32 tiny problems (hetero / homo), KV read by the passes
    # plus KV copied, against dropping each row as it ends: 0.78 / 0.87 at 0.5, with 3 % / 3 % more
    # rows computed (1.0, never: 0.77 / 0.86, with 14 % / 12 % more). On a GPU, decoding long
    # trajectories is bound by reading KV; the 2-core CPU's wall time did not tell 0 and 0.5 apart.
    COMPACT_WHEN_ENDED = 0.5

    OPTIONS = ("max_batch_size", "max_batch_tokens", "reuse_kv", "kv_cache_bytes")

    @classmethod
    def check(cls, cfg: ModelConfig, where: str) -> None:
        super().check(cfg, where)
        unknown = sorted(set(cfg.engine_kwargs) - set(cls.OPTIONS))
        if unknown:
            takes = ", ".join(cls.OPTIONS)
            raise ConfigError(f"{where}.engine_kwargs: {', '.join(unknown)} not used by engine 'transformers' (it takes {takes})")
        for key in cls.OPTIONS:
            value = cfg.engine_kwargs.get(key)
            if key == "reuse_kv" and value is not None and not isinstance(value, bool):
                raise ConfigError(f"{where}.engine_kwargs.reuse_kv: must be true or false, got {value!r}")
            if key != "reuse_kv" and value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"{where}.engine_kwargs.{key}: must be a whole number >= 1, got {value!r}")

    @classmethod
    def from_config(cls, cfg: ModelConfig, model: str) -> TransformersEngine:
        return cls(model, dtype=cfg.dtype, device=cfg.device, **cfg.engine_kwargs)

    def _ids(self, piece: str) -> list[int]:
        return self.chat.ids(piece)

    # -- generation ----------------------------------------------------------

    @torch.inference_mode()
    def generate(self, requests: list[GenerateRequest]) -> list[Completion]:
        self._gen_kv.next_call()
        try:
            return self._generate(requests)
        finally:  # kept prefixes not used by this call or the one before are dead
            self._gen_kv.drop_unused()

    def _generate(self, requests: list[GenerateRequest]) -> list[Completion]:
        # A prompt that does not fit the context fails alone; the others are capped to what fits.
        return generate_within_context(requests, self.context_length, lambda r: len(self.chat.prompt_ids(r)), self._generate_fitting)

    def _generate_fitting(self, requests: list[GenerateRequest]) -> list[Completion]:
        # Each request samples with its own seed, temperature and top-p (RequestSampler), so any
        # mix of requests shares a batch; only the stop strings split them.
        results: list[Completion | None] = [None] * len(requests)
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.stop, []).append(i)
        for stop, indices in groups.items():
            for start in range(0, len(indices), self.max_batch_size):
                chunk = indices[start : start + self.max_batch_size]
                outs = self._halving(lambda batch, stop=stop: self._generate_batch(batch, stop), [requests[i] for i in chunk], "generating")
                for i, out in zip(chunk, outs):
                    results[i] = out
        return results  # type: ignore[return-value]

    @property
    def context_length(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    def _halving(self, run, batch: list, what: str) -> list:
        """`run(batch)`; a batch that runs out of accelerator memory is halved and tried again, and
        one request that still does not fit fails alone (its problem, not the run)."""
        try:
            return run(batch)
        except torch.OutOfMemoryError:
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()
            if len(batch) == 1:
                error = f"out of memory {what} this one request"
                return [Completion("", 0, "error", error=error) if what == "generating" else score_error(error)]
            half = len(batch) // 2
            return self._halving(run, batch[:half], what) + self._halving(run, batch[half:], what)

    def _generate_batch(self, batch: list[GenerateRequest], stop: tuple[str, ...]) -> list[Completion]:
        """Decode the batch token by token; a row stops sampling as soon as it ends, and the ended
        rows' KV is dropped once COMPACT_WHEN_ENDED of the rows have ended, so the batch shrinks as
        it goes.
        A request cut into pieces starts from the KV kept for the longest leading run of them (the
        accepted trajectory, from this teacher's previous round), so only the new step and the
        opening are computed again."""
        starts = [self._generation_start(r) for r in batch]  # (kept KV or None, its length, key, parent, ids to compute)
        width_past = max(length for _, length, _, _, _ in starts)
        width = max(len(new) for *_, new in starts)
        n, pad = len(batch), self.tokenizer.pad_token_id
        # Each row: [padding | its kept KV] as the past, then [padding | the tokens to compute].
        ids = torch.tensor([[pad] * (width - len(new)) + new for *_, new in starts], device=self.device)
        mask = torch.zeros(n, width_past + width, dtype=torch.long, device=self.device)
        positions = torch.zeros(n, width, dtype=torch.long, device=self.device)
        past = self._padded_past([kept for kept, *_ in starts], width_past)
        for i, (_, length, _, _, new) in enumerate(starts):
            mask[i, width_past - length : width_past] = 1
            mask[i, width_past + width - len(new) :] = 1
            positions[i, width - len(new) :] = torch.arange(length, length + len(new))
        cache = self._new_cache(past)
        logits = self._last_logits(ids, mask, positions, cache)
        if self.reuse_kv:
            self._keep_generation_prefixes(batch, starts, cache, width_past + width)
        positions = positions[:, -1:]
        sampler = RequestSampler(batch, self.device)
        ends_stop = self._stop_enders(stop)
        longest_stop = max((len(s) for s in stop), default=0)
        stop_ids = torch.tensor(sorted(self._stop_ids), device=self.device)
        generated: list[list[int]] = [[] for _ in batch]
        results: list[Completion | None] = [None] * len(batch)
        rows = list(range(len(batch)))  # the request each cache row decodes (indices into `batch`), None once it ended
        live = rows  # the rows still decoding
        live_at = None  # their cache rows, while some ended rows ride along
        while True:
            if live_at is not None:  # sample the live rows only; an ended row's token is padding
                tokens = torch.full((len(rows),), pad, dtype=torch.long, device=self.device)
                drawn = sampler(logits[live_at], live)
                tokens[live_at] = drawn
            else:
                tokens = drawn = sampler(logits, live)
            is_eos = torch.isin(drawn, stop_ids).tolist()
            may_stop = ends_stop[drawn].tolist() if stop else [False] * len(live)
            ended = set()
            for j, (i, token) in enumerate(zip(live, drawn.tolist())):
                r, row = batch[i], generated[i]
                if is_eos[j]:  # the end-of-turn token counts as generated, not as text
                    text = self.tokenizer.decode(row, skip_special_tokens=False)
                    results[i] = completion(text, len(row) + 1, stop, hit_length=False)
                    ended.add(i)
                    continue
                row.append(token)
                if may_stop[j]:  # this token ends with a stop string's last character: look closer
                    tail = self.tokenizer.decode(row[-(longest_stop + 2) :], skip_special_tokens=False)
                    if any(s in tail for s in stop):
                        results[i] = completion(self.tokenizer.decode(row, skip_special_tokens=False), len(row), stop, False)
                        ended.add(i)
                        continue
                if len(row) >= r.max_tokens:
                    results[i] = completion(self.tokenizer.decode(row, skip_special_tokens=False), len(row), stop, hit_length=True)
                    ended.add(i)
            if ended:
                rows = [None if i in ended else i for i in rows]
                live = [i for i in rows if i is not None]
                if not live:
                    return results  # type: ignore[return-value]
                live_at = torch.tensor([j for j, i in enumerate(rows) if i is not None], device=self.device)
            # An ended row's KV is dropped (the cache compacted: a copy of every live row's KV)
            # only once enough rows have ended; until then it rides along.
            if len(rows) - len(live) >= max(1, int(len(rows) * self.COMPACT_WHEN_ENDED)):
                cache.batch_select_indices(live_at)
                mask, positions, tokens = mask[live_at], positions[live_at], tokens[live_at]
                rows, live_at = live, None
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
            positions = positions + 1
            logits = self._last_logits(tokens[:, None], mask, positions, cache)

    def _new_cache(self, past=None):
        from transformers import DynamicCache

        cache = DynamicCache()
        cache.layer_class_to_replicate = self._growing_layer
        for k, v in past or []:
            layer = self._growing_layer()
            layer.update(k, v)
            cache.layers.append(layer)
        return cache

    def _padded_past(self, kept: list, width: int):
        """Per layer (K, V) for a batch: each row's kept KV (a chain of segments, KVStore.get)
        right-aligned in `width`, zeros before it."""
        if not width:
            return None
        # Rows after the same prefix share its KV (the same segments): pad each distinct chain once,
        # then gather the rows.
        sources = {_chain_id(chain): chain for chain in kept if chain}
        slots = {key: slot for slot, key in enumerate(sources)}
        some = next(iter(sources.values()))[0]
        u = len(sources) + 1  # the last slot stays zeros: rows with nothing kept
        past = [(k.new_zeros(u, k.shape[1], width, k.shape[3]), v.new_zeros(u, v.shape[1], width, v.shape[3])) for k, v in some]
        for key, chain in sources.items():
            at = width - _chain_length(chain)
            for segment in chain:
                n = segment[0][0].shape[-2]
                for (k, v), (pk, pv) in zip(segment, past):
                    pk[slots[key], :, at : at + n] = k[0]
                    pv[slots[key], :, at : at + n] = v[0]
                at += n
        rows = torch.tensor([slots[_chain_id(chain)] if chain else u - 1 for chain in kept], device=self.device)
        return [(pk.index_select(0, rows), pv.index_select(0, rows)) for pk, pv in past]

    def _generation_start(self, r: GenerateRequest):
        """(kept KV as a chain of segments, its length, key to keep this prompt's prefix under, the
        kept entry's key, token ids still to compute). The key is every piece but the last (the
        opening, which changes from round to round)."""
        if not (self.reuse_kv and len(r.pieces) > 1):
            return None, 0, None, None, self.chat.prompt_ids(r)
        key = r.pieces[:-1]
        for cut in range(len(key), 0, -1):
            new = [t for piece in r.pieces[cut:] for t in self._ids(piece)]
            hit = self._gen_kv.get(key[:cut]) if new else None  # at least one token to compute: its logits start the decoding
            if hit is not None:
                return hit[0], _chain_length(hit[0]), key, key[:cut], new
        return None, 0, key, None, self.chat.prompt_ids(r)

    def _keep_generation_prefixes(self, batch, starts, cache, end: int) -> None:
        """After the prompt pass: keep each row's computed KV up to its opening (the rest of its
        accepted trajectory) for the next round, after the entry it started from: the beams of
        one problem share their common prefix's KV instead of each copying it."""
        layers = [(layer.keys, layer.values) for layer in cache.layers]  # `end` columns: the padded past, then the prompt pass
        for i, (r, (_, _, key, parent, new)) in enumerate(zip(batch, starts)):
            if key is None or key in self._gen_kv:
                continue
            lo, hi = end - len(new), end - len(self._ids(r.pieces[-1]))  # this row's computed tokens, opening excluded
            if hi > lo:
                self._gen_kv.put(key, _row_span(layers, i, lo, hi), parent=parent)

    def _last_logits(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache) -> torch.Tensor:
        kwargs = {self._cache_kw: cache, "attention_mask": mask, "position_ids": positions, "use_cache": True}
        if self._keeps_last_logits:
            kwargs["logits_to_keep"] = 1  # the vocabulary's logits for the last position only
        return self.model(input_ids=ids, **kwargs).logits[:, -1]

    def _stop_enders(self, stop: tuple[str, ...]) -> torch.Tensor:
        """For each vocabulary token: whether its text holds the last character of a stop string
        (only then can a stop string have just been completed). A non-ASCII last character may be
        split over byte tokens: then every token is checked."""
        key = tuple(sorted({s[-1] for s in stop if s}))
        if key not in self._enders:
            size = max(len(self.tokenizer), self.model.get_output_embeddings().weight.shape[0])
            if all(c.isascii() for c in key):
                texts = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))], skip_special_tokens=False)
                flags = [any(c in text for c in key) for text in texts] + [False] * (size - len(texts))
            else:
                flags = [True] * size
            self._enders[key] = torch.tensor(flags, device=self.device)
        return self._enders[key]

    # -- scoring -------------------------------------------------------------

    @torch.inference_mode()
    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        # A scored text longer than the context fails alone (a model with learned positions
        # would raise; one with RoPE would score positions it never saw).
        return score_within_context(requests, self.context_length, lambda r: len(self.chat.sequence(r)[0]), self._score_fitting)

    def _score_fitting(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        results: list[ScoreResult | None] = [None] * len(requests)
        todo = list(range(len(requests)))
        if not self.reuse_kv:
            for chunk in self._chunks(todo, lambda i: len(self.chat.sequence(requests[i])[0])):
                for i, res in zip(chunk, self._halving(self._score_full, [requests[i] for i in chunk], "scoring")):
                    results[i] = res
            return results  # type: ignore[return-value]
        self._kv.next_call()
        # Every candidate goes through the model in one batch whatever its accepted prefix: each
        # row reads its own prefix's cached KV (right-aligned, padding masked), so a round of
        # B beams x K teachers over many problems is a few forward passes, not one per prefix.
        # Rows are ordered by prefix length so a batch pads little.
        todo.sort(key=lambda i: (self._cached_length(requests[i].prefix), requests[i].prefix))
        for chunk in self._chunks(todo, lambda i: self._cached_length(requests[i].prefix) + len(self._ids(requests[i].candidate)) + 8):
            for i, res in zip(chunk, self._halving(self._score_rows, [requests[i] for i in chunk], "scoring")):
                results[i] = res
        # A search round's prefixes were stored by the round before it: anything older is dead
        # (it would only hold memory, which on a GPU with long trajectories is large).
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

    def _cached_length(self, prefix: tuple[str, ...]) -> int:
        return sum(len(self._ids(piece)) for piece in prefix)

    def _forward(self, ids: torch.Tensor, past: list[tuple[torch.Tensor, torch.Tensor]] | None, mask=None, positions=None, keep: int = 0):
        """Logits (float) and the per-layer KV after `ids`; with `keep`, the logits of the last
        `keep` positions only (a 152K-token vocabulary makes every position's logits the largest
        tensor of a scoring pass: 64 rows x 300 tokens are 12 GB in float32)."""
        from transformers import DynamicCache

        cache = DynamicCache(ddp_cache_data=past) if past else DynamicCache()
        extra = {} if mask is None else {"attention_mask": mask, "position_ids": positions}
        if keep and self._keeps_last_logits:
            extra["logits_to_keep"] = keep
        out = self.model(input_ids=ids, use_cache=True, **{self._cache_kw: cache}, **extra)
        layers = [(layer.keys, layer.values) for layer in cache.layers]  # updated in place by the model
        return (out.logits[:, -keep:] if keep else out.logits).float(), layers

    def _prefix_state(self, prefix: tuple[str, ...]):
        """(KV of `prefix` as a chain of segments, its last logits, tokens computed), extending the
        longest cached leading run of pieces; what is computed is kept as a segment after it."""
        if not prefix:
            return None, None, 0
        for cut in range(len(prefix), 0, -1):
            hit = self._kv.get(prefix[:cut])
            if hit is not None:
                break
        else:
            cut, hit = 0, None
        if cut == len(prefix):
            return hit[0], hit[1], 0
        rest = [t for piece in prefix[cut:] for t in self._ids(piece)]
        chain = hit[0] if hit else []
        if not rest:
            return chain, hit[1], 0
        done = _chain_length(chain)
        logits, kv = self._forward(torch.tensor([rest], device=self.device), _joined(chain) if chain else None, keep=1)
        own = _row_span(kv, 0, done)
        self._kv.put(prefix, own, logits[0, -1], parent=prefix[:cut] if chain else None)
        return [*chain, own], logits[0, -1], len(rest)

    def _left_padded(self, rows: list[list[int]]):
        """Token ids, attention mask and positions for whole sequences, left-padded to the longest."""
        width, pad = max(len(row) for row in rows), self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(row)) + row for row in rows], device=self.device)
        mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows], device=self.device)
        return ids, mask, (mask.cumsum(dim=1) - 1).clamp(min=0)

    def _cold_prefixes(self, prefixes: list[tuple[str, ...]]) -> dict[tuple[str, ...], int]:
        """Compute and keep the KV of prefixes none of whose leading pieces is cached (a problem's
        first round: its prompt) in one forward pass, left-padded; {prefix: tokens computed}."""
        ids = [[t for piece in prefix for t in self._ids(piece)] for prefix in prefixes]
        tensor, mask, positions = self._left_padded(ids)
        logits, kv = self._forward(tensor, None, mask, positions, keep=1)
        width = tensor.shape[1]
        for i, (prefix, row) in enumerate(zip(prefixes, ids)):
            start = width - len(row)
            self._kv.put(prefix, _row_span(kv, i, start), logits[i, -1].clone())
        return {prefix: len(row) for prefix, row in zip(prefixes, ids)}

    def _score_rows(self, batch: list[ScoreRequest]) -> list[ScoreResult]:
        distinct = list(dict.fromkeys(r.prefix for r in batch))
        cold = [p for p in distinct if self._cached_length(p) and not any(p[:cut] in self._kv for cut in range(1, len(p) + 1))]
        computed = self._cold_prefixes(cold) if cold else {}
        states = {}
        for prefix in distinct:
            past, last, new = self._prefix_state(prefix)
            states[prefix] = (past, last, computed.get(prefix, new))
        lengths = {key: _chain_length(chain) if chain else 0 for key, (chain, _, _) in states.items()}
        width_past = max(lengths.values())
        rows, cands, tails, targets = [], [], [], []
        for r in batch:
            cand = self._ids(r.candidate)
            tail, positions = self.chat.tail(r.lead_in, r.target)
            rows.append(cand + tail)
            cands.append(len(cand))
            tails.append(len(tail))
            targets.append([len(cand) + p for p in positions])
        width = max(len(row) for row in rows)
        n, pad = len(rows), self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(row)) + row for row in rows], device=self.device)
        # Each row: [padding | its prefix's KV] [padding | its candidate + answer]: right-aligned,
        # so every logit scoring needs (the candidate's last token's on) is in the last `keep`.
        mask = torch.zeros(n, width_past + width, dtype=torch.long, device=self.device)
        offsets = torch.zeros(n, 1, dtype=torch.long, device=self.device)
        past = self._padded_past([states[r.prefix][0] for r in batch], width_past)
        for i, (r, row) in enumerate(zip(batch, rows)):
            c = lengths[r.prefix]
            mask[i, width_past - c : width_past] = 1
            mask[i, width_past + width - len(row) :] = 1
            offsets[i, 0] = c - (width - len(row))
        positions = (offsets + torch.arange(width, device=self.device)[None, :]).clamp(min=0)
        keep = min(max(tails) + 1, width)  # an empty candidate: the prefix's own logits start the answer
        logits, kv = self._forward(ids, past, mask, positions, keep=keep)
        logprobs = torch.log_softmax(logits, dim=-1)
        results, charged = [], set()
        for i, (r, row, pos) in enumerate(zip(batch, rows, targets)):
            _, last_logits, new_prefix_tokens = states[r.prefix]
            first = torch.log_softmax(last_logits, dim=-1) if last_logits is not None else None
            at = keep - len(row)  # row index j's logits are logits[i, at + j]
            values = []
            for p in pos:
                dist = logprobs[i, at + p - 1] if p > 0 else first
                values.append(float(dist[row[p]]))
            # Keep this candidate's prefix + step: if it is selected, the next round starts here.
            c, cand_len = lengths[r.prefix], cands[i]
            step_last = logits[i, at + cand_len - 1].clone() if cand_len else last_logits  # not a view: it would hold the batch's logits
            # Only the step's own KV, after its prefix's entry (shared by every candidate of that prefix).
            lo = width_past + width - len(row)
            own = _row_span(kv, i, lo, lo + cand_len)
            self._kv.put(r.pieces, own, step_last, parent=r.prefix if c else None)
            share = 0 if r.prefix in charged else new_prefix_tokens
            charged.add(r.prefix)
            results.append(ScoreResult(values, share + len(row), c + len(row)))
        return results

    def _score_full(self, batch: list[ScoreRequest]) -> list[ScoreResult]:
        """Reference path: whole sequences through the model, left-padded, no cache reuse; the
        logits from each row's first answer token on only."""
        sequences = [self.chat.sequence(r) for r in batch]
        ids, mask, position_ids = self._left_padded([row for row, _ in sequences])
        keep = min(max(len(row) - targets[0] + 1 for row, targets in sequences), ids.shape[1])
        logits, _ = self._forward(ids, None, mask, position_ids, keep=keep)
        logprobs = torch.log_softmax(logits, dim=-1)
        return [
            ScoreResult([float(logprobs[i, keep - len(row) + p - 1, row[p]]) for p in targets], len(row), len(row))
            for i, (row, targets) in enumerate(sequences)
        ]
