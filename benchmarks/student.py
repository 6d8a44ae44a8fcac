"""The paper's main claim in miniature: a student fine-tuned on CoRD data against the same student
fine-tuned on Curation data, from the same tiny teachers on the same problems.

    python benchmarks/student.py [--setting hetero] [--train-n 1000] [--steps 250] [--eval-n 100] [--samples 16] [--seeds 0 1 2]

Per seed: CoRD and Curation (equal budget, B = 4) on the same generated training problems ->
`cord export` (correct answers only, the default) -> two students trained identically from one
base student (same seed, same number of optimizer steps, `cord train`) -> Pass@1 averaged over
`--samples` samples of each student, and of the base student, on held-out generated problems
(`cord eval-student`, tiny:N with the held-out seed). Prints one row per seed
and the mean with its spread; nothing here is tuned to favour either method.

The base student is the tiny generalist's recipe stopped at 250 of its 500 steps (seed 0), so it is
weaker than what the teachers write together, as in the paper; `--student-steps 0` uses the
shipped generalist, which already solves most tiny problems alone.

What the miniature needs for distillation to teach: enough rows and steps. With 200 training
problems (about 150 CoRD rows) and 60 optimizer steps the students moved by about a point from
the base; with 1,000 problems (about 800 CoRD rows) and 250 steps (about 5 epochs of the CoRD
data) they move by ten (docs/fidelity.md). Both students take the same steps, so the Curation
student, with fewer correct rows, sees each of them more often.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

from cord.prompts import STEP_INSTRUCTION
from cord.results.export import export
from cord.run import run
from cord.student.evaluate import EvalConfig, evaluate
from cord.student.train import TrainConfig, train
from cord.tiny.demo import tiny_config

SHIPPED_STUDENT = "tiny:tiny-generalist"


def weak_student(steps: int, out: Path) -> str:
    """The generalist's recipe stopped early: a student weaker than what its teachers write together,
    as R1-Distill-Qwen-7B is weaker than the paper's 32B teachers (the shipped generalist is not)."""
    from cord.tiny import model_path
    from cord.tiny.train import SPECS, tokenizer_for, train_one

    if not (out / "config.json").is_file():
        train_one(SPECS["tiny-generalist"], out, tokenizer_for(0, model_path("tiny-generalist")), seed=0, steps=steps, log=None)
    return str(out)


def one_seed(args, student_model: str, seed: int, work: Path, log) -> dict:
    """One seed's row; kept in `work/row.json`, so a rerun with the same `--work` skips finished seeds."""
    saved = work / "row.json"
    if saved.is_file():
        return json.loads(saved.read_text())
    base = tiny_config(args.setting, args.train_n, 100 + seed)  # training problems: seeds 100+, never the held-out 1000
    row = {"seed": seed}
    # every user turn, in training and evaluation, is the one the tiny models were trained on: the
    # question and the default step instruction (MODELS.md)
    eval_kwargs = dict(
        data=f"tiny:{args.eval_n}", n=args.samples, max_tokens=160, instruction=STEP_INSTRUCTION, problems_per_batch=25, seed=seed
    )
    base_eval = evaluate(EvalConfig(model=student_model, output_dir=str(work / "eval-base"), **eval_kwargs), overwrite=True, log=None)
    row["base"], row["base_ci"] = base_eval["pass@1"], base_eval["pass@1_ci95"]
    log(f"seed {seed} base student pass@1 {row['base']:.3f}")
    for method in ("cord", "curation"):
        config = copy.deepcopy(base)
        config.search.method = method
        config.search.seed = seed
        config.output_dir = str(work / method)
        summary = run(config, overwrite=True, progress=False)
        report = export([config.output_dir], work / f"{method}.jsonl", keep="correct", with_step_instruction=True, overwrite=True)
        student = work / f"student-{method}"
        info = train(
            TrainConfig(
                model=student_model,
                data=str(work / f"{method}.jsonl"),
                output_dir=str(student),
                max_steps=args.steps,
                learning_rate=args.lr,
                batch_size=16,
                per_device_batch_size=16,
                max_length=512,
                seed=seed,
                save_strategy="no",
                logging_steps=10,
            ),
            log=None,
        )
        result = evaluate(EvalConfig(model=str(student), output_dir=str(work / f"eval-{method}"), **eval_kwargs), overwrite=True, log=None)
        row[f"{method}_data_accuracy"] = summary["accuracy"]
        row[f"{method}_rows"] = report.written
        row[f"{method}_loss"] = info["train_loss"]
        row[method], row[f"{method}_ci"] = result["pass@1"], result["pass@1_ci95"]
        row[f"{method}_spread"] = result["pass@1_std_over_samples"]
        log(f"seed {seed} {method}: data acc {summary['accuracy']:.3f}, {report.written} rows, student pass@1 {result['pass@1']:.3f}")
    saved.write_text(json.dumps(row))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", default="hetero", choices=["hetero", "homo"])
    parser.add_argument("--train-n", type=int, default=1000)
    parser.add_argument("--eval-n", type=int, default=100)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--steps", type=int, default=250, help="optimizer steps of each student (batch 16)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument(
        "--student-steps",
        type=int,
        default=250,
        help="the base student: the generalist's recipe stopped after this many of its 500 steps (0: the shipped generalist)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", type=Path, help="keep runs, exports and students here (default: a temporary folder)")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        student = weak_student(args.student_steps, work / "base-student") if args.student_steps else SHIPPED_STUDENT
        rows = [one_seed(args, student, s, work / f"seed{s}", lambda line: print(line, flush=True)) for s in args.seeds]
    print()
    print(
        f"Students from {'the generalist stopped at ' + str(args.student_steps) + ' steps' if args.student_steps else SHIPPED_STUDENT}, "
        f"{args.setting} tiny teachers, {args.train_n} training problems, "
        f"{args.steps} steps at lr {args.lr}, Pass@1 avg@{args.samples} on {args.eval_n} held-out problems"
    )
    print()
    print("Pass@1 (95 % interval over problems) per seed; mean ± standard deviation over seeds")
    print()
    print("| seed | CoRD rows | Curation rows | base student | student on Curation data | student on CoRD data |")
    print("|---|---|---|---|---|---|")
    pct = lambda r, key: f"{100 * r[key]:.1f} % ({100 * r[key + '_ci'][0]:.1f}-{100 * r[key + '_ci'][1]:.1f})"
    for r in rows:
        print(f"| {r['seed']} | {r['cord_rows']} | {r['curation_rows']} | {pct(r, 'base')} | {pct(r, 'curation')} | {pct(r, 'cord')} |")
    if len(rows) > 1:
        cell = lambda key: f"{100 * statistics.mean(r[key] for r in rows):.1f} ± {100 * statistics.stdev(r[key] for r in rows):.1f} %"
        count = lambda key: f"{statistics.mean(r[key] for r in rows):.0f}"
        print(f"| mean ± sd | {count('cord_rows')} | {count('curation_rows')} | {cell('base')} | {cell('curation')} | {cell('cord')} |")
    wins = sum(r["cord"] > r["curation"] for r in rows)
    print(f"\nCoRD student ahead of the Curation student in {wins} of {len(rows)} seeds; {time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
