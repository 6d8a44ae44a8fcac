"""The ways a command ends early, as types the command line matches: bad input, a run stopped by an
engine, an interrupt (SIGINT, or SIGTERM raised as `Terminated`); and holding interrupts while a
record is written and counted, so the two never disagree."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ConfigError(ValueError):
    """Bad configuration or input; the message names the field or file (exit code 2, nothing written)."""


class RunStopped(RuntimeError):
    """A run ended by an engine failure (a server that stayed down, ...); finished work is saved (exit code 1)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what Slurm and Kubernetes send at a time limit), handled as Ctrl-C is: the run stops
    where it is and keeps what it finished (exit code 143)."""


def interrupt_name(err: BaseException) -> str:
    """How a message names an interrupt: SIGTERM, SIGINT, or the exception's class."""
    if isinstance(err, Terminated):
        return "SIGTERM"
    return "SIGINT" if isinstance(err, KeyboardInterrupt) else type(err).__name__


def _terminate(signum, frame) -> None:
    raise Terminated


def terminate_on_sigterm() -> None:
    """SIGTERM raises `Terminated` in the main thread (elsewhere handlers cannot be set)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)


INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block has run, then act on them as their handlers would.
    Only the main thread can swap handlers; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: caught.append(signum)) for signum in INTERRUPTS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(caught):
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)  # raises KeyboardInterrupt (SIGINT), Terminated (SIGTERM)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)
