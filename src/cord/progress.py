"""What a person or a log follows while a run goes: the progress bar on a terminal, OUT/run.log, and
a watcher thread that keeps both (and summary.json) current while problems are still in flight.

run.log says what happened: models loaded, each problem's end, every minute the work of each
problem still running, warnings, engine retries with their reasons, how the run ended.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from pathlib import Path

from .records import Record
from .search import Strategy

log = logging.getLogger("cord")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TICK = 1.0  # seconds between updates of the bar's live figures
LOG_LIVE_EVERY = 60.0  # seconds between run.log lines for the problems still running
SUMMARY_EVERY = 5.0  # seconds between rewrites of summary.json during a run, finished problems or not
LINES_EVERY = 30.0  # seconds between progress lines on stderr when it is not a terminal (a Slurm log)


def attach_log(folder: Path) -> logging.Handler:
    """Everything the `cord` loggers say (the run, engine retries) goes to OUT/run.log."""
    handler = logging.FileHandler(folder / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    return handler


def detach_log(handler: logging.Handler) -> None:
    log.removeHandler(handler)
    handler.close()


class EarlyWarnings(logging.Handler):
    """Warnings logged before OUT/run.log exists (problems loading): shown on stderr as the run's
    other warnings are, and kept, so `replay` writes them to run.log's handler once it is attached."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        print(f"cord: warning: {record.getMessage()}", file=sys.stderr)

    def __enter__(self) -> EarlyWarnings:
        log.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        log.removeHandler(self)

    def replay(self, handler: logging.Handler) -> None:
        for record in self.records:
            handler.handle(record)


class Failures:
    """The failed problems of a run and why, most common reason first: what the bar, the progress
    lines and the run's last words say, so a run whose problems fail is never silent."""

    def __init__(self):
        self.reasons: Counter[str] = Counter()

    def add(self, reason: str) -> bool:
        """Count one failure; whether its reason is new (a reason is its first line, cut at 120 characters)."""
        key = (reason.strip().splitlines() or [""])[0][:120]
        self.reasons[key] += 1
        return self.reasons[key] == 1

    def __len__(self) -> int:
        return sum(self.reasons.values())

    def common(self, n: int = 2) -> str:
        """'3 x reason; 1 x other', the `n` most common, and how many other reasons there are."""
        shown = "; ".join(f"{count} x {reason}" for reason, count in self.reasons.most_common(n))
        rest = len(self.reasons) - n
        return shown + (f"; {rest} other reason{'s' * (rest > 1)}" if rest > 0 else "")


def _bar(total: int, label: str, enabled: bool):
    if not enabled:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(bar_width=16),
        MofNCompleteColumn(),
        TextColumn("acc {task.fields[acc]} · {task.fields[steps]} steps · {task.fields[tps]} tok/s{task.fields[trouble]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )


class Watch:
    """While a strategy runs, in a thread of its own: the bar's steps done and tokens/s as they
    happen (every TICK), a run.log line per problem in flight (every LOG_LIVE_EVERY), and
    `on_tick` (the run rewrites summary.json; every SUMMARY_EVERY), so a run whose problems take
    minutes each is never silent."""

    def __init__(self, strategy: Strategy, bar, task, on_tick: Callable[[], None] | None, lines: dict | None = None):
        """`lines`: off a terminal, the counts (label, done, total, failed) a progress line on
        stderr reports every LINES_EVERY."""
        self.strategy, self.bar, self.task, self.on_tick, self.lines = strategy, bar, task, on_tick, lines
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="cord-watch")

    def __enter__(self) -> Watch:
        self.start = time.perf_counter()
        self._line()  # a log shows the run began, and its last line how it ended, however short
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self._line()

    def _line(self) -> None:
        if self.lines is not None:
            tokens = self.strategy.meter.snapshot()[0]
            print(progress_line(self.lines, tokens, time.perf_counter() - self.start), file=sys.stderr, flush=True)

    def _loop(self) -> None:
        start = last_log = last_tick = last_line = self.start
        while not self.stop.wait(TICK):
            now = time.perf_counter()
            tokens, steps, live = self.strategy.meter.snapshot()
            if self.bar is not None:
                self.bar.update(self.task, steps=f"{steps:,}", tps=f"{tokens / max(1e-9, now - start):,.0f}")
            if now - last_log >= LOG_LIVE_EVERY and live:
                for problem, work in live.items():
                    seconds = now - work.started
                    log.info(
                        f"problem {problem} running: {work.steps} steps, {work.tokens:,} tokens, "
                        f"{work.tokens / max(1e-9, seconds):.0f} tok/s, {seconds:.0f} s"
                    )
                last_log = now
            if self.lines is not None and now - last_line >= LINES_EVERY:
                self._line()
                last_line = now
            if self.on_tick is not None and now - last_tick >= SUMMARY_EVERY:
                self.on_tick()
                last_tick = now


def progress_line(counts: dict, tokens: int, seconds: float) -> str:
    """One line a log can follow: done / total, failures and their most common reasons, generated tokens/s, ETA."""
    done, total = counts["done"], counts["total"]
    eta = duration((total - done) * seconds / done) if done else "-"
    failures: Failures = counts["failures"]
    failed = f"{len(failures)} failed" + (f" ({failures.common()})" if failures else "")
    return (
        f"cord: {counts['label']} {done}/{total} problems done, {failed}, "
        f"{tokens / max(1e-9, seconds):,.0f} tok/s, {duration(seconds)} so far, ETA {eta}"
    )


def duration(seconds: float) -> str:
    """Seconds as a log reads them: 42 s, 17 min, 3 h 05 min."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{minutes} min" if hours < 2 and seconds < 7200 else f"{hours} h {minutes:02d} min"


def followed(
    strategy: Strategy,
    problems: list,
    label: str = "",
    progress: bool | str = False,
    finished: Iterable[Record] = (),
    on_tick: Callable[[], None] | None = None,
    failures: Failures | None = None,
) -> Iterable[Record]:
    """The strategy's records in turn, with the progress bar (`progress` True or "bar": done / total,
    running accuracy, steps and generated tokens/s as they happen, engine retries, failures, ETA) or
    ("lines") a progress line on stderr every LINES_EVERY, one run.log line per problem done and,
    every minute, one per problem still running. The bar prints each new reason a problem failed
    above it; `failures`: where the failures are counted (the run reads them)."""
    correct = 0
    failures = Failures() if failures is None else failures
    engines = strategy.engines()
    counts = {"label": label or strategy.method, "done": 0, "total": len(problems), "failures": failures} if progress == "lines" else None
    with _bar(len(problems), label or strategy.method, progress is True or progress == "bar") as bar:
        task = bar.add_task(label, total=len(problems), acc="-", steps="0", tps="-", trouble="") if bar else None
        with Watch(strategy, bar, task, on_tick, counts):
            for done, record in enumerate(strategy.run(problems, finished), 1):
                correct += bool(record.correct)
                new_reason = record.failed is not None and failures.add(record.failed)
                outcome = {True: "correct", False: "incorrect", None: "ungraded"}[record.correct]
                grade = "failed: " + record.failed if record.failed else outcome
                log.info(f"problem {record.id} done ({done}/{len(problems)}): {grade}, {len(record.steps)} steps, {record.seconds:.1f} s")
                if counts is not None:
                    counts.update(done=done)
                if bar:
                    if new_reason:
                        from rich.text import Text  # the reason as written: brackets in it are not markup

                        bar.console.print(Text.assemble((f"cord: problem {record.id} failed: ", "red"), record.failed))
                    retries = sum(getattr(e, "retries", 0) for e in engines)
                    trouble = "".join(
                        f" · {n} {what}" for n, what in ((retries, "retries"), (len(failures), "failed")) if n
                    )  # once there are any
                    bar.update(task, advance=1, acc=f"{correct / done:.0%}", trouble=trouble)
                yield record
