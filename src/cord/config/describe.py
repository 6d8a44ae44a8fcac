"""Every configuration key with its type, default and help text, read from the sections themselves:
`cord generate --help-config [PREFIX]` prints them, and docs/config.md is written from the same
source (`python -m cord.config.describe --markdown > docs/config.md`)."""

from __future__ import annotations

import argparse
import json
import textwrap
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import AfterValidator, BaseModel, BeforeValidator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ..errors import ConfigError
from .base import RegisteredName, Section, _share
from .model import ModelConfig
from .run import Config, GeneratedBy


@dataclass
class Key:
    key: str
    type: str
    default: str
    description: str


def _parts(annotation: Any, metadata: list) -> tuple[Any, list, bool]:
    """(the bare type, its metadata, whether null is allowed) of a field's annotation."""
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        annotation = args[0] if len(args) == 1 else typing.Union[tuple(args)]  # noqa: UP007 (built from a tuple)
    if typing.get_origin(annotation) is Annotated:
        inner = [m for item in annotation.__metadata__ for m in (item.metadata if isinstance(item, FieldInfo) else [item])]
        metadata = [*metadata, *inner]
        annotation = typing.get_args(annotation)[0]
    return annotation, metadata, optional


def _validator(metadata: list, kind: type) -> Any:
    return next((m.func for m in metadata if isinstance(m, (AfterValidator, BeforeValidator)) and isinstance(m.func, kind)), None)


def _type_name(annotation: Any, metadata: list) -> str:
    registered = _validator(metadata, RegisteredName)
    if registered is not None:
        return " | ".join(registered.registry.names())
    if typing.get_origin(annotation) is Literal:
        return " | ".join(map(str, typing.get_args(annotation)))
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(*_parts(a, [])[:2]) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) is list:
        return f"list of {_type_name(*_parts(typing.get_args(annotation)[0], [])[:2])}"
    if typing.get_origin(annotation) is dict or annotation is dict:
        return "mapping"
    name = {str: "text", int: "integer", float: "number", bool: "true/false"}.get(
        annotation, getattr(annotation, "__name__", str(annotation))
    )
    if any(isinstance(m, annotated_types.Ge) and m.ge == 1 for m in metadata):
        return f"{name} >= 1"
    if any(isinstance(m, annotated_types.Ge) and m.ge == 0 for m in metadata):
        return f"{name} >= 0"
    if any(isinstance(m, AfterValidator) and m.func is _share for m in metadata):
        return f"{name} in (0, 1]"
    return name


def _section_of(annotation: Any, metadata: list) -> type[Section] | None:
    """The section a field holds (a list item's for a list of sections, a plug-in's own for data.tiny)."""
    generated = _validator(metadata, GeneratedBy)
    if generated is not None:
        return generated.section()
    if typing.get_origin(annotation) is list:
        annotation = typing.get_args(annotation)[0]
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


MODEL = "<model>."  # the keys of every model section, described once under this prefix


def describe(cls: type[Section] = Config, prefix: str = "") -> list[Key]:
    """Every key of `cls`, its sections' keys after it (a list of sections as `name.N.key`); a model
    section (teachers, meta-prover, ...) is described once, at the end, as `<model>.key`."""
    out = _describe(cls, prefix)
    if any(k.type.endswith(("model section", "model sections", "model section or null")) for k in out):
        out += _describe(ModelConfig, MODEL)
    return out


def _describe(cls: type[Section], prefix: str) -> list[Key]:
    out = []
    for name, field in cls.model_fields.items():
        annotation, metadata, optional = _parts(field.annotation, list(field.metadata))
        section = _section_of(annotation, metadata)
        key = f"{prefix}{name}"
        if section is not None:
            is_list = typing.get_origin(annotation) is list
            what = "model section" if section is ModelConfig and prefix != MODEL else "section"
            kind = f"list of {what}s ({key}.N.*)" if is_list else what + (" or null" if optional else "")
            out.append(Key(key, kind, "", field.description or ""))
            if what == "section":
                out += _describe(section, f"{key}.N." if is_list else f"{key}.")
            continue
        if field.default is PydanticUndefined and field.default_factory is None:
            default = "required"
        else:
            value = field.get_default(call_default_factory=True)
            default = "null" if value is None else json.dumps(value, ensure_ascii=False)
        kind = _type_name(annotation, metadata) + (" or null" if optional else "")
        out.append(Key(key, kind, default, field.description or ""))
    return out


def section_at(path: str) -> tuple[type[Section], str] | None:
    """The section a dotted path names (`search`, `data.tiny`, `teachers.0`, `teachers.N`) and the
    path its keys are named under (`teachers` names a list's item: `teachers.N`), or None."""
    section, parts, named = Config, path.split(".") if path else [], []
    while parts:
        name = parts.pop(0)
        field = section.model_fields.get(name)
        if field is None:
            return None
        annotation, metadata, _ = _parts(field.annotation, list(field.metadata))
        section = _section_of(annotation, metadata)
        if section is None:
            return None
        named.append(name)
        if typing.get_origin(annotation) is list:
            index = parts.pop(0) if parts else "N"
            if not (index.isdigit() or index == "N"):
                return None
            named.append(index)
    return section, ".".join(named)


def keys_under(prefix: str) -> list[Key]:
    """The keys that start with `prefix`, named as it names them (`teachers.0.` gives the model
    section's keys as `teachers.0.temperature`, ...); a list of model sections brings `<model>.`'s keys."""
    if prefix.rpartition(".")[2].isdigit():  # `teachers.0` is that list item, as `teachers.0.` is
        prefix += "."
    found = section_at(prefix.rpartition(".")[0])
    keys = describe() if found is None else describe(found[0], f"{found[1]}." if found[1] else "")
    keys = [k for k in keys if k.key.startswith(prefix)]
    if prefix and any("model section" in k.type for k in keys):
        keys += [k for k in describe() if k.key.startswith(MODEL)]
    return keys


def as_text(keys: list[Key]) -> str:
    lines = []
    for k in keys:
        default = f" = {k.default}" if k.default else ""
        lines += [
            f"{k.key}: {k.type}{default}",
            *textwrap.wrap(k.description, 100, initial_indent="    ", subsequent_indent="    ", break_on_hyphens=False),
        ]
    return "\n".join(lines) + "\n"


def as_markdown(keys: list[Key]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        "# Configuration keys",
        "",
        "Every key of a recipe, with its type, default and help text; written by",
        "`python -m cord.config.describe --markdown > docs/config.md` from the sections in `src/cord/config/`",
        "(`cord generate --help-config [PREFIX]` prints the same). Override any key on the command line",
        "with its dotted path: `search.beam_size=2`, `teachers.0.temperature=0.5`. Every model (`teachers.N`,",
        "`meta_prover`, `integrator`, `prm`, `grading.judge`) has the keys listed once under `<model>.`.",
        "",
        "| key | type | default | what it does |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{k.key}` | {cell(k.type)} | {cell(f'`{k.default}`' if k.default else '')} | {cell(k.description)} |" for k in keys]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cord.config.describe", description="Print every configuration key.")
    parser.add_argument("prefix", nargs="?", default="", help="only keys that start with this, e.g. search.")
    parser.add_argument("--markdown", action="store_true", help="as the table of docs/config.md")
    args = parser.parse_args(argv)
    keys = keys_under(args.prefix)
    if not keys:
        raise ConfigError(f"--help-config: no configuration key starts with {args.prefix!r} (e.g. search., teachers.0., data.)")
    print(as_markdown(keys) if args.markdown else as_text(keys), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
