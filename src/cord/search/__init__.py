"""Search strategies, one file each, registered by name in `cord.registry.STRATEGIES`; every one
turns problems into `Record`s."""

from __future__ import annotations

from .base import Strategy, Teacher

__all__ = ["Strategy", "Teacher"]
