"""Records: the schema (`schema.py`), the run directory that holds them (`rundir.py`) and the
summary of a run (`summary.py`)."""

from .rundir import CONFIG, RECORDS, SUMMARY, RecordStream, RunData, RunDirectory, atomic_write, iter_records, read_records, read_run
from .schema import SCHEMA_VERSION, Alternative, Budget, KeptStep, Record, Step, Timing, Tokens
from .summary import Totals, answer_only_perplexity, peak_memory, step_format_warnings, summarize

__all__ = [
    "CONFIG",
    "RECORDS",
    "SCHEMA_VERSION",
    "SUMMARY",
    "Alternative",
    "Budget",
    "KeptStep",
    "Record",
    "RecordStream",
    "RunData",
    "RunDirectory",
    "Step",
    "Timing",
    "Tokens",
    "Totals",
    "answer_only_perplexity",
    "atomic_write",
    "iter_records",
    "peak_memory",
    "read_records",
    "read_run",
    "step_format_warnings",
    "summarize",
]
