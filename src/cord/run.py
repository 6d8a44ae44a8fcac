"""The pipeline: problems -> search strategy -> engines -> records -> output directory.

While a run goes, OUT/run.log says what happened (models loaded, each problem's end, every
minute the work of each problem still running, warnings, engine retries with their reasons) and
OUT/summary.json exists from the start (the problems planned) and is rewritten every few seconds
(`"running": true` until the end, with what the problems in flight have done so far), so an
unattended run can be followed from outside.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext

from .config import Config, ConfigError, checked, to_dict
from .data import Problem, load_problems, problems_from_rows, select_shard
from .engines import check_engine, load_engine
from .records import Record, RunDirectory, summarize
from .registry import ENGINES, STRATEGIES
from .search import Strategy


def prepare(config: Config) -> type[Strategy]:
    """The strategy class for `config`, after it and every model's engine have checked the
    settings they use (one-line errors, before any model loads or any output is written)."""
    strategy = STRATEGIES.load(config.search.method)
    strategy.prepare(config)
    models = [(f"teachers.{i}", t) for i, t in enumerate(config.teachers)] + [("meta_prover", config.meta_prover)]
    if config.integrator is not None:
        models.append(("integrator", config.integrator))
    for where, model in models:
        check_engine(model, where)
    mp = config.meta_prover
    if not ENGINES.load(mp.engine).can_score:
        raise ConfigError(f"meta_prover.engine: {mp.engine!r} cannot score (no prompt log-probabilities); use a completions engine")
    return strategy


def build_strategy(config: Config, engine_cache: dict | None = None) -> Strategy:
    """Load every engine (shared where models coincide) and the configured strategy."""
    cache = {} if engine_cache is None else engine_cache
    return prepare(config).build(config, lambda model: load_engine(model, cache))


def peak_memory() -> dict:
    """Peak resident memory of this process (and of finished child processes), and the peak GPU memory
    torch reserved here, per device. Engines in other processes (vLLM workers, servers) are not in it."""
    import resource

    peak = {
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # Linux: KiB
        "children_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }
    torch = sys.modules.get("torch")  # only if an engine loaded it
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        peak["gpu_mb"] = {f"cuda:{i}": round(torch.cuda.max_memory_reserved(i) / 2**20, 1) for i in range(torch.cuda.device_count())}
    return peak


log = logging.getLogger("cord")


class RunStopped(RuntimeError):
    """A run ended by an engine failure (a server that stayed down, ...); finished work is saved."""


SUMMARY_EVERY = 5.0  # seconds between rewrites of summary.json during a run, finished problems or not
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _progress(total: int, label: str, enabled: bool):
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


TICK = 1.0  # seconds between updates of the bar's live figures
LOG_LIVE_EVERY = 60.0  # seconds between run.log lines for the problems still running


class _Watch:
    """While a strategy runs, in a thread of its own: the bar's steps done and tokens/s as they
    happen (every TICK), a run.log line per problem in flight (every LOG_LIVE_EVERY), and
    `on_tick` (run() rewrites summary.json; every SUMMARY_EVERY), so a run whose problems take
    minutes each is never silent."""

    def __init__(self, strategy: Strategy, bar, task, on_tick: Callable[[], None] | None):
        self.strategy, self.bar, self.task, self.on_tick = strategy, bar, task, on_tick
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="cord-watch")

    def __enter__(self) -> _Watch:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def _loop(self) -> None:
        start = last_log = last_tick = time.perf_counter()
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
            if self.on_tick is not None and now - last_tick >= SUMMARY_EVERY:
                self.on_tick()
                last_tick = now


def iterate(
    strategy: Strategy,
    problems: list[Problem],
    label: str = "",
    progress: bool = False,
    finished: Iterable[Record] = (),
    on_tick: Callable[[], None] | None = None,
) -> Iterable[Record]:
    """The strategy's records in turn, with the progress bar (done / total, running accuracy, steps
    and generated tokens/s as they happen, engine retries, failures, ETA), one run.log line per
    problem done and, every minute, one per problem still running."""
    correct = failed = 0
    engines = strategy.engines()
    with _progress(len(problems), label or strategy.method, progress) as bar:
        task = bar.add_task(label, total=len(problems), acc="-", steps="0", tps="-", trouble="") if bar else None
        with _Watch(strategy, bar, task, on_tick):
            for done, record in enumerate(strategy.run(problems, finished), 1):
                correct += bool(record.correct)
                failed += record.failed is not None
                outcome = {True: "correct", False: "incorrect", None: "ungraded"}[record.correct]
                grade = "failed: " + record.failed if record.failed else outcome
                log.info(f"problem {record.id} done ({done}/{len(problems)}): {grade}, {len(record.steps)} steps, {record.seconds:.1f} s")
                if bar:
                    retries = sum(getattr(e, "retries", 0) for e in engines)
                    trouble = "".join(f" · {n} {what}" for n, what in ((retries, "retries"), (failed, "failed")) if n)  # once there are any
                    bar.update(task, advance=1, acc=f"{correct / done:.0%}", trouble=trouble)
                yield record


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
                handler(signum, None)  # raises KeyboardInterrupt (SIGINT), cli.Terminated (SIGTERM)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)


def as_problems(rows: list[Problem | dict], config: Config) -> list[Problem]:
    """Accept `Problem`s or plain dicts (mapped with the config's data field names)."""
    if all(isinstance(r, Problem) for r in rows):
        return list(rows)
    return problems_from_rows([("problem " + str(i), r) for i, r in enumerate(rows)], config.data)


def generate(problems: list[Problem | dict], config: Config, engine_cache: dict | None = None) -> list[Record]:
    """Library entry point: records for `problems`, in memory (no output directory). The config
    is checked again first, as a run does (a change made to it after it was built is seen)."""
    config = checked(config)
    return list(iterate(build_strategy(config, engine_cache), as_problems(problems, config)))


def run(
    config: Config,
    problems: list[Problem] | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    engine_cache: dict | None = None,
    label: str = "",
    retry_failed: bool = False,
) -> dict:
    """Run `config` into its output directory, resuming finished problems; return the summary.
    `retry_failed`: problems recorded as failed are run again (their old records are replaced)."""
    config = checked(config)
    if problems is None:
        problems = load_problems(config.data)
    elif config.data.limit is not None:
        problems = problems[: config.data.limit]
    problems = select_shard(problems, config.data.shard)
    prepare(config)
    directory = RunDirectory(config.output_dir, to_dict(config), overwrite)
    finished = directory.check()
    retried = [r for r in finished if r.failed] if retry_failed else []
    if retried:
        finished = [r for r in finished if not r.failed]
    done_ids = {r.id for r in finished}
    todo = [p for p in problems if p.id not in done_ids]
    cache = {} if engine_cache is None else engine_cache  # a caller's cache outlives this run; ours does not
    loading = time.perf_counter()
    strategy = build_strategy(config, cache) if todo else None  # load models before writing anything
    directory.open(keep=finished if retried else None)
    handler = attach_log(directory.path)
    if retried:
        log.info(f"--retry-failed: running {len(retried)} failed problems again: {', '.join(r.id for r in retried[:10])}")
    log.info(f"run {config.search.method} into {directory.path}: {len(problems)} problems, {len(finished)} already done, {len(todo)} to do")
    if strategy is not None:
        names = ", ".join(f"{type(e).__name__}" for e in strategy.engines())
        log.info(f"models loaded in {time.perf_counter() - loading:.1f} s: {names}")
    start = time.perf_counter()
    records = list(finished)

    def summary_now(running: bool) -> dict:
        summary = summarize(list(records), time.perf_counter() - start)
        summary.update(planned=len(problems), resumed=len(finished), new=len(records) - len(finished), running=running)
        if running and strategy is not None:  # what the problems still in flight have done so far
            tokens, steps, live = strategy.meter.snapshot()
            summary["in_flight"] = {"problems": len(live), "steps": sum(w.steps for w in live.values())}
            summary["in_flight"]["tokens"] = sum(w.tokens for w in live.values())
            summary["generated_this_run"] = {"tokens": tokens, "steps": steps}
        summary["peak_memory"] = peak_memory()
        return summary

    def refresh() -> None:
        try:
            directory.write_summary(summary_now(running=True))
        except OSError as err:  # a full disk: the records are what matters, the next refresh may succeed
            log.warning(f"summary.json not refreshed: {err}")

    refresh()  # summary.json exists from the start, with the problems planned
    try:
        if strategy is not None:
            show = sys.stderr.isatty() if progress is None else progress
            for record in iterate(strategy, todo, label or config.search.method, show, finished, on_tick=refresh):
                with interrupts_deferred():  # on disk and counted, or neither: summary.json matches records.jsonl
                    directory.append(record)
                    records.append(record)
    except Exception as err:
        log.error(f"run stopped after {len(records) - len(finished)} new problems: {type(err).__name__}: {err}")
        raise RunStopped(
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}; {len(records)} problems are saved in "
            f"{directory.path} ({len(records) - len(finished)} new in this run); run the same command to resume"
        ) from err
    except BaseException as err:
        which = {"Terminated": "SIGTERM", "KeyboardInterrupt": "SIGINT"}.get(type(err).__name__, type(err).__name__)
        log.error(f"run interrupted ({which}) after {len(records) - len(finished)} new problems; the same command resumes")
        raise
    finally:
        summary = summary_now(running=False)
        for warning in summary.get("warnings") or []:
            log.warning(warning)
        log.info(f"run ended: {summary['problems']} problems in the directory, {summary['new']} new")
        try:
            directory.close(summary)
        except OSError as err:  # e.g. the disk is full: records.jsonl is intact, summary.json is not updated
            log.error(f"summary.json not written: {err}")
        detach_log(handler)
        if engine_cache is None:
            close_engines(cache)
    return summary


def attach_log(folder) -> logging.Handler:
    """Everything the `cord` loggers say (this module, engine retries) goes to OUT/run.log."""
    handler = logging.FileHandler(folder / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    return handler


def detach_log(handler: logging.Handler) -> None:
    log.removeHandler(handler)
    handler.close()


def close_engines(cache: dict) -> None:
    """Shut down every engine in `cache` (vLLM's worker processes, server connections) and empty it."""
    for engine in {id(e): e for e in cache.values()}.values():
        engine.close()
    cache.clear()
