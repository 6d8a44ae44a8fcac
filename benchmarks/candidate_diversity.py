"""How many distinct next steps the teachers propose per prefix (CoRD rounds), and whether two
teachers ever produce the same sample.

    python benchmarks/candidate_diversity.py [--recipe recipes/tiny-homo.yaml] [--n 30] [--seed 0]

K teachers give K proposals per prefix; one confident model at three temperatures (each with its
own seed) mostly writes the same step, and CoRD's search collapses towards greedy. Prints the mean number of
distinct proposals per prefix (1 .. K) and the share of prefixes where all K coincide.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "tiny-homo.yaml"))
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from cord.config import load_config
    from cord.data import load_problems
    from cord.run import build_strategy
    from cord.search.cord import CordSearch

    config = load_config(args.recipe, [f"data.tiny.n={args.n}", f"data.tiny.seed={args.seed}", f"search.seed={args.seed}"])
    groups: list[int] = []
    propose = CordSearch.propose

    def counting(self, run):
        candidates = propose(self, run)
        by_prefix: dict[int, set[str]] = {}
        for c in candidates:
            by_prefix.setdefault(id(c.parent), set()).add(c.text)
        groups.extend(len(texts) for texts in by_prefix.values())
        return candidates

    CordSearch.propose = counting
    start = time.perf_counter()
    records = list(build_strategy(config).run(load_problems(config.data)))
    k = len(config.teachers)
    print(f"{args.recipe}: {len(records)} problems, K = {k}, {len(groups)} prefixes expanded, {time.perf_counter() - start:.1f} s")
    print(f"distinct proposals per prefix: {sum(groups) / len(groups):.2f} of {k}")
    print(f"prefixes where all {k} teachers wrote the same step: {sum(g == 1 for g in groups) / len(groups):.1%}")
    print(f"accuracy {sum(r.correct for r in records) / len(records):.1%}")


if __name__ == "__main__":
    main()
