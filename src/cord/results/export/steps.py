"""Step-level labels from the search itself, for `cord export --format step-dpo` and `stepwise`.

With `search.keep_candidates`, every kept step of the chosen trajectory and of the alternatives
(`search.keep_top_k`) stores its rivals: the other candidates proposed after the same prefix, with
the meta-prover's score S of prefix + candidate. `StepTree` gathers one record's candidates, one
node per (accepted prefix, step text), and `StepTree.label` says whether a step is good (True),
bad (False) or unknown (None) under a rule:

- `outcome`: good when some finished trajectory through the step (the chosen one or an
  alternative: the same prefix and step) reached the right answer; bad when every graded one
  through it failed. A rival the beam dropped is bad when every one through its prefix failed,
  else unknown.
  Biases: a wrong step on a trajectory that still reached the right answer is labelled good (the
  larger one, below); a right step whose trajectory later went wrong is labelled bad (the search
  ran one continuation from it, not several), most often an early step of a failed problem.
- `margin`: bad when its S is below the best S among the candidates after the same prefix by more
  than `margin`; otherwise unknown (S ranks, it does not certify a step).
  Bias: S rewards a step that lands on the right number by a wrong equation (MODELS.md), so a
  wrong step can score high; and a right step can score low where the meta-prover reads a prefix
  far from the end at chance (README: prefixes three operations short of the end).
- `combined` (the default): the outcome where a finished trajectory gives one, else the margin.
  It inherits both biases, each on the steps the other cannot label.
- `strict`: as `combined`, but a step more than `margin` below the best is bad even on a right
  trajectory (measured: more bad steps found, fewer of them truly bad).

docs/benchmarks.md ("Step labels against the tiny tasks' truth", `benchmarks/step_labels.py`)
measures each rule's precision and recall for "bad step" against the tiny tasks' truth; the default
rule and margin come from there. Its sharpest finding is the outcome rule's blind spot: a right
answer reached by wrong steps (S rewards landing on the right number) makes every one of its steps
good, so about half the steps labelled good on the heterogeneous tiny run are truly wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...config.search import SearchConfig
from ...engines import resolve_model
from ...engines.chat import ChatTokenizer, adds_bos
from ...errors import ConfigError
from ...prompts import open_reasoning, user_turn
from ...records import Alternative, Record, RunData

if TYPE_CHECKING:
    from . import ExportReport
    from .filters import QualityFilter
    from .formats import ExportFormat

LABEL_RULES = ("combined", "strict", "outcome", "margin")
DEFAULT_RULE = "combined"
DEFAULT_MARGIN = 0.05  # S below the best candidate after the same prefix by more than this: bad
NO_CANDIDATES = "no record keeps its steps' candidates: set search.keep_candidates: true when generating"

Trajectory = Record | Alternative
Key = tuple[tuple[str, ...], str]  # (the accepted steps before it, the step's text)


def has_candidates(record: Record) -> bool:
    """Whether the record's steps kept their rivals (search.keep_candidates; [] counts: no rival)."""
    return any(s.candidates is not None for t in [record, *record.alternatives] for s in t.steps)


@dataclass
class StepNode:
    """One candidate step after one accepted prefix: who wrote it, its S, and the graded outcomes
    of the finished trajectories kept through it (none for a rival the beam dropped)."""

    prefix: tuple[str, ...]
    text: str
    teacher: str
    score: float | None
    outcomes: list[bool] = field(default_factory=list)

    @property
    def key(self) -> Key:
        return (self.prefix, self.text)


class StepTree:
    """Every candidate step of one record (the finished trajectories' steps and their rivals),
    grouped by the prefix they were proposed after."""

    def __init__(self, record: Record):
        self.trajectories: list[Trajectory] = [] if record.failed else [record, *record.alternatives]
        self.nodes: dict[Key, StepNode] = {}
        self.siblings: dict[tuple[str, ...], list[StepNode]] = {}
        for trajectory in self.trajectories:
            texts = [s.text for s in trajectory.steps]
            for i, step in enumerate(trajectory.steps):
                node = self.add(tuple(texts[:i]), step.text, step.teacher, step.score)
                if trajectory.correct is not None:
                    node.outcomes.append(trajectory.correct)
                for rival in step.candidates or []:
                    self.add(tuple(texts[:i]), rival["text"], rival["teacher"], rival.get("score"))

    def add(self, prefix: tuple[str, ...], text: str, teacher: str, score: float | None) -> StepNode:
        node = self.nodes.get((prefix, text))
        if node is None:
            node = self.nodes[(prefix, text)] = StepNode(prefix, text, teacher, score)
            self.siblings.setdefault(prefix, []).append(node)
        return node

    def path(self, trajectory: Trajectory) -> list[StepNode]:
        """The nodes of a trajectory's steps, in order."""
        texts = [s.text for s in trajectory.steps]
        return [self.nodes[(tuple(texts[:i]), text)] for i, text in enumerate(texts)]

    def rivals(self, node: StepNode) -> list[StepNode]:
        """The other candidates after the node's prefix, best S first."""
        others = [n for n in self.siblings[node.prefix] if n is not node]
        return sorted(others, key=lambda n: -(n.score if n.score is not None else float("-inf")))

    def below_best(self, node: StepNode) -> float | None:
        """How far the node's S is below the best S after its prefix (None: unscored)."""
        scores = [n.score for n in self.siblings[node.prefix] if n.score is not None]
        return None if node.score is None else max(scores) - node.score

    def outcome(self, node: StepNode) -> bool | None:
        """Whether a finished trajectory through the node was right; for a rival the beam dropped,
        False when every one through its prefix failed (its own continuations would run through
        that prefix too), else None."""
        if node.outcomes:
            return True in node.outcomes
        parent = self.nodes.get((node.prefix[:-1], node.prefix[-1])) if node.prefix else None
        return False if parent is not None and parent.outcomes and True not in parent.outcomes else None

    def label(self, node: StepNode, rule: str = DEFAULT_RULE, margin: float = DEFAULT_MARGIN) -> bool | None:
        """True (good), False (bad) or None (no evidence) for the node under `rule` (module doc)."""
        outcome = self.outcome(node)
        if rule == "outcome" or (rule == "combined" and outcome is not None):
            return outcome
        gap = self.below_best(node)
        if gap is not None and gap > margin:
            return False
        return outcome if rule == "strict" else None


@dataclass
class StepOptions:
    """How step rows are made: the label rule and margin, which accepted steps may be chosen
    (`keep`, as `cord export`'s filters), the prompt renderer (step-dpo: the student's chat
    template) and the Math-Shepherd tag and verdicts (stepwise: the run's search.prm_*)."""

    rule: str = DEFAULT_RULE
    margin: float = DEFAULT_MARGIN
    keep: str = "correct"
    render: Callable[[str], str] | None = None  # user turn -> the student's prompt, think block open
    tag: str = " ки"
    good: str = "+"
    bad: str = "-"


def chosen_allowed(trajectory: Trajectory, keep: str) -> bool:
    """Whether step-dpo may take a chosen step from this trajectory under the filter `keep`."""
    if keep == "all":
        return True
    return trajectory.correct is True and (keep != "valid" or trajectory.valid_trace is True)


def preference_pairs(tree: StepTree, sources: list[Trajectory], options: StepOptions) -> Iterator[tuple[StepNode, StepNode]]:
    """(chosen, rejected) once per accepted step of the `sources` trajectories (step-dpo: the chosen
    one alone) that pass `keep`: the step, when it is not labelled bad, and its best-scored rival
    that is labelled bad and scored more than the margin below it (the closest clearly worse one)."""
    seen: set[Key] = set()
    for trajectory in sources:
        if not chosen_allowed(trajectory, options.keep):
            continue
        for node in tree.path(trajectory):
            if node.key in seen or node.score is None or tree.label(node, options.rule, options.margin) is False:
                continue
            seen.add(node.key)
            below = [
                r
                for r in tree.rivals(node)
                if r.score is not None and node.score - r.score > options.margin and tree.label(r, options.rule, options.margin) is False
            ]
            if below:
                yield node, below[0]


def labelled_sequences(tree: StepTree, sources: list[Trajectory], options: StepOptions) -> Iterator[tuple[str, list[StepNode], list[bool]]]:
    """(source, steps, labels) for stepwise rows: each `sources` trajectory, cut before its first
    unlabelled step, then each labelled rival no finished trajectory runs through, after its
    accepted prefix (each prefix step labelled). Sequences with no labelled step are left out."""
    rivals: dict[Key, tuple[list[StepNode], StepNode]] = {}
    for trajectory in sources:
        path = tree.path(trajectory)
        labels = [tree.label(node, options.rule, options.margin) for node in path]
        cut = labels.index(None) if None in labels else len(labels)
        if cut:
            yield ("chosen" if isinstance(trajectory, Record) else "alternative"), path[:cut], labels[:cut]
        for i, node in enumerate(path[:cut]):
            for rival in tree.siblings[node.prefix]:
                if not rival.outcomes and tree.label(rival, options.rule, options.margin) is not None:
                    rivals.setdefault(rival.key, (path[:i], rival))
    for prefix, rival in rivals.values():
        yield "rival", [*prefix, rival], [tree.label(n, options.rule, options.margin) for n in [*prefix, rival]]


class StepRows:
    """One export's step rows: checks the request (step-dpo needs --student; a margin is not
    negative), renders prompts in the student's chat template, and turns each record into rows with
    their provenance, counting records that give none in the report."""

    def __init__(self, fmt: ExportFormat, keep: str, student: str | None, system: str | None, margin: float | None, report: ExportReport):
        if fmt.needs_student and not student:
            raise ConfigError(f"--student: --format {fmt.name} renders each prompt in the student's chat template; name the student model")
        self.margin = DEFAULT_MARGIN if margin is None else margin
        if not 0 <= self.margin < 1:
            raise ConfigError(f"--margin: {self.margin} is not in [0, 1) (S is in (0, 1])")
        self.fmt, self.keep, self.system, self.report = fmt, keep, system, report
        self.chat = ChatTokenizer(resolve_model(student)) if fmt.needs_student else None
        self.options = StepOptions(margin=self.margin, keep=keep)  # start_run sets each run's
        self.checked, self.any_candidates, self.instruction = 0, False, ""
        report.step_labels = f"rule {DEFAULT_RULE}, margin {self.margin} on S (steps.py; docs/benchmarks.md)"  # for the card

    def start_run(self, run: RunData, instruction: str | None) -> None:
        """The options for one run's records: its user turn and its Math-Shepherd tag and verdicts."""
        search, fields = run.config.get("search") or {}, SearchConfig.model_fields
        tag, good, bad = (search.get(key, fields[key].default) for key in ("prm_step_tag", "prm_good", "prm_bad"))
        render = (lambda question: self.render(user_turn(question, instruction))) if self.chat else None
        self.instruction = instruction or ""  # step-dpo's user turn: what follows the question
        self.options = StepOptions(DEFAULT_RULE, self.margin, self.keep, render, tag, good, bad)

    def render(self, turn: str) -> str:
        """The user turn in the student's chat template, the think block open; without the BOS a
        text trainer's tokenizer adds itself (TRL tokenizes text prompts with special tokens)."""
        prompt = open_reasoning(self.chat.chat_prompt(turn, self.system))
        tokenizer = self.chat.tokenizer
        return prompt.removeprefix(tokenizer.bos_token) if tokenizer.bos_token and adds_bos(tokenizer) else prompt

    def missing_candidates(self, record: Record) -> str | None:
        """Why a record that did not fail gives no step rows for want of candidates, or None."""
        if record.failed:
            return None
        self.checked += 1
        if has_candidates(record):
            self.any_candidates = True
            return None
        return "no step candidates kept (search.keep_candidates was off)"

    def rows(self, run: RunData, record: Record, quality: QualityFilter) -> Iterator[tuple[dict, str]]:
        """(row, text for near-duplicates) for each of the record's step rows; flagged alternatives
        give none (they still count as outcomes for the labels)."""
        tree, sources = StepTree(record), []
        for trajectory in tree.trajectories if self.fmt.rows_from_alternatives else tree.trajectories[:1]:
            why = None if trajectory is record else quality.reason(trajectory, "alternative ")
            if why:
                self.report.dropped[f"trajectory not a source of step rows: {why}"] += 1
            else:
                sources.append(trajectory)
        made = 0
        for columns, text in self.fmt.step_rows(tree, sources, record.question, self.options):
            made += 1
            provenance = {"id": record.id, "run": run.path.name, "method": record.method, "answer": record.answer}
            if self.chat:  # the prompt holds a user turn
                provenance["user_instruction"] = self.instruction
            yield {**columns, **provenance, "quality_flags": quality.flags(record)}, text
        if not made:
            self.report.dropped[f"no {self.fmt.name} row: {self.fmt.no_rows}"] += 1
