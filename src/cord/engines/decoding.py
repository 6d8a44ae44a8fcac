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


class RequestSampler:
    """Samples each row of a batch with its request's own seeded generator, temperature and top-p,
    so the tokens a request gets do not depend on what else shares its batch (or its order)."""

    def __init__(self, requests: list[GenerateRequest], device: str):
        self.temperature = torch.tensor([max(r.temperature, 1e-6) for r in requests], device=device)
        self.top_p = torch.tensor([r.top_p for r in requests], device=device)
        self.generators = []
        for r in requests:
            seed = r.seed if r.seed is not None else int(torch.randint(0, 2**31 - 1, ()).item())
            self.generators.append(torch.Generator(device=device).manual_seed(seed) if r.temperature > 0 else None)

    def __call__(self, scores: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """The next token of each row of `scores`; `rows` are the rows' requests (batch indices)."""
        scores = scores.float()
        chosen = scores.argmax(dim=-1)
        sampled = [j for j, i in enumerate(rows) if self.generators[i] is not None]
        if not sampled:
            return chosen
        index = torch.tensor([rows[j] for j in sampled], device=scores.device)
        probs = torch.softmax(scores[sampled] / self.temperature[index, None], dim=-1)
        top_p = self.top_p[index]
        if bool((top_p < 1.0).any()):  # nucleus: the smallest set of tokens whose mass reaches top_p
            ordered, order = probs.sort(dim=-1, descending=True)
            outside = ordered.cumsum(-1) - ordered >= top_p[:, None]
            probs = probs.scatter(1, order, ordered.masked_fill(outside, 0.0))
        for k, j in enumerate(sampled):  # one draw per row from its own generator
            chosen[j] = torch.multinomial(probs[k], 1, generator=self.generators[rows[j]])[0]
        return chosen
