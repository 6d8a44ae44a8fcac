"""What a run will spend, before it runs (`cord generate --dry-run`): tokens per model, USD where the
models have a `price`, and time once a few problems have run.

- At the budgets, a scenario (each strategy's `budget_tokens`): every trajectory runs to
  search.reasoning_budget in steps that each run to the writer's max_step_tokens, with no cache
  discount. It is not a bound: each round re-sends the prompt and every accepted step, so real
  steps, which mostly end before max_step_tokens, take more rounds and send (and have the
  meta-prover read) more prompt tokens; a teacher whose long steps lose to shorter ones generates
  past reasoning_budget; an answer with nothing to grade is asked for again.
- Expected, from the records already in output_dir (a trial run of a few problems, or the run being
  resumed): their mean per problem, at today's prices, times the problems planned; and the time the
  problems left take at the pace of the finished ones.
"""

from __future__ import annotations

from pathlib import Path

from .config import Config, ModelConfig
from .data import Problem
from .engines import resolve_model
from .engines.chat import ChatTokenizer
from .progress import duration
from .prompts import user_turn
from .records import RECORDS, Record, RecordStream
from .registry import ENGINES, STRATEGIES
from .search.accounting import record_cost

SAMPLE = 50  # problems whose prompts are measured


def prompt_tokens(config: Config, problems: list[Problem]) -> dict[str, int]:
    """Each model's mean prompt tokens over the first problems ("meta_prover", "integrator" and
    the teachers' names): its chat template's, or characters / 4 where the server renders it."""
    models = {t.name: t for t in config.teachers} | {"meta_prover": config.meta_prover}
    if config.integrator is not None:
        models["integrator"] = config.integrator
    sample, out, tokenizers = problems[:SAMPLE], {}, {}
    for name, model in models.items():
        turns = [user_turn(p.question, config.step_instruction_for(model)) for p in sample]
        if ENGINES.load(model.engine).local_tokenizer:
            key = resolve_model(model.tokenizer or model.model)
            tok = tokenizers.setdefault(key, ChatTokenizer(key, None if model.tokenizer else model.gguf_file))
            counts = [len(tok.ids(tok.chat_prompt(turn, model.system_prompt))) for turn in turns]
        else:
            counts = [len(turn) // 4 for turn in turns]
        out[name] = round(sum(counts) / max(1, len(counts)))
    return out


def spenders(config: Config) -> dict[str, tuple[str, ModelConfig]]:
    """The models whose tokens are priced, by the name the scenario and the records count them under
    (a teacher's name, "meta_prover", "integrator:<name>") -> (where the config sets them, the section)."""
    out = {t.name: (f"teachers.{i}", t) for i, t in enumerate(config.teachers)} | {"meta_prover": ("meta_prover", config.meta_prover)}
    if config.integrator is not None:
        out[f"integrator:{config.integrator.name}"] = ("integrator", config.integrator)
    return out


def unpriced(config: Config) -> str:
    """What a cost line leaves out: "; excludes teachers.2, meta_prover (no price)", or "" when every model is priced."""
    missing = [where for where, model in spenders(config).values() if model.price is None]
    return f"; excludes {', '.join(missing)} (no price)" if missing else ""


def _priced(model: ModelConfig | None, prompt: int, generated: int) -> str:
    if model is None or model.price is None:
        return ""
    return f", ${model.price.cost(prompt, 0, generated):,.4f}"


def estimate(config: Config, problems: list[Problem]) -> str:
    """The dry run's estimate for `problems` (those the run would plan)."""
    n, s = len(problems), config.search
    lines = [f"estimate for {n} problems ({s.method}, B = {s.beam_size}, K = {len(config.teachers)}):"]
    scenario = STRATEGIES.load(s.method).budget_tokens(config, prompt_tokens(config, problems))
    models = {name: model for name, (_, model) in spenders(config).items()}
    if scenario is None:
        lines.append(f"  at the budgets: no scenario for method {s.method!r}")
    else:
        lines.append(
            f"  at the budgets, per problem, if every trajectory ran to search.reasoning_budget ({s.reasoning_budget:,}) in steps of "
            "max_step_tokens (no cache discount):"
        )
        total = 0.0
        for name, (sent, generated) in scenario.items():
            what = f"{sent:,} read" if name == "meta_prover" else f"{sent:,} prompt + {generated:,} generated tokens"
            lines.append(f"    {name}: {what}{_priced(models.get(name), sent, generated)}")
            model = models.get(name)
            total += model.price.cost(sent, 0, generated) if model is not None and model.price is not None else 0.0
        if any(m.price for m in models.values()):
            lines.append(f"    cost: ${total:,.4f} per problem, ${total * n:,.2f} for {n} problems{unpriced(config)}")
        lines += [
            "    not a bound: each round re-sends the prompt and every accepted step, so steps that end before max_step_tokens",
            "    (most do) take more rounds, sending and scoring more prompt tokens; teachers whose steps lose can generate past",
            "    the budget; an answer with nothing to grade is asked for again. The records of a trial run (--limit) measure it.",
        ]
    file = Path(config.output_dir) / RECORDS
    records = list(RecordStream(file)) if file.exists() else None
    lines += expected(config, n, records)
    lines += time_left(config, problems, records or [])
    if not any(m.price for m in models.values()):
        lines.append("  (no model has a price: set e.g. teachers.0.price={input: 0.15, output: 0.6} for USD)")
    return "\n".join(lines)


def expected(config: Config, n: int, records: list[Record] | None) -> list[str]:
    """The mean per problem of the finished records already in output_dir (None: no records file), times `n`."""
    if records is None:
        return [f"  expected: no records in {config.output_dir} yet (run a few problems, e.g. --limit 5, then dry-run again)"]
    records = [r for r in records if not r.failed]
    if not records:
        return [f"  expected: no finished records in {config.output_dir} yet"]
    generated = sum(sum(r.tokens.teachers.values()) for r in records) / len(records)
    sent = sum(sum(r.tokens.prompts.values()) for r in records) / len(records)
    read = sum(r.tokens.meta_prover_read for r in records) / len(records)
    out = [
        f"  expected from the {len(records)} finished problems in {config.output_dir}, per problem: {sent:,.0f} prompt + "
        f"{generated:,.0f} generated tokens, {read:,.0f} read by the meta-prover"
    ]
    costs = [record_cost(config, r.tokens) for r in records]
    if costs[0] is not None:
        mean = sum(costs) / len(costs)
        out.append(
            f"    cost: ${mean:,.4f} per problem, ${mean * n:,.2f} for {n} problems (at the prices configured now){unpriced(config)}"
        )
    return out


def time_left(config: Config, problems: list[Problem], records: list[Record]) -> list[str]:
    """How long the problems without a record take at the pace of the finished ones. A record's
    `seconds` is its problem's wall time, start to record, with others in flight beside it, so the
    pace is the mean wall time divided by the problems that ran at once."""
    done = [r for r in records if not r.failed and r.seconds > 0]
    if not done:
        return [f"  time: no finished records in {config.output_dir} yet; run a few with --limit to measure"]
    recorded = {r.id for r in records}
    left = sum(p.id not in recorded for p in problems)
    if not left:
        return [f"  time: none left to run: every problem planned has a record in {config.output_dir}"]
    wall = sum(r.seconds for r in done) / len(done)
    at_once = min(config.search.problems_in_flight, len(done))
    return [
        f"  time: about {duration(wall * left / at_once)} for the {left} problems left: {wall:,.1f} s of wall time a problem "
        f"over the {len(done)} finished, divided by {at_once} at a time",
        f"    (assumes the finished ran min(search.problems_in_flight, their count) = {at_once} at a time, and the rest run at "
        "that pace on the same machines)",
    ]
