"""The choices the paper leaves open, measured side by side on the same problems: the closing '.'
scored after the answer (`search.answer_end`) and what a finished trajectory does to the beam
(`search.keep_beam_width`), on the tiny recipes and on the real-model recipe.

    python benchmarks/fidelity.py [--settings hetero homo real real-homo] [--n 64] [--real-n 12] [--seeds 21 22 23]

Each variant changes one key of the default (answer_end '.', a narrowing beam). For each it prints
answer accuracy with a 95 % Wilson interval over all problems of all seeds, the paired count of
problems it gets right where the default is wrong and the reverse, predictive perplexity (S with
the closing token, and over the answer's tokens alone: the paper's Eq. 3, the same figure when
answer_end is ''), and teacher tokens.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

from cord.config import load_config
from cord.records import read_records
from cord.results.compare import run_row, wilson_interval
from cord.run import run
from cord.tiny.demo import tiny_config

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ["hetero", "homo", "real", "real-homo"]  # real: recipes/real-hetero.yaml; real-homo: recipes/real-homo.yaml
VARIANTS = {  # label -> search keys changed from the default
    "default ('.', narrowing)": {},
    "answer_end ''": {"answer_end": ""},
    "keep_beam_width": {"keep_beam_width": True},
}


def base_config(setting: str, n: int, real_n: int, seed: int):
    if setting.startswith("real"):
        return load_config(
            ROOT / "recipes" / ("real-hetero.yaml" if setting == "real" else "real-homo.yaml"),
            [f"data.tiny.n={real_n}", f"data.tiny.seed={seed}", f"search.seed={seed}"],
        )
    return tiny_config(setting, n, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=["hetero", "homo", "real"], choices=SETTINGS)
    parser.add_argument("--n", type=int, default=64, help="tiny problems per seed")
    parser.add_argument("--real-n", type=int, default=12, help="problems per seed of the real-model recipe")
    parser.add_argument("--seeds", type=int, nargs="+", default=[21, 22, 23])
    parser.add_argument("--real-seeds", type=int, nargs="+", default=[21])
    parser.add_argument(
        "--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), help="the first is the one compared against"
    )
    args = parser.parse_args()
    cache: dict = {}
    start = time.perf_counter()
    head = f"{'setting':<9} {'variant':<25} {'n':>4} {'acc':>6} {'95% CI':>12} {'+/-':>7} {'PP':>6} {'PP ans':>6}"
    print(f"{head} {'teacher tok':>11} {'sec':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for setting in args.settings:
            seeds = args.real_seeds if setting.startswith("real") else args.seeds
            correct: dict[str, dict[str, bool]] = {}
            rows: dict[str, list[dict]] = {}
            for seed in seeds:
                for label in args.variants:
                    keys = VARIANTS[label]
                    config = copy.deepcopy(base_config(setting, args.n, args.real_n, seed))
                    for key, value in keys.items():
                        setattr(config.search, key, value)
                    config.output_dir = str(Path(tmp) / f"{setting}-{seed}-{len(rows.get(label, []))}-{label[:8].strip()}")
                    run(config, progress=False, engine_cache=cache)
                    rows.setdefault(label, []).append(run_row(Path(config.output_dir), label))
                    for record in read_records(Path(config.output_dir)):
                        correct.setdefault(label, {})[f"{seed}/{record.id}"] = bool(record.correct)
            default = correct[args.variants[0]]
            for label, rs in rows.items():
                mine = correct[label]
                right, n = sum(mine.values()), len(mine)
                low, high = wilson_interval(right, n)
                gained = sum(mine[k] and not default[k] for k in mine)
                lost = sum(default[k] and not mine[k] for k in mine)

                def mean(key, rs=rs):
                    values = [r[key] for r in rs if r.get(key) is not None]
                    return sum(values) / len(values) if values else float("nan")

                print(
                    f"{setting:<9} {label:<25} {n:>4} {100 * right / n:>5.1f}% {100 * low:>5.1f}-{100 * high:>4.1f}% "
                    f"{f'+{gained}/-{lost}':>7} {mean('mean_predictive_perplexity_with_end'):>6.3f} "
                    f"{mean('mean_predictive_perplexity'):>6.3f} "
                    f"{mean('teacher_tokens'):>11.0f} {sum(r['seconds'] for r in rs):>7.1f}",
                    flush=True,
                )
    print(f"\nwall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
