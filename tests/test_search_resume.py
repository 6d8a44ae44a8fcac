"""Pre-emption loses at most a round: every strategy saves a problem's search state after each
round (records/states.py, `Strategy.checkpoint`), and the same command resumes each problem from
its last saved round with the records an uninterrupted run writes."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from cord.config import load_config
from cord.data import load_problems
from cord.records import read_records
from cord.records.states import SearchStates
from cord.run import run
from helpers import ROOT, needs_tiny, random_config

# What a resumed record shares with an uninterrupted one: all but the wall time, the seconds, and the
# meta-prover's computed tokens (what its prefix cache held: a resumed process starts with it cold).
# Its scores agree to 1e-5 relative: a prefix computed afresh rather than read from the cache
# sums in another order in float32 (measured: 1.6e-7 relative on the random model).
TIMED = ("seconds", "timing", "cost")


def same_fields(record) -> dict:
    data = {k: v for k, v in record.to_dict().items() if k not in TIMED}
    data["tokens"].pop("meta_prover")
    return data


def close(a, b) -> bool:
    """Equal, floats to 1e-5 relative (within dicts and lists)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-5)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    return a == b


def differing(got: dict, expected: dict) -> list[tuple[str, str]]:
    """(problem, field) of every field on which two sets of records differ."""
    assert got.keys() == expected.keys()
    return [(p, k) for p in got for k in got[p].keys() | expected[p].keys() if not close(got[p].get(k), expected[p].get(k))]


class InterruptAfter:
    """SearchStates.save that saves, then raises KeyboardInterrupt (as SIGINT would) at its n-th call."""

    def __init__(self, n: int):
        self.n, self.calls = n, 0
        original = SearchStates.save

        def save(states, problem, state):
            original(states, problem, state)
            self.calls += 1
            if self.calls == self.n:
                raise KeyboardInterrupt

        self.save = save


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("cord", {"beam_size": 2}),
        ("greedy", {}),
        ("curation", {"beam_size": 2}),
        ("mcts", {"beam_size": 2}),
        ("mcts-cord", {"beam_size": 2}),
        ("integration", {}),
    ],
)
def test_an_interrupted_run_resumes_each_problem_from_its_saved_round(random_model, tmp_path, engine_cache, monkeypatch, method, extra):
    reference = random_config(random_model, tmp_path / "reference", method=method, reproducible="true", problems_in_flight=2, **extra)
    if method == "integration":
        reference.integrator = type(reference.meta_prover)(name="mixer", model=random_model, temperature=0.0)
    summary = run(reference, progress=False, engine_cache=engine_cache) if method != "integration" else None
    if method == "integration":
        with pytest.raises(Exception, match="every one of the 3 problems run failed"):  # the random integrator writes no JSON
            run(reference, progress=False, engine_cache=engine_cache)
    expected = {r.id: same_fields(r) for r in read_records(tmp_path / "reference")}
    saved = summary["rounds"]["saved"] if summary else None

    config = reference.model_copy(deep=True)
    config.output_dir = str(tmp_path / "interrupted")
    interrupt = InterruptAfter(2)
    monkeypatch.setattr(SearchStates, "save", interrupt.save)
    with pytest.raises(KeyboardInterrupt):
        run(config, progress=False, engine_cache=engine_cache)
    monkeypatch.undo()
    states = SearchStates(tmp_path / "interrupted" / "state")
    assert states.saved(), "the interrupt came after a saved round"
    try:
        resumed = run(config, progress=False, engine_cache=engine_cache)
    except Exception as err:  # integration: every problem fails, as it did uninterrupted
        assert method == "integration" and "every one of" in str(err)
        resumed = json.loads((tmp_path / "interrupted" / "summary.json").read_text())
    assert resumed["rounds"]["resumed"] >= 1
    log = (tmp_path / "interrupted" / "run.log").read_text()
    assert "resumes after its saved round" in log
    got = {r.id: same_fields(r) for r in read_records(tmp_path / "interrupted")}
    assert differing(got, expected) == []
    assert states.saved() == []  # a finished problem's state is removed
    if saved is not None:
        assert resumed["rounds"]["saved"] + interrupt.calls >= saved


def test_a_state_from_another_method_or_version_or_unreadable_starts_the_problem_again(random_model, tmp_path, engine_cache, monkeypatch):
    config = random_config(random_model, tmp_path, method="greedy", reproducible="true")
    monkeypatch.setattr(SearchStates, "save", InterruptAfter(1).save)
    with pytest.raises(KeyboardInterrupt):
        run(config, progress=False, engine_cache=engine_cache)
    monkeypatch.undo()
    states = SearchStates(tmp_path / "state")
    first, second, third = (p.id for p in load_problems(config.data))
    states.save(first, {"version": 99, "method": "greedy"})
    states.save(second, {"version": 1, "method": "curation"})
    states.save(third, {"version": 1, "method": "greedy", "rounds": 1, "elapsed": 0.0, "usage": {}, "beam": []})
    summary = run(config, progress=False, engine_cache=engine_cache)
    assert summary["new"] == 3 and summary["rounds"]["resumed"] == 0
    log = (tmp_path / "run.log").read_text()
    assert "version 99, not this run's; it starts again" in log and "is of 'curation'" in log and "cannot be read (KeyError" in log


def test_states_of_problems_with_records_are_removed_when_the_run_opens(random_model, tmp_path, engine_cache):
    config = random_config(random_model, tmp_path, method="greedy")
    config.data.limit = 2
    run(config, progress=False, engine_cache=engine_cache)
    states = SearchStates(tmp_path / "state")
    done = read_records(tmp_path)[0].id
    states.save(done, {"version": 1})  # a crash between the record and the removal of its state
    config.data.limit = None
    run(config, progress=False, engine_cache=engine_cache)
    assert states.saved() == []


# -- the kill test ---------------------------------------------------------------------------------

RECIPE = ROOT / "recipes" / "tiny-hetero.yaml"
IN_FLIGHT = 4
# Short steps (cut at 3 tokens) over 4 operations: every problem takes 10 rounds or more.
OVERRIDES = [
    "data.tiny.n=8",
    "data.tiny.seed=5",
    "data.tiny.steps=4",
    *(f"teachers.{k}.max_step_tokens=3" for k in range(3)),
    "search.beam_size=2",
    f"search.problems_in_flight={IN_FLIGHT}",
    "search.reproducible=true",
]
# The child process counts every round it starts (problem, rounds saved before it) in ROUNDS_FILE:
# a round started twice was lost to a kill and computed again.
CHILD = """
import os, sys
from cord.search.cord import CordSearch
advance = CordSearch.advance
def counted(self, run):
    with open(os.environ["ROUNDS_FILE"], "a") as f:
        f.write(f"{run.problem.id} {run.rounds}\\n")
    return advance(self, run)
CordSearch.advance = counted
from cord.cli import main
sys.exit(main(sys.argv[1:]))
"""


def rounds_started(file) -> list[tuple[str, int]]:
    if not file.exists():
        return []
    return [(p, int(r)) for p, r in (line.split() for line in file.read_text().splitlines() if line.strip())]


def generate_command(out) -> list[str]:
    return [sys.executable, "-c", CHILD, "generate", "-c", str(RECIPE), "--out", str(out), "-q", *OVERRIDES]


@needs_tiny
@pytest.mark.slow
def test_three_sigkills_mid_round_lose_at_most_a_round_per_problem_in_flight(tmp_path):
    reference = tmp_path / "reference"
    env = {**os.environ, "ROUNDS_FILE": str(tmp_path / "reference-rounds")}
    done = subprocess.run(generate_command(reference), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    expected = {r.id: same_fields(r) for r in read_records(reference)}
    per_problem = Counter(p for p, _ in rounds_started(tmp_path / "reference-rounds"))
    assert len(expected) == 8 and min(per_problem.values()) >= 10, per_problem

    out, rounds = tmp_path / "killed", tmp_path / "killed-rounds"
    env["ROUNDS_FILE"] = str(rounds)
    kills, bounds = [], []
    for kill, wait_for in enumerate((10, 20, 20)):
        before = len(rounds_started(rounds))
        proc = subprocess.Popen(generate_command(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None and len(rounds_started(rounds)) < before + wait_for:
            time.sleep(0.01)
        assert proc.poll() is None, f"kill {kill}: the run ended before it was killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        bounds.append((before, len(rounds_started(rounds))))
        saved = sum(json.loads(f.read_text())["rounds"] for f in (out / "state").glob("*.json"))
        kills.append({"rounds_saved": saved, "records": len(read_records(out))})
    done = subprocess.run(generate_command(out), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr

    started = rounds_started(rounds)
    for kill, (start, end) in zip(kills, bounds):  # a round of this process that a later one started again was lost
        kill["rounds_recomputed"] = sum(1 for r in set(started[start:end]) if r in started[end:])
    recomputed = len(started) - len(set(started))
    print(f"\nkills: {kills}; rounds started in all: {len(started)} (uninterrupted: {sum(per_problem.values())}); recomputed: {recomputed}")
    assert all(k["rounds_recomputed"] <= IN_FLIGHT for k in kills)  # at most the round in progress of each problem in flight
    assert len(set(started)) == sum(per_problem.values())  # every round of the uninterrupted run, and only those
    assert recomputed == sum(k["rounds_recomputed"] for k in kills)
    assert all(k["rounds_saved"] > 0 for k in kills)

    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == 8 and len({json.loads(line)["id"] for line in lines}) == 8  # every problem once
    assert differing({r.id: same_fields(r) for r in read_records(out)}, expected) == []
    assert not list((out / "state").glob("*.json"))  # no saved state left behind


def too_long(path, n: int):
    """`n` problems whose questions do not fit the tiny models' context of 512 tokens: each fails."""
    path.write_text("".join(json.dumps({"id": f"long-{i}", "problem": "Add 2 and 3. " * 300, "answer": "5"}) + "\n" for i in range(n)))
    return path


@needs_tiny
def test_a_run_where_every_problem_fails_exits_non_zero_and_names_the_reason(tmp_path):
    from helpers import cord_here

    data = too_long(tmp_path / "long.jsonl", 2)
    code, _, err = cord_here("generate", "-c", str(RECIPE), "--data", str(data), "--out", str(tmp_path / "out"))
    assert code == 1, err
    reason = "teacher addsub: prompt of 2453 tokens does not fit the model's context of 512"
    assert f"cord: cord 2/2 problems done, 2 failed (2 x {reason})" in err  # the progress line off a terminal
    assert f"cord: error: every one of the 2 problems run failed (2 x {reason})" in err
    assert len(read_records(tmp_path / "out")) == 2  # the failed records are kept
    log = (tmp_path / "out" / "run.log").read_text()
    assert f"2 of 2 problems run failed: 2 x {reason}" in log and "empty steps" not in log


@needs_tiny
def test_max_failure_rate_stops_a_failing_run_and_keeps_its_records(tmp_path):
    from cord.errors import RunStopped

    data = too_long(tmp_path / "long.jsonl", 8)
    overrides = [
        f"output_dir={tmp_path / 'out'}",
        f"data.path={data}",
        "data.tiny=null",
        "failure_rate_after=3",
        "search.problems_in_flight=1",
    ]
    config = load_config(RECIPE, overrides)
    with pytest.raises(
        RunStopped, match=r"^max_failure_rate 0\.5 passed: 3 of 3 problems failed \(3 x teacher addsub: .*; 5 problems not run"
    ):
        run(config, progress=False)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["stopped"].startswith("max_failure_rate") and summary["problems"] == 3 and summary["failures"] == 3
    config.max_failure_rate = None  # off: the same command runs the rest (every one fails, so it still exits non-zero)
    with pytest.raises(RunStopped, match="every one of the 5 problems run failed"):
        run(config, progress=False)
    assert len(read_records(tmp_path / "out")) == 8


def test_a_run_that_stops_on_an_exception_writes_its_traceback_to_run_log(random_model, tmp_path, engine_cache, monkeypatch):
    from cord.errors import RunStopped
    from cord.search.cord import CordSearch

    def broken(self, run):
        raise ZeroDivisionError("a bug in a round")

    monkeypatch.setattr(CordSearch, "advance", broken)
    with pytest.raises(RunStopped, match="ZeroDivisionError: a bug in a round"):
        run(random_config(random_model, tmp_path), progress=False, engine_cache=engine_cache)
    log = (tmp_path / "run.log").read_text()
    assert "Traceback (most recent call last)" in log and 'in broken\n    raise ZeroDivisionError("a bug in a round")' in log
