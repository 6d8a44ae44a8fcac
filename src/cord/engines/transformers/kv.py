"""The transformers engine's KV: kept prefixes within a byte budget, chains of segments, and how a
batch's past is padded together.

The engine keeps the KV of every prefix it read (a teacher's accepted trajectory, a scored
prefix) so the next round computes only the new tokens. With 16K-token trajectories of a 7B model
one whole prefix is about 1 GB (28 layers x 2 x 4 KV heads x 128 x 2 bytes a token), so an entry
may hold only its own tokens and name its parent entry (a scored candidate: its step, after the
prefix it was scored on): the candidates of one prefix share it instead of each copying it. A
store is held to `max_bytes`: the least recently used entries go first, and a prefix that was
dropped (or whose parent was) is computed again when it is next needed (slower, never wrong).
Entries not used by the current call or the one before are dropped too: the search has moved
past them. The steps a teacher wrote are kept as spare entries (`put(spare=True)`): only in room
the budget has free, and first to go, since the search keeps few of them. A batch reads each
row's chain right-aligned in one padded past (`padded_past`), and decoding grows its cache in
place (`growing_layer_class`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import torch


def kv_bytes(kv: list[tuple[torch.Tensor, torch.Tensor]]) -> int:
    return sum(t.numel() * t.element_size() for pair in kv for t in pair)


def default_kv_budget(device: str) -> int:
    """A quarter of the GPU's memory on CUDA (the model, activations and the other caches need
    the rest), 4 GiB elsewhere."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_properties(torch.device(device)).total_memory // 4
    return 4 * 2**30


class KVStore:
    """Key -> (per-layer K/V of its own tokens, extra, parent key or None), least recently used first
    out, at most `max_bytes` of K/V."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.peak_bytes = 0  # the most it held (benchmarks report it)
        self.call = 0
        # key -> (kv, extra, last call that used it, bytes, parent key)
        self._entries: OrderedDict[Hashable, tuple[list, Any, int, int, Hashable | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def get(self, key: Hashable) -> tuple[list[list], Any] | None:
        """(the K/V segments from the root entry down to this one's own, extra), each entry on the
        way marked used by this call; None if the entry, or one of its parents, is gone."""
        chain, at = [], key
        while at is not None:
            entry = self._entries.get(at)
            if entry is None:
                if at != key:
                    self._drop(key)  # an orphan: its prefix's KV is gone
                return None
            chain.append(at)
            at = entry[4]
        for k in reversed(chain):
            kv, extra, _, size, parent = self._entries[k]
            self._entries[k] = (kv, extra, self.call, size, parent)
            self._entries.move_to_end(k)
        return [self._entries[k][0] for k in reversed(chain)], self._entries[key][1]

    def own(self, key: Hashable) -> list | None:
        """The K/V of `key`'s own tokens (not its parents'), marked used by this call; None if gone."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        kv, extra, _, size, parent = entry
        self._entries[key] = (kv, extra, self.call, size, parent)
        return kv

    def put(self, key: Hashable, kv: list, extra: Any = None, parent: Hashable | None = None, spare: bool = False) -> None:
        """Keep `kv` (with `parent`: only the tokens after the parent entry's) under `key`, dropping
        the least recently used entries to stay in budget (an entry larger than the whole budget is
        not kept). `spare`: an entry that may well go unused, kept only in room the budget has
        free and first to go when another needs it."""
        size = kv_bytes(kv)
        self._drop(key)
        if size > self.max_bytes or (spare and self.bytes + size > self.max_bytes):
            return
        while self._entries and self.bytes + size > self.max_bytes:
            self._drop(next(iter(self._entries)))
        self._entries[key] = (kv, extra, self.call, size, parent)
        if spare:
            self._entries.move_to_end(key, last=False)
        self.bytes += size
        self.peak_bytes = max(self.peak_bytes, self.bytes)

    def clear(self) -> None:
        """Drop every entry and start counting the peak again."""
        self._entries.clear()
        self.bytes = self.peak_bytes = 0

    def next_call(self) -> None:
        self.call += 1

    def drop_unused(self) -> None:
        """Drop what neither this call nor the one before used."""
        for key in [k for k, entry in self._entries.items() if entry[2] < self.call - 1]:
            self._drop(key)

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry[3]


def chain_length(chain: list) -> int:
    """Tokens in a chain of KV segments (KVStore.get)."""
    return sum(segment[0][0].shape[-2] for segment in chain)


def chain_id(chain: list) -> tuple[int, ...]:
    """The same for two chains of the same kept segments (two KVStore.get of one key)."""
    return tuple(id(segment) for segment in chain)


def row_span(layers: list, row: int, lo: int, hi: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One row's positions lo:hi of a batch's per-layer K/V, copied: a view would keep the whole
    batch's KV alive and escape the store's budget."""
    return [(k[row : row + 1, :, lo:hi].clone(), v[row : row + 1, :, lo:hi].clone()) for k, v in layers]


def joined(chain: list) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A chain of KV segments as one per-layer (K, V)."""
    if len(chain) == 1:
        return chain[0]
    return [(torch.cat([seg[i][0] for seg in chain], dim=2), torch.cat([seg[i][1] for seg in chain], dim=2)) for i in range(len(chain[0]))]


def padded_past(kept: list, width: int, device) -> list | None:
    """Per layer (K, V) for a batch: each row's kept KV (a chain of segments, KVStore.get)
    right-aligned in `width`, zeros before it."""
    if not width:
        return None
    # Rows after the same prefix share its KV (the same segments): pad each distinct chain once,
    # then gather the rows.
    sources = {chain_id(chain): chain for chain in kept if chain}
    slots = {key: slot for slot, key in enumerate(sources)}
    some = next(iter(sources.values()))[0]
    u = len(sources) + 1  # the last slot stays zeros: rows with nothing kept
    past = [(k.new_zeros(u, k.shape[1], width, k.shape[3]), v.new_zeros(u, v.shape[1], width, v.shape[3])) for k, v in some]
    for key, chain in sources.items():
        at = width - chain_length(chain)
        for segment in chain:
            n = segment[0][0].shape[-2]
            for (k, v), (pk, pv) in zip(segment, past):
                pk[slots[key], :, at : at + n] = k[0]
                pv[slots[key], :, at : at + n] = v[0]
            at += n
    rows = torch.tensor([slots[chain_id(chain)] if chain else u - 1 for chain in kept], device=device)
    return [(pk.index_select(0, rows), pv.index_select(0, rows)) for pk, pv in past]


def growing_cache(layer_class, past=None):
    """A DynamicCache whose layers grow in place (`layer_class`), started from `past` (per-layer K/V)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    cache.layer_class_to_replicate = layer_class
    for k, v in past or []:
        layer = layer_class()
        layer.update(k, v)
        cache.layers.append(layer)
    return cache


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

        def crop_left(self, n: int) -> None:
            """Drop the first `n` columns (a view: the buffer is freed when it next grows)."""
            if self.is_initialized and self._length:
                self._k, self._v = self._k[:, :, n:], self._v[:, :, n:]
                self._length -= n
                self.keys, self.values = self._k[:, :, : self._length], self._v[:, :, : self._length]

        def batch_select_indices(self, indices):
            if self.is_initialized and self._length:
                self._k, self._v = self._k[indices], self._v[indices]
                self.keys, self.values = self._k[:, :, : self._length], self._v[:, :, : self._length]

    return GrowingLayer
