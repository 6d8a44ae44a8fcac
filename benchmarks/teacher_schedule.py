"""Teacher scheduling by position (search.teacher_schedule, beyond the paper) against CoRD with
every teacher, on the tiny models: accuracy, predictive perplexity S (higher is better), valid
traces and the teachers' generated tokens, per seed and on average.

    python benchmarks/teacher_schedule.py [--n 100] [--seeds 0 1 2] [--settings homo hetero]
                                          [--coverage 0.9] [--calibration 16]

Both runs of a seed read the same problems and seeds, and the calibration problems run as plain
CoRD in the scheduled run too, so their tokens count in its total ("tokens x" is the whole run's
ratio; "after calibration" compares the remaining problems alone; "lost/gained": problems the
scheduled run got wrong that plain CoRD got right, and the reverse).

    python benchmarks/teacher_schedule.py --cells 4 [--n 200] [--seeds 0 1 2] [--settings ...]

asks, instead, what each cell of any table could save: for every step index below 4 and every
teacher, a run with a written table that leaves only that teacher out at only that step, against
plain CoRD (means over the seeds). A table is a set of such cells, so if every cell costs accuracy
no table reaches plain CoRD's accuracy for fewer tokens.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

from cord.config import TeacherScheduleConfig
from cord.records import read_records, summarize
from cord.run import run
from cord.tiny.demo import tiny_config


def measure(config, out: Path, cache: dict) -> tuple[dict, list]:
    config.output_dir = str(out)
    run(config, progress=False, engine_cache=cache)
    records = read_records(out)
    return summarize(records), records


def tokens(records) -> int:
    return sum(sum(r.tokens.teachers.values()) for r in records)


COLUMNS = ("acc", "PP", "valid", "tokens", "tokens x", "after calib.", "lost/gained")
HEAD = f"{'setting':<7} {'seed':>4} {'run':<9} " + " ".join(f"{c:>{w}}" for c, w in zip(COLUMNS, (6, 6, 6, 7, 8, 12, 11)))
QUALITY = ("accuracy", "mean_predictive_perplexity", "valid_trace_rate")


def quality(summary) -> str:
    return f"{100 * summary['accuracy']:>5.1f}% {summary['mean_predictive_perplexity']:>6.3f} {100 * summary['valid_trace_rate']:>5.1f}%"


def line(setting, seed, name, summary, spent, ratio, after, flips="") -> str:
    return f"{setting:<7} {seed:>4} {name:<9} {quality(summary)} {spent:>7} {ratio:>8.2f} {after:>12.2f} {flips:>11}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=["homo", "hetero"])
    parser.add_argument("--coverage", type=float, default=TeacherScheduleConfig.coverage)
    parser.add_argument("--calibration", type=int, default=TeacherScheduleConfig.calibration)
    parser.add_argument("--min-kept", type=int, default=TeacherScheduleConfig.min_kept)
    parser.add_argument("--cells", type=int, metavar="STEPS", help="leave one teacher out at one step index below STEPS, each in turn")
    args = parser.parse_args()
    if args.cells:
        cells(args)
        return
    schedule = TeacherScheduleConfig(coverage=args.coverage, calibration=args.calibration, min_kept=args.min_kept)
    cache: dict = {}
    start = time.perf_counter()
    print(f"tiny models, {args.n} mixed problems per seed; schedule: by step, coverage {args.coverage}, ", end="")
    print(f"calibration {args.calibration}, min_kept {args.min_kept}")
    print(HEAD)
    with tempfile.TemporaryDirectory() as tmp:
        for setting in args.settings:
            rows: dict[str, list[tuple[dict, float, float]]] = {"all": [], "position": []}
            for seed in args.seeds:
                base = tiny_config(setting, args.n, seed)
                scheduled = copy.deepcopy(base)
                scheduled.search.teacher_schedule = copy.deepcopy(schedule)
                full, full_records = measure(base, Path(tmp) / f"{setting}-{seed}-all", cache)
                part, part_records = measure(scheduled, Path(tmp) / f"{setting}-{seed}-position", cache)
                ratio = tokens(part_records) / tokens(full_records)
                later = {r.id for r in part_records if r.schedule == "scheduled"}
                after = tokens([r for r in part_records if r.id in later]) / max(1, tokens([r for r in full_records if r.id in later]))
                correct = {r.id: bool(r.correct) for r in full_records}
                lost = sum(correct[r.id] and not r.correct for r in part_records)
                gained = sum(bool(r.correct) and not correct[r.id] for r in part_records)
                rows["all"].append((full, 1.0, 1.0))
                rows["position"].append((part, ratio, after))
                print(line(setting, seed, "all", full, tokens(full_records), 1.0, 1.0), flush=True)
                print(line(setting, seed, "position", part, tokens(part_records), ratio, after, f"{lost}/{gained}"), flush=True)
            for name, results in rows.items():
                mean = {k: statistics.mean(s[k] for s, _, _ in results) for k in QUALITY}
                ratio, after = statistics.mean(x for _, x, _ in results), statistics.mean(x for _, _, x in results)
                print(line(setting, "mean", name, mean, "", ratio, after), flush=True)
    print(f"wall time {time.perf_counter() - start:.0f} s")


def cells(args) -> None:
    cache: dict = {}
    start = time.perf_counter()
    print(f"tiny models, {args.n} mixed problems per seed, seeds {args.seeds}: one teacher left out at one step index")
    print(f"{'setting':<7} {'left out':<24} {'acc':>6} {'PP':>6} {'valid':>6} {'tokens x':>8} {'acc - plain':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for setting in args.settings:
            rows: dict[str, list[tuple[dict, float]]] = {}
            for seed in args.seeds:
                base = tiny_config(setting, args.n, seed)
                names = [t.name for t in base.teachers]
                plain, plain_records = measure(copy.deepcopy(base), Path(tmp) / f"{setting}-{seed}-plain", cache)
                rows.setdefault("none (plain CoRD)", []).append((plain, 1.0))
                for step in range(args.cells):
                    for name in names:
                        config = copy.deepcopy(base)
                        config.search.teacher_schedule = TeacherScheduleConfig(table={step: [t for t in names if t != name]})
                        summary, records = measure(config, Path(tmp) / f"{setting}-{seed}-{step}-{name}", cache)
                        rows.setdefault(f"step {step}: {name}", []).append((summary, tokens(records) / tokens(plain_records)))
            plain_accuracy = statistics.mean(s["accuracy"] for s, _ in rows["none (plain CoRD)"])
            for label, results in rows.items():
                mean = {k: statistics.mean(s[k] for s, _ in results) for k in QUALITY}
                ratio = statistics.mean(x for _, x in results)
                change = 100 * (mean["accuracy"] - plain_accuracy)
                print(f"{setting:<7} {label:<24} {quality(mean)} {ratio:>8.3f} {change:>+11.1f}", flush=True)
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
