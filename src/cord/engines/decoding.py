"""Pieces of the transformers engine's decode loop: per-request sampling and a KV cache layer that
grows in place."""

from __future__ import annotations

import torch

from .base import GenerateRequest


def growing_layer_class():
    """A transformers cache layer whose keys and values live in a buffer with room to grow: a
    decoding step writes one column instead of copying the whole cache (DynamicLayer concatenates,
    which costs O(length) per step per layer)."""
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.dtype, self.device, self.is_initialized = key_states.dtype, key_states.device, True
                self._k = self._v = None
                self._length = 0
            n = key_states.shape[-2]
            if self._k is None or self._length + n > self._k.shape[-2]:
                room = max(2 * (self._length + n), 64)
                k, v = (
                    key_states.new_empty(*key_states.shape[:2], room, key_states.shape[3]),
                    value_states.new_empty(*value_states.shape[:2], room, value_states.shape[3]),
                )
                if self._length:
                    k[:, :, : self._length] = self._k[:, :, : self._length]
                    v[:, :, : self._length] = self._v[:, :, : self._length]
                self._k, self._v = k, v
            self._k[:, :, self._length : self._length + n] = key_states
            self._v[:, :, self._length : self._length + n] = value_states
            self._length += n
            self.keys, self.values = self._k[:, :, : self._length], self._v[:, :, : self._length]
            return self.keys, self.values

        def batch_select_indices(self, indices):
            if self.is_initialized and self._length:
                self._k, self._v = self._k[indices], self._v[indices]
                self.keys, self.values = self._k[:, :, : self._length], self._v[:, :, : self._length]

    return GrowingLayer


_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for int64 x < 2**32, without overflowing int64."""
    low, high = x & 0xFFFF, x >> 16
    return (low * c + (((high * c) & 0xFFFF) << 16)) & _MASK32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash with full avalanche (Wellons' lowbias32)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def request_uniforms(seeds: torch.Tensor, counters: torch.Tensor, vocab: int) -> torch.Tensor:
    """[rows, vocab] uniforms in (0, 1), a pure function of each row's (seed, counter) and the
    token id: counter-based, so a request's draws depend on nothing else in the batch, and the
    whole batch is drawn in a few tensor operations (no per-row generator, no per-row kernel)."""
    key = _mix32(_mix32(_mix32(seeds & _MASK32) ^ (seeds >> 32)) ^ (counters & _MASK32))
    token = torch.arange(vocab, device=seeds.device, dtype=torch.int64)
    bits = _mix32(_mix32(key[:, None] ^ token[None, :]) ^ 0x5BD1E995)
    return (bits.double() + 0.5) / 2.0**32


class RequestSampler:
    """Samples each row of a batch by its request's own seed, temperature and top-p, so the tokens
    a request gets do not depend on what else shares its batch (or its order). The draw is
    Gumbel-max over counter-based noise (`request_uniforms` of the request's seed and the index of
    the token it is choosing): an exact sample of the tempered, nucleus-truncated distribution,
    made for the whole batch at once, and the same on any device for the same logits."""

    def __init__(self, requests: list[GenerateRequest], device: str):
        self.temperature = torch.tensor([max(r.temperature, 1e-6) for r in requests], device=device)
        self.top_p = torch.tensor([r.top_p for r in requests], device=device)
        self.sampled = torch.tensor([r.temperature > 0 for r in requests], device=device)
        seeds = [r.seed if r.seed is not None else int(torch.randint(0, 2**31 - 1, ()).item()) for r in requests]
        self.seeds = torch.tensor([s % 2**63 for s in seeds], dtype=torch.int64, device=device)
        self.counters = torch.zeros(len(requests), dtype=torch.int64, device=device)  # tokens chosen so far

    def __call__(self, scores: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """The next token of each row of `scores`; `rows` are the rows' requests (batch indices)."""
        index = torch.tensor(rows, device=scores.device)
        scores = scores.float() / self.temperature[index, None]
        top_p = self.top_p[index]
        if bool((top_p < 1.0).any()):  # nucleus: the smallest set of tokens whose mass reaches top_p
            probs = torch.softmax(scores, dim=-1)
            ordered, order = probs.sort(dim=-1, descending=True)
            outside = ordered.cumsum(-1) - ordered >= top_p[:, None]
            scores = scores.masked_fill(torch.zeros_like(outside).scatter(1, order, outside), float("-inf"))
        gumbel = -torch.log(-torch.log(request_uniforms(self.seeds[index], self.counters[index], scores.shape[-1])))
        noisy = torch.where(self.sampled[index, None], scores.double() + gumbel, scores.double())
        self.counters[index] += 1
        return noisy.argmax(dim=-1)
