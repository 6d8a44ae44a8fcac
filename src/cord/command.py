"""What every `cord` subcommand's parser shares: `--debug`, which `cli.main` reads before any
parser runs (so it works anywhere on the line), listed in each subcommand's `--help`."""

from __future__ import annotations

import argparse

DEBUG_HELP = "on an error, print the full traceback instead of one line (or set CORD_DEBUG=1)"


def command_parser(prog: str, description: str, **kwargs) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description, **kwargs)
    add_debug(parser)
    return parser


def add_debug(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)  # never in the namespace
