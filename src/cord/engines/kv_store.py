"""Kept KV caches of the transformers engine, within a byte budget.

The engine keeps the KV of every prefix it read (a teacher's accepted trajectory, a scored
prefix) so the next round computes only the new tokens. With 16K-token trajectories of a 7B model
one whole prefix is about 1 GB (28 layers x 2 x 4 KV heads x 128 x 2 bytes a token), so an entry
may hold only its own tokens and name its parent entry (a scored candidate: its step, after the
prefix it was scored on): the candidates of one prefix share it instead of each copying it. A
store is held to `max_bytes`: the least recently used entries go first, and a prefix that was
dropped (or whose parent was) is computed again when it is next needed (slower, never wrong).
Entries not used by the current call or the one before are dropped too: the search has moved
past them.
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

    def put(self, key: Hashable, kv: list, extra: Any = None, parent: Hashable | None = None) -> None:
        """Keep `kv` (with `parent`: only the tokens after the parent entry's) under `key`, dropping
        the least recently used entries to stay in budget (an entry larger than the whole budget is
        not kept)."""
        size = kv_bytes(kv)
        self._drop(key)
        if size > self.max_bytes:
            return
        while self._entries and self.bytes + size > self.max_bytes:
            self._drop(next(iter(self._entries)))
        self._entries[key] = (kv, extra, self.call, size, parent)
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
