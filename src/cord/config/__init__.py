"""Typed configuration: pydantic sections that check themselves and fill their defaults whenever
they are built (from YAML, from dotted command-line overrides, or in Python) and on every
assignment, with one-line errors that name the field. Every field carries its help text, which
`cord generate --help-config` prints and docs/config.md is made from.

base.py     the section base, field types, one-line errors
model.py    one model (teacher, meta-prover, integrator, PRM, judge) and its engine options
search.py   the search strategy and its settings, the teacher schedule
run.py      data, grading, and the whole run's `Config`
load.py     YAML files and dotted overrides
describe.py every key with its type, default and help text
"""

from ..errors import ConfigError
from .base import Count, Located, Section, Share, Text, error_line, from_dict, to_dict
from .load import apply_override, checked, load, load_config, read_yaml
from .model import ModelConfig, OpenAIChatOptions, TransformersOptions
from .run import Config, DataConfig, GradingConfig, parse_shard
from .search import SearchConfig, TeacherScheduleConfig

__all__ = [
    "Config",
    "ConfigError",
    "Count",
    "DataConfig",
    "GradingConfig",
    "Located",
    "ModelConfig",
    "OpenAIChatOptions",
    "SearchConfig",
    "Section",
    "Share",
    "TeacherScheduleConfig",
    "Text",
    "TransformersOptions",
    "apply_override",
    "checked",
    "error_line",
    "from_dict",
    "load",
    "load_config",
    "parse_shard",
    "read_yaml",
    "to_dict",
]
