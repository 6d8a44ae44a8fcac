"""Problems in flight with no round barrier, and the batching engines they call.

Each problem runs in its own thread, written as if it were alone: its strategy calls its engines
(each a `BatchingEngine` the scheduler made) one problem at a time and waits for the answers. A
call to a local engine (transformers, offline vLLM: one model, one batch at a time) is queued;
whenever every problem is waiting, the scheduler runs the local engine with the most requests
queued as one batch and wakes the problems it served, so each batch gathers whatever is ready and
a problem moves on as soon as its own answers are back. Server engines (`Engine.concurrent`) are
called at once from the problem's thread and batch on the server, so a problem whose steps come
back early is never held by the slowest one. Outside a problem's thread a batching engine calls
its engine directly.

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

_local = threading.local()  # in a problem's thread: its index, the engine seconds charged to it, its run


class Stopped(Exception):
    """Raised in a problem's thread when the run ends before it does (another problem failed)."""


@dataclass
class _Call:
    problem: int
    method: Callable[[list], list]  # the engine's own bound method (generate or score)
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


def _call(method: Callable[[list], list], engine: Any, requests: list) -> list:
    """`method(requests)`, batched with the other problems' calls when made in a problem's thread."""
    run = getattr(_local, "run", None)
    return method(requests) if run is None else run.call(method, engine, requests)


class BatchingEngine:
    """An engine as a problem sees it: `generate` and `score` go through the scheduler (queued for
    its next batch, or sent at once to a server), the chat template is the engine's own."""

    def __init__(self, engine: Any):
        self.engine = engine

    def generate(self, requests: list) -> list:
        return _call(self.engine.generate, self.engine, requests)

    def score(self, requests: list) -> list:
        return _call(self.engine.score, self.engine, requests)

    def chat_prompt(self, question: str, system: str | None = None) -> str:
        return self.engine.chat_prompt(question, system)

    @property
    def context_length(self) -> int | None:
        return getattr(self.engine, "context_length", None)

    def prompt_tokens(self, prompt: str) -> int | None:
        return self.engine.prompt_tokens(prompt)


class Scheduler:
    """Makes the batching engines of one strategy and runs its problems side by side (`run`)."""

    def __init__(self):
        self._batching: dict[int, BatchingEngine] = {}  # id(engine) -> its batching engine

    def batching(self, engine: Any) -> BatchingEngine:
        """The batching engine of `engine` (one per engine, however many models share it)."""
        if id(engine) not in self._batching:
            self._batching[id(engine)] = BatchingEngine(engine)
        return self._batching[id(engine)]

    @property
    def engines(self) -> list:
        """Every engine the problems call, once each."""
        return [b.engine for b in self._batching.values()]

    def run(self, solve: Callable[[Any], Iterable], problems: list, in_flight: int) -> Iterator:
        """The records `solve` returns for each problem, as problems finish, at most `in_flight`
        at a time. An exception in any problem stops the run and is raised here."""
        yield from _Run().run(solve, problems, in_flight)


class _Run:
    """One run's problems in flight: their threads, the queued calls of local engines, the batches.
    A thread of a run that has ended (another problem failed) stops at its next engine call."""

    def __init__(self):
        self.cond = threading.Condition()
        self.queues: dict[tuple[int, str], deque[_Call]] = {}  # (engine, method) -> calls waiting for a batch
        self.runnable = 0  # problem threads neither waiting for an engine nor finished
        self.finished: deque[_Finished] = deque()
        self.stopping = False

    # -- in a problem's thread -------------------------------------------------

    def call(self, method: Callable[[list], list], engine: Any, requests: list) -> list:
        charge = _local.charge
        if self.stopping:
            raise Stopped
        if getattr(engine, "concurrent", False):  # a server: call it now; this problem waits, the others may run batches meanwhile
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
            self.queues.setdefault((id(engine), method.__name__), deque()).append(call)
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
        _local.index, _local.charge, _local.run = index, [0.0], self
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
