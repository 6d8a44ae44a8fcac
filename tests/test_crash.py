"""Crash safety: a run SIGKILLed at random moments and resumed each time ends with exactly the
records of an uninterrupted run: none lost, none twice, no torn line."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from cord.config import load_config
from cord.records import read_records
from cord.run import run
from helpers import ROOT, needs_tiny

pytestmark = [needs_tiny, pytest.mark.slow]
N = 100


RECIPE = ROOT / "recipes" / "tiny-hetero.yaml"
OVERRIDES = [f"data.tiny.n={N}", "data.tiny.seed=21", "search.beam_size=1", "search.problems_in_flight=25"]


def command(out) -> list[str]:
    return [sys.executable, "-m", "cord.cli", "generate", "-c", str(RECIPE), "--out", str(out), "-q", *OVERRIDES]


def run_here(out) -> None:
    """The same run in this process (no interpreter start-up)."""
    run(load_config(RECIPE, [f"output_dir={out}", *OVERRIDES]), progress=False)


def kill_after_models_load(out, delay: float, loads_before: int) -> None:
    """Start the run, wait until run.log says its models loaded, wait `delay` s more, SIGKILL it."""
    proc = subprocess.Popen(command(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "run.log"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and log.read_text().count("models loaded") > loads_before:
            break
        time.sleep(0.05)
    time.sleep(delay)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_five_sigkills_and_resumes_give_the_records_of_an_uninterrupted_run(tmp_path):
    reference = tmp_path / "reference"
    run_here(reference)  # uninterrupted
    expected = {r.id: r for r in read_records(reference)}
    assert len(expected) == N

    out = tmp_path / "killed"
    rng = random.Random(7)
    counts = []
    for kill in range(5):
        kill_after_models_load(out, rng.uniform(0.3, 3.0), loads_before=kill)
        counts.append(len(read_records(out)))  # readable after every kill (a torn last line is dropped)
    run_here(out)  # the last resume

    raw = (out / "records.jsonl").read_bytes()
    assert raw.endswith(b"\n")
    lines = [json.loads(line) for line in raw.decode().splitlines()]  # every line whole
    ids = [line["id"] for line in lines]
    assert len(ids) == N and len(set(ids)) == N
    assert counts == sorted(counts) and counts[-1] < N  # killed mid-run, work kept across kills
    for record in read_records(out):
        want = expected[record.id]
        assert (record.reasoning, record.final_answer, record.correct) == (want.reasoning, want.final_answer, want.correct)


@pytest.mark.parametrize(("signum", "code", "name"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_sigterm_and_sigint_end_the_same_way_and_the_same_command_resumes(tmp_path, signum, code, name):
    """What a Slurm time limit or a preemption sends (SIGTERM) ends a run as Ctrl-C (SIGINT) does:
    finished records kept, summary.json and run.log's last line written, one line on stderr, a
    documented exit code; the same command then finishes the run."""
    out, few = tmp_path / "run", ["data.tiny.n=24", "search.problems_in_flight=2"]
    # A shell's background job inherits SIGINT ignored, and Python then keeps it ignored: a terminal's
    # Ctrl-C reaches a process with the default handler, so the child starts with that one.
    proc = subprocess.Popen(
        [*command(out), *few],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    records = out / "records.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not (records.is_file() and records.read_bytes().count(b"\n") >= 2):
        time.sleep(0.05)
    os.kill(proc.pid, signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert err.strip().splitlines() == [f"cord: interrupted ({name}); finished problems are saved, run the same command to resume"]
    kept = read_records(out)
    assert 2 <= len(kept) < 24
    summary = json.loads((out / "summary.json").read_text())
    assert summary["running"] is False and summary["problems"] == len(kept)
    log = (out / "run.log").read_text().splitlines()
    assert f"run interrupted ({name}) after" in log[-2] and "run ended: " in log[-1]
    resumed = subprocess.run([*command(out), *few], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert len(read_records(out)) == 24 and json.loads(resumed.stdout)["resumed"] == len(kept)
