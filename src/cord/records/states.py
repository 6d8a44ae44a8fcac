"""OUT/state/: the search state of each problem in flight, saved after each round it finishes, so
an interrupt (SIGINT, SIGTERM, kill -9, a lost node) loses at most the round in progress.

One JSON file per problem, replaced whole after each round (records/atomic.py: fsynced, renamed,
the folder fsynced): a crash leaves the last round or the one before it, never a torn file. The
strategy decides what a state holds (search/base.py `Strategy.checkpoint`); this store only keeps
the files. A problem's file is removed once its record is written, so the folder holds at most
the problems in flight (and those a smaller data.limit left unfinished).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from .atomic import atomic_write

STATES = "state"
log = logging.getLogger("cord")


class SearchStates:
    """The saved search states of one run directory, by problem id."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path(self, problem: str) -> Path:
        # Problem ids may hold slashes or be long: a readable head and a hash keep names safe and distinct.
        head = re.sub(r"[^A-Za-z0-9_.-]", "_", problem)[:40]
        return self.folder / f"{head}-{hashlib.sha1(problem.encode()).hexdigest()[:12]}.json"

    def save(self, problem: str, state: dict[str, Any]) -> None:
        atomic_write(self.path(problem), json.dumps({"problem": problem, **state}, ensure_ascii=False))

    def load(self, problem: str) -> dict[str, Any] | None:
        """The problem's saved state, or None (none saved, or one this run cannot use: said in run.log)."""
        file = self.path(problem)
        if not file.is_file():
            return None
        try:
            state = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            log.warning(f"{file}: saved state unreadable ({err}); problem {problem} starts again")
            return None
        if not isinstance(state, dict) or state.get("problem") != problem:
            log.warning(f"{file}: saved state is not problem {problem}'s; it starts again")
            return None
        return state

    def remove(self, problem: str) -> None:
        self.path(problem).unlink(missing_ok=True)

    def saved(self) -> list[str]:
        """The problem ids with a saved state."""
        out = []
        for file in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            try:
                out.append(json.loads(file.read_text(encoding="utf-8"))["problem"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return out

    def prune(self, finished: set[str]) -> None:
        """Remove the states of problems that have their record (a crash between the two writes)."""
        for problem in self.saved():
            if problem in finished:
                self.remove(problem)
