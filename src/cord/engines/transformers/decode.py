"""The transformers engine's decode loop: a batch of requests decoded token by token with its own
loop (not `generate()`), each row sampling by its request's seed, temperature and top-p and
stopping the moment it ends (stop string, end of turn, cap). A teacher keeps the KV of each
accepted trajectory it read (the prompt pieces up to the opening), so the next round computes
only the new step."""

from __future__ import annotations

import torch

from ..base import Completion, GenerateRequest, completion
from .kv import KVStore, chain_length, padded_past, row_span
from .model import LoadedModel
from .sampling import RequestSampler


class Decoder:
    # The share of a decode batch's rows that must have ended before their KV is dropped (the cache
    # compacted: a copy of every live row's KV). Until then an ended row rides along, its KV read
    # by every pass. Counted over CoRD's 32 tiny problems (hetero / homo), KV read by the passes
    # plus KV copied, against dropping each row as it ends: 0.78 / 0.87 at 0.5, with 3 % / 3 % more
    # rows computed (1.0, never: 0.77 / 0.86, with 14 % / 12 % more). On a GPU, decoding long
    # trajectories is bound by reading KV; the 2-core CPU's wall time did not tell 0 and 0.5 apart.
    COMPACT_WHEN_ENDED = 0.5

    def __init__(self, lm: LoadedModel, store: KVStore, reuse_kv: bool = True):
        self.lm, self.store, self.reuse_kv = lm, store, reuse_kv
        self.compact_when_ended = self.COMPACT_WHEN_ENDED
        self._enders: dict[tuple[str, ...], torch.Tensor] = {}

    def batch(self, batch: list[GenerateRequest], stop: tuple[str, ...]) -> list[Completion]:
        """Decode the batch token by token; a row stops sampling as soon as it ends, and the ended
        rows' KV is dropped once `compact_when_ended` of the rows have ended, so the batch shrinks as
        it goes.
        A request cut into pieces starts from the KV kept for the longest leading run of them (the
        accepted trajectory, from this teacher's previous round), so only the new step and the
        opening are computed again."""
        starts = [self.start(r) for r in batch]  # (kept KV or None, its length, key, parent, ids to compute)
        width_past = max(length for _, length, _, _, _ in starts)
        width = max(len(new) for *_, new in starts)
        n, pad = len(batch), self.lm.tokenizer.pad_token_id
        # Each row: [padding | its kept KV] as the past, then [padding | the tokens to compute].
        ids = torch.tensor([[pad] * (width - len(new)) + new for *_, new in starts], device=self.lm.device)
        mask = torch.zeros(n, width_past + width, dtype=torch.long, device=self.lm.device)
        positions = torch.zeros(n, width, dtype=torch.long, device=self.lm.device)
        past = padded_past([kept for kept, *_ in starts], width_past, self.lm.device)
        for i, (_, length, _, _, new) in enumerate(starts):
            mask[i, width_past - length : width_past] = 1
            mask[i, width_past + width - len(new) :] = 1
            positions[i, width - len(new) :] = torch.arange(length, length + len(new))
        cache = self.lm.new_cache(past)
        logits = self.lm.last_logits(ids, mask, positions, cache)
        if self.reuse_kv:
            self.keep_prefixes(batch, starts, cache, width_past + width)
        positions = positions[:, -1:]
        sampler = RequestSampler(batch, self.lm.device)
        ends_stop = self.stop_enders(stop)
        longest_stop = max((len(s) for s in stop), default=0)
        stop_ids = torch.tensor(sorted(self.lm.stop_ids), device=self.lm.device)
        generated: list[list[int]] = [[] for _ in batch]
        last_prompt_ids = [new[-1] for *_, new in starts]

        def text_of(i: int) -> str:  # the row's text as it continues its prompt, no special token's text in it
            return self.lm.chat.clean(self.lm.chat.decode_after(last_prompt_ids[i], generated[i]))

        results: list[Completion | None] = [None] * len(batch)
        rows = list(range(len(batch)))  # the request each cache row decodes (indices into `batch`), None once it ended
        live = rows  # the rows still decoding
        live_at = None  # their cache rows, while some ended rows ride along
        while True:
            if live_at is not None:  # sample the live rows only; an ended row's token is padding
                tokens = torch.full((len(rows),), pad, dtype=torch.long, device=self.lm.device)
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
                    results[i] = completion(text_of(i), len(row) + 1, stop, hit_length=False)
                    ended.add(i)
                    continue
                row.append(token)
                if may_stop[j]:  # this token ends with a stop string's last character: look closer
                    tail = self.lm.tokenizer.decode(row[-(longest_stop + 2) :], skip_special_tokens=False)
                    if any(s in tail for s in stop):
                        results[i] = completion(text_of(i), len(row), stop, False)
                        ended.add(i)
                        continue
                if len(row) >= r.max_tokens:
                    results[i] = completion(text_of(i), len(row), stop, hit_length=True)
                    ended.add(i)
            if ended:
                rows = [None if i in ended else i for i in rows]
                live = [i for i in rows if i is not None]
                if not live:
                    return results  # type: ignore[return-value]
                live_at = torch.tensor([j for j, i in enumerate(rows) if i is not None], device=self.lm.device)
            # An ended row's KV is dropped (the cache compacted: a copy of every live row's KV)
            # only once enough rows have ended; until then it rides along.
            if len(rows) - len(live) >= max(1, int(len(rows) * self.compact_when_ended)):
                cache.batch_select_indices(live_at)
                mask, positions, tokens = mask[live_at], positions[live_at], tokens[live_at]
                rows, live_at = live, None
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
            positions = positions + 1
            logits = self.lm.last_logits(tokens[:, None], mask, positions, cache)

    def start(self, r: GenerateRequest):
        """(kept KV as a chain of segments, its length, key to keep this prompt's prefix under, the
        kept entry's key, token ids still to compute). The key is every piece but the last (the
        opening, which changes from round to round)."""
        if not (self.reuse_kv and len(r.pieces) > 1):
            return None, 0, None, None, self.lm.chat.prompt_ids(r)
        key = r.pieces[:-1]
        for cut in range(len(key), 0, -1):
            new = [t for piece in r.pieces[cut:] for t in self.lm.ids(piece)]
            hit = self.store.get(key[:cut]) if new else None  # at least one token to compute: its logits start the decoding
            if hit is not None:
                return hit[0], chain_length(hit[0]), key, key[:cut], new
        return None, 0, key, None, self.lm.chat.prompt_ids(r)

    def keep_prefixes(self, batch, starts, cache, end: int) -> None:
        """After the prompt pass: keep each row's computed KV up to its opening (the rest of its
        accepted trajectory) for the next round, after the entry it started from: the beams of
        one problem share their common prefix's KV instead of each copying it."""
        layers = [(layer.keys, layer.values) for layer in cache.layers]  # `end` columns: the padded past, then the prompt pass
        for i, (r, (_, _, key, parent, new)) in enumerate(zip(batch, starts)):
            if key is None or key in self.store:
                continue
            lo, hi = end - len(new), end - len(self.lm.ids(r.pieces[-1]))  # this row's computed tokens, opening excluded
            if hi > lo:
                self.store.put(key, row_span(layers, i, lo, hi), parent=parent)

    def stop_enders(self, stop: tuple[str, ...]) -> torch.Tensor:
        """For each vocabulary token: whether its text holds the last character of a stop string
        (only then can a stop string have just been completed). A non-ASCII last character may be
        split over byte tokens: then every token is checked."""
        key = tuple(sorted({s[-1] for s in stop if s}))
        if key not in self._enders:
            size = max(len(self.lm.tokenizer), self.lm.model.get_output_embeddings().weight.shape[0])
            if all(c.isascii() for c in key):
                texts = self.lm.tokenizer.batch_decode([[i] for i in range(len(self.lm.tokenizer))], skip_special_tokens=False)
                flags = [any(c in text for c in key) for text in texts] + [False] * (size - len(texts))
            else:
                flags = [True] * size
            self._enders[key] = torch.tensor(flags, device=self.lm.device)
        return self._enders[key]
