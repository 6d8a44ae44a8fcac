"""`cord` command line: a thin layer over the library.

Exit codes: 0 done; 1 an unexpected failure (a server that stayed down, a bug), one line naming it;
2 bad input or configuration, one line naming the file, line or field, and nothing written;
130 interrupted by SIGINT (Ctrl-C), 143 by SIGTERM (what Slurm and Kubernetes send at a time limit
or preemption): both end the same way, finished problems kept, summary.json and run.log's last
line written, and the same command resumes. `--debug` (anywhere on
the line, or CORD_DEBUG=1) shows the traceback instead of the one line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .command import add_debug
from .config import load_config
from .config.run import ANSWER_FORMATS
from .errors import ConfigError, RunStopped, Terminated, interrupt_name, terminate_on_sigterm
from .registry import COMMANDS, STRATEGIES

# summary.json's figures `cord generate` prints when it ends: mean_predictive_perplexity is the
# paper's Eq. 3 (the answer alone); the S the search ranked by, search.answer_end scored too, follows
PRINTED = (
    "method",
    "problems",
    "new",
    "resumed",
    "accuracy",
    "valid_trace_rate",
    "mean_predictive_perplexity",
    "mean_predictive_perplexity_with_end",
    "wall_seconds",
)


def _overrides(args: argparse.Namespace) -> list[str]:
    """The dotted overrides `generate`'s own flags stand for, after the ones given as such."""
    overrides = list(args.overrides)
    if args.data:  # a datasets folder (save_to_disk) is read as data.dataset reads it, as eval-student does
        source, other = ("data.dataset", "data.path") if Path(args.data).is_dir() else ("data.path", "data.dataset")
        overrides += [f"{source}={json.dumps(args.data)}", f"{other}=null", "data.tiny=null"]
    flags = {
        "output_dir": args.out,
        "search.method": args.method,
        "data.limit": args.limit,  # 0 too: the config refuses it, naming data.limit
        "data.shard": args.shard,
        "data.question_field": args.question_field,
        "data.answer_field": args.answer_field,
        "data.answer_format": args.answer_format,
        "data.answer_regex": args.answer_regex,
    }
    # as JSON, which YAML reads as it is: a regex's "#" or a path's ": " stays text
    return overrides + [f"{key}={json.dumps(value)}" for key, value in flags.items() if value is not None]


def _generate(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config, _overrides(args))
    except ConfigError as err:
        if args.config:
            raise
        hint = "no recipe was given: start from one, e.g. `cord generate -c recipes/tiny-hetero.yaml` (or `cord demo`)"
        raise ConfigError(f"{err}; {hint}") from None
    if args.dry_run:
        from .estimate import estimate
        from .preview import preview
        from .run import check_models_found, prepare, run_problems

        prepare(config)
        check_models_found(config, servers=False)  # a dry run is often written before its servers are up
        problems = run_problems(config, None)
        print(preview(config, problems[0]))
        print(estimate(config, problems))
        return 0
    if args.ray is not None and args.retry_failed:
        raise ConfigError("--retry-failed: run it without --ray, on the merged output directory")
    if args.ray is not None:
        from .shards import run_on_ray

        summary = run_on_ray(config, address=args.ray or None, workers=args.workers, overwrite=args.overwrite)
    else:
        from .run import run

        summary = run(config, overwrite=args.overwrite, progress=not args.quiet and None, retry_failed=args.retry_failed)
    print(json.dumps({k: summary.get(k) for k in PRINTED} | ({"cost": summary["cost"]} if "cost" in summary else {}), indent=2))
    for warning in summary.get("warnings") or []:
        print(f"cord: warning: {warning}", file=sys.stderr)
    print(f"wrote {config.output_dir}/records.jsonl", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv or os.environ.get("CORD_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    terminate_on_sigterm()
    try:
        return _main(argv)
    except ConfigError as err:
        if debug:
            raise
        print(f"cord: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print(f"cord: interrupted ({interrupt_name(err)}); finished problems are saved, run the same command to resume", file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130
    except Exception as err:
        if debug:
            raise
        first = str(err).splitlines()[0] if str(err) else ""
        if isinstance(err, RunStopped):  # its message says what to do; run.log has any traceback
            print(f"cord: error: {first}", file=sys.stderr)
        else:
            print(f"cord: error: {type(err).__name__}: {first} (--debug for the traceback)", file=sys.stderr)
        return 1


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="cord",
        description="Collaborative step-wise multi-teacher decoding (CoRD).",
        epilog="Exit codes: 0 done, 1 unexpected failure, 2 bad input or configuration, 130 interrupted (SIGINT), 143 "
        "terminated (SIGTERM): finished work is kept and the same command resumes. --debug shows tracebacks.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"cord {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="run a search method over a problem set")
    gen.add_argument("--config", "-c", help="recipe YAML (e.g. recipes/tiny-hetero.yaml)")
    gen.add_argument("--data", help="problems file (JSONL, JSON or parquet), sets data.path; or a datasets folder, sets data.dataset")
    gen.add_argument("--question-field", help="the field holding the question; sets data.question_field")
    gen.add_argument("--answer-field", help="the field holding the reference answer; sets data.answer_field")
    gen.add_argument("--answer-format", choices=ANSWER_FORMATS, help="how to take the final answer from it; sets data.answer_format")
    gen.add_argument("--answer-regex", help="with --answer-format regex: a regex whose first group is the answer; sets data.answer_regex")
    gen.add_argument("--out", help="output directory; sets output_dir")
    gen.add_argument(
        "--method", metavar="{" + ",".join(STRATEGIES.names()) + "}", help="sets search.method (or a plug-in's package.module:Class)"
    )
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
    gen.add_argument("--retry-failed", action="store_true", help="run the problems recorded as failed again (their records are replaced)")
    gen.add_argument("--dry-run", action="store_true", help="load tokenizers only; print what each model is sent for the first problem")
    gen.add_argument(
        "--help-config",
        nargs="?",
        const="",
        metavar="PREFIX",
        help="print every config key (or those starting with PREFIX, e.g. search.) with its type, default and help, and exit",
    )
    add_debug(gen)
    gen.add_argument("overrides", nargs="*", help="dotted overrides, e.g. search.beam_size=2 teachers.0.temperature=0.5")
    for name in COMMANDS.names():
        sub.add_parser(name, help=COMMANDS.help(name), add_help=False)
    if argv and argv[0] in COMMANDS:
        return COMMANDS.load(argv[0])(argv[1:]) or 0
    args, extra = parser.parse_known_args(argv)  # overrides may come before and after options
    stray = [a for a in extra if a.startswith("-") or "=" not in a]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    args.overrides += extra
    if args.help_config is not None:
        from .config.describe import main as describe

        return describe([args.help_config] if args.help_config else [])
    if args.ray and "=" in args.ray:  # `--ray key=value`: an override, not a cluster address
        args.overrides.insert(0, args.ray)
        args.ray = ""
    return _generate(args)


if __name__ == "__main__":
    sys.exit(main())
