"""What a run will spend, before it runs (`cord generate --dry-run`): tokens per model and, where the
models have a `price`, USD.

- At the budgets, a scenario (each strategy's `budget_tokens`): every trajectory runs to
  search.reasoning_budget in steps that each run to the writer's max_step_tokens, with no cache
  discount. Real trajectories often end sooner, so they generate less; real steps are shorter,
  so they resend the prompt more often: the prompt figures are the scenario's, not a bound.
- Expected, from the records already in output_dir (a trial run of a few problems, or the run being
  resumed): their mean per problem, at today's prices, times the problems planned.
"""

from __future__ import annotations

from pathlib import Path

from .config import Config, ModelConfig
from .data import Problem
from .engines import resolve_model
from .engines.chat import ChatTokenizer
from .prompts import user_turn
from .records import RECORDS, RecordStream
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


def _priced(model: ModelConfig | None, prompt: int, generated: int) -> str:
    if model is None or model.price is None:
        return ""
    return f", ${model.price.cost(prompt, 0, generated):,.4f}"


def estimate(config: Config, problems: list[Problem]) -> str:
    """The dry run's estimate for `problems` (those the run would plan)."""
    n, s = len(problems), config.search
    lines = [f"estimate for {n} problems ({s.method}, B = {s.beam_size}, K = {len(config.teachers)}):"]
    scenario = STRATEGIES.load(s.method).budget_tokens(config, prompt_tokens(config, problems))
    models = {t.name: t for t in config.teachers} | {"meta_prover": config.meta_prover}
    if config.integrator is not None:
        models[f"integrator:{config.integrator.name}"] = config.integrator
    if scenario is None:
        lines.append(f"  at the budgets: no scenario for method {s.method!r}")
    else:
        lines.append(
            f"  at the budgets (every trajectory to reasoning_budget {s.reasoning_budget:,} in steps of max_step_tokens, "
            "no cache discount), per problem:"
        )
        total = 0.0
        for name, (sent, generated) in scenario.items():
            what = f"{sent:,} read" if name == "meta_prover" else f"{sent:,} prompt + {generated:,} generated tokens"
            lines.append(f"    {name}: {what}{_priced(models.get(name), sent, generated)}")
            model = models.get(name)
            total += model.price.cost(sent, 0, generated) if model is not None and model.price is not None else 0.0
        if any(m.price for m in models.values()):
            lines.append(f"    cost: ${total:,.4f} per problem, ${total * n:,.2f} for {n} problems")
    lines += expected(config, n)
    if not any(m.price for m in models.values()):
        lines.append("  (no model has a price: set e.g. teachers.0.price={input: 0.15, output: 0.6} for USD)")
    return "\n".join(lines)


def expected(config: Config, n: int) -> list[str]:
    """The mean per problem of the records already in output_dir, times `n`."""
    file = Path(config.output_dir) / RECORDS
    if not file.exists():
        return [f"  expected: no records in {config.output_dir} yet (run a few problems, e.g. --limit 5, then dry-run again)"]
    records = [r for r in RecordStream(file) if not r.failed]
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
        out.append(f"    cost: ${mean:,.4f} per problem, ${mean * n:,.2f} for {n} problems (at the prices configured now)")
    return out
