"""Which engines share a device, and which are called from a problem's thread rather than queued
for the scheduler's whole batches (search/scheduler.py reads both when a run starts, and sets the
queued engines' `whole_batches` for the run)."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any


def shares_device(a: Any, b: Any) -> bool:
    """Whether two engines may compute on one device: their placements meet, or one is unknown."""
    pa, pb = getattr(a, "placement", None), getattr(b, "placement", None)
    return pa is None or pb is None or bool(pa & pb)


def device_groups(engines: list) -> dict[int, int]:
    """id(engine) -> its group: engines joined by shared devices, transitively (a group is a connected set)."""
    group = {id(e): i for i, e in enumerate(engines)}
    for i, a in enumerate(engines):
        for b in engines[i + 1 :]:
            if shares_device(a, b) and group[id(a)] != group[id(b)]:
                old, new = group[id(b)], group[id(a)]
                group = {k: new if g == old else g for k, g in group.items()}
    return group


def calls_at_once(engines: list, reproducible: bool = False) -> set[int]:
    """id() of the engines whose calls go out from the problem's thread when made, not queued for
    the scheduler's whole batches: servers (`concurrent`) always; a local engine that batches
    continuously (`continuous`) unless the run must be reproducible, and if it says "auto" only when
    no other local engine shares its device (engines on one device compute in turn anyway, and
    there whole batches measured faster: docs/benchmarks.md)."""
    local = [e for e in engines if not getattr(e, "concurrent", False)]
    groups = device_groups(local)
    sizes = Counter(groups.values())
    out = set()
    for e in engines:
        mode = getattr(e, "continuous", False)
        alone = id(e) in groups and sizes[groups[id(e)]] == 1
        if getattr(e, "concurrent", False) or (not reproducible and (mode is True or (mode == "auto" and alone))):
            out.add(id(e))
    return out


@contextlib.contextmanager
def whole_batches(engines: list) -> Iterator[None]:
    """Each engine's `whole_batches` set while the block runs (the scheduler queues their calls
    and runs them as whole batches, so a continuous engine should not wait for others to join)."""
    before = [getattr(e, "whole_batches", False) for e in engines]
    for engine in engines:
        engine.whole_batches = True
    try:
        yield
    finally:
        for engine, was in zip(engines, before):
            engine.whole_batches = was
