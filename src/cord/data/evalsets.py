"""Named evaluation sets (aime24, aime25, math500, gsm8k), for decontamination and student evaluation.

A name loads from a local folder first, then from the Hugging Face hub:

- `$CORD_EVAL_DATA/<file>` when that environment variable names a folder holding the set's file
  (e.g. `aime24.jsonl`; every row has `id`, `problem`, `answer`), which is how the tests and
  offline clusters use them;
- else the hub dataset listed below, through `datasets.load_dataset`.

`tiny:N[:SEED]` is N generated problems of a problem generator (`cord.registry.PROBLEM_GENERATORS`:
the tiny arithmetic problems, seed 1000 unless given, held out from the seeds the demo and recipes
use). Anything else given where a set is expected is read as a problem
file (JSONL, JSON or parquet with `problem` / `answer`, as `data.path`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..config import DataConfig
from ..errors import ConfigError
from ..registry import PROBLEM_GENERATORS
from .problems import Problem, load_problems, problems_from_rows

LOCAL_FOLDER_ENV = "CORD_EVAL_DATA"


@dataclass(frozen=True)
class EvalSet:
    file: str  # file name in $CORD_EVAL_DATA
    dataset: str  # hub dataset
    split: str
    subset: str | None = None
    question_field: str = "problem"
    answer_field: str = "answer"
    id_field: str = "id"
    answer_format: str = "raw"  # data.answer_format of the hub dataset (gsm8k: a worked solution ending "#### 18")


EVAL_SETS: dict[str, EvalSet] = {
    "aime24": EvalSet("aime24.jsonl", "HuggingFaceH4/aime_2024", "train"),
    "aime25": EvalSet("aime25.jsonl", "math-ai/aime25", "test"),
    "math500": EvalSet("math500.jsonl", "HuggingFaceH4/MATH-500", "test", id_field="unique_id"),
    "gsm8k": EvalSet("gsm8k_test.jsonl", "openai/gsm8k", "test", subset="main", question_field="question", answer_format="gsm8k"),
}


def load_eval_set(name_or_path: str, limit: int | None = None, fields: dict | None = None) -> list[Problem]:
    """Problems of a named set (local folder first, then the hub), of generated tiny problems, of a
    problem file or datasets folder, or of a hub dataset. `fields`: `DataConfig`'s mapping keys
    (`question_field`, `answer_field`, `id_field`, `subset`, `split`) for a file or dataset."""
    if name_or_path.split(":", 1)[0] in PROBLEM_GENERATORS and ":" in name_or_path:
        return generated_set(name_or_path, limit)
    spec = EVAL_SETS.get(name_or_path)
    if spec is None:
        fields = fields or {}
        if Path(name_or_path).is_file():
            return load_problems(DataConfig(path=name_or_path, limit=limit, **fields))
        if Path(name_or_path).is_dir() or re.fullmatch(r"[\w.-]+/[\w.-]+", name_or_path):  # a datasets folder or hub id
            return load_problems(DataConfig(dataset=name_or_path, limit=limit, **fields))
        known = ", ".join(EVAL_SETS)
        raise ConfigError(f"{name_or_path}: neither a known evaluation set ({known}), a file, a datasets folder nor a hub dataset")
    folder = os.environ.get(LOCAL_FOLDER_ENV)
    if folder and (Path(folder) / spec.file).is_file():
        return load_problems(DataConfig(path=str(Path(folder) / spec.file), limit=limit))
    import datasets

    datasets.disable_progress_bars()
    try:
        rows = datasets.load_dataset(spec.dataset, spec.subset, split=spec.split)
    except Exception as err:
        raise ConfigError(
            f"{name_or_path}: could not load {spec.dataset} ({type(err).__name__}); offline, set {LOCAL_FOLDER_ENV} to a folder "
            f"holding {spec.file}"
        ) from None
    fields = ("id_field", "question_field", "answer_field", "answer_format")
    cfg = DataConfig(limit=limit, **{key: getattr(spec, key) for key in fields})
    return problems_from_rows(((f"{spec.dataset} row {i}", dict(row)) for i, row in enumerate(rows)), cfg)


TINY_HELD_OUT_SEED = 1000


def generated_set(spec: str, limit: int | None = None) -> list[Problem]:
    """`tiny:N[:SEED]`: N problems of that generator."""
    source, *parts = spec.split(":")
    try:
        n = int(parts[0])
        seed = int(parts[1]) if len(parts) > 1 else TINY_HELD_OUT_SEED
    except (ValueError, IndexError):
        raise ConfigError(f"{spec}: expected {source}:N or {source}:N:SEED") from None
    if n < 1:
        raise ConfigError(f"{spec}: N must be >= 1")
    rows = [(f"{spec} problem {i}", row) for i, row in enumerate(PROBLEM_GENERATORS.load(source)(n=n, seed=seed).rows())]
    return problems_from_rows(rows, DataConfig(limit=limit))


def load_eval_sets(names: str) -> dict[str, list[Problem]]:
    """`"aime24,math500,path/to/set.jsonl"` -> {name: problems}."""
    sets = [n.strip() for n in names.split(",") if n.strip()]
    if not sets:
        raise ConfigError("--decontaminate: name at least one evaluation set or file")
    return {name: load_eval_set(name) for name in sets}


WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Lower-cased word tokens: what n-gram overlap is computed on (LaTeX markup and spacing ignored)."""
    return WORD.findall(text.lower())


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """The word n-grams of `text`; a text shorter than n words is its one whole-text gram."""
    tokens = words(text)
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


class Contamination:
    """Which evaluation set (if any) shares a word n-gram with a text."""

    def __init__(self, sets: dict[str, list[Problem]], n: int = 8):
        if n < 1:
            raise ConfigError(f"--ngram: must be >= 1, got {n}")
        self.n = n
        self.index: dict[tuple[str, ...], str] = {}
        for name, problems in sets.items():
            for problem in problems:
                for gram in ngrams(problem.question, n):
                    self.index.setdefault(gram, name)

    def match(self, text: str) -> str | None:
        return next((self.index[g] for g in ngrams(text, self.n) if g in self.index), None)
