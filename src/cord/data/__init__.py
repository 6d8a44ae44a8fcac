"""Problems in: files and datasets (`problems.py`), named evaluation sets (`evalsets.py`)."""

from .problems import Problem, load_problems, problems_from_rows, select_shard

__all__ = ["Problem", "load_problems", "problems_from_rows", "select_shard"]
