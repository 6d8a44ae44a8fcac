"""A `Config` from YAML and dotted command-line overrides (`search.beam_size=2`), checked, with
one-line errors that name the file or the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .base import Section, from_dict, to_dict
from .run import Config


def checked(config: Config) -> Config:
    """The config built again from its data: checks made across sections see any assignment made
    since it was built (e.g. a teacher renamed into a duplicate)."""
    return from_dict(Config, to_dict(config))


def _parse_scalar(text: str) -> Any:
    """Command-line values are YAML scalars: 2 -> int, 0.5 -> float, null -> None."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(data: dict, dotted: str) -> None:
    """Apply `a.b.0.c=value` to a nested dict/list in place (missing sections are made)."""
    if "=" not in dotted:
        raise ConfigError(f"override {dotted!r}: expected key=value")
    key, raw = dotted.split("=", 1)
    parts = key.strip().split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override {key}: no list item {where}")
            if last:
                node[int(part)] = _parse_scalar(raw)
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = _parse_scalar(raw)
            else:
                if part not in node or node[part] is None:
                    node[part] = {}
                node = node[part]
        else:
            raise ConfigError(f"override {key}: {where} is not a section")


def read_yaml(path: str | Path) -> dict:
    """A YAML file's top-level mapping; one-line errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load(cls: type[Section], path: str | Path | None = None, overrides: list[str] = ()) -> Any:
    """`cls` from a YAML file (optional) and dotted `key=value` overrides, checked."""
    data = read_yaml(path) if path is not None else {}
    for item in overrides:
        apply_override(data, item)
    return from_dict(cls, data)


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """A run's `Config` from a recipe (optional) and dotted overrides, checked and with every
    default filled; a `ConfigError` names the file or key. E.g.
    `load_config("recipes/tiny-hetero.yaml", ["search.beam_size=2"])`."""
    return load(Config, path, overrides)
