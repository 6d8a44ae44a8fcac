"""What `cord train` passes to TRL and peft beyond its own fields: any field of TRL's `SFTConfig`
(`weight_decay=0.1`, `neftune_noise_alpha=5`, ...) and a LoRA adapter (`lora: {r: 16}`, any field
of `peft.LoraConfig`).

Each key is checked against the dataclass it goes to (`dataclasses.fields`), with the near key
named for a typo, and its value against the field's type where the type says enough (bool, int,
float, str, a list, a mapping, a Literal). A `SFTConfig` field that cord sets from one of its own
is refused, naming cord's field, so one setting never has two spellings that disagree. TRL and
peft are imported only when such a key is used. `trainer_arguments` builds the SFTConfig itself:
cord's fields, then these.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import types
import typing
from typing import Any

from ..errors import ConfigError

# SFTConfig fields cord sets itself, and what sets them (`cord train` keeps its own names)
SET_BY_CORD = {
    "num_train_epochs": "epochs",
    "lr_scheduler_type": "lr_scheduler",
    "warmup_steps": "warmup_ratio",
    "per_device_train_batch_size": "per_device_batch_size",
    "gradient_accumulation_steps": "batch_size (over per_device_batch_size)",
    "data_seed": "seed",
    "bf16": "dtype",
    "use_cpu": "whether CUDA is present",
    "completion_only_loss": "the task (loss on the completion for sft, on the verdicts for prm)",
}
# the LoRA settings cord chooses when `lora` leaves them out (peft's own defaults otherwise)
LORA_DEFAULTS = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}
LORA_SET_BY_CORD = {"task_type": "CAUSAL_LM: cord trains causal LMs"}


def init_fields(config_class) -> dict[str, Any]:
    """A config dataclass's settable field names and their types."""
    hints = typing.get_type_hints(config_class)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(config_class) if f.init and not f.name.startswith("_")}


@functools.cache
def sft_fields() -> dict[str, Any]:
    """SFTConfig's field names and their types."""
    try:
        from trl import SFTConfig
    except ImportError:
        raise ConfigError("cord train needs TRL for SFTConfig fields: pip install 'cord-distill[train]'") from None
    return init_fields(SFTConfig)


@functools.cache
def lora_fields() -> dict[str, Any]:
    """peft.LoraConfig's field names and their types."""
    try:
        from peft import LoraConfig
    except ImportError:
        raise ConfigError("lora: needs peft: pip install 'cord-distill[train]'") from None
    return init_fields(LoraConfig)


def fits(hint: Any, value: Any) -> bool:
    """Whether `value` (as YAML or a command line gives it) can be the field type `hint`; True for
    types this cannot judge (an enum unioned with str, a config object)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(fits(arg, value) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, set) or hint in (list, tuple, set):
        return isinstance(value, list)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return value in {member.value for member in hint}
    return value is not None  # a class this cannot build from YAML: left to its library


def as_number(value: Any) -> Any:
    """YAML 1.1 reads `1e-5` (no dot) as text: a number where a number is meant."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def coerced(hint: Any, value: Any) -> Any:
    """`value` as the field takes it: text that spells a number, for a field that takes a number but no text."""
    return as_number(value) if isinstance(value, str) and not fits(hint, value) and fits(hint, 0.5) else value


def type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def near(key: str, names) -> str:
    match = difflib.get_close_matches(key, list(names), n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def sft_problem(key: str, value: Any, own_fields) -> str | None:
    """Why `key: value` cannot go to SFTConfig (None when it can); `own_fields` are cord's."""
    fields = sft_fields()
    value = coerced(fields.get(key), value)
    if key in own_fields:
        return f"cord's own field: set {key} (not under sft)"
    if key in SET_BY_CORD:
        return f"cord train sets it from {SET_BY_CORD[key]}"
    if key not in fields:
        return f"not a field of trl.SFTConfig{near(key, [*fields, *own_fields])}"
    if not fits(fields[key], value):
        return f"expected {type_name(fields[key])} (trl.SFTConfig), got {value!r}"
    return None


def lora_problem(key: str, value: Any) -> str | None:
    """Why `key: value` cannot go to peft.LoraConfig (None when it can)."""
    fields = lora_fields()
    value = coerced(fields.get(key), value)
    if key in LORA_SET_BY_CORD:
        return f"cord train sets it ({LORA_SET_BY_CORD[key]})"
    if key not in fields:
        return f"not a field of peft.LoraConfig{near(key, fields)}"
    if not fits(fields[key], value):
        return f"expected {type_name(fields[key])} (peft.LoraConfig), got {value!r}"
    return None


def lift_sft_keys(data: dict, own_fields) -> dict:
    """A config's data with its top-level SFTConfig keys (`weight_decay: 0.1`) moved under `sft`,
    each checked where it was written; a key that is neither cord's nor TRL's is refused, naming
    the near key of either."""
    foreign = [key for key in data if key not in own_fields]
    if not foreign:
        return data
    if not isinstance(data.get("sft") or {}, dict):
        raise ConfigError(f"sft: expected a mapping of trl.SFTConfig fields, got {data['sft']!r}")
    data, sft = dict(data), dict(data.get("sft") or {})
    for key in foreign:
        problem = sft_problem(key, data[key], own_fields)
        if problem is not None and problem.startswith("not a field"):
            hint = near(key, [*own_fields, *sft_fields()])
            raise ConfigError(f"unknown config key: {key}, neither cord train's nor trl.SFTConfig's{hint}")
        if problem is not None:
            raise ConfigError(f"{key}: {problem}")
        sft[key] = coerced(sft_fields()[key], data.pop(key))
    data["sft"] = sft
    return data


def lora_settings(lora: dict) -> dict:
    """The LoraConfig arguments: cord's defaults, then the recipe's `lora` keys."""
    return {**LORA_DEFAULTS, **lora, "task_type": "CAUSAL_LM"}


def lora_config(lora: dict):
    """A peft.LoraConfig from the recipe's `lora` section; peft's own refusals as one line."""
    from peft import LoraConfig

    try:
        return LoraConfig(**lora_settings(lora))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"lora: {str(err).splitlines()[0]}") from None


def sft_config(cord_set: dict, sft: dict):
    """trl.SFTConfig from what cord sets and the recipe's other SFTConfig fields; a value TRL or
    transformers refuses (e.g. an unknown optimizer) as one line naming the fields given."""
    from trl import SFTConfig

    try:
        return SFTConfig(**{**cord_set, **sft})
    except (TypeError, ValueError) as err:
        named = f" ({', '.join(sorted(sft))})" if sft else ""
        raise ConfigError(f"sft{named}: trl.SFTConfig refused it: {str(err).splitlines()[0]}") from None


def resolve_dtype(cfg, cuda: bool):
    """The torch dtype the model loads and trains in (`dtype`; auto: bfloat16 on CUDA, else float32)."""
    import torch

    dtype = {"auto": torch.bfloat16 if cuda else torch.float32, "bfloat16": torch.bfloat16, "float32": torch.float32}.get(cfg.dtype)
    if dtype is None:
        raise ConfigError(f"dtype: {cfg.dtype!r} is not one of auto, bfloat16, float32")
    return dtype


def trainer_arguments(cfg, cuda: bool):
    """trl.SFTConfig: what cord sets from its own fields, then the recipe's other SFTConfig fields."""
    import torch

    dtype = resolve_dtype(cfg, cuda)
    cord_set = dict(
        output_dir=cfg.output_dir,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a share of the steps
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.batch_size // cfg.per_device_batch_size,
        max_length=cfg.max_length,
        completion_only_loss=True,  # sft: the completion; prm rows carry their own labels, which TRL keeps
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=dtype == torch.bfloat16,
        gradient_checkpointing=cfg.gradient_checkpointing and cuda,
        logging_steps=cfg.logging_steps,
        save_strategy=cfg.save_strategy,
        report_to=cfg.report_to,
        use_cpu=not cuda,
        disable_tqdm=True,
    )
    return sft_config(cord_set, cfg.sft)


def extras_lines(cfg) -> list[str]:
    """The dry run's lines on what goes to TRL and peft beyond cord's own fields (built, so a
    value they refuse is refused here)."""
    import torch

    trainer_arguments(cfg, torch.cuda.is_available())
    given = ", ".join(f"{k}={v!r}" for k, v in cfg.sft.items()) or "none"
    lines = [f"trl.SFTConfig fields beyond cord's: {given}"]
    if cfg.lora is None:
        return [*lines, "LoRA: none (every weight is trained)"]
    lora_config(cfg.lora)
    settings = ", ".join(f"{k}={v!r}" for k, v in lora_settings(cfg.lora).items())
    written = "the merged model" if cfg.merge_lora else "the adapter alone (merge_lora: true writes the merged model)"
    return [*lines, f"LoRA (peft.LoraConfig): {settings}; writes {written}"]
