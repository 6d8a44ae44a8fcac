"""The registries: every search strategy, selection rule, engine, model source, problem generator
and subcommand, by name, imported lazily.

Config validation and the command line's choices are read from here, so adding a strategy, a
selection rule, an engine or a plug-in's models is one file plus one line below. Entries are
"module:attribute" strings, so naming them costs no import (vLLM, torch) until one is used, and
the core never imports a plug-in (`cord.tiny`): it reaches it through its entries here.
"""

from __future__ import annotations

import importlib
from typing import Any


class Registry:
    """Names -> "module:attribute" entries (or ("module:attribute", help text)), loaded on first use."""

    def __init__(self, field: str, entries: dict[str, str | tuple[str, str]]):
        self.field = field
        self._entries = {name: entry if isinstance(entry, str) else entry[0] for name, entry in entries.items()}
        self._help = {name: entry[1] for name, entry in entries.items() if not isinstance(entry, str)}

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def unknown(self, name: str, where: str | None = None) -> str | None:
        """A one-line complaint if `name` is not registered, else None."""
        if name in self._entries:
            return None
        return f"{where or self.field}: {name!r} is not one of {', '.join(self._entries)}"

    def load(self, name: str) -> Any:
        module, attribute = self._entries[name].split(":")
        return getattr(importlib.import_module(module), attribute)

    def help(self, name: str) -> str:
        return self._help.get(name, "")

    def get(self, name: str) -> Any | None:
        """The entry's object, or None when `name` is not registered."""
        return self.load(name) if name in self._entries else None


# search.method -> the strategy class (src/cord/search/, one file each)
STRATEGIES = Registry(
    "search.method",
    {
        "cord": "cord.search.cord:CordSearch",
        "greedy": "cord.search.cord:GreedySearch",
        "curation": "cord.search.curation:CurationSearch",
        "integration": "cord.search.integration:IntegrationSearch",
        "mcts": "cord.search.mcts:MctsSearch",
    },
)

# search.selection -> how candidate prefixes are ranked (src/cord/scoring/selection.py)
SELECTIONS = Registry(
    "search.selection",
    {
        "perplexity": "cord.scoring.selection:Perplexity",
        "random": "cord.scoring.selection:RandomChoice",
        "max_length": "cord.scoring.selection:MaxLength",
        "binary_judgment": "cord.scoring.selection:BinaryJudgment",
        "step_judge": "cord.scoring.selection:StepJudge",
        "prm": "cord.scoring.selection:ProcessReward",
    },
)

# <model>.engine -> the engine class (src/cord/engines/, one file each)
ENGINES = Registry(
    "engine",
    {
        "transformers": "cord.engines.transformers:TransformersEngine",
        "vllm": "cord.engines.vllm:VLLMEngine",
        "openai": "cord.engines.openai:OpenAIEngine",
        "sglang": "cord.engines.sglang:SGLangEngine",
        "openai-chat": "cord.engines.openai_chat:OpenAIChatEngine",
    },
)

# "<source>:<name>" model names -> a function from <name> to a local model folder (engines.resolve_model)
MODEL_SOURCES = Registry("model", {"tiny": "cord.tiny:model_path", "real": "cord.real:model_path"})

# a problem field -> the checker of a reasoning's every step, for problems that carry that field
# (Record.valid_trace; checker(row, reasoning, predicted) -> bool)
TRACE_CHECKERS = Registry("trace", {"reference_steps": "cord.tiny.tasks:check_trace"})

# generated problem sets: data.<name> and the "<name>:N[:SEED]" evaluation sets -> the generator's own
# config section (a cord.config.Section whose `rows()` gives the problems)
PROBLEM_GENERATORS = Registry("data", {"tiny": "cord.tiny.tasks:TinyTasksConfig"})

# `cord <command> ...` besides `generate`: name -> (the "module:function" that runs it on its own
# arguments, its help line); the tiny plug-in's commands are reached from here like any other
COMMANDS = Registry(
    "command",
    {
        "evaluate": ("cord.results.compare:main", "compare run directories (accuracy with its 95%% interval, Figure 2)"),
        "report": ("cord.results.report:main", "one self-contained HTML page of run directories (table, Figure 2, every trajectory)"),
        "export": ("cord.results.export:main", "run directories -> a training set (TRL messages / prompt-completion / DPO, LLaMA-Factory)"),
        "merge": ("cord.shards:main", "merge run directories of one config (shards) into one"),
        "train": ("cord.student.train:main", "fine-tune a student on an export (TRL SFTTrainer)"),
        "eval-student": (
            "cord.student.evaluate:main",
            "Pass@1 averaged over n samples of a model on aime24 / aime25 / math500 / gsm8k / a file",
        ),
        "tasks": ("cord.tiny.tasks:main", "write generated tiny arithmetic problems"),
        "train-tiny": ("cord.tiny.train:main", "train the shipped tiny models"),
        "demo": ("cord.tiny.demo:main", "CoRD vs Curation vs single teachers on the tiny models"),
    },
)
