"""How many problems the scheduler keeps in flight: `problems_in_flight`, or more while the devices
have free rows (`search.rows_in_flight`).

With engines called at once (servers, continuously batching local engines) a device decodes the
rows its problems have out. A CoRD problem has B x K rows out at the start of a round and fewer as
its steps end, none while its candidates are scored, so a fixed number of problems leaves a
device's iterations with fewer rows than it could decode in about the same time (a GPU's decode
iteration costs about the same for 1 or 64 rows; benchmarks/device_time.py and docs/benchmarks.md
measure it). `RowsOut` counts the generation rows each such engine has out and says when one more
problem may start: every problem in flight waits for engine calls (so what is out is what they ask
for) and every engine asked to generate has fewer than `rows_in_flight` rows out. Which problems
run together never changes a record (each request's seed is its own), only how soon they finish.
"""

from __future__ import annotations

from typing import Any

MOST_PER_PROBLEMS_IN_FLIGHT = 4  # problems started for free rows: at most this many times problems_in_flight


class RowsOut:
    """The generation rows each engine called at once has out, and whether a problem may start
    for them (`room`). `rows_in_flight` None: never (problems_in_flight alone decides)."""

    def __init__(self, rows_in_flight: int | None = None):
        self.rows_in_flight = rows_in_flight
        self.out: dict[int, int] = {}  # id(engine) -> generation rows sent and not back

    def sent(self, engine: Any, method: str, rows: int) -> None:
        if method == "generate":
            self.out[id(engine)] = self.out.get(id(engine), 0) + rows

    def back(self, engine: Any, method: str, rows: int) -> None:
        if method == "generate":
            self.out[id(engine)] -= rows

    def free(self, engines: list[Any]) -> bool:
        """Whether each of `engines` has fewer generation rows out than `rows_in_flight` (never
        when it is None)."""
        if self.rows_in_flight is None:
            return False
        return all(self.out.get(id(engine), 0) < self.rows_in_flight for engine in engines)

    def room(self, live: int, in_flight: int, runnable: int) -> bool:
        """Whether one more problem may start beyond `in_flight`, with `live` problems in flight of
        which `runnable` are not waiting for an engine."""
        if self.rows_in_flight is None or runnable > 0 or not self.out:
            return False
        if live >= MOST_PER_PROBLEMS_IN_FLIGHT * max(1, in_flight):
            return False
        return all(rows < self.rows_in_flight for rows in self.out.values())
