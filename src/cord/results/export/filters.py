"""The quality filters of `cord export`: rows flagged by the quality pass (records/quality.py) and
near-duplicate rows kept out of a training set, each dropped row counted by reason.

Defaults keep out what would teach a student a bad habit: reasoning the budget closed or that never
closed, no final answer, loops, empty steps, stray tags and boxed computations. Pre-filled answers
and steps cut at the cap stay by default (their rows carry the flags in `quality_flags`): the
pre-filled line is the format the student is asked for, and a cut step is continuous text.
Records written before the quality pass existed are assessed when they are read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...errors import ConfigError
from ...prompts import STEP_MARKER
from ...records.quality import FLAGS, REPEAT_NGRAM, REPEATED_SHARE_LIMIT, Quality, assess, flags_of

if TYPE_CHECKING:
    from ...records import Alternative, Record

DROPPED_BY_DEFAULT = ("budget_forced", "unclosed", "answer_missing", "repetitive", "empty_steps", "stray_tags", "boxed_computation")
NEAR_DUPLICATES = ("drop", "flag", "keep")
NEAR_DUPLICATE_THRESHOLD = 0.9  # estimated Jaccard similarity of word 5-gram shingles
SHINGLE = 5
PERMUTATIONS = 64


def flag_names(text: str, option: str) -> set[str]:
    """A comma-separated list of quality flags, each checked against FLAGS."""
    names = {n.strip() for n in text.split(",") if n.strip()}
    unknown = sorted(names - set(FLAGS))
    if unknown:
        raise ConfigError(f"{option}: unknown flag(s) {', '.join(unknown)} (flags: {', '.join(FLAGS)})")
    return names


@dataclass
class QualityFilter:
    """Which quality flags drop a row, the loop threshold, and what near-duplicate rows do."""

    drop: frozenset[str] = frozenset(DROPPED_BY_DEFAULT)
    max_repeated_share: float = REPEATED_SHARE_LIMIT
    near_duplicates: str = "drop"
    marker: str = STEP_MARKER  # the step marker of the run being read (old records are assessed with it)

    @classmethod
    def from_options(cls, drop: str | None, keep: str | None, max_repeated_share: float, near_duplicates: str) -> QualityFilter:
        """`--drop-flagged` (replaces the default set; "" drops nothing), `--keep-flagged` (taken out of it)."""
        dropped = set(DROPPED_BY_DEFAULT) if drop is None else flag_names(drop, "--drop-flagged")
        dropped -= flag_names(keep or "", "--keep-flagged")
        if not 0 <= max_repeated_share <= 1:
            raise ConfigError(f"--max-repeated-share: {max_repeated_share} is not between 0 and 1")
        if near_duplicates not in NEAR_DUPLICATES:
            raise ConfigError(f"--near-duplicates: {near_duplicates!r} is not one of {', '.join(NEAR_DUPLICATES)}")
        return cls(frozenset(dropped), max_repeated_share, near_duplicates)

    def quality(self, trajectory: Record | Alternative) -> Quality:
        if trajectory.quality is None:
            trajectory.quality = assess(trajectory, self.marker)
        return trajectory.quality

    def flags(self, trajectory: Record | Alternative) -> list[str]:
        """The trajectory's flags, with `repetitive` at this filter's threshold."""
        return flags_of(self.quality(trajectory), trajectory.reasoning, self.max_repeated_share)

    def reason(self, trajectory: Record | Alternative, role: str = "") -> str | None:
        """Why the filter drops the trajectory (its first dropping flag), or None."""
        hit = next((f for f in self.flags(trajectory) if f in self.drop), None)
        return None if hit is None else f"{role}flagged {hit} ({FLAGS[hit]})"

    def describe(self) -> str:
        """One line for the dataset card."""
        dropped = ", ".join(f for f in FLAGS if f in self.drop) or "none"
        return (
            f"rows flagged {dropped} dropped (repetitive above {self.max_repeated_share:.0%} repeated word {REPEAT_NGRAM}-grams); "
            f"near-duplicates: {self.near_duplicates}"
        )


@dataclass
class NearDuplicates:
    """Rows whose text is nearly that of a row already kept (MinHash LSH over word shingles)."""

    threshold: float = NEAR_DUPLICATE_THRESHOLD
    index: object = field(init=False)
    seen: int = 0

    def __post_init__(self):
        from datasketch import MinHashLSH

        self.index = MinHashLSH(threshold=self.threshold, num_perm=PERMUTATIONS)

    def first_seen(self, key: str, text: str) -> str | None:
        """The key of a row already seen that `text` nearly repeats; else None (and it is remembered)."""
        from datasketch import MinHash

        words = text.split()
        shingles = {" ".join(words[i : i + SHINGLE]) for i in range(max(1, len(words) - SHINGLE + 1))}
        signature = MinHash(num_perm=PERMUTATIONS, seed=1)
        signature.update_batch([s.encode("utf-8") for s in shingles])
        match = self.index.query(signature)
        if match:
            return min(match).split(" ", 1)[1]
        self.seen += 1
        self.index.insert(f"{self.seen:09d} {key}", signature)
        return None
