"""What every configuration section shares: strict pydantic models that check themselves whenever
they are built or assigned, the field types cord's sections are made of, and one-line errors that
name the field.

A section built or changed in Python fails with the same one-line `ConfigError` as a YAML file
does: while a section is validated, the sections inside it report to it (a ContextVar marks the
outermost one), and only the outermost turns pydantic's error into cord's line.
"""

from __future__ import annotations

import contextlib
import difflib
import re
import typing
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ..errors import ConfigError
from ..registry import Registry


class Located(ValueError):
    """A check made on a whole section that is about one field of it (named relative to the section)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class UnknownKeys(ValueError):
    """Keys a nested plug-in section does not have (named relative to it)."""

    def __init__(self, keys: list[str]):
        super().__init__(f"unknown key(s): {', '.join(keys)}")
        self.keys = keys


def _numbers_as_text(value: Any) -> Any:
    """YAML reads `name: 7` or a command line's `name=7` as a number; a text field takes it as text."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _share(value: float) -> float:
    if not 0 < value <= 1:
        raise ValueError(f"must be in (0, 1], got {value}")
    return value


Text = Annotated[str, BeforeValidator(_numbers_as_text)]
Count = Annotated[int, Field(ge=1)]  # a whole number >= 1
Share = Annotated[float, AfterValidator(_share)]  # in (0, 1]


@dataclass(frozen=True)
class RegisteredName:
    """A name that must be registered in `registry`: its choices are read when a config is checked,
    so a plug-in's entries count as the built-in ones do (and `cord generate --help-config` lists them)."""

    registry: Registry

    def __call__(self, value: str) -> str:
        problem = self.registry.problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


def registered(registry: Registry) -> Any:
    """A text field whose value is a name in `registry`."""
    return Annotated[str, BeforeValidator(_numbers_as_text), AfterValidator(RegisteredName(registry))]


class Section(BaseModel):
    """Strict types (an integer is not "3"), unknown keys refused, checked again on assignment; every
    field carries its help text (`Field(description=...)`), which `cord generate --help-config` prints."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)

    def __init__(self, **data: Any):
        if _validating.get():  # a section inside one being validated: its errors join the outer's
            super().__init__(**data)
            return
        with _validation(section=type(self)):
            super().__init__(**data)

    def __setattr__(self, name: str, value: Any) -> None:
        if _validating.get():
            super().__setattr__(name, value)
            return
        with _validation(section=type(self)):
            super().__setattr__(name, value)


def _message(error: dict) -> tuple[str, str]:
    """(dotted field, what is wrong) of one pydantic error, in cord's words."""
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    where = ".".join(str(part) for part in error["loc"])
    cause = ctx.get("error")
    choices = ", ".join(re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))  # a Literal's, as pydantic lists them
    if isinstance(cause, Located):
        return ".".join(p for p in (where, cause.field) if p), str(cause)
    if value is None and kind.endswith("_type"):
        return where, "must not be empty"
    texts = {
        "int_type": f"expected an integer, got {value!r}",
        "bool_type": f"expected true/false, got {value!r}",
        "float_type": f"expected a number, got {value!r}",
        "string_type": f"expected a string, got {value!r}",
        "list_type": f"expected a list, got {type(value).__name__}",
        "dict_type": f"expected a mapping, got {type(value).__name__}",
        "model_type": f"expected a mapping, got {type(value).__name__}",
        "missing": "required",
        "greater_than_equal": f"must be >= {ctx.get('ge', 0):g}, got {value!r}",
        "greater_than": f"must be > {ctx.get('gt', 0):g}, got {value!r}",
        "less_than_equal": f"must be <= {ctx.get('le', 0):g}, got {value!r}",
        "literal_error": f"{value!r} is not one of {choices}",
    }
    return where, texts.get(kind, str(cause) if cause is not None else error["msg"])


def _section_at(section: type[BaseModel] | None, path: list) -> type[BaseModel] | None:
    """The section class found at `path` (field names and list indexes) inside `section`, if any."""
    for part in path:
        if section is None:
            return None
        if isinstance(part, int):
            continue  # a list's element: its type was taken with the list's field
        field = section.model_fields.get(part)
        if field is None:
            return None
        annotation, section = field.annotation, None
        for _ in range(4):  # Optional[list[Section]] and the like
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                section = annotation
                break
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                break
            annotation = args[0]
    return section


def _did_you_mean(section: type[BaseModel] | None, loc: tuple) -> str:
    """`loc`'s last key against the keys its section has: a typo gets the near key named."""
    found = _section_at(section, list(loc[:-1]))
    if found is None or not isinstance(loc[-1], str):
        return ""
    near = difflib.get_close_matches(loc[-1], list(found.model_fields), n=1, cutoff=0.75)
    return f" (did you mean {'.'.join([*map(str, loc[:-1]), near[0]])}?)" if near else ""


def error_line(err: ValidationError, where: str = "", section: type[BaseModel] | None = None) -> str:
    """The first problem of a validation error as one line naming the field; unknown keys all at
    once, each with the near key `section` has when there is one."""
    errors = err.errors()
    prefix = f"{where}." if where else ""
    unknown = [
        prefix + ".".join(str(p) for p in e["loc"]) + _did_you_mean(section, e["loc"]) for e in errors if e["type"] == "extra_forbidden"
    ]
    for e in errors:  # a plug-in's section validated inside this one
        cause = (e.get("ctx") or {}).get("error")
        if isinstance(cause, UnknownKeys):
            unknown += [prefix + ".".join([*map(str, e["loc"]), key]) for key in cause.keys]
    if unknown:
        return f"unknown config key(s): {', '.join(unknown)}"
    field, text = _message(errors[0])
    field = prefix + field if field else where
    return f"{field}: {text}" if field else text


_validating: ContextVar[bool] = ContextVar("cord_config_validating", default=False)


@contextlib.contextmanager
def _validation(where: str = "", section: type[BaseModel] | None = None) -> Iterator[None]:
    """While a section is validated, the sections inside it report to it; a failure leaves as one
    ConfigError line."""
    token = _validating.set(True)
    try:
        yield
    except ValidationError as err:
        raise ConfigError(error_line(err, where, section)) from None
    finally:
        _validating.reset(token)


def nested(cls: type[Section], data: Any) -> Section:
    """`cls` built from `data` inside another section's validation (a plug-in's section, whose class
    the outer one does not name): its first problem is raised as the outer field's, located."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ValueError(f"expected a mapping, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        unknown = [".".join(map(str, e["loc"])) for e in err.errors() if e["type"] == "extra_forbidden"]
        if unknown:
            raise UnknownKeys(unknown) from None
        raise Located(*_message(err.errors()[0])) from None


def from_dict(cls: type[Section], data: Any, where: str = "") -> Any:
    """`cls` built from plain data (YAML, JSON, a dump), checked; a ConfigError names the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    with _validation(where, cls):
        return cls.model_validate(data)


def to_dict(model: BaseModel) -> dict:
    return model.model_dump()
