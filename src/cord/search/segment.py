"""Step segmentation: where one reasoning step ends and the next begins.

- prompt (default, the paper's): every step opens with "### Step"; it ends before the next
  marker or with "</think>".
- linebreak: a step ends at a blank line ("\n\n").
- prefix: a step starts at a cue phrase (self-verification, multi-method, self-correction) that
  starts a sentence: after a line break or after ". ", "? ", "! " (the punctuation and space
  end the step before it). Cues are capitalised, as a sentence start is; one inside a sentence
  ("..., wait") does not cut.
Each closed step records how it ended: "marker" (the next step began), "think" (it closed the
reasoning), "cap" (per-step token cap, cut), "eos" (the model ended its turn) or "budget".

A step with nothing in it (only the step marker, its number, markdown `#`, punctuation, tags or
whitespace: "### Step 2.\n#", "\n\n<think>") is not a reasoning step (`Segmenter.is_empty`). Small models write
them by the dozen, and they cost the answer's likelihood nothing, so the search ranks them below
every step with content and counts them per teacher (`budget.empty_steps`).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from ..engines.base import Completion
from ..prompts import STEP_MARKER, THINK_CLOSE
from ..records.quality import says_nothing

# Cue phrases of the prefix segmenter, matched at a sentence start (capitalised): the paper's §4.1 cuts
# at cue words such as "wait" (Table 4's prefix row); the rest of the list is cord's (docs/fidelity.md).
PREFIX_CUES = (
    # self-verification
    "Let me check",
    "Let me verify",
    "Double-check",
    "Going back to",
    "Wait",
    # multi-method
    "Alternatively",
    "Another way",
    "Let's try a different approach",
    "Using another method",
    "We can also verify",
    # self-correction
    "This is wrong",
    "The mistake was",
    "That's impossible",
    "This contradicts",
    "The error is",
)

SENTENCE_ENDS = ("\n", ". ", "? ", "! ")  # what comes right before a cue that starts a sentence
PREFIX_STOPS = tuple(end + cue for cue in PREFIX_CUES for end in SENTENCE_ENDS)
PREFIX_SPLIT = re.compile("|".join(rf"(?:(?<=\n)|(?<=[.?!] )){re.escape(cue)}" for cue in PREFIX_CUES))

FINISHING_ENDS = ("think", "eos", "budget")


@dataclass(frozen=True)
class ClosedStep:
    text: str
    end: str
    next_opening: str  # text that opens the following step

    @property
    def finished(self) -> bool:
        return self.end in FINISHING_ENDS


class Segmenter:
    def __init__(self, mode: str = "prompt", marker: str = STEP_MARKER, prefill: str | None = None):
        self.mode, self.marker = mode, marker
        self.first_opening = (marker if mode == "prompt" else "") if prefill is None else prefill

    @property
    def stops(self) -> tuple[str, ...]:
        if self.mode == "prompt":
            return (self.marker, THINK_CLOSE)
        if self.mode == "linebreak":
            return ("\n\n", THINK_CLOSE)
        return (*PREFIX_STOPS, THINK_CLOSE)

    def describe_stops(self) -> str:
        """The stop strings in a line (the prefix segmenter's are each cue after each sentence end)."""
        if self.mode == "prefix":
            return f"each of the {len(PREFIX_CUES)} cue phrases after a line break, '. ', '? ' or '! '; '{THINK_CLOSE}'"
        return str(list(self.stops))

    def is_empty(self, text: str) -> bool:
        """Whether a step (or a final answer) says nothing: no letter or digit once tags (`<think>`,
        `</think>`, special tokens' text), the step marker and the step's number are taken away."""
        return says_nothing(text, self.marker)

    def close(self, opening: str, completion: Completion) -> ClosedStep:
        """Turn one generated continuation into a step."""
        body = opening + completion.text
        if completion.finish == "stop" and completion.stop == THINK_CLOSE:
            return ClosedStep(body + THINK_CLOSE, "think", "")
        if completion.finish == "eos":
            return ClosedStep(body + THINK_CLOSE, "eos", "")
        if completion.finish == "length":
            # Cut at the cap: the next step continues the text exactly where it stopped (no
            # invented marker or line break: the reasoning stays the model's own text).
            return ClosedStep(body, "cap", "")
        if self.mode == "linebreak":
            return ClosedStep(body + "\n\n", "marker", "")
        if self.mode == "prefix":  # the sentence end stays with this step, the cue opens the next
            stop = completion.stop or ""
            end = next((e for e in SENTENCE_ENDS if stop.startswith(e)), "")
            return ClosedStep(body + end, "marker", stop[len(end) :])
        return ClosedStep(body, "marker", self.marker)

    def split(self, reasoning: str) -> list[str]:
        """Split a complete reasoning text into steps (post hoc, for whole trajectories)."""
        if self.mode == "prompt":
            pattern = re.escape(self.marker)
        elif self.mode == "linebreak":
            pieces = re.split(r"(?<=\n\n)", reasoning)
            return [p for p in pieces if p]
        else:
            pattern = PREFIX_SPLIT
        starts = [m.start() for m in re.finditer(pattern, reasoning)]
        if not starts or starts[0] != 0:
            starts = [0, *starts]
        bounds = starts + [len(reasoning)]
        steps = [reasoning[a:b] for a, b in itertools.pairwise(bounds) if b > a]
        if len(steps) > 1 and not steps[0].strip():
            steps[1] = steps[0] + steps[1]
            steps = steps[1:]
        return steps
