"""The registries: every search strategy, selection rule, engine and model source, by name,
imported lazily.

Config validation and the command line's choices are read from here, so adding a strategy, a
selection rule, an engine or a plug-in's models is one file plus one line below. Entries are
"module:attribute" strings, so naming them costs no import (vLLM, torch) until one is used, and
the core never imports a plug-in (`cord.tiny`): it reaches it through its entries here.
"""

from __future__ import annotations

import importlib
from typing import Any


class Registry:
    def __init__(self, field: str, entries: dict[str, str]):
        self.field, self._entries = field, dict(entries)

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

# generated problem sets: data.<name> and the "<name>:N[:SEED]" evaluation sets (n, seed) -> rows
PROBLEM_GENERATORS = Registry("data", {"tiny": "cord.tiny.tasks:generate_problems"})
