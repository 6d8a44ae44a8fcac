"""Scoring: the meta-prover's predictive perplexity (`meta_prover.py`), the rules that rank a
step's candidates (`selection.py`, registered in `cord.registry.SELECTIONS`), and the grading of
final answers (`grade.py`)."""

from .grade import Grader, extract_answer, is_correct, valid_trace
from .meta_prover import MetaProver, Scored, ScoreItem, meta_prover_request, predictive_perplexity

__all__ = [
    "Grader",
    "MetaProver",
    "ScoreItem",
    "Scored",
    "extract_answer",
    "is_correct",
    "meta_prover_request",
    "predictive_perplexity",
    "valid_trace",
]
