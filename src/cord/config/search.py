"""The search section: the strategy and its budgets, how steps are segmented, how candidates are
ranked, and the opt-in teacher schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from ..prompts import ANSWER_END, ANSWER_LEAD, REASONING_INSTRUCTION, STEP_INSTRUCTION, STEP_MARKER
from ..registry import SELECTIONS, STRATEGIES
from .base import Count, Located, Section, Share, Text, registered

StrategyName = registered(STRATEGIES)
SelectionName = registered(SELECTIONS)


class TeacherScheduleConfig(Section):
    """Beyond the paper, opt-in (cord, greedy): which teachers propose at each phase of a
    trajectory, from each teacher's hit rate by position (the paper's Figure 2). See
    cord/search/teacher_schedule.py."""

    by: Literal["step", "tokens"] = Field("step", description="a phase is a step index (step) or reasoning tokens so far (tokens)")
    width: Count = Field(1, description="steps or tokens per phase")
    calibration: Count = Field(32, description="the first problems run with every teacher; the steps their beams kept fit the table")
    coverage: Share = Field(0.9, description="per phase: the fewest teachers that between them proposed this share of the kept steps")
    min_kept: Count = Field(16, description="a phase with fewer kept steps in calibration keeps every teacher")
    table_from: Text | None = Field(None, description="fit the table from an earlier run directory instead (no calibration)")
    table: dict[int, list[str]] | None = Field(
        None,
        description="or write it by hand (e.g. from run.log), no calibration: phase -> the teachers that propose there, "
        "e.g. {0: [qwq], 1: [qwq, r1]}; a phase not listed asks every teacher",
    )

    @field_validator("table", mode="before")
    @classmethod
    def _phases(cls, table: Any) -> Any:
        """Phase keys as whole numbers (a command-line override gives "0"); each a list of names."""
        if not isinstance(table, dict):
            return table
        out = {}
        for key, names in table.items():
            if isinstance(key, bool) or not (isinstance(key, int) or (isinstance(key, str) and key.isdigit())) or int(key) < 0:
                raise ValueError(f"a phase is a whole number >= 0, got {key!r}")
            if not isinstance(names, list) or not names:
                raise Located(str(key), f"expected a list of teacher names, got {names!r}")
            out[int(key)] = names
        return out

    @model_validator(mode="after")
    def _one_source(self) -> TeacherScheduleConfig:
        if self.table is not None and self.table_from is not None:
            raise ValueError("set table or table_from, not both")
        if self.table_from is not None and not (Path(self.table_from) / "records.jsonl").is_file():
            raise Located("table_from", f"{self.table_from} is not a cord run directory (no records.jsonl)")
        return self


class SearchConfig(Section):
    """How problems are searched: the strategy, its budgets, and how candidate steps are cut and ranked."""

    method: StrategyName = Field("cord", description="the search strategy (cord.registry.STRATEGIES)")
    beam_size: Count = Field(4, description="B (paper: 4); greedy is B = 1")
    keep_beam_width: bool = Field(
        False,
        description="false: a finished trajectory leaves the beam, which narrows to B minus the finished; "
        "true: the beam keeps B live prefixes until B trajectories have finished",
    )
    cut_step: Literal["open", "writer"] = Field(
        "open",
        description="cord / greedy: after a step cut at its teacher's max_step_tokens, open: every teacher proposes its "
        "continuation (the paper's rule, applied as is); writer: the teacher that wrote it continues it alone first",
    )
    keep_top_k: Count = Field(
        1,
        description="finished trajectories kept per record, best first: the chosen one plus keep_top_k - 1 `alternatives` "
        "(each with its own final answer), e.g. for `cord export --format dpo`",
    )
    keep_candidates: bool = Field(False, description="cord / greedy: each chosen step keeps the candidates that lost to it (cord report)")
    rollouts: Count | None = Field(
        None,
        description="curation / integration: complete trajectories per teacher; mcts / mcts-cord: simulations per step "
        "(mcts: at most K x rollouts rollouts in all, Curation's trajectories); "
        'null: B (the paper\'s equal budget; 2B gives "Curation x2")',
    )
    trajectory_style: Literal["own", "steps"] = Field(
        "own",
        description="curation / integration: how each teacher writes its complete trajectories: own (the paper's baselines, "
        "S1 / LIMO style, §5: the plain reasoning instruction, nothing pre-filled after <think>) or steps (CoRD's step "
        "instruction and pre-fill; the tiny teachers' own layout)",
    )
    reasoning_budget: Count = Field(16384, description="reasoning tokens per trajectory (paper: 16,384)")
    answer_budget: Count = Field(4096, description="final-answer tokens after </think> (paper: 4,096)")
    segmentation: Literal["prompt", "linebreak", "prefix"] = Field(
        "prompt", description="where a step ends: at the next step marker the prompt asks for (prompt), at a blank line, or at a cue"
    )
    step_marker: Text = Field(STEP_MARKER, description="what opens a step under prompt segmentation")
    step_instruction: Text | None = Field(
        STEP_INSTRUCTION,
        description='appended to the question in every model\'s user turn ("" for none); unless set: the "### Step k." '
        "instruction with prompt segmentation, the plain reasoning instruction with linebreak and prefix",
    )
    prefill: Text | None = Field(
        None, description="what opens the first step after <think>; unless set: the step marker with prompt segmentation, else nothing"
    )
    answer_lead: Text = Field(
        ANSWER_LEAD,
        description="what the meta-prover reads between the reasoning (after </think>) and the answer it scores; "
        'for open-ended tasks whose target is a reference paragraph, e.g. " The answer is: "',
    )
    answer_end: Text = Field(
        ANSWER_END,
        description='scored right after the answer, so S is the probability of the whole answer ("2"), not of every answer '
        'that starts with it ("22", "204"); "" for a reference paragraph that ends its own sentence',
    )
    selection: SelectionName = Field(
        "perplexity",
        description="how candidates are ranked (cord and greedy; cord.registry.SELECTIONS): perplexity (the method) or an "
        "ablation (paper Table 5): random, max_length, binary_judgment (a judge answers after a 'time is up' cue, graded, "
        "averaged over judge_rollouts), step_judge (the meta-prover asked whether the last step is correct), prm",
    )
    judge_rollouts: Count = Field(10, description="selection binary_judgment: judge answers per candidate")
    judge_temperature: float = Field(0.6, description="selection binary_judgment: the judge's temperature")
    prm_step_tag: Text = Field(" \u043a\u0438", description="selection prm: what follows each step (Math-Shepherd's tag by default)")
    prm_good: Text = Field("+", description="selection prm: the token of a good step; the score is p(good) / (p(good) + p(bad))")
    prm_bad: Text = Field("-", description="selection prm: the token of a bad step")
    mcts_exploration: float = Field(1.0, description="mcts / mcts-cord: the UCB constant c")
    mcts_rollout_cap: bool = Field(
        True,
        description="mcts: a problem's rollouts capped at K x rollouts in all, the trajectories Curation writes (the paper's "
        "equal budget; once spent, steps are chosen by S of the children alone); false: rollouts every step, no total",
    )
    teacher_schedule: TeacherScheduleConfig | None = Field(
        None, description="null (the paper): every teacher proposes after every prefix; set (e.g. `{}`): by position, opt-in"
    )
    problems_in_flight: Count = Field(16, description="problems advanced together so engine calls batch across them")
    rows_in_flight: Count | None = Field(
        None,
        description="null: problems_in_flight problems at a time; a number: while every problem in flight waits for servers "
        "or continuously batching engines and each of them has fewer generation rows out than this, one more problem starts "
        "(up to 4 x problems_in_flight), so devices with free rows decode more at once; records do not change",
    )
    speculative: bool = Field(
        False,
        description="cord / greedy with servers or continuously batching engines, once the run's last problems are in flight "
        "and the teachers' engines have fewer than rows_in_flight rows out: each proposal is scored as it comes back, and "
        "once at most a quarter of a round's proposals are out the next round's proposals start from the ranking so far; "
        "the round still ranks every proposal and a started proposal the final ranking does not ask for is dropped, so "
        "records do not change (needs rows_in_flight)",
    )
    reproducible: bool = Field(
        False,
        description="true: a local engine's batches start only when no problem can move (models on separate devices in "
        "waves: a batch each, started together once every device is idle), so records are the same bit for bit whatever "
        "the timing; false: each device starts its next batch as soon as it is idle, and a model alone on a GPU batches "
        "continuously (models that share a device, such as every model on a CPU, take turns either way)",
    )
    seed: int = Field(0, description="the run's seed; every request's own seed derives from it, the problem and the request's place")

    _derived: set[str] = PrivateAttr(default_factory=set)  # keys filled in from the segmentation

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("prefill", "step_instruction"):
            self._derived.discard(name)  # set now: no longer follows the segmentation
        super().__setattr__(name, value)

    @model_validator(mode="after")
    def _by_segmentation(self) -> SearchConfig:
        """`prefill` and `step_instruction` not set follow the segmentation (also when it changes
        later), so a line-break or prefix run sends no "### Step" instruction: the ablations
        compare segmenters, not instructions. Filled in when the config is built, so config.yaml
        states them."""
        prompt = self.segmentation == "prompt"
        follows = {"prefill": self.step_marker if prompt else "", "step_instruction": STEP_INSTRUCTION if prompt else REASONING_INSTRUCTION}
        for key, value in follows.items():
            if key in self._derived or key not in self.model_fields_set or (key == "prefill" and self.prefill is None):
                self.__dict__[key] = value
                self._derived.add(key)
        return self
