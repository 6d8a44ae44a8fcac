"""A teacher's completion becomes reasoning steps, counted in its problem's usage: one proposed step,
closed by the segmenter or by a spent reasoning budget, or a whole trajectory split post hoc."""

from __future__ import annotations

from dataclasses import dataclass

from ..engines import Completion
from ..prompts import THINK_CLOSE
from ..records import Step
from .accounting import ProblemRun
from .meter import Meter
from .segment import Segmenter
from .teacher import Teacher, Trajectory


@dataclass(frozen=True)
class ProposedStep:
    """One proposed next step and how it ended (segment.py)."""

    text: str
    end: str
    next_opening: str  # what opens the step after it
    finished: bool  # it closes the reasoning
    empty: bool  # says nothing (only the step marker): ranked below every step with content


class StepCloser:
    """Closes the steps a strategy's teachers propose, and splits the trajectories they write whole."""

    def __init__(self, segmenter: Segmenter, reasoning_budget: int, meter: Meter):
        self.segmenter, self.reasoning_budget, self.meter = segmenter, reasoning_budget, meter

    def close(self, run: ProblemRun, teacher: Teacher, parent: Trajectory, completion: Completion) -> ProposedStep:
        """The step `teacher` proposed after `parent`, its end and emptiness counted; a spent
        reasoning budget closes the reasoning at once (the paper's §4.3: append </think>)."""
        closed = self.segmenter.close(parent.opening, completion)
        text, end, finished = closed.text, closed.end, closed.finished
        if not finished and parent.tokens + completion.tokens >= self.reasoning_budget:
            text, end, finished = text + THINK_CLOSE, "budget", True
        run.usage.add_step_end(teacher.name, end)
        # a step that closes the reasoning with nothing in it ("### Step 4.</think>") is empty too: it
        # ranks below steps with content, as the quality pass flags it in a chosen trace
        empty = self.segmenter.is_empty(text)
        if empty and completion.finish != "error":  # a refused request is a failure, counted as one, not an empty step
            run.usage.add_empty_step(teacher.name)
        return ProposedStep(text, end, closed.next_opening, finished, empty)

    def split(self, run: ProblemRun, teacher: Teacher, opening: str, completion: Completion) -> list[Step]:
        """A completion that ran to </think> (or its budget), split post hoc into attributed steps."""
        end = {"stop": "think", "eos": "eos"}.get(completion.finish, "budget")
        texts = self.segmenter.split(opening + completion.text + THINK_CLOSE)
        steps = [Step(text, teacher.name, None, 0, "marker") for text in texts]
        steps[-1].end = end
        steps[-1].tokens = completion.tokens  # whole-completion count, on the closing step
        run.usage.add_generation(teacher.name, 0, len(steps))
        self.meter.add(run.problem.id, steps=len(steps))
        for step in steps:
            run.usage.add_step_end(teacher.name, step.end)
            if step.end == "marker" and self.segmenter.is_empty(step.text):
                run.usage.add_empty_step(teacher.name)
        return steps
