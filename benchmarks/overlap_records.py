"""How many records change when models on separate devices compute at once, against the
reproducible schedule (engines taking turns), on the tiny recipes.

On this CPU every model shares one device, so the default already takes turns and gives the same
records as `search.reproducible: true`. Here each tiny model is told it sits on a device of its own
(its `placement`), so batches run at once (in threads, on the same CPU) and are composed by timing,
as on a multi-GPU node. A record can differ only where a row's padding changes floating-point sums.

    python benchmarks/overlap_records.py --n 32 --methods cord curation
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cord.config import load_config
from cord.engines import close_engines
from cord.run import generate

ROOT = Path(__file__).resolve().parent.parent


def records(recipe: str, method: str, n: int, reproducible: bool, separate: bool) -> dict[str, dict]:
    config = load_config(ROOT / "recipes" / recipe, [f"data.tiny.n={n}", f"search.method={method}", f"search.reproducible={reproducible}"])
    cache: dict = {}
    if separate:  # load the engines, then place each on a device of its own
        from cord.run import build_strategy

        build_strategy(config, cache)
        for i, engine in enumerate({id(e): e for e in cache.values()}.values()):
            engine.placement = frozenset({f"device{i}"})
    from cord.data import load_problems

    out = {
        r.id: {k: v for k, v in r.to_dict().items() if k not in ("timing", "seconds")}
        for r in generate(load_problems(config.data), config, cache)
    }
    close_engines(cache)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--methods", nargs="+", default=["cord", "curation"])
    parser.add_argument("--recipes", nargs="+", default=["tiny-hetero.yaml", "tiny-homo.yaml"])
    args = parser.parse_args()
    print("| recipe | method | problems | records that differ | accuracy reproducible | accuracy separate devices |")
    print("|---|---|---|---|---|---|")
    for recipe in args.recipes:
        for method in args.methods:
            same = records(recipe, method, args.n, reproducible=True, separate=True)
            apart = records(recipe, method, args.n, reproducible=False, separate=True)
            differ = sum(json.dumps(same[k], sort_keys=True) != json.dumps(apart[k], sort_keys=True) for k in same)
            acc = [f"{sum(bool(r['correct']) for r in run.values()) / len(run):.1%}" for run in (same, apart)]
            print(f"| {recipe} | {method} | {len(same)} | {differ} | {acc[0]} | {acc[1]} |", flush=True)


if __name__ == "__main__":
    main()
