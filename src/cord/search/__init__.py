"""Search strategies, one file each; every one turns problems into records of the same schema."""

from __future__ import annotations

from .base import Strategy, Teacher
from .cord import CordSearch
from .curation import CurationSearch
from .integration import IntegrationSearch
from .mcts import MctsSearch

STRATEGIES: dict[str, type[Strategy]] = {
    "cord": CordSearch,
    "greedy": CordSearch,  # CoRD with B = 1
    "curation": CurationSearch,
    "integration": IntegrationSearch,
    "mcts": MctsSearch,
}

__all__ = ["STRATEGIES", "CordSearch", "CurationSearch", "IntegrationSearch", "MctsSearch", "Strategy", "Teacher"]
