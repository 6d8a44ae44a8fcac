"""LLaMA-Factory's `dataset_info.json` beside an exported file: the entry its `--dataset` names.

LLaMA-Factory formats and DPO pairs get an entry (preference pairs with `ranking: true`); the other
entries of the folder's dataset_info.json are kept. The file is read and checked before anything is
written, so a refused export leaves it as it was.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ...records import atomic_write
from .formats import ExportFormat

LLAMA_FACTORY_INFO = "dataset_info.json"


def llama_factory_key(out: Path) -> str:
    """The dataset's name in dataset_info.json (what `--dataset` names in LLaMA-Factory): the file
    name without its suffix."""
    return out.name.removesuffix(out.suffix)


def llama_factory_entry(fmt: ExportFormat, out: Path, system: bool) -> dict[str, Any]:
    """The entry LLaMA-Factory reads the file with; `system`: the rows carry a system turn."""
    entry = fmt.llama_factory_entry(out.name)
    if system:
        entry["columns"]["system"] = "system"
    return entry


def read_llama_factory_info(out: Path) -> dict:
    """The folder's dataset_info.json ({} when there is none). An entry of the same name for another
    file is refused: this export would replace it."""
    info_path = out.parent / LLAMA_FACTORY_INFO
    info: dict = {}
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{info_path}: not valid JSON ({err.msg}); fix or remove it") from None
    key = llama_factory_key(out)
    other = (info.get(key) or {}).get("file_name")
    if other not in (None, out.name):
        raise ConfigError(f"{info_path}: the dataset {key!r} already names {other}; export to another name (--out) or remove that entry")
    return info


def write_llama_factory_info(fmt: ExportFormat, out: Path, system: bool, info: dict) -> Path:
    """Add (or replace) this dataset's entry in `info`, the folder's dataset_info.json as read
    before the export, and write it."""
    info = {**info, llama_factory_key(out): llama_factory_entry(fmt, out, system)}
    info_path = out.parent / LLAMA_FACTORY_INFO
    atomic_write(info_path, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return info_path
