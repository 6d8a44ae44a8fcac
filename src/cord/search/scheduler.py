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

Local engines on separate devices compute at once: each group of engines that share a device (an
engine's `placement`; one without a placement shares every device) runs its batches in a worker
thread of its own, so while a teacher's batch decodes on one GPU the meta-prover scores on another.
A group starts its next batch when it is idle and no problem can move. Engines on one device (every
model on a CPU) form one group, and take turns exactly as they always did.

Which requests share a local batch depends only on the search, not on timing, while one group runs
(the scheduler runs a batch only when no problem can move, and orders its rows by problem). With
several groups, a problem that a group's batch releases may or may not reach another group's next
batch in time; its seeds are its own, but its rows' padding may differ, so floating-point sums can.
A batch may end before all of its rows do: an engine that sets aside its last few rows, still
decoding, answers them `engines.base.CARRIED`, and their calls go back to the front of the queue,
so those rows resume in the engine's next batch among its new rows (which depends only on the
search as well). `reproducible=True` runs the groups in waves: a batch for each group that has
calls queued, all started at once when every group is idle and no problem can move, each batch
the whole queue of its engine (not cut to one pass), so what each batch holds depends only on the
search: records the same bit for bit, while the devices still compute side by side. With server
engines, what a problem gets depends only on its requests and their seeds.

A local engine that batches continuously (`Engine.continuous`: transformers, offline vLLM) is called
at once like a server: each problem's requests join the running batch as they come, and engines on
one device take turns an iteration at a time (engines/transformers/continuous.py). With
`reproducible=True` its calls are queued and run as whole batches, one at a time, as before: the
scheduler sets the engine's `whole_batches` for the run, and calls its `generate` and `score` as
it calls every engine's, so a plug-in's override of them is what runs in every mode. Every call
goes through `engines.base.call_engine`, which checks what the engine returns.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..engines.base import CARRIED, call_engine
from .admission import RowsOut
from .devices import calls_at_once, device_groups, whole_batches

_local = threading.local()  # in a problem's thread: its index, the engine seconds charged to it, its run


_DETACHED = 1 << 60  # a launched call nobody waits for: its return never makes a problem runnable


class Stopped(Exception):
    """Raised in a problem's thread when the run ends before it does (another problem failed)."""


@dataclass
class _Waiting:
    """A problem waiting for its calls: it can move again when the last one is back."""

    calls: int


@dataclass
class _Call:
    problem: int
    engine: Any
    method: str  # "generate" or "score"
    requests: list
    charge: list[float]  # the calling problem's engine seconds (one cell)
    waiting: _Waiting = field(default_factory=lambda: _Waiting(1))
    result: list | None = None
    error: BaseException | None = None
    done: bool = False
    todo: list[int] = field(default_factory=list)  # the requests its next batch sends (all, or those carried)
    carried: bool = False  # some of its requests were carried by the engine's last batch

    def __post_init__(self) -> None:
        self.todo = list(range(len(self.requests)))


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


def _call(engine: Any, method: str, requests: list) -> list:
    """`engine.<method>(requests)`, batched with the other problems' calls when made in a problem's thread."""
    run = getattr(_local, "run", None)
    return call_engine(engine, method, requests) if run is None else run.call(engine, method, requests)


class BatchingEngine:
    """An engine as a problem sees it: `generate` and `score` go through the scheduler (queued for
    its next batch, or sent at once to a server), the chat template is the engine's own."""

    def __init__(self, engine: Any):
        self.engine = engine

    def generate(self, requests: list) -> list:
        return _call(self.engine, "generate", requests)

    def score(self, requests: list) -> list:
        return _call(self.engine, "score", requests)

    def chat_prompt(self, question: str, system: str | None = None) -> str:
        return self.engine.chat_prompt(question, system)

    @property
    def context_length(self) -> int | None:
        return getattr(self.engine, "context_length", None)

    def prompt_tokens(self, prompt: str) -> int | None:
        return self.engine.prompt_tokens(prompt)


def gather(jobs: list[tuple[BatchingEngine, str, list]]) -> list[list]:
    """The results of several calls (batching engine, "generate" or "score", requests) of one
    problem: made at once when engines on separate devices run side by side, or when every one goes
    to a server, so a problem's teachers decode together; otherwise (one device group) one after
    the other, as the search wrote them, as they always were."""
    run = getattr(_local, "run", None)
    batching = run is not None and len(jobs) > 1 and all(isinstance(b, BatchingEngine) for b, _, _ in jobs)
    if not batching or not (run.parallel or all(run.at_once(b.engine) for b, _, _ in jobs)):
        return [getattr(engine, method)(requests) for engine, method, requests in jobs]
    return run.call_all([(b.engine, method, requests) for b, method, requests in jobs])


class Pending:
    """One call started with `launch`: its result once `done` (read it after `wait_for`)."""

    def __init__(self, call: _Call):
        self._call = call

    @property
    def done(self) -> bool:
        return self._call.done

    @property
    def seconds(self) -> float:
        """The engine seconds the call took (its own cell)."""
        return self._call.charge[0]

    def result(self) -> list:
        """The call's results; its error raised (only once `done`)."""
        if self._call.error is not None:
            raise self._call.error
        return self._call.result  # type: ignore[return-value]


def can_launch(engines: list[BatchingEngine]) -> bool:
    """Whether `launch` can start calls to each of `engines` and return at once: in a problem's
    thread, with every one of them called at once (a server, a continuously batching engine)."""
    run = getattr(_local, "run", None)
    return run is not None and all(isinstance(b, BatchingEngine) and run.at_once(b.engine) for b in engines)


def launch(engine: BatchingEngine, method: str, requests: list) -> Pending:
    """`engine.<method>(requests)` started in a thread of its own; the problem goes on (`can_launch`
    must hold). Its seconds go to the call's own cell, not the problem's."""
    return _local.run.launch(engine.engine, method, requests)


def wait_for(pending: list[Pending], count: int) -> None:
    """Until at least `count` of `pending` are done (the problem counts as waiting meanwhile)."""
    _local.run.wait_for([p._call for p in pending], count)


def rows_free(engines: list[BatchingEngine]) -> bool:
    """Whether the run's last problems are in flight (none waits to start, so no new problem can
    use the rows) and each of `engines` has fewer generation rows out than `search.rows_in_flight`."""
    run = getattr(_local, "run", None)
    return run is not None and not run.unstarted and run.rows.free([b.engine for b in engines])


class Scheduler:
    """Makes the batching engines of one strategy and runs its problems side by side (`run`).
    `reproducible`: batches whose rows do not depend on timing (groups of engines on separate
    devices run in waves, each started when every group is idle and no problem can move).
    `rows_in_flight`: more problems than `in_flight` start while the engines called at once have
    fewer generation rows out than this (search/admission.py); None: `in_flight` at a time."""

    def __init__(self, reproducible: bool = False, rows_in_flight: int | None = None):
        self._batching: dict[int, BatchingEngine] = {}  # id(engine) -> its batching engine
        self.reproducible = reproducible
        self.rows_in_flight = rows_in_flight

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
        direct = calls_at_once(self.engines, self.reproducible)
        local = [e for e in self.engines if id(e) not in direct]
        groups = device_groups(local)
        with whole_batches(local):
            yield from _Run(groups, direct, self.reproducible, RowsOut(self.rows_in_flight)).run(solve, problems, in_flight)


class _Run:
    """One run's problems in flight: their threads, the queued calls of local engines, the batches
    each device group runs (in the main thread while there is one group, else in a worker thread per
    batch, one batch per group at a time). A thread of a run that has ended (another problem
    failed) stops at its next engine call."""

    def __init__(self, groups: dict[int, int], direct: set[int] = frozenset(), reproducible: bool = False, rows: RowsOut | None = None):
        self.groups = groups  # id(engine) -> device group, for the engines whose calls are queued
        self.direct = direct  # id() of the engines called from the problem's thread (calls_at_once)
        self.reproducible = reproducible
        self.rows = rows or RowsOut()  # generation rows out at the engines called at once
        self.parallel = len(set(groups.values())) > 1
        self.busy: set[int] = set()  # groups running a batch
        self.cond = threading.Condition()
        self.queues: dict[tuple[int, str], deque[_Call]] = {}  # (engine, method) -> calls waiting for a batch
        self.runnable = 0  # problem threads neither waiting for an engine nor finished
        self.finished: deque[_Finished] = deque()
        self.stopping = False
        self.unstarted = 0  # problems not started yet

    def at_once(self, engine: Any) -> bool:
        return id(engine) in self.direct

    # -- in a problem's thread -------------------------------------------------

    def call(self, engine: Any, method: str, requests: list) -> list:
        charge = _local.charge
        if self.stopping:
            raise Stopped
        if self.at_once(engine):  # a server: call it now; this problem waits, the others may run batches meanwhile
            with self.cond:
                self.runnable -= 1
                self.rows.sent(engine, method, len(requests))
                self.cond.notify_all()
            start = time.perf_counter()
            try:
                return call_engine(engine, method, requests)
            finally:
                charge[0] += time.perf_counter() - start
                with self.cond:
                    self.rows.back(engine, method, len(requests))
                    self.runnable += 1
        return self.call_all([(engine, method, requests)])[0]

    def call_all(self, jobs: list[tuple[Any, str, list]]) -> list[list]:
        """Each (engine, "generate" or "score", requests) at once: local ones queued for their groups'
        whole batches, the others (servers, continuous engines) sent from threads of their own;
        back when the last one is."""
        charge = _local.charge
        waiting = _Waiting(len(jobs))
        calls = []
        with self.cond:
            if self.stopping:
                raise Stopped
            for engine, method, requests in jobs:
                call = _Call(_local.index, engine, method, requests, charge, waiting)
                if self.at_once(engine):
                    self.rows.sent(engine, method, len(requests))
                    threading.Thread(target=self._serve, args=(call,), daemon=True, name="cord-server-call").start()
                else:
                    self.queues.setdefault((id(engine), method), deque()).append(call)
                calls.append(call)
            self.runnable -= 1
            self.cond.notify_all()
            while waiting.calls and not self.stopping:
                self.cond.wait()
            if waiting.calls:
                raise Stopped
        error = next((call.error for call in calls if call.error is not None), None)
        if error is not None:
            raise error
        return [call.result for call in calls]  # type: ignore[misc]

    def launch(self, engine: Any, method: str, requests: list) -> Pending:
        """One call to an engine called at once, started now; `wait_for` waits for it."""
        with self.cond:
            if self.stopping:
                raise Stopped
            call = _Call(_local.index, engine, method, requests, [0.0], _Waiting(_DETACHED))
            self.rows.sent(engine, method, len(requests))
            threading.Thread(target=self._serve, args=(call,), daemon=True, name="cord-launched-call").start()
        return Pending(call)

    def wait_for(self, calls: list[_Call], count: int) -> None:
        """Until `count` of `calls` are done: the problem waits (not runnable) in between."""
        with self.cond:
            left = count - sum(call.done for call in calls)
            if left <= 0:
                return
            waiting = _Waiting(left)
            for call in calls:
                if not call.done:
                    call.waiting = waiting
            self.runnable -= 1
            self.cond.notify_all()
            while waiting.calls > 0 and not self.stopping:
                self.cond.wait()
            for call in calls:
                if not call.done:
                    call.waiting = _Waiting(_DETACHED)  # its return no longer wakes this problem
            if waiting.calls > 0:
                raise Stopped

    def _serve(self, call: _Call) -> None:
        """One server call of `call_all`, in a thread of its own."""
        start = time.perf_counter()
        try:
            call.result = call_engine(call.engine, call.method, call.requests)
        except BaseException as err:
            call.error = err
        with self.cond:
            call.charge[0] += time.perf_counter() - start
            self.rows.back(call.engine, call.method, len(call.requests))
            self._back(call)
            self.cond.notify_all()

    def _back(self, call: _Call) -> None:
        """`call` is done (under the lock): its problem moves again once its last call is back."""
        call.done = True
        call.waiting.calls -= 1
        if call.waiting.calls == 0:
            self.runnable += 1

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
        self.unstarted = len(pending)
        live = 0
        try:
            while pending or live:
                while pending and live < max(1, in_flight):
                    with self.cond:
                        self._start(*pending.popleft(), solve)
                    live += 1
                batch = done = None
                with self.cond:
                    while self.runnable > 0 and not self.finished:
                        self.cond.wait()
                    if self.finished:
                        done = self.finished.popleft()
                    elif pending and self.rows.room(live, in_flight, self.runnable):
                        self._start(*pending.popleft(), solve)  # the devices have free rows: one more problem
                        live += 1
                        continue
                    elif self.parallel:
                        # reproducible: a wave of batches, one a group, starts only when every group
                        # is idle and no problem can move, so what each batch holds does not depend on timing
                        for group, calls in self._next_batches() if not (self.reproducible and self.busy) else []:
                            self.busy.add(group)
                            threading.Thread(target=self._run_batch, args=(calls, group), daemon=True, name=f"cord-device-{group}").start()
                        self.cond.wait(0.05)  # until a batch or a server call comes back
                    else:
                        batch = next(iter(self._next_batches()), (None, None))[1]
                if done is not None:
                    live -= 1
                    if done.error is not None:
                        raise done.error
                    yield from done.records
                elif batch:
                    self._run_batch(batch)
                elif not self.parallel:  # every problem waits on a server call: wait for one to come back
                    with self.cond:
                        self.cond.wait(0.05)
        finally:
            with self.cond:
                self.stopping = True
                self.cond.notify_all()

    def _start(self, index: int, problem, solve: Callable[[Any], Iterable]) -> None:
        """Problem `index`'s thread, started (under the lock)."""
        self.unstarted -= 1
        self.runnable += 1
        threading.Thread(target=self._body, args=(index, solve, problem), daemon=True, name=f"cord-problem-{index}").start()

    def _next_batches(self) -> list[tuple[int, list[_Call]]]:
        """For each idle device group, its queue with the most requests (the first such in queueing
        order), rows by problem."""
        out = []
        for group in dict.fromkeys(self.groups.values()):
            keys = [k for k in self.queues if self.groups.get(k[0], 0) == group]
            if group in self.busy or not keys:
                continue
            key = max(keys, key=lambda k: sum(len(c.todo) for c in self.queues[k]))
            # carried calls first: a batch cut to one pass still holds the rows its engine kept decoding
            calls = sorted(self.queues.pop(key), key=lambda c: (not c.carried, c.problem))
            if self.parallel and not self.reproducible:  # a batch the engine can run in one pass: the problems it serves move on sooner
                calls, rest = self._one_pass(calls)
                if rest:
                    self.queues[key] = deque(rest)
            out.append((group, calls))
        return out

    def _one_pass(self, calls: list[_Call]) -> tuple[list[_Call], list[_Call]]:
        """The first calls whose rows fit the engine's `max_batch_size` (at least one call), and the
        rest. The engine would run the rest as further passes anyway; released in between, the
        problems of the first pass can go on to another device while the rest decode."""
        limit = getattr(calls[0].engine, "max_batch_size", None)
        if not limit:
            return calls, []
        rows = 0
        for i, call in enumerate(calls):
            rows += len(call.todo)
            if rows > limit and i:
                return calls[:i], calls[i:]
        return calls, []

    def _run_batch(self, calls: list[_Call], group: int | None = None) -> None:
        """Run `calls` as one batch of their engine and hand each its results. A call with requests
        the engine carried (`engines.base.CARRIED`: still decoding) goes back to the front of its
        queue with those alone, for the engine's next batch; its problem waits until they are back."""
        flat = [call.requests[i] for call in calls for i in call.todo]
        start = time.perf_counter()
        try:
            results, error = call_engine(calls[0].engine, calls[0].method, flat, carry=True), None
        except BaseException as err:
            results, error = None, err
        seconds = time.perf_counter() - start
        with self.cond:
            at, carried = 0, []
            for call in calls:
                n = len(call.todo)
                call.charge[0] += seconds * n / max(1, len(flat))
                if error is None:
                    call.result = call.result or [None] * len(call.requests)
                    for i, got in zip(call.todo, results[at : at + n]):
                        call.result[i] = got
                    call.todo = [i for i in call.todo if getattr(call.result[i], "finish", None) == CARRIED]
                    call.carried = bool(call.todo)
                at += n
                if call.carried:
                    carried.append(call)
                else:
                    call.error = error
                    self._back(call)
            if carried:
                self.queues.setdefault((id(calls[0].engine), calls[0].method), deque()).extendleft(reversed(carried))
            self.busy.discard(group)
            self.cond.notify_all()
