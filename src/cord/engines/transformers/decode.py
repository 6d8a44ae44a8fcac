"""The transformers engine's decode loop: a batch of requests decoded token by token with its own
loop (not `generate()`), each row sampling by its request's seed and sampling settings and
stopping the moment it ends (stop string, end of turn, cap). A teacher keeps the KV of each
accepted trajectory it read (the prompt pieces up to the opening), so the next round computes
only the new step; and the KV of each step it wrote, so when the search keeps that step the
next round computes only the next opening."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

import torch

from ..base import CARRIED, Completion, GenerateRequest, completion
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
        self.stop_tensor = torch.tensor(sorted(lm.stop_ids), device=lm.device)  # end-of-turn token ids
        # prompt key -> (tokens, store key) of each row that ended after that prompt: its opening
        # and the tokens it wrote, whose KV the store keeps while it has room
        self._written: dict[tuple[str, ...], list[tuple[tuple[int, ...], Hashable]]] = {}
        self._rows_written = 0
        self._carried: RunningBatch | None = None  # what the last batch(carry=True) left decoding
        self._carried_at: dict[GenerateRequest, int] = {}  # its requests -> their request indices

    # A row's own step is kept only from this many tokens: a shorter one costs less to read again
    # than to keep (a copy when the row ends, a segment more in every later prompt pass). On the
    # 2-core CPU, keeping the tiny teachers' steps of about 10 tokens made CoRD's generation 5-15 %
    # slower (tiny-hetero, 120 problems; docs/benchmarks.md); a real teacher's steps run to hundreds.
    KEEP_WRITTEN_FROM = 32

    # A whole batch of more requests than rows at once: the waiting ones join once this share of the
    # rows is free. Each join is a prompt pass of its own (about one decode iteration on a GPU) and
    # a copy of the running cache, so rows join in groups rather than one by one.
    REFILL_WHEN_FREE = 0.25

    # A batch that may carry (`batch(carry=True)`) returns once no request waits and at most this
    # share of its rows still decode: those few rows would decode nearly alone for as long as the
    # longest of them (up to max_step_tokens), on a GPU at about a full batch's cost an iteration.
    # They stay in the running batch and resume with the next batch's rows. In the GPU-shaped
    # simulation (benchmarks/device_time.py, whole batches on a shared device, paper-like lengths)
    # CoRD's device time a run fell by 13 % at 0.25, against 6 % at 0.125 and 9 % at 0.5.
    CARRY_WHEN_LIVE = 0.25

    def batch(self, batch: list[GenerateRequest], rows: int | None = None, carry: bool = False) -> list[Completion]:
        """Decode `batch` to its end, at most `rows` rows at once (all of them if None). A row
        leaves as it ends and the requests still waiting join the running rows, so a batch of many
        rows lasts about its tokens over `rows` iterations, not its longest row once per `rows`
        of them (on a GPU an iteration costs about the same for 1 row or 64). Which rows decode
        together depends only on what the rows generate, and each samples by its own seed, so the
        batch's results do too.

        `carry`: once nothing waits, a row has ended and at most CARRY_WHEN_LIVE of the rows still
        decode, none of them carried before, the batch returns and answers those rows CARRIED; they
        keep decoding in the next batch that asks for the same requests (a request is carried once
        at most, so every batch ends rows). Carried rows a batch does not ask for are dropped."""
        rows = max(1, min(rows or len(batch), len(batch)))
        running, index = self._resume(batch)  # index: position in `batch` -> its row's request index
        waiting = deque(pos for pos in range(len(batch)) if pos not in index)
        fresh: set[int] = set()  # rows started by this batch (a resumed one is never carried again)
        least = max(1, int(rows * self.REFILL_WHEN_FREE))
        carry_at = int(rows * self.CARRY_WHEN_LIVE) if carry else 0
        ended = False
        while waiting or running.live:
            room = rows - len(running.live)
            if waiting and room >= min(least, len(waiting)):
                take = [waiting.popleft() for _ in range(min(room, len(waiting)))]
                for pos, i in zip(take, running.admit([batch[pos] for pos in take])):
                    index[pos] = i
                    fresh.add(i)
            ended = bool(running.step()) or ended
            if carry_at and ended and not waiting and 0 < len(running.live) <= carry_at and fresh.issuperset(running.live):
                live = set(running.live)
                self._carried, self._carried_at = running, {batch[pos]: i for pos, i in index.items() if i in live}
                break
        out = running.results
        return [out.pop(index[pos]) if index[pos] in out else Completion("", 0, CARRIED) for pos in range(len(batch))]

    def drop_carried(self) -> None:
        """Forget the rows the last batch carried (their KV with them)."""
        self._carried, self._carried_at = None, {}

    def _resume(self, batch: list[GenerateRequest]) -> tuple[RunningBatch, dict[int, int]]:
        """The running batch the last `batch(carry=True)` left, with the rows of `batch` it carries
        ({position: request index}); those it carries that `batch` does not ask for are dropped.
        A new running batch if nothing was carried."""
        running, carried = self._carried, self._carried_at
        self._carried, self._carried_at = None, {}
        if running is None:
            return RunningBatch(self), {}
        index = {pos: carried.pop(r) for pos, r in enumerate(batch) if r in carried}
        if carried:
            running.drop(list(carried.values()))
        return running, index

    def prefill(self, batch: list[GenerateRequest]):
        """The prompt pass of `batch`: (cache, attention mask, each row's next position, logits after
        each prompt, each prompt's last token id).
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
        return cache, mask, positions[:, -1:], logits, [new[-1] for *_, new in starts]

    def start(self, r: GenerateRequest):
        """(kept KV as a chain of segments, its length, key to keep this prompt's prefix under, the
        kept entry's key, token ids still to compute). The key is every piece but the last (the
        opening, which changes from round to round)."""
        if not (self.reuse_kv and len(r.pieces) > 1):
            return None, 0, None, None, self.lm.chat.prompt_ids(r)
        key = r.pieces[:-1]
        if key not in self.store and len(key) > 1:
            partial = ("row part", key)
            if partial not in self.store:  # (the beams of K teachers on one engine ask for it K times)
                self.take_written(key, bool(r.pieces[-1]))
            hit = self.store.get(partial) if key not in self.store else None
            if hit is not None:  # the step this teacher wrote, as far as its own tokenization matches
                done = hit[0][-1][0][0].shape[-2]
                new = self.lm.ids(key[-1])[done:] + self.lm.ids(r.pieces[-1])
                return hit[0], chain_length(hit[0]), key, partial, new
        for cut in range(len(key), 0, -1):
            new = [t for piece in r.pieces[cut:] for t in self.lm.ids(piece)]
            hit = self.store.get(key[:cut]) if new else None  # at least one token to compute: its logits start the decoding
            if hit is not None:
                return hit[0], chain_length(hit[0]), key, key[:cut], new
        return None, 0, key, None, self.lm.chat.prompt_ids(r)

    def keep_written(self, r: GenerateRequest, layers: list, row: int, end: int, fed: list[int]) -> None:
        """A row that ended: keep the KV of its opening and of the tokens it `fed` back through
        the model (all it wrote but the last), after its prompt's kept prefix. When the search
        keeps the step this row proposed, the next round's prompt is that prefix, the step and
        the next opening: `take_written` finds the step here, and the teacher computes only the
        opening instead of reading its own step again (of K teachers, the one whose step was kept;
        vLLM's prefix caching does the same for the blocks a request generated). Kept only in room
        the store has free (`spare`): most proposals are not kept by the search."""
        parent = r.pieces[:-1] if self.reuse_kv and len(r.pieces) > 1 else None
        if parent is None or len(fed) < self.KEEP_WRITTEN_FROM or parent not in self.store:
            return
        tokens = (*self.lm.ids(r.pieces[-1]), *fed)
        self._rows_written += 1
        key = ("row", parent, self._rows_written)
        self.store.put(key, row_span(layers, row, end - len(tokens), end), parent=parent, spare=True)
        if key in self.store:
            self._written.setdefault(parent, []).append((tokens, key))
        if len(self._written) > 4 * max(1, len(self.store)):  # forget rows whose KV the store dropped
            self._written = {p: kept for p, rows in self._written.items() if (kept := [w for w in rows if w[1] in self.store])}

    def take_written(self, key: tuple[str, ...], opening: bool) -> None:
        """If a row this teacher decoded wrote `key`'s last piece (the step the search kept; at
        least half its tokens), keep that row's KV as `key`'s own, or, where the step's
        tokenization differs from the tokens the row wrote (or nothing follows it to compute), as
        much of it as matches under ("row part", key)."""
        parent = key[:-1]
        rows = [(tokens, k) for tokens, k in self._written.get(parent, ()) if k in self.store]
        if not rows or parent not in self.store:
            return
        step = self.lm.ids(key[-1])
        match, source = max((common_prefix(step, tokens), k) for tokens, k in rows)
        if 2 * match < len(step):  # another teacher's step: sharing its opening with a row is not worth a segment
            return
        whole = match == len(step) and opening  # the opening is left to compute: its logits start the decoding
        match = match if whole else min(match, len(step) - 1)
        kv = self.store.own(source) if match > 0 else None
        if kv is None:
            return
        if match < kv[0][0].shape[-2]:
            kv = [(k[:, :, :match].clone(), v[:, :, :match].clone()) for k, v in kv]
        self.store.put(key if whole else ("row part", key), kv, parent=parent)

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


def common_prefix(a: list[int], b: tuple[int, ...]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class RunningBatch:
    """Rows decoding together, token by token. Requests join between decode iterations (`admit`:
    their prompt pass, then their rows appended to the running cache) and leave as they end
    (`step`), so a request that arrives while others decode need not wait for their batch to end.

    Each row samples by its request's seed and sampling settings and stops the moment it ends
    (its own stop strings, end of turn, cap). An ended row's KV is dropped once
    `compact_when_ended` of the rows have ended; until then it rides along."""

    def __init__(self, decoder: Decoder):
        self.d, self.lm = decoder, decoder.lm
        self.requests: dict[int, GenerateRequest] = {}  # request index -> request, while it decodes
        self.results: dict[int, Completion] = {}  # request index -> how it ended, until taken
        self.generated: dict[int, list[int]] = {}
        self.last_prompt_ids: dict[int, int] = {}
        self.sampler: RequestSampler | None = None
        self.admitted = 0  # requests admitted so far (the next one's index)
        self.rows: list[int | None] = []  # the request each cache row decodes, None once it ended
        self.live: list[int] = []  # the requests still decoding
        self.live_at: torch.Tensor | None = None  # their cache rows, while some ended rows ride along
        self.cache = self.mask = self.positions = self.logits = None

    def admit(self, batch: list[GenerateRequest]) -> list[int]:
        """Start `batch` (its prompt pass) and add its rows to the running ones; returns the
        requests' indices, by which `results` will hold them."""
        cache, mask, positions, logits, last_ids = self.d.prefill(batch)
        first, self.admitted = self.admitted, self.admitted + len(batch)
        indices = list(range(first, self.admitted))
        for i, r, last in zip(indices, batch, last_ids):
            self.requests[i], self.generated[i], self.last_prompt_ids[i] = r, [], last
        if self.sampler is None:
            self.sampler = RequestSampler(batch, self.lm.device, self.lm.chat.prompt_ids)
        else:
            self.sampler.add(batch, first)
        if not self.live:
            self.cache, self.mask, self.positions, self.logits, self.rows = cache, mask, positions, logits, list(indices)
        else:
            self._compact()
            self._join(cache, mask, positions, logits)
            self.rows += indices
        self.live = [i for i in self.rows if i is not None]
        return indices

    def _join(self, cache, mask, positions, logits) -> None:
        """Append new rows to the running ones: the shorter side is padded on the left (masked), as
        rows of different lengths are in one batch."""
        width = max(self.mask.shape[1], mask.shape[1])

        def left(t: torch.Tensor, dim: int) -> torch.Tensor:
            missing = width - t.shape[dim]
            if not missing:
                return t
            shape = list(t.shape)
            shape[dim] = missing
            return torch.cat([t.new_zeros(shape), t], dim=dim)

        past = [
            (torch.cat([left(a.keys, 2), left(b.keys, 2)]), torch.cat([left(a.values, 2), left(b.values, 2)]))
            for a, b in zip(self.cache.layers, cache.layers)
        ]
        self.cache = self.lm.new_cache(past)
        self.mask = torch.cat([left(self.mask, 1), left(mask, 1)])
        self.positions = torch.cat([self.positions, positions])
        self.logits = torch.cat([self.logits, logits])

    def _compact(self) -> None:
        """Drop the ended rows' KV (a copy of every live row's)."""
        if self.live_at is not None:
            self.cache.batch_select_indices(self.live_at)
            self.mask, self.positions, self.logits = self.mask[self.live_at], self.positions[self.live_at], self.logits[self.live_at]
            self.rows, self.live_at = list(self.live), None
            self._trim()

    def _trim(self) -> None:
        """Drop the leading cache columns no live row attends to: rows that join are padded on the
        left to the running width, so without this a batch that rows keep joining would grow
        wider than its widest live row."""
        used = self.mask.any(0).nonzero()
        first = int(used[0]) if len(used) else 0
        if first:
            self.mask = self.mask[:, first:]
            for layer in self.cache.layers:
                layer.crop_left(first)

    def text_of(self, i: int) -> str:
        """The request's text as it continues its prompt, no special token's text in it."""
        return self.lm.chat.clean(self.lm.chat.decode_after(self.last_prompt_ids[i], self.generated[i]))

    def _end(self, i: int, result: Completion, j: int, live_at: torch.Tensor | None, fed: int) -> None:
        """Request `i`, the `j`-th live row, ended with `result`, the model having read back `fed`
        of the tokens it wrote. Its cache row is looked up (a device sync) only if it is kept."""
        self.results[i] = result
        if self.d.reuse_kv and fed >= self.d.KEEP_WRITTEN_FROM and result.finish != "error":
            place = j if live_at is None else int(live_at[j])
            layers = [(layer.keys, layer.values) for layer in self.cache.layers]
            self.d.keep_written(self.requests[i], layers, place, self.mask.shape[1], self.generated[i][:fed])
        self._forget(i)

    def _forget(self, i: int) -> None:
        """Request `i`'s own state (its request, tokens, sampler), once it no longer decodes."""
        del self.requests[i], self.generated[i], self.last_prompt_ids[i]
        self.sampler.forget(i)

    def step(self) -> list[int]:
        """One decode iteration: a token for every live row, then the model's pass over them.
        Returns the requests that ended (their `results`)."""
        pad = self.lm.tokenizer.pad_token_id
        live, live_at, logits = self.live, self.live_at, self.logits
        if live_at is not None:  # sample the live rows only; an ended row's token is padding
            tokens = torch.full((len(self.rows),), pad, dtype=torch.long, device=self.lm.device)
            drawn = self.sampler(logits[live_at], live)
            tokens[live_at] = drawn
        else:
            tokens = drawn = self.sampler(logits, live)
        is_eos = torch.isin(drawn, self.d.stop_tensor).tolist()
        may_stop = self._may_stop(drawn, live)
        ended = []
        for j, (i, token) in enumerate(zip(live, drawn.tolist())):
            r, row = self.requests[i], self.generated[i]
            fed = len(row)  # the tokens the model has read back (this one is not yet)
            if is_eos[j]:  # the end-of-turn token counts as generated, not as text
                self._end(i, completion(self.text_of(i), len(row) + 1, r.stop, hit_length=False), j, live_at, fed)
                ended.append(i)
                continue
            row.append(token)
            if may_stop[j]:  # this token ends with a stop string's last character: look closer
                longest = max(len(s) for s in r.stop)
                tail = self.lm.tokenizer.decode(row[-(longest + 2) :], skip_special_tokens=False)
                if any(s in tail for s in r.stop):
                    self._end(i, completion(self.text_of(i), len(row), r.stop, False), j, live_at, fed)
                    ended.append(i)
                    continue
            if len(row) >= r.max_tokens:
                self._end(i, completion(self.text_of(i), len(row), r.stop, hit_length=True), j, live_at, fed)
                ended.append(i)
        if ended:
            self._leave(set(ended))
            if not self.live:
                return ended
        # An ended row's KV is dropped (the cache compacted: a copy of every live row's KV)
        # only once enough rows have ended; until then it rides along.
        if len(self.rows) - len(self.live) >= max(1, int(len(self.rows) * self.d.compact_when_ended)):
            self.cache.batch_select_indices(self.live_at)
            self.mask, self.positions, tokens = self.mask[self.live_at], self.positions[self.live_at], tokens[self.live_at]
            self.rows, self.live_at = list(self.live), None
            self._trim()
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(self.rows), 1)], dim=1)
        self.positions = self.positions + 1
        self.logits = self.lm.last_logits(tokens[:, None], self.mask, self.positions, self.cache)
        return ended

    def _leave(self, gone: set[int]) -> None:
        """Requests `gone` no longer decode: their rows ride along (masked out of sampling) until
        the cache is compacted; with no row left the batch is empty."""
        self.rows = [None if i in gone else i for i in self.rows]
        self.live = [i for i in self.rows if i is not None]
        if not self.live:
            self.rows, self.live_at = [], None
            self.cache = self.mask = self.positions = self.logits = None
            return
        self.live_at = torch.tensor([j for j, i in enumerate(self.rows) if i is not None], device=self.lm.device)

    def drop(self, requests: list[int]) -> None:
        """Stop decoding `requests` (carried rows no batch asked for again), no result kept."""
        for i in requests:
            self._forget(i)
        self._leave(set(requests))

    def _may_stop(self, drawn: torch.Tensor, live: list[int]) -> list[bool]:
        """Per live row: whether its token holds the last character of one of its stop strings."""
        out = [False] * len(live)
        by_stop: dict[tuple[str, ...], list[int]] = {}
        for j, i in enumerate(live):
            if self.requests[i].stop:
                by_stop.setdefault(self.requests[i].stop, []).append(j)
        for stop, js in by_stop.items():
            enders = self.d.stop_enders(stop)
            flags = (enders[drawn] if len(js) == len(live) else enders[drawn[torch.tensor(js, device=drawn.device)]]).tolist()
            for j, flag in zip(js, flags):
                out[j] = flag
        return out
