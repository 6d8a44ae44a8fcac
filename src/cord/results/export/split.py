"""`cord export --eval-split X`: an evaluation file beside the training file, split by problem id.

Problems are ordered by a hash of their id and a fixed seed, so all the rows of one problem (a DPO
pair, the several rows a step-level format writes, the same problem in two runs) land together and
no problem is both trained on and evaluated on:

- a share in (0, 1): the problems whose hash falls below it (about that share of the problems); a
  problem's side follows from its id alone, the same in every export (another format, container,
  filter or run);
- a whole number N: exactly the N problems of this export with the lowest hashes (the same N for
  the same problems; a filter that keeps other problems may pick others).

The rows stream once into a scratch file beside the output (the problem ids are all that is held
in memory), then each side is written from it with the one row writer (`data/files.py`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ...data.files import FILE_SUFFIXES, write_rows
from ...errors import ConfigError

SEED = "cord-eval-split/1"  # changing it would move problems between the sides of every export


def problem_hash(problem_id: str) -> float:
    """Where the problem falls in [0, 1): the seeded SHA-256 of its id, stable across processes."""
    digest = hashlib.sha256(f"{SEED}\0{problem_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def eval_path(out: Path) -> Path:
    """The evaluation file beside `out`: train.jsonl -> train.eval.jsonl, a folder F -> F.eval."""
    if out.suffix in FILE_SUFFIXES:
        return out.with_name(f"{out.stem}.eval{out.suffix}")
    return out.with_name(f"{out.name}.eval")


def checked_split(value: float | int | str | None) -> float | int | None:
    """--eval-split as a share in (0, 1) (float) or a whole number of problems (int); None: no split."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = int(value) if value.strip().isdigit() else float(value)
        except ValueError:
            raise ConfigError(f"--eval-split: {value!r} is neither a share in (0, 1) nor a whole number of problems") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"--eval-split: {value!r} is neither a share in (0, 1) nor a whole number of problems")
    if isinstance(value, int) and value < 1:
        raise ConfigError(f"--eval-split: {value} problems; give at least 1, or a share in (0, 1)")
    if isinstance(value, float) and not 0 < value < 1:
        raise ConfigError(f"--eval-split: {value} is not a share in (0, 1) (a whole number of problems is written without a point)")
    return value


@dataclass
class SplitCounts:
    """Rows and problems on each side, and where the evaluation rows went."""

    eval_file: Path
    train_rows: int
    eval_rows: int
    train_problems: int
    eval_problems: int
    where: str = ""  # where the evaluation rows are, in words (default: the evaluation file's name)

    def describe(self) -> str:
        """One line for the terminal and the dataset card."""
        return (
            f"{counted(self.train_rows, 'row')} ({counted(self.train_problems, 'problem')}) to train on, "
            f"{counted(self.eval_rows, 'row')} ({counted(self.eval_problems, 'problem')}) held out in "
            f"{self.where or self.eval_file.name} (split by a seeded hash of the problem id)"
        )

    def held_in(self, where: str) -> SplitCounts:
        """The same counts, the evaluation rows described as being `where` (a Dataset's test split)."""
        return dataclasses.replace(self, where=where)


def counted(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


def held_out(ids: set[str], split: float | int) -> set[str]:
    """The problems of `ids` that go to the evaluation file; both sides must keep one."""
    if isinstance(split, float):
        held = {i for i in ids if problem_hash(i) < split}
        if not held or held == ids:
            side = "none" if not held else "all"
            raise ConfigError(
                f"--eval-split: a share of {split} put {side} of the {len(ids)} problems exported in the evaluation file; "
                "give a whole number of problems instead (e.g. --eval-split 1)"
            )
        return held
    if split >= len(ids):
        raise ConfigError(f"--eval-split: {split} problems would leave none of the {len(ids)} exported to train on")
    return set(sorted(ids, key=problem_hash)[:split])


def rows_of(lines: Path, held: set[str], evaluation: bool) -> Iterator[dict]:
    """The rows of one side, read back a line at a time."""
    with lines.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if (row["id"] in held) == evaluation:
                yield row


def write_split(rows: Iterable[dict], out: Path, split: float | int) -> SplitCounts | None:
    """The training rows at `out` and the evaluation rows at `eval_path(out)`; None (and nothing
    written) when there are no rows. A failure leaves neither file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.split."))
    try:
        lines, ids = scratch / "rows.jsonl", set()
        with lines.open("w", encoding="utf-8") as handle:
            for row in rows:
                ids.add(row["id"])
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        if not ids:
            return None
        held = held_out(ids, split)
        evaluation = eval_path(out)
        eval_rows = write_rows(rows_of(lines, held, True), evaluation)
        try:
            train_rows = write_rows(rows_of(lines, held, False), out)
        except BaseException:
            shutil.rmtree(evaluation) if evaluation.is_dir() else evaluation.unlink(missing_ok=True)
            raise
        return SplitCounts(evaluation, train_rows, eval_rows, len(ids) - len(held), len(held))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
