"""Issue 3's targets on the embedded default, measured side by side over several seeds.

    python benchmarks/tiny_quality.py [--n 100] [--seeds 0 1 2] [--setting hetero|homo]

For each seed: N fresh mixed problems; each teacher alone, Curation (B per teacher), CoRD greedy and
CoRD (B = 4) on the same problems. Prints accuracy, valid-trace rate and mean predictive perplexity
per method and seed, the means, and whether each target holds:
  best single teacher <= 60 %; CoRD >= best single + 20 and >= Curation + 10 points (accuracy and
  valid traces); CoRD's mean predictive perplexity above Curation's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from cord.tiny.demo import compare, tiny_config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--setting", default="hetero", choices=["hetero", "homo"])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    cache: dict = {}
    per_seed = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            rows = compare(tiny_config(args.setting, args.n, seed), Path(tmp) / f"seed{seed}", progress=False, engine_cache=cache)
            per_seed[seed] = {r["run"]: r for r in rows}
            print(
                f"seed {seed}: "
                + "; ".join(
                    f"{r['run']}: acc {r['accuracy']:.0%} valid {r['valid_trace_rate']:.0%} PP {r['mean_predictive_perplexity']:.3f}"
                    for r in rows
                ),
                flush=True,
            )
    methods = list(per_seed[args.seeds[0]])
    mean = {
        m: {
            k: statistics.mean(per_seed[s][m][k] for s in args.seeds)
            for k in ("accuracy", "valid_trace_rate", "mean_predictive_perplexity", "teacher_tokens", "meta_prover_tokens", "seconds")
        }
        for m in methods
    }
    print(f"\nmeans over seeds {args.seeds}, {args.n} mixed problems each ({args.setting}):")
    print(f"{'method':<16} {'accuracy':>9} {'valid':>7} {'PP':>7} {'teacher tok':>12} {'MP tok':>9} {'seconds':>8}")
    for m in methods:
        r = mean[m]
        print(
            f"{m:<16} {r['accuracy']:>9.1%} {r['valid_trace_rate']:>7.1%} {r['mean_predictive_perplexity']:>7.3f} "
            f"{r['teacher_tokens']:>12.0f} {r['meta_prover_tokens']:>9.0f} {r['seconds']:>8.1f}"
        )
    singles = [m for m in methods if m.endswith(" alone")]
    cord = next(m for m in methods if m.startswith("cord"))
    best_acc = max(mean[m]["accuracy"] for m in singles)
    best_valid = max(mean[m]["valid_trace_rate"] for m in singles)
    targets = {
        "best single teacher <= 60% accuracy": best_acc <= 0.60,
        "CoRD accuracy >= best single + 20": mean[cord]["accuracy"] >= best_acc + 0.20,
        "CoRD valid traces >= best single + 20": mean[cord]["valid_trace_rate"] >= best_valid + 0.20,
        "CoRD accuracy >= Curation + 10": mean[cord]["accuracy"] >= mean["curation"]["accuracy"] + 0.10,
        "CoRD valid traces >= Curation + 10": mean[cord]["valid_trace_rate"] >= mean["curation"]["valid_trace_rate"] + 0.10,
        "CoRD mean PP > Curation's": mean[cord]["mean_predictive_perplexity"] > mean["curation"]["mean_predictive_perplexity"],
    }
    print()
    for name, ok in targets.items():
        print(f"[{'met' if ok else 'NOT met'}] {name}")
    print(f"\nwall time {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"per_seed": per_seed, "mean": mean, "targets": targets}, indent=2))


if __name__ == "__main__":
    main()
