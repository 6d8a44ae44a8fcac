"""The GPU measurement script runs its whole code path on the CPU (tiny shapes), so it does not rot
between the rare sessions that have a GPU."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import ROOT


@pytest.mark.slow
def test_gpu_bench_smoke_runs_every_section():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_bench.py"), "--smoke"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "FAILED" not in out, out
    sections = ("A smoke P2 kept-KV scoring", "B smoke raw generation", "D smoke at vocabulary 151936", "C P1 CoRD / Curation")
    two_gpus = "E two GPUs: skipped (0 GPU visible)"  # the two-GPU section's code path runs only on two GPUs
    kept = "C kept KV at most (CoRD then Curation, one engine): teachers"
    refill = ("refilled / passes", "carrying / to its end")
    lines = (
        *sections,
        two_gpus,
        "C P3 CoRD generated",
        "C peak memory",
        kept,
        "transformers' continuous batching",
        "G one forward pass",
        *refill,
    )
    for line in lines:
        assert line in out, out
