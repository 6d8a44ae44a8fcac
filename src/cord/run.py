"""The pipeline: problems -> search strategy -> engines -> records -> output directory.

A run is planned (which problems are left, checked before anything loads), opened (models loaded,
then the directory and its log), looped (each record written and counted as it finishes) and
closed (summary.json, the log's last line, engines shut down), whatever stopped it. summary.json
exists from the start and is rewritten every few seconds (`"running": true` until the end, with
what the problems in flight have done so far), so an unattended run can be followed from outside.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from .config import Config, checked, to_dict
from .data import Problem, load_problems, problems_from_rows, select_shard
from .engines import check_engine, check_files, close_engines, load_engine
from .engines.base import SAMPLING_FIELDS
from .errors import ConfigError, RunStopped, interrupt_name, interrupts_deferred
from .progress import EarlyWarnings, Failures, attach_log, detach_log, followed, log
from .records import RECORDS, SUMMARY, Record, RecordStream, RunDirectory, Totals, peak_memory
from .registry import ENGINES, STRATEGIES
from .search import Strategy


def prepare(config: Config) -> type[Strategy]:
    """The strategy class for `config`, after it and every model's engine have checked the
    settings they use (one-line errors, before any model loads or any output is written)."""
    strategy = STRATEGIES.load(config.search.method)
    strategy.prepare(config)
    for where, model in config.models():
        check_engine(model, where)
    check_shared_engines(config)
    mp = config.meta_prover
    if not ENGINES.load(mp.engine).can_score:
        raise ConfigError(f"meta_prover.engine: {mp.engine!r} cannot score (no prompt log-probabilities); use a completions engine")
    return strategy


# What a model's section sets for its own role; every other field configures the loaded engine.
ROLE_FIELDS = {"name", *SAMPLING_FIELDS, "max_step_tokens", "system_prompt", "step_instruction", "price"}


def dotted(settings: dict, prefix: str = "") -> dict:
    """{"transformers": {"max_batch_size": 8}} -> {"transformers.max_batch_size": 8}."""
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            out.update(dotted(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def check_shared_engines(config: Config) -> None:
    """Sections that load the same model on the same engine and device share one loaded copy,
    built from the first of them: refuse any engine setting on which they disagree, which the
    copy would otherwise silently take from the first."""
    first: dict[tuple, tuple[str, dict]] = {}
    for where, model in config.models():
        key = (model.engine, model.model, model.gguf_file, model.dtype, model.device, str(model.base_url))
        settings = dotted(model.model_dump(exclude=ROLE_FIELDS))
        if key not in first:
            first[key] = (where, settings)
            continue
        other, theirs = first[key]
        for key_name in sorted(settings.keys() | theirs.keys()):
            value = settings.get(key_name)
            if value != theirs.get(key_name):
                raise ConfigError(
                    f"{where}.{key_name}: {value!r} differs from {other}.{key_name} ({theirs.get(key_name)!r}); both load "
                    f"{model.model!r} on one {model.engine} engine, so they share one loaded copy: give them the same {key_name}"
                )


def check_models_found(config: Config, servers: bool = True) -> None:
    """Every model and tokenizer of `config` is a local folder, in the hub cache or on the hub, and
    (with `servers`) every server answers: one line naming the field, before anything is written."""
    for where, model in config.models():
        check_files(model, where, servers)


def build_strategy(config: Config, engine_cache: dict | None = None, strategy: type[Strategy] | None = None) -> Strategy:
    """Load every engine (shared where models coincide) and the configured strategy; `strategy`:
    the class `prepare` already returned for this config."""
    cache = {} if engine_cache is None else engine_cache
    return (strategy or prepare(config)).build(config, lambda model: load_engine(model, cache))


def as_problems(rows, config: Config) -> list[Problem]:
    """Accept `Problem`s, plain dicts (mapped with the config's data field names) or a
    `datasets.Dataset`; each problem keeps its place in the input (`Problem.index`)."""
    rows = list(rows)
    if all(isinstance(r, Problem) for r in rows):
        return [p if p.index is not None else dataclasses.replace(p, index=i) for i, p in enumerate(rows)]
    return problems_from_rows([("problem " + str(i), r) for i, r in enumerate(rows)], config.data)


def generate(problems, config: Config, engine_cache: dict | None = None):
    """Library entry point: records for `problems` (a list of `Problem`s or dicts, or a
    `datasets.Dataset`), in memory (no output directory), in the order of the problems given.
    A `datasets.Dataset` in gives a `datasets.Dataset` out, one row per record (`Record.to_dict`).
    The config is checked again first, as a run does (a change made to it after it was built is
    seen)."""
    config = checked(config)
    given = as_problems(problems, config)
    place = {p.id: i for i, p in enumerate(given)}
    records = sorted(followed(build_strategy(config, engine_cache), given), key=lambda r: place[r.id])
    if type(problems).__module__.startswith("datasets"):
        import datasets

        return datasets.Dataset.from_list([r.to_dict() for r in records])
    return records


@dataclass
class Plan:
    """What a run into a directory has to do: its problems, the records it keeps, what is left.
    The records stay on disk (`RecordStream`): a plan holds their ids, not the records."""

    problems: list[Problem]
    finished: RecordStream  # records on disk
    retried: set[str] = field(default_factory=set)  # ids of failed records run again (--retry-failed)

    @property
    def kept(self) -> int:
        """Records on disk that stay."""
        return len(self.finished) - len(self.retried)

    @property
    def todo(self) -> list[Problem]:
        done = set(self.finished.ids()) - self.retried
        return [p for p in self.problems if p.id not in done]

    def kept_records(self) -> Iterator[Record]:
        """The records that stay, streamed from disk."""
        return (r for r in self.finished if r.id not in self.retried)


def run_problems(config: Config, problems: list[Problem] | None) -> list[Problem]:
    """The run's problems: `problems`, or the configured data, after data.limit and data.shard."""
    if problems is None:
        problems = load_problems(config.data)
    else:
        problems = as_problems(problems, config)
        if config.data.limit is not None:
            problems = problems[: config.data.limit]
    return select_shard(problems, config.data.shard)


def plan(directory: RunDirectory, problems: list[Problem], retry_failed: bool) -> Plan:
    """The run's problems against what the directory already holds (checked before anything loads)."""
    finished = directory.check()
    retried = {r.id for r in finished if r.failed} if retry_failed else set()
    return Plan(problems, finished, retried)


def reusable_summary(directory: RunDirectory, plan: Plan) -> dict | None:
    """A resume with nothing to do keeps the summary the last run wrote, when it was written for
    records.jsonl as it is (same size and time; reading every record again would say the same)."""
    try:
        summary = json.loads((directory.path / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    if plan.retried or summary.get("running") or summary.get("records_file") != records_file_state(directory):
        return None
    return summary


def records_file_state(directory: RunDirectory) -> dict | None:
    """records.jsonl's size and modification time: a summary that states them speaks for that file."""
    try:
        stat = (directory.path / RECORDS).stat()
    except OSError:
        return None
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class Run:
    """One run into its directory, opened with its models loaded; `loop` writes each record as it
    finishes, `close` leaves summary.json and the log's last line whatever stopped the loop."""

    def __init__(self, config: Config, directory: RunDirectory, plan: Plan, strategy: Strategy | None):
        self.config, self.directory, self.plan, self.strategy = config, directory, plan, strategy
        self.totals = Totals()  # the summary, one record at a time: nothing is re-read while the run goes on
        self.new = 0
        self.failures = Failures()  # this run's failed problems, by reason
        self.stopped: str | None = None  # why the run stopped before its last problem (max_cost, max_failure_rate)
        self.failed_run = False  # whether the way it stopped is a failure (a non-zero exit)
        self.reused = reusable_summary(directory, plan) if strategy is None else None
        if self.reused is None:
            for record in plan.kept_records():
                self.totals.add(record)
        directory.open(drop=plan.retried)
        directory.states.prune(set(plan.finished.ids()) - plan.retried)
        if strategy is not None:
            strategy.checkpoints = directory.states  # each problem's rounds are saved: an interrupt loses at most one
        self.handler = attach_log(directory.path)
        self.start = time.perf_counter()

    @property
    def saved(self) -> int:
        return self.plan.kept + self.new

    def summary(self, running: bool) -> dict:
        summary = dict(self.reused) if self.reused is not None else self.totals.summary(time.perf_counter() - self.start)
        summary.update(planned=len(self.plan.problems), resumed=self.plan.kept, new=self.new, running=running)
        if self.stopped:
            summary["stopped"] = self.stopped
            summary["warnings"] = [*summary.get("warnings", []), f"stopped: {self.stopped}"]
        if self.failures:
            summary["warnings"] = [
                *summary.get("warnings", []),
                f"{len(self.failures)} of {self.new} problems run failed: {self.failures.common()}",
            ]
        if self.strategy is not None:
            events = self.strategy.meter.events
            summary["rounds"] = {"saved": events["rounds_saved"], "resumed": events["problems_resumed"]}
            if self.strategy.search.speculative:  # proposals sent in their round, started ahead and taken up, dropped
                summary["proposals"] = {
                    "sent": events["proposals_sent"],
                    "ahead_kept": events["proposals_ahead_kept"],
                    "ahead_dropped": events["proposals_ahead_dropped"],
                }
        if running and self.strategy is not None:  # what the problems still in flight have done so far
            tokens, steps, live = self.strategy.meter.snapshot()
            summary["in_flight"] = {"problems": len(live), "steps": sum(w.steps for w in live.values())}
            summary["in_flight"]["tokens"] = sum(w.tokens for w in live.values())
            summary["generated_this_run"] = {"tokens": tokens, "steps": steps}
        summary["peak_memory"] = peak_memory()
        return summary

    def refresh(self) -> None:
        try:
            self.directory.write_summary(self.summary(running=True))
        except OSError as err:  # a full disk: the records are what matters, the next refresh may succeed
            log.warning(f"summary.json not refreshed: {err}")

    def loop(self, label: str, progress: bool | str) -> None:
        """Each record on disk and counted as its problem finishes; an engine failure stops the run
        as `RunStopped`, naming what is saved."""
        self.refresh()  # summary.json exists from the start, with the problems planned
        if self.strategy is None:
            return
        try:
            records = followed(self.strategy, self.plan.todo, label, progress, self.plan.kept_records(), self.refresh, self.failures)
            for record in records:
                with interrupts_deferred():  # on disk and counted, or neither: summary.json matches records.jsonl
                    self.directory.append(record)
                    self.totals.add(record)
                    self.new += 1
                self.directory.states.remove(record.id)  # after the record: a crash between the two keeps both, never neither
                self.stopped = self.stop_reason()
                if self.stopped:
                    break  # the problems in flight stop at their next engine call (their last rounds are saved)
        except Exception as err:
            log.error(f"run stopped after {self.new} new problems: {type(err).__name__}: {err}", exc_info=True)
            raise RunStopped(
                f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}; {self.saved} problems are saved in "
                f"{self.directory.path} ({self.new} new in this run); run the same command to resume"
            ) from err
        except BaseException as err:
            log.error(f"run interrupted ({interrupt_name(err)}) after {self.new} new problems; the same command resumes")
            raise

    def stop_reason(self) -> str | None:
        """Why the run stops now, or None: its records reached max_cost, or more than
        max_failure_rate of its problems failed."""
        config, left = self.config, len(self.plan.todo) - self.new
        if config.max_cost is not None and self.totals.cost >= config.max_cost:
            return (
                f"max_cost ${config.max_cost:g} reached (${self.totals.cost:.4g} spent on {self.totals.priced} problems); "
                f"{left} problems not run: the same command with a higher max_cost resumes"
            )
        rate, failed = config.max_failure_rate, len(self.failures)
        if rate is not None and self.new >= config.failure_rate_after and failed > rate * self.new and left:
            self.failed_run = True
            return (
                f"max_failure_rate {rate:g} passed: {failed} of {self.new} problems failed ({self.failures.common()}); {left} problems "
                f"not run: fix the cause (run.log has each failure), then the same command with --retry-failed resumes"
            )
        return None

    def failed_all(self) -> str | None:
        """Why the run failed as a whole although it ran to its end: every problem it ran failed."""
        if self.new and len(self.failures) == self.new and not self.stopped:
            return (
                f"every one of the {self.new} problems run failed ({self.failures.common()}); the records say why and "
                f"{self.directory.path / 'run.log'} has each failure: fix the cause, then the same command with --retry-failed"
            )
        return None

    def close(self) -> dict:
        summary = self.summary(running=False)
        summary["records_file"] = records_file_state(self.directory)
        for warning in summary.get("warnings") or []:
            log.warning(warning)
        log.info(f"run ended: {summary['problems']} problems in the directory, {summary['new']} new")
        try:
            self.directory.close(summary)
        except OSError as err:  # e.g. the disk is full: records.jsonl is intact, summary.json is not updated
            log.error(f"summary.json not written: {err}")
        detach_log(self.handler)
        return summary


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
    `retry_failed`: problems recorded as failed are run again (their old records are replaced).
    `progress`: the bar on stderr (None: the bar on a terminal, else a progress line every 30 s;
    False: neither)."""
    config = checked(config)
    with EarlyWarnings() as early:  # before run.log exists: on stderr now, in run.log once it does
        problems = run_problems(config, problems)
    strategy_class = prepare(config)
    check_models_found(config)
    directory = RunDirectory(config.output_dir, to_dict(config), overwrite)
    planned = plan(directory, problems, retry_failed)
    cache = {} if engine_cache is None else engine_cache  # a caller's cache outlives this run; ours does not
    loading = time.perf_counter()
    strategy = build_strategy(config, cache, strategy_class) if planned.todo else None  # models load before anything is written
    current = Run(config, directory, planned, strategy)
    early.replay(current.handler)
    if planned.retried:
        log.info(f"--retry-failed: running {len(planned.retried)} failed problems again: {', '.join(sorted(planned.retried)[:10])}")
    log.info(
        f"run {config.search.method} into {directory.path}: {len(planned.problems)} problems, {planned.kept} already done, "
        f"{len(planned.todo)} to do"
    )
    if strategy is not None:
        log.info(f"models loaded in {time.perf_counter() - loading:.1f} s: {', '.join(type(e).__name__ for e in strategy.engines())}")
    try:
        lines = "bar" if sys.stderr.isatty() else "lines"  # off a terminal (a Slurm log): a line every 30 s
        current.loop(label or config.search.method, lines if progress is None else progress)
    finally:
        summary = current.close()
        if engine_cache is None:
            close_engines(cache)
    failed = current.stopped if current.failed_run else current.failed_all()
    if failed:  # a non-zero exit: a scheduler or a script must not read this run as done
        raise RunStopped(failed)
    return summary
