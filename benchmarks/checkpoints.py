"""What saving each problem's search state after every round costs (records/states.py): the same
tiny run into a folder with the saves on and off, interleaved in one process (models loaded once),
and the bytes a save writes, measured on the saved states themselves.

    python benchmarks/checkpoints.py                      # tiny-hetero, 50 problems, 3 pairs
    python benchmarks/checkpoints.py --n 100 --pairs 5 --recipe recipes/tiny-homo.yaml

Off is `Strategy.checkpoints = None` (what `cord.generate` in memory runs with). Prints a table:
wall seconds of each side (median of the pairs), their ratio, rounds saved, and the size of a
saved state (mean and largest, in bytes).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "tiny-hetero.yaml"))
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()

    from cord.config import load_config
    from cord.records.states import SearchStates
    from cord.run import run
    from cord.search.base import Strategy

    sizes: list[int] = []
    save = SearchStates.save

    def measured_save(states, problem, state):
        save(states, problem, state)
        sizes.append(states.path(problem).stat().st_size)

    SearchStates.save = measured_save
    checkpoint = Strategy.checkpoint
    cache: dict = {}
    walls: dict[str, list[float]] = {"on": [], "off": []}
    rounds = 0
    with tempfile.TemporaryDirectory() as tmp:
        for pair in range(args.pairs + 1):  # the first pair warms the engines and is not counted
            for side in ("off", "on") if pair % 2 else ("on", "off"):
                Strategy.checkpoint = checkpoint if side == "on" else lambda self, run: None
                config = load_config(args.recipe, [f"output_dir={Path(tmp) / f'{side}-{pair}'}", f"data.tiny.n={args.n}"])
                start = time.perf_counter()
                summary = run(config, progress=False, engine_cache=cache)
                if pair:
                    walls[side].append(time.perf_counter() - start)
                    rounds = summary["rounds"]["saved"] if side == "on" else rounds
    on, off = statistics.median(walls["on"]), statistics.median(walls["off"])
    print(f"{Path(args.recipe).name}, {args.n} problems, median of {args.pairs} interleaved pairs")
    print("| saves | wall s | on / off | rounds saved | state bytes, mean / largest |")
    print("|---|---|---|---|---|")
    print(f"| off | {off:.2f} | | | |")
    print(f"| on | {on:.2f} | {on / off:.3f} | {rounds} | {statistics.mean(sizes):,.0f} / {max(sizes):,} |")


if __name__ == "__main__":
    main()
