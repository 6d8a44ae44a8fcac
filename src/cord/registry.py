"""The registries: every search strategy, selection rule and engine, by name, imported lazily.

Config validation and the command line's choices are read from here, so adding a strategy, a
selection rule or an engine is one file plus one line below. Entries are "module:attribute"
strings, so naming them costs no import (vLLM, torch) until one is used.
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

# search.selection -> how candidate prefixes are ranked (src/cord/selection.py)
SELECTIONS = Registry(
    "search.selection",
    {
        "perplexity": "cord.selection:Perplexity",
        "random": "cord.selection:RandomChoice",
        "max_length": "cord.selection:MaxLength",
        "binary_judgment": "cord.selection:BinaryJudgment",
        "step_judge": "cord.selection:StepJudge",
        "prm": "cord.selection:ProcessReward",
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
