"""Readers at scale: time and peak memory of every command that reads a run directory, on a
synthetic run of N records.

A tiny run (8 problems, runners-up kept, every step's candidates kept) gives the record shapes;
the benchmark then writes one record per problem of `data.tiny.n = N` (their ids, questions,
answers and input places, the records cycled, written in a shuffled finishing order), so resuming
the run has nothing to do. `--paper-like` makes each record the size of a record at the paper's
lengths: every step's text repeated to about 16K tokens of reasoning, and three runners-up.
The template run keeps candidates (`search.keep_candidates`: B = 4 beams x K = 3 teachers propose
12 steps a round, and each kept step stores its rivals after the same prefix, as search/cord.py
`advance` does; at paper-like lengths each rival's text is repeated as its step's is), so the
benchmark prints the bytes per record (its records.jsonl line) with and without them; the run it
writes holds them with `--candidates`, else not.

    python benchmarks/scale.py --n 100000
    python benchmarks/scale.py --n 10000 --paper-like
    python benchmarks/scale.py --n 2000 --paper-like --candidates
    PYTHONPATH=/tmp/old/src python benchmarks/scale.py    # another checkout's cord, side by side

Each command runs in a fresh process; its peak resident memory is that process's. Prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEAK = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)"
    "; print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code.returncode, code.stderr.decode()[-300:].replace(chr(10), ' '))"
)


def trajectories(record: dict) -> list[dict]:
    return [record, *record["alternatives"]]


def template_records(folder: Path, paper_like: bool) -> list[dict]:
    """The tiny run's records (every step's candidates kept), at paper-like lengths if asked."""
    from cord.config import load_config
    from cord.run import run

    out = folder / "template"
    overrides = [f"output_dir={out}", "data.tiny.n=8", "search.keep_candidates=true"]
    overrides.append("search.keep_top_k=4" if paper_like else "search.keep_top_k=1")
    run(load_config(ROOT / "recipes" / "tiny-hetero.yaml", overrides), progress=False)
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    if paper_like:  # about 16K tokens of reasoning (4 characters a token), in each trajectory
        for record in records:
            for trajectory in trajectories(record):
                size = sum(len(s["text"]) for s in trajectory["steps"]) or 1
                times = max(1, 64_000 // size)
                for step in trajectory["steps"]:
                    step["text"] = step["text"] * times
                    for rival in step["candidates"] or []:  # a rival is a step of the same length
                        rival["text"] = rival["text"] * times
                trajectory["reasoning"] = "".join(s["text"] for s in trajectory["steps"])
    return records


def without_candidates(record: dict) -> dict:
    """The record as a run without search.keep_candidates writes it (candidates null)."""
    record = json.loads(json.dumps(record))
    for trajectory in trajectories(record):
        for step in trajectory["steps"]:
            step["candidates"] = None
    return record


def line_bytes(record: dict) -> int:
    """The record's records.jsonl line, in bytes (as Record.to_line writes it)."""
    return len((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))


def candidate_sizes(records: list[dict]) -> str:
    """Mean bytes per record with and without candidates, and how many each kept step stores."""
    with_them = sum(map(line_bytes, records)) / len(records)
    without = sum(line_bytes(without_candidates(r)) for r in records) / len(records)
    steps = [s for r in records for t in trajectories(r) for s in t["steps"]]
    rivals = sum(len(s["candidates"] or []) for s in steps) / max(1, len(steps))
    return (
        f"bytes per record (records.jsonl line, mean of {len(records)} template records): {without:,.0f} without candidates, "
        f"{with_them:,.0f} with ({with_them / without:.2f} x; {rivals:.2f} rivals stored a kept step, "
        f"{len(steps) / len(records):.1f} kept steps a record over its trajectories)"
    )


def build(folder: Path, n: int, paper_like: bool, candidates: bool) -> Path:
    """The synthetic run directory of n records (with every step's candidates if `candidates`)."""
    import yaml

    from cord.config import load_config
    from cord.data import load_problems

    records = template_records(folder, paper_like)
    print(candidate_sizes(records), flush=True)
    if not candidates:
        records = [without_candidates(r) for r in records]
    run_dir = folder / "run"
    run_dir.mkdir()
    config = yaml.safe_load((folder / "template" / "config.yaml").read_text())
    config["data"]["tiny"]["n"] = n
    config["output_dir"] = str(run_dir)
    config["search"]["keep_candidates"] = candidates
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    problems = load_problems(load_config(run_dir / "config.yaml").data)
    order = list(range(len(problems)))
    random.Random(0).shuffle(order)  # problems finish out of input order
    with (run_dir / "records.jsonl").open("w") as handle:
        for place in order:
            problem, record = problems[place], dict(records[place % len(records)])
            record.update(id=problem.id, question=problem.question, answer=problem.answer, index=place)
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    summary = json.loads((folder / "template" / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**summary, "problems": n, "planned": n, "running": False}))
    return run_dir


def measure(command: list[str], env: dict) -> tuple[float, float, str]:
    """(seconds, peak MB, error) of one command in a fresh process."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PEAK, *command], capture_output=True, text=True, env=env, check=True).stdout.split(" ", 2)
    seconds = time.perf_counter() - start
    return seconds, int(out[0]) / 1024, "" if out[1] == "0" else f"exit {out[1]}: {out[2].strip()}"


def page_open_seconds(page_file: Path) -> str:
    """Seconds from navigation to the load event of the report page in headless Chromium (Debian's
    `chromium`, driven by playwright; the browser is started first and not counted)."""
    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "not measured (playwright is not installed)"
    if browser_path is None:
        return "not measured (no chromium)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page()
        start = time.perf_counter()
        page.goto(page_file.as_uri(), wait_until="load", timeout=120_000)
        seconds = time.perf_counter() - start
        browser.close()
    return f"opens in headless Chromium in {seconds:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="records (default 100,000)")
    parser.add_argument("--paper-like", action="store_true", help="records of the paper's size (16K-token trajectories, 3 runners-up)")
    parser.add_argument(
        "--candidates", action="store_true", help="records hold every step's candidates (search.keep_candidates: true; B = 4, K = 3)"
    )
    parser.add_argument("--keep", type=Path, help="build the run here and keep it")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="cord-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        run_dir = build(folder, args.n, args.paper_like, args.candidates)
        size = (run_dir / "records.jsonl").stat().st_size
        kind = ", ".join(k for k, on in (("paper-like", args.paper_like), ("with candidates", args.candidates)) if on)
        print(
            f"{args.n} records{f' ({kind})' if kind else ''}: records.jsonl {size / 2**20:,.0f} MB ({size / args.n:,.0f} bytes a record), "
            f"built in {time.perf_counter() - started:.0f} s"
        )
        env = dict(os.environ)
        cord = [sys.executable, "-m", "cord.cli"]
        half = folder / "half"  # a shard to merge: the same run cut in two
        commands = {
            "cord evaluate": [*cord, "evaluate", run_dir],
            "cord generate (resume, nothing to do)": [*cord, "generate", "-c", run_dir / "config.yaml", "-q"],
            "cord export": [*cord, "export", run_dir, "--all", "--out", folder / "export.jsonl", "--overwrite"],
            "cord report": [*cord, "report", run_dir, "--out", folder / "report.html", "--overwrite"],
            "cord merge": [*cord, "merge", run_dir, "--out", half, "--overwrite"],
        }
        print("| command | time | peak memory |\n|---|---|---|")
        for name, command in commands.items():
            seconds, peak, error = measure([str(c) for c in command], env)
            extra = ""
            if name == "cord report" and (folder / "report.html").exists():
                page = folder / "report.html"
                extra = f"; the page is {page.stat().st_size / 2**20:,.1f} MB and {page_open_seconds(page)}"
            print(f"| `{name}` | {seconds:.1f} s | {peak:,.0f} MB{extra} |{' ' + error if error else ''}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
