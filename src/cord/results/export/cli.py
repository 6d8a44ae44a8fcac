"""The `cord export` command line: its arguments and what it prints to stderr."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ...command import command_parser
from ...prompts import REASONING_INSTRUCTION
from ...records.quality import FLAGS, REPEATED_SHARE_LIMIT
from .filters import DROPPED_BY_DEFAULT, NEAR_DUPLICATES
from .formats import FORMATS
from .steps import DEFAULT_MARGIN

if TYPE_CHECKING:
    from . import ExportReport


def parser() -> argparse.ArgumentParser:
    parser = command_parser(prog="cord export", description="Run directories -> a training set for TRL or LLaMA-Factory.")
    parser.add_argument("runs", nargs="+", help="run directories")
    parser.add_argument("--out", required=True, help=".jsonl, .json (one array), .parquet, or a folder (datasets save_to_disk)")
    parser.add_argument("--format", default="messages", choices=FORMATS)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--only-correct", dest="keep", action="store_const", const="correct", help="rows whose answer is right (default)")
    which.add_argument("--require-valid-trace", dest="keep", action="store_const", const="valid", help="right answer and every step right")
    which.add_argument("--all", dest="keep", action="store_const", const="all", help="every record that did not fail")
    turn = parser.add_mutually_exclusive_group()
    turn.add_argument(
        "--student-instruction",
        default=REASONING_INSTRUCTION,
        help="after the question in the user turn ('' for the question alone; default: what cord eval-student sends)",
    )
    turn.add_argument("--with-step-instruction", action="store_true", help="the user turn carries the step instruction the teachers saw")
    quality = parser.add_argument_group("quality filters (records/quality.py; every dropped row is counted by reason)")
    quality.add_argument(
        "--drop-flagged",
        metavar="FLAGS",
        help=f"comma-separated quality flags that drop a row, replacing the default ({','.join(DROPPED_BY_DEFAULT)}); "
        f"'' drops none. Flags: {', '.join(FLAGS)}",
    )
    quality.add_argument("--keep-flagged", metavar="FLAGS", help="comma-separated flags taken out of the dropping set (e.g. empty_steps)")
    quality.add_argument(
        "--max-repeated-share",
        type=float,
        default=REPEATED_SHARE_LIMIT,
        help=f"flag 'repetitive' above this share of repeated word n-grams (default {REPEATED_SHARE_LIMIT})",
    )
    quality.add_argument(
        "--near-duplicates",
        choices=NEAR_DUPLICATES,
        default="drop",
        help="rows whose text nearly repeats a row kept: drop them (default), flag them in quality_flags, or keep them",
    )
    parser.add_argument(
        "--eval-split",
        metavar="X",
        help="hold problems out for evaluation: a share in (0,1) (about that share: each problem by a seeded hash of its id) or a "
        "whole number of problems (those with the lowest hashes); written beside --out as NAME.eval.SUFFIX (train.jsonl -> "
        "train.eval.jsonl, a folder F -> F.eval); a problem's rows are never on both sides, and with a share a problem falls on "
        "the same side in every export",
    )
    parser.add_argument("--system-prompt", help="a system turn in every row")
    parser.add_argument("--decontaminate", metavar="SETS", help="comma-separated: aime24, aime25, math500, gsm8k or JSONL paths")
    parser.add_argument("--ngram", type=int, default=8, help="word n-gram length for --decontaminate (default 8)")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload the export and its card to this dataset repository")
    parser.add_argument("--private", action="store_true", help="with --push-to-hub: a private repository")
    parser.add_argument(
        "--student",
        metavar="MODEL",
        help="the model to train on it: warn if its chat template drops the reasoning; step-dpo (required): render its prompts",
    )
    parser.add_argument(
        "--margin",
        type=float,
        metavar="M",
        help=f"step-dpo / stepwise: a step is bad when its S is more than M below the best candidate after the same prefix "
        f"(when no finished trajectory runs through it), and a step-dpo pair's rejected step is more than M below its "
        f"chosen one (default {DEFAULT_MARGIN}; docs/benchmarks.md)",
    )
    return parser


def print_report(report: ExportReport) -> None:
    """What was read, kept and dropped, the warnings, and the files written."""
    for line in report.lines():
        print(line, file=sys.stderr)
    for warning in report.warnings:
        print(f"cord: warning: {warning}", file=sys.stderr)
    for path in report.files:
        print(f"wrote {path}", file=sys.stderr)
