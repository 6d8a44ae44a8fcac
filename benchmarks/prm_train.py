"""Does `cord train` on stepwise rows give a process reward model that tells a right step from a
wrong one, read exactly as `search.selection: prm` reads it?

    python benchmarks/prm_train.py [--train-n 200] [--steps 60] [--eval-n 50] [--seed 0]

Rows come from the tiny tasks' reference chains (generated problems, so every label is true):
per training problem, the whole chain with every step good, and the chain cut at a random step
whose result is off by 1 to 9, that step bad. `cord train` (task prm) fine-tunes the tiny reader
(`recipes/student/tiny-prm.yaml`, `--steps` optimizer steps). On held-out problems, at every step
position, the PRM scores the right step and a wrong one after the same right prefix, each as
p(+) / (p(+) + p(-)) after the last tag (cord.scoring.selection.ProcessReward through the
transformers engine); the table gives how often the right step scores higher (pairwise accuracy)
for the untrained reader and the trained PRM.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from cord.config import ModelConfig, load_config
from cord.run import build_strategy
from cord.scoring.meta_prover import ScoreItem
from cord.student.train import load_train_config, train
from cord.tiny import model_path
from cord.tiny.tasks import generate_problems, parse_equation

ROOT = Path(__file__).resolve().parents[1]


def chain(problem: dict) -> list[str]:
    return [f"### Step {k}. {eq}" for k, eq in enumerate(problem["reference_steps"], 1)]


def wrong_step(problem: dict, k: int, rng: random.Random) -> str:
    a, op, b, c = parse_equation(problem["reference_steps"][k])
    return f"### Step {k + 1}. {a} {op} {b} = {c + rng.choice([-1, 1]) * rng.randint(1, 9)}"


def stepwise_rows(problems: list[dict], rng: random.Random) -> list[dict]:
    rows = []
    for p in problems:
        steps = chain(p)
        rows.append({"prompt": p["problem"], "completions": steps, "labels": [True] * len(steps)})
        k = rng.randrange(len(steps))
        rows.append({"prompt": p["problem"], "completions": [*steps[:k], wrong_step(p, k, rng)], "labels": [True] * k + [False]})
    return rows


def pairwise_accuracy(prm_model: str, problems: list[dict], rng: random.Random, work: Path) -> float:
    """Share of (right, wrong) step pairs after the same right prefix where the right one scores higher."""
    config = load_config(None, ["teachers=[{name: t, model: tiny:tiny-reader}]", "meta_prover.model=tiny:tiny-reader"])
    config.search.selection, config.output_dir = "prm", str(work)
    config.prm = ModelConfig(name="prm", model=prm_model)
    selection = build_strategy(config, {}).selection
    items = []
    for p in problems:
        steps = chain(p)
        for k in range(len(steps)):
            for candidate in (steps[k], wrong_step(p, k, rng)):
                items.append(ScoreItem(p["problem"], p["answer"], tuple(steps[:k]), candidate))
    scores = [r.score for r in selection.rank(items, [0] * len(items))]
    pairs = list(zip(scores[::2], scores[1::2]))
    return sum(right > wrong for right, wrong in pairs) / len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-n", type=int, default=200)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--eval-n", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cord-prm-"))
    rng = random.Random(args.seed)
    data = work / "steps.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in stepwise_rows(generate_problems(args.train_n, seed=1000 + args.seed), rng)))
    recipe = ROOT / "recipes" / "student" / "tiny-prm.yaml"
    overrides = [f"data={data}", f"output_dir={work / 'prm'}", f"max_steps={args.steps}", f"seed={args.seed}", "logging_steps=25"]
    started = time.time()
    info = train(load_train_config(str(recipe), overrides), log=None)
    seconds = time.time() - started
    held_out = generate_problems(args.eval_n, seed=2000 + args.seed)
    base = pairwise_accuracy(str(model_path("tiny-reader")), held_out, random.Random(7), work / "base")
    trained = pairwise_accuracy(str(work / "prm"), held_out, random.Random(7), work / "trained")
    losses = f"first logged loss {info['first_logged_loss']}, last {info['last_logged_loss']}, mean {info['train_loss']:.3f}"
    print(f"rows {info['rows']}, {info['steps']} optimizer steps in {seconds:.0f} s; {losses}")
    print("| PRM | right step scores above a wrong one |\n|---|---|")
    print(f"| tiny-reader, untrained | {base:.1%} |\n| cord train, task prm | {trained:.1%} |")


if __name__ == "__main__":
    main()
