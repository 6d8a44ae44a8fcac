"""The scheduler: problems advance on their own through batching engines, local batches gather what
is ready, failures stop the run."""

from __future__ import annotations

import threading
import time

import pytest

from cord.engines.base import CARRIED, Completion
from cord.scoring.grade import is_correct
from cord.search.scheduler import BatchingEngine, Scheduler, engine_seconds


class LocalEngine:
    """A one-batch-at-a-time engine (as transformers): records every batch it runs."""

    concurrent = False

    def __init__(self):
        self.batches: list[list] = []
        self.threads: set[str] = set()

    def generate(self, requests: list) -> list:
        self.batches.append(list(requests))
        self.threads.add(threading.current_thread().name)
        return [f"{r}!" for r in requests]

    def score(self, requests: list) -> list:
        return [len(r) for r in requests]


class SlowServer:
    """A server engine: problem "slow" waits 1.5 s for each answer, the others 0.05 s."""

    concurrent = True

    def generate(self, requests: list) -> list:
        time.sleep(1.5 if any("slow" in r for r in requests) else 0.05)
        return [f"{r}!" for r in requests]

    def score(self, requests: list) -> list:
        return [0 for _ in requests]


def test_local_calls_of_all_problems_in_flight_share_one_batch_per_round_and_run_in_the_main_thread():
    engine, scheduler = LocalEngine(), Scheduler()
    batching = scheduler.batching(engine)

    def solve(problem):
        texts = [problem]
        for _ in range(3):  # three rounds, each one call
            texts = batching.generate([texts[-1] + "a", texts[-1] + "b"])
        yield texts[-1]

    out = list(scheduler.run(solve, [f"p{i}" for i in range(5)], in_flight=5))
    assert sorted(out) == [f"p{i}b!b!b!" for i in range(5)]
    assert [len(b) for b in engine.batches] == [10, 10, 10]  # 5 problems x 2 requests, one batch a round
    assert engine.batches[0][:2] == ["p0a", "p0b"]  # rows ordered by problem
    assert engine.threads == {threading.main_thread().name}
    assert scheduler.batching(engine) is batching and scheduler.engines == [engine]  # one batching engine per engine
    assert batching.generate(["x"]) == ["x!"]  # outside a run it calls the engine directly


def test_a_second_run_of_one_scheduler_starts_clean_after_a_failed_one():
    engine, scheduler = LocalEngine(), Scheduler()
    batching = scheduler.batching(engine)

    def solve(problem):
        if problem == "bad":
            raise RuntimeError("boom")
        yield batching.generate([problem])[0]

    with pytest.raises(RuntimeError, match="boom"):
        list(scheduler.run(solve, ["bad", "a"], in_flight=2))
    assert list(scheduler.run(solve, ["b", "c"], in_flight=2)) in (["b!", "c!"], ["c!", "b!"])


def test_a_problem_moves_on_when_its_own_server_answers_are_back():
    scheduler = Scheduler()
    engine = scheduler.batching(SlowServer())
    finished: list[str] = []

    def solve(problem):
        for _ in range(4):
            engine.generate([problem])
        finished.append(problem)
        yield problem

    start = time.perf_counter()
    out = list(scheduler.run(solve, ["slow", "a", "b", "c"], in_flight=4))
    took = time.perf_counter() - start
    assert out[-1] == "slow" and set(out[:3]) == {"a", "b", "c"}  # the fast ones did not wait for it
    assert 6.0 <= took < 9.0  # the slow problem's four calls, the others in its shadow


def test_a_failing_problem_stops_the_run_with_its_error_and_the_others_stop_too():
    scheduler = Scheduler()
    engine = scheduler.batching(LocalEngine())
    started = []

    def solve(problem):
        started.append(problem)
        if problem == "bad":
            raise RuntimeError("server gone")
        while True:
            engine.generate([problem])
        yield problem

    with pytest.raises(RuntimeError, match="server gone"):
        list(scheduler.run(solve, ["a", "bad", "c", "d"], in_flight=2))
    assert "d" not in started  # nothing new started after the failure


def test_engine_seconds_charge_each_problem_its_share_of_a_batch():
    class Timed(LocalEngine):
        def generate(self, requests):
            time.sleep(0.4)
            return super().generate(requests)

    scheduler, charged = Scheduler(), {}
    engine = scheduler.batching(Timed())

    def solve(problem):
        with engine_seconds() as seconds:
            engine.generate([problem] * (3 if problem == "big" else 1))
        charged[problem] = seconds[0]
        yield problem

    list(scheduler.run(solve, ["big", "small"], in_flight=2))
    assert charged["big"] == pytest.approx(3 * charged["small"], rel=1e-6)
    assert charged["big"] + charged["small"] == pytest.approx(0.4, abs=0.1)


def test_grading_works_in_a_problem_thread_too():
    """math-verify's signal alarms work in the main thread only; in a problem's thread (the
    binary-judgment ablation grades there) it runs without them."""

    def solve(problem):
        yield problem, is_correct("14", f"The answer is \\boxed{{{problem}}}.")

    assert sorted(Scheduler().run(solve, ["14", "15"], in_flight=2)) == [("14", True), ("15", False)]
    assert is_correct("14", "so \\boxed{14}") and not is_correct("14", "so \\boxed{15}")


def test_a_batching_engine_shows_only_the_calls_a_problem_makes():
    calls = {"generate", "score", "chat_prompt", "context_length", "prompt_tokens"}  # the last two: Integration's rounds
    assert {name for name in vars(BatchingEngine) if not name.startswith("_")} == calls


class Placed(LocalEngine):
    """A local engine on named devices whose batches wait, up to 10 s, until `meet` has seen every
    device's batch start: a batch that ran alone (engines taking turns) would leave it waiting."""

    def __init__(self, devices: set[str], meet: threading.Barrier | None = None, max_batch_size: int | None = None):
        super().__init__()
        self.placement, self.meet, self.max_batch_size = frozenset(devices), meet, max_batch_size
        self.together = 0

    def generate(self, requests: list) -> list:
        if self.meet is not None:
            try:
                self.meet.wait(timeout=10)
                self.together += 1
            except threading.BrokenBarrierError:
                pass
        return super().generate(requests)


def test_engines_are_grouped_by_the_devices_they_share():
    from cord.search.devices import device_groups

    a, b, c, d, unknown = Placed({"cuda:0"}), Placed({"cuda:1", "cuda:2"}), Placed({"cuda:2"}), Placed({"cuda:3"}), LocalEngine()
    groups = device_groups([a, b, c, d])
    assert groups[id(b)] == groups[id(c)] and len({groups[id(a)], groups[id(b)], groups[id(d)]}) == 3
    assert len(set(device_groups([a, d, unknown]).values())) == 1  # an engine of unknown placement may share any device


def test_engines_on_separate_devices_compute_at_once_and_a_problem_calls_them_together():
    from cord.search.scheduler import gather

    meet = threading.Barrier(2)
    left, right = Placed({"cuda:0"}, meet), Placed({"cuda:1"}, meet)
    scheduler = Scheduler()
    engines = [scheduler.batching(left), scheduler.batching(right)]

    def solve(problem):
        out = gather([(e, "generate", [f"{problem}-{i}"]) for i, e in enumerate(engines)])
        yield out[0][0] + out[1][0]

    assert sorted(scheduler.run(solve, ["p0", "p1"], in_flight=2)) == ["p0-0!p0-1!", "p1-0!p1-1!"]
    assert left.together == right.together == 1  # one batch each, running at the same time
    assert threading.main_thread().name not in left.threads | right.threads


class Timed(Placed):
    """A local engine on one device whose every batch takes `delay` seconds, noting when it ran."""

    def __init__(self, device: str, delay: float, max_batch_size: int | None = None):
        super().__init__({device}, max_batch_size=max_batch_size)
        self.delay, self.spans = delay, []

    def generate(self, requests: list) -> list:
        start = time.perf_counter()
        time.sleep(self.delay)
        self.spans.append((start, time.perf_counter()))
        return super().generate(requests)


@pytest.mark.parametrize("delays", [(0.3, 0.01), (0.01, 0.3)])
@pytest.mark.parametrize("reproducible", [True, False])
def test_reproducible_runs_separate_devices_in_waves_so_batches_do_not_depend_on_timing(reproducible, delays):
    """Problem a asks the first device twice; problem b asks the other, then the first. Reproducible:
    a batch starts only when every device is idle and no problem can move, so a's second request
    waits for b's and they share a batch however long each device takes, and the two devices'
    first batches still run at once. Otherwise the idle device goes on at once, and the batches
    depend on which device is faster."""
    first, other = Timed("cuda:0", delays[0], max_batch_size=1), Timed("cuda:1", delays[1])
    scheduler = Scheduler(reproducible=reproducible)
    one, two = scheduler.batching(first), scheduler.batching(other)

    def solve(problem):
        if problem == "a":
            yield one.generate(one.generate(["a"]))
        else:
            yield one.generate(two.generate(["b"]))

    assert sorted(map(tuple, scheduler.run(solve, ["a", "b"], in_flight=2))) == [("a!!",), ("b!!",)]
    if reproducible:  # the same waves whatever the delays; the second batch is not cut to max_batch_size
        assert first.batches == [["a"], ["a!", "b!"]] and other.batches == [["b"]]
        assert max(s for s, _ in (first.spans[0], other.spans[0])) < min(e for _, e in (first.spans[0], other.spans[0]))
    elif delays[0] < delays[1]:  # the first device was idle while the other decoded: a went on alone
        assert first.batches == [["a"], ["a!"], ["b!"]]
    assert threading.main_thread().name not in first.threads | other.threads


class Carrying(LocalEngine):
    """Carries the last row of every batch of more than one (each request once), as the
    transformers engine carries the rows still decoding at the end of a whole batch."""

    def __init__(self):
        super().__init__()
        self.carried: set[str] = set()

    def generate(self, requests: list) -> list:
        out = super().generate(requests)
        if len(requests) > 1 and requests[-1] not in self.carried:
            self.carried.add(requests[-1])
            out[-1] = Completion("", 0, CARRIED)
        return out


def test_a_carried_request_resumes_first_in_the_engines_next_batch_and_its_problem_waits_for_it():
    engine, scheduler = Carrying(), Scheduler()
    batching = scheduler.batching(engine)

    def solve(problem):
        texts = [problem]
        for _ in range(2):
            texts = batching.generate([texts[-1] + "a", texts[-1] + "b"])
        yield texts

    out = list(scheduler.run(solve, ["p0", "p1", "p2"], in_flight=3))
    assert sorted(out) == [[f"p{i}b!a!", f"p{i}b!b!"] for i in range(3)]
    assert engine.batches == [
        ["p0a", "p0b", "p1a", "p1b", "p2a", "p2b"],  # p2b carried: p0 and p1 move on, p2 waits
        ["p2b", "p0b!a", "p0b!b", "p1b!a", "p1b!b"],  # the carried row first, alone of its call
        ["p1b!b", "p2b!a", "p2b!b"],
        ["p2b!b"],
    ]


def test_on_separate_devices_a_batch_is_one_pass_of_the_engine_so_its_problems_move_on_sooner():
    left, right = Placed({"cuda:0"}, max_batch_size=2), Placed({"cuda:1"})
    scheduler = Scheduler()
    first, second = scheduler.batching(left), scheduler.batching(right)

    def solve(problem):
        yield second.generate(first.generate([problem + "a", problem + "b"]))

    out = list(scheduler.run(solve, [f"p{i}" for i in range(3)], in_flight=3))
    assert sorted(out) == [[f"p{i}a!!", f"p{i}b!!"] for i in range(3)]
    assert [len(b) for b in left.batches] == [2, 2, 2]  # each pass one problem's two rows, not all six at once


class Continuous(LocalEngine):
    """A local engine that batches continuously (as the offline vLLM engine does)."""

    continuous = True


@pytest.mark.parametrize("reproducible", [False, True])
def test_a_continuously_batching_engine_is_called_at_once_unless_the_run_must_be_reproducible(reproducible):
    engine, scheduler = Continuous(), Scheduler(reproducible=reproducible)
    batching = scheduler.batching(engine)

    def solve(problem):
        yield batching.generate([problem])[0]

    assert sorted(scheduler.run(solve, [f"p{i}" for i in range(4)], in_flight=4)) == [f"p{i}!" for i in range(4)]
    if reproducible:  # queued and run as one batch from the main thread, as before
        assert engine.batches == [["p0", "p1", "p2", "p3"]] and engine.threads == {threading.main_thread().name}
    else:  # each problem's call goes out from its own thread, as to a server
        assert sorted(map(tuple, engine.batches)) == [(f"p{i}",) for i in range(4)]
        assert threading.main_thread().name not in engine.threads


def test_continuous_auto_batches_continuously_only_on_a_device_of_its_own():
    from cord.search.devices import calls_at_once

    def placed(devices, mode):
        engine = Placed(devices)
        engine.continuous = mode
        return engine

    alone, shared_a, shared_b = placed({"cuda:0"}, "auto"), placed({"cuda:1"}, "auto"), placed({"cuda:1"}, "auto")
    always = placed({"cuda:1"}, True)
    server = LocalEngine()
    server.concurrent = True
    engines = [alone, shared_a, shared_b, always, server]
    assert calls_at_once(engines) == {id(alone), id(always), id(server)}
    assert calls_at_once(engines, reproducible=True) == {id(server)}  # a server has no whole batches to fall back on


class CountingServer:
    """A server engine that counts the problems whose calls it holds at once (each answer takes 0.05 s)."""

    concurrent = True

    def __init__(self):
        self.lock = threading.Lock()
        self.now = self.most = 0

    def generate(self, requests: list) -> list:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.05)
        with self.lock:
            self.now -= 1
        return [f"{r}!" for r in requests]

    def score(self, requests: list) -> list:
        return [0 for _ in requests]


@pytest.mark.parametrize("rows_in_flight", [None, 6, 100])
def test_problems_start_beyond_in_flight_while_the_servers_have_free_rows(rows_in_flight):
    server = CountingServer()
    scheduler = Scheduler(rows_in_flight=rows_in_flight)
    engine = scheduler.batching(server)

    def solve(problem):
        texts = [problem]
        for _ in range(3):
            texts = engine.generate([texts[-1] + "a", texts[-1] + "b"])  # two rows out a call
        yield texts[-1]

    out = list(scheduler.run(solve, [f"p{i}" for i in range(16)], in_flight=2))
    assert sorted(out) == sorted(f"p{i}b!b!b!" for i in range(16))  # the same records whatever is in flight
    if rows_in_flight is None:
        assert server.most == 2  # problems_in_flight alone decides
    elif rows_in_flight == 6:
        assert server.most == 3  # 3 problems x 2 rows reach 6: no more start
    else:
        assert server.most == 8  # free rows, but at most 4 x problems_in_flight problems


def test_a_problem_launches_server_calls_goes_on_and_waits_for_as_many_as_it_needs():
    from cord.search.scheduler import can_launch, launch, wait_for

    scheduler = Scheduler()
    server, local = scheduler.batching(SlowServer()), scheduler.batching(LocalEngine())

    def solve(problem):
        assert can_launch([server]) and not can_launch([server, local])  # a local engine's calls wait for its batch
        slow, fast = launch(server, "generate", ["slow"]), launch(server, "generate", [problem])
        wait_for([slow, fast], 1)
        assert fast.done and not slow.done  # the problem moves on with the first one back
        wait_for([slow, fast], 2)
        assert slow.seconds >= 1.5 > fast.seconds  # each call's own engine seconds
        yield slow.result() + fast.result()

    assert list(scheduler.run(solve, ["p"], in_flight=1)) == [["slow!", "p!"]]
    assert not can_launch([server])  # outside a run
