"""cord: Long chain-of-thought distillation data by collaborative step-wise multi-teacher decoding."""

from .config import Config, DataConfig, ModelConfig, SearchConfig, load_config
from .data import Problem, load_problems
from .errors import ConfigError
from .records import Record, Step, read_records
from .results.export.api import Exported, export
from .run import generate, run

__version__ = "0.1.0"
__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "Exported",
    "ModelConfig",
    "Problem",
    "Record",
    "SearchConfig",
    "Step",
    "__version__",
    "export",
    "generate",
    "load_config",
    "load_problems",
    "read_records",
    "run",
]
