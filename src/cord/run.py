"""The pipeline: problems -> search strategy -> engines -> records -> output directory."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from contextlib import nullcontext

from .config import Config, ConfigError, to_dict
from .data import Problem, load_problems, select_shard
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


def _progress(total: int, label: str, enabled: bool):
    if not enabled:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("acc {task.fields[acc]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def iterate(strategy: Strategy, problems: list[Problem], label: str = "", progress: bool = False) -> Iterable[Record]:
    correct = 0
    with _progress(len(problems), label or strategy.method, progress) as bar:
        task = bar.add_task(label, total=len(problems), acc="-") if bar else None
        for done, record in enumerate(strategy.run(problems), 1):
            correct += record.correct
            if bar:
                bar.update(task, advance=1, acc=f"{correct / done:.0%}")
            yield record


def as_problems(rows: list[Problem | dict], config: Config) -> list[Problem]:
    """Accept `Problem`s or plain dicts (mapped with the config's data field names)."""
    from .data import problems_from_rows

    if all(isinstance(r, Problem) for r in rows):
        return list(rows)
    return problems_from_rows([("problem " + str(i), r) for i, r in enumerate(rows)], config.data)


def generate(problems: list[Problem | dict], config: Config, engine_cache: dict | None = None) -> list[Record]:
    """Library entry point: records for `problems`, in memory (no output directory)."""
    return list(iterate(build_strategy(config, engine_cache), as_problems(problems, config)))


def run(
    config: Config,
    problems: list[Problem] | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    engine_cache: dict | None = None,
    label: str = "",
) -> dict:
    """Run `config` into its output directory, resuming finished problems; return the summary."""
    if problems is None:
        problems = load_problems(config.data)
    elif config.data.limit is not None:
        problems = problems[: config.data.limit]
    problems = select_shard(problems, config.data.shard)
    prepare(config)
    directory = RunDirectory(config.output_dir, to_dict(config), overwrite)
    finished = directory.check()
    done_ids = {r.id for r in finished}
    todo = [p for p in problems if p.id not in done_ids]
    strategy = build_strategy(config, engine_cache) if todo else None  # load models before writing anything
    directory.open()
    start = time.perf_counter()
    records = list(finished)
    try:
        if strategy is not None:
            show = sys.stderr.isatty() if progress is None else progress
            for record in iterate(strategy, todo, label or config.search.method, show):
                directory.append(record)
                records.append(record)
    finally:
        summary = summarize(records, time.perf_counter() - start)
        summary["resumed"] = len(finished)
        summary["new"] = len(records) - len(finished)
        summary["peak_memory"] = peak_memory()
        directory.close(summary)
    return summary
