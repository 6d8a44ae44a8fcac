"""Step segmentation (the paper's Table 4) with tiny teachers that write both layouts.

The shipped tiny teachers only ever write "### Step" lines, so in miniature the line-break and
prefix rows cannot differ. This benchmark first fine-tunes copies of the three specialists and the
reader on both layouts (`cord train-tiny --layouts steps free --init`: "### Step" lines under the
step instruction; sentences, blank lines and "Let me check:" cues under the plain reasoning
instruction), once, into --models; then runs each segmentation on the same problems.

    python benchmarks/segmentation.py [--models runs/tiny-two-layouts] [--n 64] [--seeds 21 22 23]

Per row: answer accuracy with a 95 % Wilson interval over all problems of all seeds, valid traces,
predictive perplexity, the share of chosen trajectories in the free layout, kept steps a
trajectory, operations a kept step (equations, check sentences not counted), teacher switches a
trajectory (consecutive kept steps by different teachers: the collaboration a segmentation allows),
how the proposed steps ended, and teacher tokens. The per-step cap is raised for every row
(--max-step-tokens) so that steps end where the segmenter says, not at the cap.

First it measures what the rows cannot separate: each fine-tuned specialist alone on problems of
its own skill, asked for each layout (the step instruction, or the plain one the line-break and
prefix rows send). A gap there is a difference in the teachers' skill per layout, not in the
segmenters; line-break and prefix share the free layout, so only their comparison is clean.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from cord.records import read_records
from cord.results.compare import run_row, wilson_interval
from cord.run import run
from cord.tiny import HETEROGENEOUS_TEACHERS, META_PROVER, MODELS_DIR
from cord.tiny.demo import tiny_config
from cord.tiny.tasks import parse_steps
from cord.tiny.train import SPECS, tokenizer_for, train_one

ROOT = Path(__file__).resolve().parents[1]
MODELS = (*HETEROGENEOUS_TEACHERS, META_PROVER)
ROWS = {  # label -> (segmentation, two-layout models?)
    "line-break": ("linebreak", True),
    "prefix": ("prefix", True),
    "prompt-guided": ("prompt", True),
    "prompt-guided, shipped": ("prompt", False),
}


def ensure_models(models: Path, teacher_steps: int, reader_steps: int) -> None:
    """Fine-tune the two-layout models into `models` unless they are there already."""
    tok = tokenizer_for(0, MODELS_DIR / META_PROVER)
    for name in MODELS:
        if (models / name / "config.json").is_file():
            continue
        steps = reader_steps if name == META_PROVER else teacher_steps
        print(f"fine-tuning {name} on both layouts ({steps} steps) into {models / name}", file=sys.stderr, flush=True)
        train_one(
            SPECS[name], models / name, tok, seed=0, steps=steps, lr=1e-3, log=None, layouts=("steps", "free"), init=MODELS_DIR / name
        )


def config_for(segmentation: str, models: Path | None, n: int, seed: int, max_step_tokens: int):
    config = tiny_config("hetero", n, seed)
    config.search.segmentation = segmentation
    for teacher, name in zip(config.teachers, HETEROGENEOUS_TEACHERS, strict=True):
        teacher.max_step_tokens = max_step_tokens
        if models is not None:
            teacher.model = str(models / name)
    if models is not None:
        config.meta_prover.model = str(models / META_PROVER)
    return config


def solo_accuracy(
    models: Path, layout_segmentation: str, n: int, seeds: list[int], max_step_tokens: int, cache: dict, tmp: str
) -> tuple[int, int]:
    """Right answers of each specialist alone (one sampled trajectory: `curation` with one
    teacher) on single-skill problems of its own skill, over all specialists and seeds."""
    right = total = 0
    for name in HETEROGENEOUS_TEACHERS:
        for seed in seeds:
            config = config_for(layout_segmentation, models, n, seed, max_step_tokens)
            config.teachers = [t for t in config.teachers if t.model.endswith(name)]
            config.search.method, config.search.rollouts = "curation", 1
            config.data.tiny.mix = name.removeprefix("tiny-")
            config.output_dir = str(Path(tmp) / f"solo-{layout_segmentation}-{name}-{seed}")
            run(config, progress=False, engine_cache=cache)
            records = list(read_records(Path(config.output_dir)))
            right += sum(bool(r.correct) for r in records)
            total += len(records)
    return right, total


def trajectory_stats(records) -> dict:
    trajectories = [r for r in records if r.steps]
    steps = [s for r in trajectories for s in r.steps]
    operations = [len(parse_steps(s.text)) for s in steps]
    switches = [sum(a.teacher != b.teacher for a, b in zip(r.steps, r.steps[1:])) for r in trajectories]
    free = [r for r in trajectories if "###" not in "".join(s.text for s in r.steps)]
    n = max(len(trajectories), 1)
    return {
        "free": len(free) / n,
        "steps": len(steps) / n,
        "operations": sum(operations) / max(len(steps), 1),
        "switches": sum(switches) / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", type=Path, default=ROOT / "runs" / "tiny-two-layouts", help="the two-layout models (trained here if absent)"
    )
    parser.add_argument("--teacher-steps", type=int, default=500, help="fine-tuning steps of each specialist")
    parser.add_argument("--reader-steps", type=int, default=800, help="fine-tuning steps of the reader")
    parser.add_argument("--n", type=int, default=64, help="problems per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[21, 22, 23])
    parser.add_argument("--max-step-tokens", type=int, default=96)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    args = parser.parse_args()
    start = time.perf_counter()
    ensure_models(args.models, args.teacher_steps, args.reader_steps)
    print(f"models ready in {time.perf_counter() - start:.0f} s", flush=True)
    cache: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for layout, segmentation in (("### Step lines (step instruction)", "prompt"), ("free (plain instruction)", "linebreak")):
            right, total = solo_accuracy(args.models, segmentation, args.n // 2, args.seeds, args.max_step_tokens, cache, tmp)
            low, high = wilson_interval(right, total)
            print(
                f"specialists alone, own skill, {layout:<34} {100 * right / total:5.1f}% ({100 * low:.1f}-{100 * high:.1f}) of {total}",
                flush=True,
            )
    head = f"{'row':<23} {'n':>4} {'acc':>6} {'95% CI':>12} {'valid':>6} {'PP':>6} {'free':>5} {'steps':>5} {'ops/st':>6} {'switch':>6}"
    print(f"{head} {'ends (marker/think/cap/eos)':>27} {'teacher tok':>11} {'sec':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for label in args.rows:
            segmentation, two_layout = ROWS[label]
            rows, records = [], []
            for seed in args.seeds:
                config = config_for(segmentation, args.models if two_layout else None, args.n, seed, args.max_step_tokens)
                config.output_dir = str(Path(tmp) / f"{segmentation}-{two_layout}-{seed}")
                run(config, progress=False, engine_cache=cache)
                rows.append(run_row(Path(config.output_dir), label))
                records += list(read_records(Path(config.output_dir)))
            right, n = sum(bool(r.correct) for r in records), len(records)
            low, high = wilson_interval(right, n)
            valid = sum(bool(r.valid_trace) for r in records) / n
            pp = [r.predictive_perplexity for r in records if r.predictive_perplexity is not None]
            ends: dict[str, int] = {}
            for row in rows:
                for per_teacher in row["step_ends"].values():
                    for end, count in per_teacher.items():
                        ends[end] = ends.get(end, 0) + count
            proposed = max(sum(ends.values()), 1)
            ends_text = "/".join(f"{100 * ends.get(e, 0) / proposed:.0f}" for e in ("marker", "think", "cap", "eos")) + " %"
            stats = trajectory_stats(records)
            print(
                f"{label:<23} {n:>4} {100 * right / n:>5.1f}% {100 * low:>5.1f}-{100 * high:<5.1f} {100 * valid:>5.1f}% "
                f"{sum(pp) / max(len(pp), 1):>6.3f} {100 * stats['free']:>4.0f}% {stats['steps']:>5.2f} {stats['operations']:>6.2f} "
                f"{stats['switches']:>6.2f} {ends_text:>27} {sum(r['teacher_tokens'] for r in rows) / n:>11.0f} "
                f"{sum(r['seconds'] for r in rows):>6.0f}",
                flush=True,
            )
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
