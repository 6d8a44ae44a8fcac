"""Table 5 in miniature with a PRM trained on cord's own step labels: does the search's by-product
(`cord export --format stepwise`) train a process reward model that selects steps?

    python benchmarks/prm_table5.py [--train-n 300] [--steps 150] [--n 60] [--seeds 0 1 2]

1. CoRD on `--train-n` generated heterogeneous problems (seed 100, apart from the evaluation
   seeds) with `search.keep_candidates` and `search.keep_top_k: 4`.
2. `cord.export(..., format="stepwise")`: the search's labels (the default rule and margin).
3. `cord train` (`recipes/student/tiny-prm.yaml`, `--steps` optimizer steps) fine-tunes the tiny
   reader into a PRM on those rows; a second PRM is trained the same way on rows whose labels are
   true by construction (reference chains, and the chain cut at a step whose result is off by 1 to
   9), to show what the same training makes of clean labels.
4. Table 5's rows on `--n` problems x `--seeds`: the prompted step judge (the meta-prover asked
   Yes/No, cord's stand-in for the paper's PRM), each trained PRM as `search.selection: prm`, and
   predictive perplexity (the method). Accuracy, valid traces and Eq. 3 perplexity of the chosen
   trajectory, means over seeds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cord
from cord.config import ModelConfig
from cord.errors import RunStopped
from cord.results.compare import run_row
from cord.run import run
from cord.student.train import load_train_config, train
from cord.tiny.demo import tiny_config
from cord.tiny.tasks import generate_problems

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from prm_train import stepwise_rows  # noqa: E402  (the true-label rows, as benchmarks/prm_train.py builds them)

TRAIN_SEED = 100


def cord_labelled_rows(n: int, work: Path) -> tuple[Path, str]:
    """CoRD's stepwise export of `n` training problems, and what the export said."""
    config = tiny_config("hetero", n, TRAIN_SEED)
    config.search.keep_candidates, config.search.keep_top_k = True, 4
    config.output_dir = str(work / "train-run")
    run(config, progress=False)
    out = work / "cord-steps.jsonl"
    exported = cord.export(config.output_dir, out, format="stepwise")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    labels = [label for row in rows for label in row["labels"]]
    said = f"{len(rows)} stepwise rows, {len(labels)} labelled steps ({sum(not x for x in labels)} bad) from {n} problems"
    return out, f"{said}; " + "; ".join(exported.report.lines())


def true_labelled_rows(n: int, work: Path) -> Path:
    out = work / "true-steps.jsonl"
    rows = stepwise_rows(generate_problems(n, seed=1000 + TRAIN_SEED), random.Random(TRAIN_SEED))
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def train_prm(data: Path, out: Path, steps: int) -> dict:
    overrides = [f"data={data}", f"output_dir={out}", f"max_steps={steps}", "seed=0", "logging_steps=50"]
    return train(load_train_config(str(ROOT / "recipes" / "student" / "tiny-prm.yaml"), overrides), log=None)


def table_rows(prms: dict[str, Path]) -> list[tuple[str, dict]]:
    rows = [("PRM (step judge: the meta-prover prompted)", {"selection": "step_judge"})]
    rows += [(label, {"selection": "prm", "prm": str(path)}) for label, path in prms.items()]
    return [*rows, ("predictive perplexity (the method)", {})]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-n", type=int, default=300)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--prm-rows-only", action="store_true", help="the trained PRMs' rows alone (the others do not depend on --steps)")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cord-prm-table5-") as tmp:
        work = Path(tmp)
        cord_rows, said = cord_labelled_rows(args.train_n, work)
        print(f"training data: {said}", flush=True)
        prms = {"PRM trained on cord's stepwise labels": work / "prm-cord", "PRM trained on true labels": work / "prm-true"}
        for (label, path), data in zip(prms.items(), (cord_rows, true_labelled_rows(args.train_n, work))):
            info = train_prm(data, path, args.steps)
            losses = f"loss {info['first_logged_loss']} -> {info['last_logged_loss']}"
            print(f"{label}: {info['rows']} rows, {info['steps']} steps, {losses}", flush=True)
        print(f"\nTable 5 (tiny heterogeneous teachers, {args.n} mixed problems x seeds {args.seeds})")
        print(f"{'row':<44} {'acc':>6} {'valid':>6} {'PP':>6}   per seed acc")
        cache: dict = {}
        for label, change in table_rows(prms):
            if args.prm_rows_only and "prm" not in change:
                continue
            results = []
            for seed in args.seeds:
                config = tiny_config("hetero", args.n, seed)
                config.search.selection = change.get("selection", "perplexity")
                if "prm" in change:
                    config.prm = ModelConfig(name="prm", model=change["prm"])
                config.output_dir = str(work / f"{label.split()[0]}-{len(results)}-{seed}-{change.get('prm', '')[-4:]}")
                config.max_failure_rate = None
                with contextlib.suppress(RunStopped):
                    run(config, progress=False, engine_cache=cache)
                results.append(run_row(Path(config.output_dir), label))

            def mean(key, results=results):
                return statistics.mean(r[key] for r in results if r.get(key) is not None)

            per_seed = " / ".join(f"{100 * r['accuracy']:.1f}" for r in results)
            print(
                f"{label:<44} {100 * mean('accuracy'):>5.1f}% {100 * mean('valid_trace_rate'):>5.1f}% "
                f"{mean('mean_predictive_perplexity'):>6.3f}   {per_seed}",
                flush=True,
            )
    print(f"\nwall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
