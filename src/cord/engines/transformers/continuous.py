"""Continuous batching for the transformers engine: requests from any thread join one running
batch between decode iterations, and models that share a device take turns an iteration at a time.

- `ContinuousDecoding` is one engine's worker thread. Each turn it scores every scoring request
  waiting (one pass, whatever problems they come from), admits waiting generation requests up to
  `max_batch_size` rows (their prompt pass, then their rows join the running cache, kept-KV chains
  and all), and runs one decode iteration. A request that ends leaves at once; its caller moves on
  while the others decode. This is vLLM's schedule (waiting -> running, admitted each step) on
  cord's own decode loop, which keeps what transformers' own continuous batching does not: a
  seed, temperature, top-p and stop strings per request, and the kept KV of accepted trajectories
  (benchmarks/transformers_cb.py measured the two loops).
- `DeviceTurns`: the workers of engines on one device (every model on a CPU, two models on one
  GPU) compute in turn, first come first served, one iteration each; there they would only contend
  (two models on one GPU, or on two CPU cores, compute no faster side by side). Workers on separate
  devices compute at once.
- Kept KV: a whole batch drops what neither it nor the batch before used; here there are no
  whole batches, and a problem's next round may come after any number of other problems' calls, so
  the kept prefixes are held to the store's byte budget alone, least recently used out first.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future

from ..base import Completion, GenerateRequest, ScoreRequest, ScoreResult


class DeviceTurns:
    """A first-come, first-served lock: the engines on one device compute one at a time, in the
    order they asked, so none waits behind another that asks again at once."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.next = self.serving = 0

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        with self.cond:
            ticket, self.next = self.next, self.next + 1
            while self.serving != ticket:
                self.cond.wait()
        try:
            yield
        finally:
            with self.cond:
                self.serving += 1
                self.cond.notify_all()


_TURNS: dict[str, DeviceTurns] = {}
_TURNS_LOCK = threading.Lock()


def device_turns(device: str) -> DeviceTurns:
    """The one `DeviceTurns` of `device` ("cpu", "cuda:0"), shared by every engine placed there."""
    with _TURNS_LOCK:
        return _TURNS.setdefault(device, DeviceTurns())


class ContinuousDecoding:
    """One transformers engine's requests from any thread, decoded and scored by a worker thread
    (module docstring). `generate` and `score` block their caller until its own requests are done."""

    def __init__(self, engine, turns: DeviceTurns):
        from .decode import RunningBatch

        self.engine, self.turns = engine, turns
        self.cond = threading.Condition()
        self.waiting: deque[tuple[GenerateRequest, Future]] = deque()
        self.scoring: deque[tuple[list[ScoreRequest], Future]] = deque()
        self.running = RunningBatch(engine.decoder)
        self.owners: dict[int, tuple[GenerateRequest, Future]] = {}  # running request index -> (request, its future)
        self.room = engine.max_batch_size  # rows the running batch may hold (lowered after running out of memory)
        self.closing = False
        self.thread = threading.Thread(target=self._loop, daemon=True, name="cord-transformers-decoding")
        self.thread.start()

    def generate(self, requests: list[GenerateRequest]) -> list[Completion]:
        futures = [Future() for _ in requests]
        with self.cond:
            if self.closing:
                raise RuntimeError("the transformers engine is closed")
            self.waiting.extend(zip(requests, futures))
            self.cond.notify()
        return [f.result() for f in futures]

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        future: Future = Future()
        if not requests:
            return []
        with self.cond:
            if self.closing:
                raise RuntimeError("the transformers engine is closed")
            self.scoring.append((requests, future))
            self.cond.notify()
        return future.result()

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify()
        self.thread.join(timeout=10)

    def _loop(self) -> None:
        import torch

        with torch.inference_mode():
            while True:
                with self.cond:
                    while not (self.waiting or self.scoring or self.running.live or self.closing):
                        self.cond.wait()
                    if self.closing:
                        break
                with self.turns.turn():  # what came in while this engine waited for its turn joins too
                    with self.cond:
                        scoring = list(self.scoring)
                        self.scoring.clear()
                        room = max(0, self.room - len(self.running.live))
                        admit = [self.waiting.popleft() for _ in range(min(len(self.waiting), room))]
                    if scoring:
                        self._score(scoring)
                    if admit:
                        self._admit(admit)
                    if self.running.live:
                        self._step()
        closed = RuntimeError("the transformers engine is closed")
        for _, future in [*self.waiting, *self.owners.values(), *self.scoring]:
            future.set_exception(closed)

    def _score(self, scoring: list[tuple[list[ScoreRequest], Future]]) -> None:
        flat = [r for requests, _ in scoring for r in requests]
        try:
            results = self.engine._score_fitting(flat, spans=False)
        except Exception as err:  # the problems waiting on these fail; the run and the engine go on
            for _, future in scoring:
                future.set_exception(err)
            return
        at = 0
        for requests, future in scoring:
            future.set_result(results[at : at + len(requests)])
            at += len(requests)

    def _admit(self, admit: list[tuple[GenerateRequest, Future]]) -> None:
        import torch

        try:
            indices = self.running.admit([r for r, _ in admit])
        except torch.OutOfMemoryError:
            self.engine.empty_device_cache()
            if len(admit) == 1 and not self.running.live:
                admit[0][1].set_result(Completion("", 0, "error", error="out of memory generating this one request"))
                return
            # Fewer rows at once: what is running now, or half of what tried to join.
            self.room = max(1, len(self.running.live) or len(admit) // 2)
            with self.cond:
                self.waiting.extendleft(reversed(admit))
            return
        except Exception as err:
            for _, future in admit:
                future.set_exception(err)
            return
        for i, owner in zip(indices, admit):
            self.owners[i] = owner

    def _step(self) -> None:
        import torch

        try:
            ended = self.running.step()
        except Exception as err:  # every running request fails (out of memory: as an error completion, so only its problem fails)
            from .decode import RunningBatch

            self.engine.empty_device_cache()
            for _, future in self.owners.values():
                if isinstance(err, torch.OutOfMemoryError):
                    future.set_result(Completion("", 0, "error", error="out of memory decoding this request's batch"))
                else:
                    future.set_exception(err)
            self.owners.clear()
            self.running = RunningBatch(self.engine.decoder)
            self.room = max(1, self.room // 2) if isinstance(err, torch.OutOfMemoryError) else self.room
            return
        for i in ended:
            request, future = self.owners.pop(i)
            future.set_result(self.engine.priced(self.running.results.pop(i), request))
