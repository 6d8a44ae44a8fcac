"""The step labels of `cord export --format step-dpo / stepwise` (src/cord/results/export/steps.py)
checked against the truth the tiny tasks give.

    python benchmarks/step_labels.py [--settings homo hetero] [--n 200] [--seed 0] [--margins 0 0.02 0.05 0.1 0.2] [--out DIR]

Each setting runs CoRD (B = 4) on `--n` tiny problems with search.keep_candidates and
search.keep_top_k = 4 (into `--out`/SETTING, resumed when it is there). Every candidate step of a
record (the finished trajectories' steps and their rivals, one per prefix and text) is truly good
when the prefix through it is still a valid partial solution of its problem: each `### Step k.`
line so far uses reference step k's operator and operand, its left operand is the previous result
(the start quantity for step 1), its arithmetic is right (a division leaves no remainder), and a
step that closes the reasoning has reached the last reference step. For "bad step" the script
prints each rule's precision and recall with 95 % Wilson intervals, and what share of steps the
rule labels at all; for "good step" its precision. Then the step-dpo pairs each rule and margin
makes with chosen steps from correct trajectories (the export's default filter), any of them or the
chosen one alone: how many, and the share whose rejected step is truly bad, whose chosen step is
truly good, and both.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from itertools import product
from pathlib import Path

from cord.prompts import THINK_CLOSE
from cord.records import read_records
from cord.results.compare import wilson_interval
from cord.results.export.steps import LABEL_RULES, StepNode, StepOptions, StepTree, preference_pairs
from cord.run import run
from cord.tiny.demo import tiny_config
from cord.tiny.tasks import apply_op, generate_problems, parse_steps, reference_chain


def truly_good(row: dict, node: StepNode) -> bool:
    """Whether the prefix through the node is still a valid partial solution of `row`."""
    start, ops = reference_chain(row)
    steps = parse_steps("".join(node.prefix) + node.text)
    if not steps:
        return False
    prev = start
    for i, (k, eq) in enumerate(steps, start=1):
        if i > len(ops) or k != i or eq is None:
            return False
        a, op, b, c = eq
        ref_op, ref_b, _ = ops[i - 1]
        if op != ref_op or b != ref_b or a != prev or (op == "/" and (b == 0 or a % b)) or apply_op(a, op, b) != c:
            return False
        prev = c
    return THINK_CLOSE not in node.text or len(steps) == len(ops)


def run_setting(setting: str, n: int, seed: int, out: Path) -> Path:
    config = tiny_config(setting, n, seed)
    config.search.keep_candidates, config.search.keep_top_k = True, 4
    config.output_dir = str(out / setting)
    run(config, progress=False)
    return out / setting


def tally(run_dir: Path, n: int, seed: int, variants: list[tuple[str, float]]) -> tuple[Counter, Counter, int, int]:
    """(counts per (rule, margin, labelled, truth), step-dpo pairs per (rule, margin, chosen truth,
    rejected truth), steps, truly bad steps) over every candidate step of every record."""
    rows = {row["id"]: row for row in generate_problems(n, seed, "mixed")}
    counts, pairs, steps, bad = Counter(), Counter(), 0, 0
    for record in read_records(run_dir):
        tree, row = StepTree(record), rows[record.id]
        for node in tree.nodes.values():
            truth = truly_good(row, node)
            steps, bad = steps + 1, bad + (not truth)
            for rule, margin in variants:
                counts[(rule, margin, tree.label(node, rule, margin), truth)] += 1
        for (rule, margin), (origin, sources) in product(variants, {"any": tree.trajectories, "chosen": [record]}.items()):
            for chosen, rejected in preference_pairs(tree, sources, StepOptions(rule, margin)):
                pairs[(rule, margin, origin, truly_good(row, chosen), truly_good(row, rejected))] += 1
    return counts, pairs, steps, bad


def print_pairs(setting: str, pairs: Counter, variants: list[tuple[str, float]]) -> None:
    """The step-dpo pairs each rule and margin makes, the chosen steps taken from any correct
    trajectory (alternatives too) or from the chosen trajectory alone."""
    print(f"{'setting':<7} {'rule':<9} {'margin':>6} {'chosen from':>11} {'pairs':>6} {'rejected bad [95% CI]':>25} ", end="")
    print(f"{'chosen good [95% CI]':>25} {'both [95% CI]':>25}")
    for (rule, margin), origin in product(variants, ("any", "chosen")):
        c = {(g, b): pairs[(rule, margin, origin, g, b)] for g in (True, False) for b in (True, False)}
        total = sum(c.values())
        rejected_bad, chosen_good = c[(True, False)] + c[(False, False)], c[(True, True)] + c[(True, False)]
        print(f"{setting:<7} {rule:<9} {margin:>6.2f} {origin:>11} {total:>6} {share(rejected_bad, total):>25} ", end="")
        print(f"{share(chosen_good, total):>25} ", end="")
        print(f"{share(c[(True, False)], total):>25}")


def share(k: int, total: int) -> str:
    low, high = wilson_interval(k, total)
    return f"{100 * k / max(total, 1):5.1f} % [{100 * low:4.1f}, {100 * high:4.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=["homo", "hetero"], choices=["homo", "hetero"])
    parser.add_argument("--n", type=int, default=200, help="tiny problems per setting")
    parser.add_argument("--seed", type=int, default=0, help="the problems' and the search's seed")
    parser.add_argument("--margins", type=float, nargs="+", default=[0.0, 0.02, 0.05, 0.1, 0.2], help="margins on S to try")
    parser.add_argument("--out", type=Path, help="where the runs go (default: a temporary folder)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="step-labels-"))
    variants = [("outcome", 0.0)] + [(rule, m) for rule in LABEL_RULES if rule != "outcome" for m in args.margins]
    for setting in args.settings:
        start = time.perf_counter()
        counts, pairs, steps, bad = tally(run_setting(setting, args.n, args.seed, out), args.n, args.seed, variants)
        print(f"{'setting':<7} {'rule':<9} {'margin':>6} {'labelled':>8} {'bad: precision [95% CI]':>25} ", end="")
        print(f"{'bad: recall [95% CI]':>25} {'good: precision [95% CI]':>25}")
        for rule, margin in variants:
            c = {(label, truth): counts[(rule, margin, label, truth)] for label in (True, False, None) for truth in (True, False)}
            said_bad, said_good = c[(False, True)] + c[(False, False)], c[(True, True)] + c[(True, False)]
            labelled = 100 * (said_bad + said_good) / steps
            print(f"{setting:<7} {rule:<9} {margin:>6.2f} {labelled:>7.1f}% {share(c[(False, False)], said_bad):>25} ", end="")
            print(f"{share(c[(False, False)], bad):>25} {share(c[(True, True)], said_good):>25}")
        print_pairs(setting, pairs, [v for v in variants if v[0] != "margin"])
        seconds = time.perf_counter() - start
        print(f"{setting}: {steps} candidate steps, {bad} truly bad ({100 * bad / steps:.1f} %), {args.n} problems, {seconds:.0f} s\n")
    print(f"runs in {out}")


if __name__ == "__main__":
    main()
