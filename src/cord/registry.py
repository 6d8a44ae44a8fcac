"""The registries: every search strategy, selection rule, engine, model source, problem generator
and subcommand, by name, imported lazily.

Config validation and the command line's choices are read from here, so adding a strategy, a
selection rule, an engine or a plug-in's models is one file plus one line below; outside the
package, an entry point or a "package.module:Class" value in a recipe (docs/plugins.md). Entries are
"module:attribute" strings, so naming them costs no import (vLLM, torch) until one is used, and
the core never imports a plug-in (`cord.tiny`): it reaches it through its entries here.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import sys
from typing import Any

# A plug-in named by its place in the user's code: "package.module:Attribute".
PLUGIN_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


class Registry:
    """Names -> "module:attribute" entries (or ("module:attribute", help text)), loaded on first use.

    Plug-ins count as built-ins do (validation, `--help` choices, `--help-config`, `--dry-run`):
    - an installed package lists entries under the entry-point `group` (e.g. `cord.engines`), read
      once, on first use;
    - where `paths` is set, a value "package.module:Attribute" names an object in the user's own
      code (the working directory is importable, as it is for `python -m`), checked on first use.
    """

    def __init__(
        self, field: str, entries: dict[str, str | tuple[str, str]], group: str | None = None, paths: bool = False, base: str = ""
    ):
        self.field, self.group, self.paths = field, group, paths
        self.base = base  # "module:Class" every plug-in path must name a subclass of
        self._entries = {name: entry if isinstance(entry, str) else entry[0] for name, entry in entries.items()}
        self._help = {name: entry[1] for name, entry in entries.items() if not isinstance(entry, str)}
        self._discovered = group is None

    def _all(self) -> dict[str, str]:
        if not self._discovered:
            self._discovered = True
            for point in importlib.metadata.entry_points(group=self.group):
                self._entries.setdefault(point.name, point.value)
        return self._entries

    def names(self) -> tuple[str, ...]:
        return tuple(self._all())

    def is_path(self, name: object) -> bool:
        return self.paths and isinstance(name, str) and name not in self._all() and bool(PLUGIN_PATH.match(name))

    def __contains__(self, name: object) -> bool:
        return name in self._all() or (self.is_path(name) and self._import_error(name) is None)

    def problem(self, name: str) -> str | None:
        """What is wrong with `name` (not registered; as a path, not importable), or None."""
        if name in self._all():
            return None
        if self.is_path(name):
            return self._import_error(name)
        return f"{name!r} is not one of {', '.join(self._entries)}" + (" (or a plug-in's package.module:Class)" if self.paths else "")

    def unknown(self, name: str, where: str | None = None) -> str | None:
        """A one-line complaint naming the field if `name` is not registered, else None."""
        problem = self.problem(name)
        return None if problem is None else f"{where or self.field}: {problem}"

    def _import_error(self, path: str) -> str | None:
        try:
            found = self.load(path)
        except (ImportError, AttributeError) as err:
            return f"{path!r} could not be loaded ({type(err).__name__}: {err})"
        if self.base:
            module, name = self.base.split(":")
            base = getattr(importlib.import_module(module), name)
            if not (isinstance(found, type) and issubclass(found, base)):
                return f"{path!r} is not a subclass of {module}.{name}"
        return None

    def load(self, name: str) -> Any:
        entry = self._all().get(name) or (name if self.is_path(name) else None)
        if entry is None:
            raise KeyError(name)
        module, attribute = entry.split(":")
        if entry == name and os.getcwd() not in sys.path:
            sys.path.append(os.getcwd())  # the user's own module, beside the recipe they run
        return getattr(importlib.import_module(module), attribute)

    def help(self, name: str) -> str:
        return self._help.get(name, "")

    def get(self, name: str) -> Any | None:
        """The entry's object, or None when `name` is not registered."""
        return self.load(name) if name in self else None


# search.method -> the strategy class (src/cord/search/, one file each)
STRATEGIES = Registry(
    "search.method",
    {
        "cord": "cord.search.cord:CordSearch",
        "greedy": "cord.search.cord:GreedySearch",
        "curation": "cord.search.curation:CurationSearch",
        "integration": "cord.search.integration:IntegrationSearch",
        "mcts": "cord.search.mcts:MctsSearch",
        "mcts-cord": "cord.search.mcts_cord:MctsCordSearch",
    },
    group="cord.strategies",
    paths=True,
    base="cord.search.base:Strategy",
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
    group="cord.selections",
    paths=True,
    base="cord.scoring.selection:SelectionRule",
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
    group="cord.engines",
    paths=True,
    base="cord.engines.base:Engine",
)

# "<source>:<name>" model names -> a function from <name> to a local model folder (engines.resolve_model)
MODEL_SOURCES = Registry("model", {"tiny": "cord.tiny:model_path", "real": "cord.real:model_path"}, group="cord.model_sources")

# a problem field -> the checker of a reasoning's every step, for problems that carry that field
# (Record.valid_trace; checker(row, reasoning, predicted) -> bool)
TRACE_CHECKERS = Registry("trace", {"reference_steps": "cord.tiny.tasks:check_trace"})

# generated problem sets: data.<name> and the "<name>:N[:SEED]" evaluation sets -> the generator's own
# config section (a cord.config.Section whose `rows()` gives the problems)
PROBLEM_GENERATORS = Registry("data", {"tiny": "cord.tiny.tasks:TinyTasksConfig"}, group="cord.problem_generators")

# `cord <command> ...` besides `generate`: name -> (the "module:function" that runs it on its own
# arguments, its help line); the tiny plug-in's commands are reached from here like any other
COMMANDS = Registry(
    "command",
    {
        "evaluate": ("cord.results.compare:main", "compare run directories (accuracy with its 95%% interval, Figure 2)"),
        "report": ("cord.results.report:main", "one self-contained HTML page of run directories (table, Figure 2, every trajectory)"),
        "export": ("cord.results.export:main", "run directories -> a training set (TRL messages / prompt-completion / DPO, LLaMA-Factory)"),
        "merge": ("cord.shards:main", "merge run directories of one config (shards) into one"),
        "train": ("cord.student.train:main", "fine-tune a student (or a PRM on stepwise rows) on an export (TRL SFTTrainer)"),
        "eval-student": (
            "cord.student.evaluate:main",
            "Pass@1 averaged over n samples of a model on aime24 / aime25 / math500 / gsm8k / a file",
        ),
        "tasks": ("cord.tiny.tasks:main", "write generated tiny arithmetic problems"),
        "train-tiny": ("cord.tiny.train:main", "train the shipped tiny models"),
        "demo": ("cord.tiny.demo:main", "CoRD vs Curation vs single teachers on the tiny models"),
    },
    group="cord.commands",
)
