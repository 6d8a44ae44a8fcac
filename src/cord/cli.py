"""`cord` command line: a thin layer over the library."""

from __future__ import annotations

import argparse
import json
import sys

from .config import ConfigError, load_config
from .registry import STRATEGIES


def _generate(args: argparse.Namespace) -> int:
    from .run import run

    overrides = list(args.overrides)
    if args.data:
        overrides += [f"data.path={args.data}", "data.dataset=null", "data.tiny=null"]
    if args.out:
        overrides.append(f"output_dir={args.out}")
    if args.method:
        overrides.append(f"search.method={args.method}")
    if args.limit:
        overrides.append(f"data.limit={args.limit}")
    if args.shard:
        overrides.append(f"data.shard={args.shard}")
    config = load_config(args.config, overrides)
    if args.dry_run:
        from .data import load_problems
        from .preview import preview
        from .run import prepare

        prepare(config)
        print(preview(config, load_problems(config.data)[0]))
        return 0
    if args.ray is not None:
        from .shards import run_on_ray

        summary = run_on_ray(config, address=args.ray or None, workers=args.workers, overwrite=args.overwrite)
    else:
        summary = run(config, overwrite=args.overwrite, progress=not args.quiet and None)
    print(
        json.dumps(
            {
                k: summary.get(k)
                for k in (
                    "method",
                    "problems",
                    "new",
                    "resumed",
                    "accuracy",
                    "valid_trace_rate",
                    "mean_predictive_perplexity",
                    "wall_seconds",
                )
            },
            indent=2,
        )
    )
    for warning in summary.get("warnings") or []:
        print(f"cord: warning: {warning}", file=sys.stderr)
    print(f"wrote {config.output_dir}/records.jsonl", file=sys.stderr)
    return 0


def _tasks(argv: list[str]) -> int:
    from .tiny.tasks import main

    return main(argv) or 0


def _train_tiny(argv: list[str]) -> int:
    from .tiny.train import main

    return main(argv) or 0


def _demo(argv: list[str]) -> int:
    from .demo import main

    return main(argv) or 0


def _evaluate(argv: list[str]) -> int:
    from .evaluate import main

    return main(argv) or 0


def _merge(argv: list[str]) -> int:
    from .shards import merge

    parser = argparse.ArgumentParser(prog="cord merge", description="Merge run directories (e.g. shards) into one.")
    parser.add_argument("dirs", nargs="+", help="run directories of one config")
    parser.add_argument("--out", required=True, help="the merged run directory")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    args = parser.parse_args(argv)
    summary = merge(args.dirs, args.out, overwrite=args.overwrite)
    print(f"merged {summary['problems']} problems from {len(args.dirs)} run directories into {args.out}", file=sys.stderr)
    return 0


PASSTHROUGH = {"tasks": _tasks, "train-tiny": _train_tiny, "demo": _demo, "evaluate": _evaluate, "merge": _merge}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="cord", description="Collaborative step-wise multi-teacher decoding (CoRD).")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="run a search method over a problem set")
    gen.add_argument("--config", "-c", help="recipe YAML (e.g. recipes/tiny-hetero.yaml)")
    gen.add_argument("--data", help="problems file (JSONL, JSON or parquet); sets data.path")
    gen.add_argument("--out", help="output directory; sets output_dir")
    gen.add_argument("--method", choices=STRATEGIES.names(), help="sets search.method")
    gen.add_argument("--limit", type=int, help="first N problems; sets data.limit")
    gen.add_argument("--overwrite", action="store_true", help="replace an output directory holding another config")
    gen.add_argument("--shard", metavar="I/N", help="run every N-th problem from the I-th (e.g. a Slurm array task); sets data.shard")
    gen.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="shard the problems over Ray actors (a running cluster's address, or none to start a local one) and merge into --out",
    )
    gen.add_argument("--workers", type=int, help="with --ray: number of shards / actors (default: the cluster's GPUs, else 2)")
    gen.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    gen.add_argument("--dry-run", action="store_true", help="load tokenizers only; print what each model is sent for the first problem")
    gen.add_argument("overrides", nargs="*", help="dotted overrides, e.g. search.beam_size=2 teachers.0.temperature=0.5")
    for name, helptext in (
        ("tasks", "write generated tiny arithmetic problems"),
        ("train-tiny", "train the shipped tiny models"),
        ("demo", "CoRD vs Curation vs single teachers on the tiny models"),
        ("evaluate", "compare run directories"),
        ("merge", "merge run directories of one config (shards) into one"),
    ):
        sub.add_parser(name, help=helptext, add_help=False)
    if argv and argv[0] in PASSTHROUGH:
        try:
            return PASSTHROUGH[argv[0]](argv[1:])
        except ConfigError as err:
            print(f"cord: error: {err}", file=sys.stderr)
            return 2
    args = parser.parse_args(argv)
    try:
        return _generate(args)
    except ConfigError as err:
        print(f"cord: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cord: interrupted; finished problems are saved, run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
