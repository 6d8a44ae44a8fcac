"""`cord train` on stepwise supervision: a causal-LM process reward model (PRM) in Math-Shepherd's
layout, the one the `prm` selection scores (cord.scoring.selection.ProcessReward).

A row is TRL's stepwise-supervision row: `prompt` (the question, a string), `completions` (the
steps) and `labels` (one true/false per step), as `cord export --format stepwise` writes it. The
PRM reads `question step1 ки\\nstep2 ки ...` and, after each tag, its next token is the verdict:
"+" for a good step, "-" for a bad one (`prm_step_tag`, `prm_good`, `prm_bad`).

What is trained is what the selection reads. `ProcessReward` sends the question and the steps
with a tag after each and no verdicts, and takes p(good) / (p(good) + p(bad)) for the token after
the last tag, tokenizing the text before that tag on its own and the tag with the verdict
together (`ScoreRequest(prompt, lead_in=tag, target=good)`). So a row trains on that very
sequence, with the last step's verdict appended as the engine tokenizes it, and the loss on the
verdict tokens alone: after every tag the next-token label is that step's verdict (Math-Shepherd
trains so: the tag stays in the text and the verdict is predicted at it), every other label is
-100. Writing the earlier verdicts into the text instead (`math_shepherd_text(..., verdicts)`)
would train on contexts the selection never shows; that text is what `--dry-run` prints, to
show which verdict each tag learns.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from ..errors import ConfigError
from ..scoring.selection import math_shepherd_text

IGNORE = -100  # the label that carries no loss (transformers' and TRL's convention)


def is_stepwise(row: dict) -> bool:
    """A TRL stepwise-supervision row (prompt string, completions and labels lists)."""
    return isinstance(row.get("prompt"), str) and isinstance(row.get("completions"), list) and "labels" in row


def stepwise(row: dict, where: str) -> tuple[str, list[str], list[bool]]:
    """(question, steps, labels) of a stepwise row, checked."""
    if not is_stepwise(row):
        raise ConfigError(f"{where}: expected a stepwise row (prompt, completions, labels: cord export --format stepwise)")
    steps, labels = row["completions"], row["labels"]
    if not steps or not isinstance(labels, list) or len(labels) != len(steps):
        raise ConfigError(f"{where}: needs one label per step, got {len(steps)} steps and labels {labels!r}")
    if not all(isinstance(s, str) for s in steps) or not all(isinstance(label, bool) for label in labels):
        raise ConfigError(f"{where}: completions must be strings and labels true/false")
    return row["prompt"], steps, labels


@dataclass(frozen=True)
class Verdicts:
    """The tag's tokens and the one token of each verdict, as they tokenize after the tag."""

    tag: str
    good: str
    bad: str
    tag_ids: tuple[int, ...]
    good_id: int
    bad_id: int

    def id(self, label: bool) -> int:
        return self.good_id if label else self.bad_id


def verdicts(tokenizer, tag: str, good: str, bad: str, model: str) -> Verdicts:
    """The verdict token ids; refused, naming the field, unless each verdict is one token that
    follows the tag's own tokens unmerged (then the token the selection scores is the one trained,
    and good and bad are read after the same context)."""
    if not tag:
        raise ConfigError("prm_step_tag: must not be empty")
    tag_ids = tokenizer(tag, add_special_tokens=False)["input_ids"]
    ids = {}
    for field, verdict in (("prm_good", good), ("prm_bad", bad)):
        together = tokenizer(tag + verdict, add_special_tokens=False)["input_ids"]
        if not verdict or together[: len(tag_ids)] != tag_ids or len(together) != len(tag_ids) + 1:
            shown = tokenizer.convert_ids_to_tokens(together)
            raise ConfigError(
                f"{field}: {verdict!r} after prm_step_tag {tag!r} must be one token of its own in {model}'s tokenizer, "
                f"got {shown}; choose a verdict (or tag) that tokenizes apart"
            )
        ids[field] = together[-1]
    if ids["prm_good"] == ids["prm_bad"]:
        raise ConfigError(f"prm_bad: {bad!r} is the same token as prm_good {good!r}")
    return Verdicts(tag, good, bad, tuple(tag_ids), ids["prm_good"], ids["prm_bad"])


def tag_ends(question: str, steps: list[str], tag: str) -> list[int]:
    """Where each step's tag ends in `math_shepherd_text(question, steps, tag)` (the text of the
    first k steps is a prefix of the whole)."""
    return [len(math_shepherd_text(question, steps[: k + 1], tag)) for k in range(len(steps))]


def example(tokenizer, question: str, steps: list[str], labels: list[bool], v: Verdicts, where: str) -> dict:
    """One row as trained: `input_ids` (the text the selection scores for the last step, with its
    verdict) and `labels` (each step's verdict right after its tag, -100 everywhere else)."""
    text = math_shepherd_text(question, steps, v.tag)
    head = tokenizer(text[: -len(v.tag)], add_special_tokens=False, return_offsets_mapping=True)
    ids = [*head["input_ids"], *v.tag_ids, v.id(labels[-1])]
    targets = [IGNORE] * len(ids)
    targets[-1] = ids[-1]
    starts, ends = [a for a, _ in head["offset_mapping"]], [b for _, b in head["offset_mapping"]]
    for end, label in zip(tag_ends(question, steps, v.tag)[:-1], labels, strict=False):
        # the first token past the tag gets the verdict as its label: transformers shifts labels by
        # one, so the tag's last token predicts it, as the selection reads it
        after = bisect.bisect_right(ends, end)
        if after >= len(ids) - len(v.tag_ids) - 1 or starts[after] < end or ends[after - 1] != end:
            raise ConfigError(f"{where}: prm_step_tag {v.tag!r} does not end on a token boundary in this text; choose another tag")
        targets[after] = v.id(label)
    return {"input_ids": ids, "labels": targets}


def scored_as_selection(tokenizer, question: str, steps: list[str], ids: list[int], v: Verdicts) -> tuple[int, int]:
    """(agreeing, all): how many of the row's verdict positions see exactly the ids the `prm`
    selection sends when it judges that step (the last always does; an earlier one does when the
    text before its tag tokenizes the same on its own as inside the row)."""
    agreeing = 0
    for k in range(len(steps)):
        prompt = math_shepherd_text(question, steps[: k + 1], v.tag)[: -len(v.tag)]
        sent = [*tokenizer(prompt, add_special_tokens=False)["input_ids"], *v.tag_ids]
        agreeing += ids[: len(sent)] == sent
    return agreeing, len(steps)


def check_layout(row: dict, question: str, steps: list[str], labels: list[bool], v: Verdicts, where: str) -> None:
    """A row's Math-Shepherd columns (`input`, `label`, as `cord export --format stepwise` writes
    them with its run's search.prm_*) must be laid out with this training's tag and verdicts,
    which the search that reads the PRM has to use too."""
    if "input" in row and row["input"] != math_shepherd_text(question, steps, v.tag):
        raise ConfigError(f"{where}: its `input` column is not tagged with prm_step_tag {v.tag!r}; set it as the run's search did")
    verdicts = [v.good if label else v.bad for label in labels]
    if "label" in row and row["label"] != math_shepherd_text(question, steps, v.tag, verdicts):
        raise ConfigError(f"{where}: `label` column has other verdicts than prm_good {v.good!r} / prm_bad {v.bad!r}; set them as the run")


def examples(rows: list[dict], tokenizer, v: Verdicts, data: str) -> list[dict]:
    """Every stepwise row as trained (see `example`)."""
    out = []
    for i, row in enumerate(rows):
        where = f"{data} row {i}"
        question, steps, labels = stepwise(row, where)
        check_layout(row, question, steps, labels, v, where)
        out.append(example(tokenizer, question, steps, labels, v, where))
    return out


def dry_run_lines(rows: list[dict], trained: list[dict], tokenizer, v: Verdicts) -> list[str]:
    """The PRM part of `cord train --dry-run`: the first row with the verdict each tag learns, its
    tokens with the loss, the verdict counts, and how many verdict positions tokenize as scored."""
    question, steps, labels = stepwise(rows[0], "row 0")
    first = trained[0]
    lossy = [(i, t) for i, t in enumerate(first["labels"]) if t != IGNORE]
    shown = ", ".join(f"{i}:{tokenizer.convert_ids_to_tokens(t)!r}" for i, t in lossy)
    good = sum(sum(stepwise(r, "row")[2]) for r in rows)
    verdict_count = sum(len(r["completions"]) for r in rows)
    agree = [scored_as_selection(tokenizer, *stepwise(r, "row")[:2], t["input_ids"], v) for r, t in zip(rows[:20], trained)]
    return [
        f"task: prm (a process reward model in Math-Shepherd's layout, for search.selection: prm); tag {v.tag!r} "
        f"({len(v.tag_ids)} tokens), good {v.good!r} (id {v.good_id}), bad {v.bad!r} (id {v.bad_id})",
        f"verdicts: {verdict_count} ({good} good, {verdict_count - good} bad); loss on the verdict tokens alone",
        f"the first row ({len(first['input_ids'])} tokens), each tag followed by the verdict it learns "
        "(a label: the model reads the tags alone, as the selection sends them, and the last verdict):",
        math_shepherd_text(question, steps, v.tag, [v.good if label else v.bad for label in labels]),
        f"--- loss at {len(lossy)} of {len(first['input_ids'])} tokens (position:label): {shown} ---",
        f"verdict positions read as the prm selection scores them: {sum(a for a, _ in agree)} of {sum(n for _, n in agree)} "
        f"(first {len(agree)} rows)",
    ]
