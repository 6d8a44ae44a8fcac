"""Problems in flight with no round barrier.

Each problem runs in its own thread, written as if it were alone: its strategy calls the engines
and waits for the answers. A call to a local engine (transformers, offline vLLM: one model, one
batch at a time) is queued; whenever every problem is waiting, the scheduler runs the local engine
with the most requests queued as one batch and wakes the problems it served, so each batch gathers
whatever is ready and a problem moves on as soon as its own answers are back. Server engines
(`Engine.concurrent`) are called at once from the problem's thread and batch on the server, so a
problem whose steps come back early is never held by the slowest one.

Which requests share a local batch depends only on the search, not on timing (the scheduler runs a
batch only when no problem can move, and orders its rows by problem); with server engines, what
a problem gets depends only on its requests and their seeds.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

_local = threading.local()  # in a problem's thread: its index and the engine seconds charged to it


class Stopped(Exception):
    """Raised in a problem's thread when the run ends before it does (another problem failed)."""


@dataclass
class _Call:
    problem: int
    method: Callable[[list], list]  # the engine's own bound method
    requests: list
    charge: list[float]  # the calling problem's engine seconds (one cell)
    result: list | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class _Finished:
    index: int
    records: list = field(default_factory=list)
    error: BaseException | None = None


@contextlib.contextmanager
def engine_seconds() -> Iterator[list[float]]:
    """Seconds of engine work charged to the current problem while the block runs: in a problem's
    thread, its share of every batch it was in (rows / batch rows x the batch's time); elsewhere,
    the wall time. Yields a one-cell list that holds the figure when the block ends."""
    out = [0.0]
    charge = getattr(_local, "charge", None)
    start = charge[0] if charge is not None else time.perf_counter()
    try:
        yield out
    finally:
        out[0] = charge[0] - start if charge is not None else time.perf_counter() - start


def in_main_thread(fn: Callable, *args, **kwargs):
    """`fn(*args, **kwargs)` run in the main thread: at once when called there, else (from a
    problem's thread) the next time the scheduler is free. For code that needs the main thread,
    such as math-verify, whose time limits are signal alarms."""
    scheduler = getattr(_local, "scheduler", None)
    if scheduler is None:
        return fn(*args, **kwargs)
    ((ok, value),) = scheduler._call(_run_in_main, False, [(fn, args, kwargs)])
    if not ok:
        raise value
    return value


def _run_in_main(calls: list) -> list:
    out = []
    for fn, args, kwargs in calls:
        try:
            out.append((True, fn(*args, **kwargs)))
        except Exception as err:
            out.append((False, err))
    return out


class Scheduler:
    def __init__(self, engines: Iterable[Any]):
        self.engines = list({id(e): e for e in engines}.values())
        self.cond = threading.Condition()
        self.queues: dict[int, deque[_Call]] = {}  # id(engine method) -> calls waiting for a batch
        self.runnable = 0  # problem threads neither waiting for an engine nor finished
        self.finished: deque[_Finished] = deque()
        self.stopping = False

    # -- in a problem's thread -------------------------------------------------

    def _call(self, method: Callable[[list], list], concurrent: bool, requests: list) -> list:
        charge = getattr(_local, "charge", None)
        if charge is None:  # not a problem's thread (the scheduler's own batch call)
            return method(requests)
        if concurrent:  # a server: call it now; this problem waits, the others may run batches meanwhile
            with self.cond:
                self.runnable -= 1
                self.cond.notify_all()
            start = time.perf_counter()
            try:
                return method(requests)
            finally:
                charge[0] += time.perf_counter() - start
                with self.cond:
                    self.runnable += 1
        call = _Call(_local.index, method, requests, charge)
        with self.cond:
            if self.stopping:
                raise Stopped
            self.queues.setdefault(id(method), deque()).append(call)
            self.runnable -= 1
            self.cond.notify_all()
            while not call.done and not self.stopping:
                self.cond.wait()
            if not call.done:
                raise Stopped
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[return-value]

    def _body(self, index: int, solve: Callable[[Any], Iterable], problem) -> None:
        _local.index, _local.charge, _local.scheduler = index, [0.0], self
        finished = _Finished(index)
        try:
            finished.records = list(solve(problem))
        except BaseException as err:
            finished.error = err
        with self.cond:
            self.finished.append(finished)
            self.runnable -= 1
            self.cond.notify_all()

    # -- in the main thread ----------------------------------------------------------

    def run(self, solve: Callable[[Any], Iterable], problems: list, in_flight: int) -> Iterator:
        """The records `solve` returns for each problem, as problems finish, at most `in_flight`
        at a time. An exception in any problem stops the run and is raised here."""
        routed = self._route()
        pending = deque(enumerate(problems))
        live = 0
        try:
            while pending or live:
                while pending and live < max(1, in_flight):
                    index, problem = pending.popleft()
                    with self.cond:
                        self.runnable += 1
                    threading.Thread(target=self._body, args=(index, solve, problem), daemon=True, name=f"cord-problem-{index}").start()
                    live += 1
                batch = None
                with self.cond:
                    while self.runnable > 0 and not self.finished:
                        self.cond.wait()
                    if self.finished:
                        done = self.finished.popleft()
                    else:
                        done, batch = None, self._next_batch()
                if done is not None:
                    live -= 1
                    if done.error is not None:
                        raise done.error
                    yield from done.records
                elif batch:
                    self._run_batch(batch)
                else:  # every problem waits on a server call: wait for one to come back
                    with self.cond:
                        self.cond.wait(0.05)
        finally:
            with self.cond:
                self.stopping = True
                self.cond.notify_all()
            self._unroute(routed)

    def _next_batch(self) -> list[_Call]:
        """The queue with the most requests (the first such in queueing order), rows by problem."""
        if not self.queues:
            return []
        key = max(self.queues, key=lambda k: sum(len(c.requests) for c in self.queues[k]))
        calls = sorted(self.queues.pop(key), key=lambda c: c.problem)
        return calls

    def _run_batch(self, calls: list[_Call]) -> None:
        flat = [r for call in calls for r in call.requests]
        start = time.perf_counter()
        try:
            results, error = calls[0].method(flat), None
        except BaseException as err:
            results, error = None, err
        seconds = time.perf_counter() - start
        with self.cond:
            at = 0
            for call in calls:
                if error is None:
                    call.result = results[at : at + len(call.requests)]
                call.error = error
                at += len(call.requests)
                call.charge[0] += seconds * len(call.requests) / max(1, len(flat))
                call.done = True
            self.runnable += len(calls)
            self.cond.notify_all()

    def _route(self) -> list:
        """Send every engine's `generate` and `score` through the scheduler while the run lasts
        (instance attributes over the class's methods; removed at the end)."""
        routed = []
        for engine in self.engines:
            concurrent = bool(getattr(engine, "concurrent", False))
            for name in ("generate", "score"):
                method = getattr(engine, name)
                setattr(engine, name, lambda requests, method=method, concurrent=concurrent: self._call(method, concurrent, requests))
                routed.append((engine, name))
        return routed

    @staticmethod
    def _unroute(routed: list) -> None:
        for engine, name in routed:
            with contextlib.suppress(AttributeError):
                delattr(engine, name)
