"""A problem's search state as JSON, for the run folder's saved states (records/states.py): the
parts every strategy keeps (trajectories, usage) to and from plain dicts. JSON keeps floats exactly
(repr round-trips), so a resumed problem continues from the very scores it had."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..records import Budget, KeptStep, Step, Timing, Tokens
from .accounting import Usage
from .teacher import Trajectory

STATE_VERSION = 1  # a saved state of another version is not used: its problem starts again


def trajectory_state(traj: Trajectory) -> dict[str, Any]:
    return dataclasses.asdict(traj)


def trajectory_from(data: dict[str, Any]) -> Trajectory:
    return Trajectory(**{**data, "steps": [Step(**s) for s in data["steps"]]})


def usage_state(usage: Usage) -> dict[str, Any]:
    return dataclasses.asdict(usage)


def usage_from(data: dict[str, Any]) -> Usage:
    return Usage(Tokens(**data["tokens"]), Budget(**data["budget"]), Timing(**data["timing"]))


def kept_from(data: list[dict[str, Any]]) -> list[KeptStep]:
    return [KeptStep(**k) for k in data]
