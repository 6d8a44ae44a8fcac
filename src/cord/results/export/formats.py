"""The export formats, one class each: the columns of a row, whether a row pairs two trajectories
(DPO), the `dataset_info.json` entry LLaMA-Factory reads the file with, and how to train on it.

Every row holds `<think>\\n` + the chosen reasoning (which ends with `</think>`) + the final answer,
exactly as the teachers wrote it, as its assistant turn; every format then carries the same
provenance columns (see `rows.py`), so rows of several runs share one schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ...prompts import THINK_CLOSE, THINK_OPEN
from ...scoring.selection import math_shepherd_text
from .steps import StepOptions, StepTree, Trajectory, labelled_sequences, preference_pairs

SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}


def assistant_text(reasoning: str, final_answer: str) -> str:
    """The assistant turn a student learns: the think block, then the final answer."""
    return THINK_OPEN + reasoning + final_answer


@dataclass(frozen=True)
class Turns:
    """What a row is made of: the user turn, an optional system turn, the chosen assistant turn,
    and for a pair the rejected one."""

    question: str
    system: str | None
    answer: str
    rejected: str | None = None

    def prompt(self) -> list[dict[str, str]]:
        """The turns before the assistant's, as chat messages."""
        return ([{"role": "system", "content": self.system}] if self.system else []) + [{"role": "user", "content": self.question}]


def said(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


class ExportFormat:
    """One output format. A subclass sets `name` and writes `columns`; the flags say how the rest of
    the export treats it."""

    name: str = ""
    pairs = False  # a row is a (chosen, rejected) pair of one record's trajectories
    llama_factory = False  # LLaMA-Factory reads it through a dataset_info.json entry beside the file
    files_only = False  # LLaMA-Factory is its reader, and it reads files: a datasets folder is refused
    # A trainer renders these assistant turns with the student's chat template, which may drop
    # <think>...</think>; prompt-completion rows can be handed over as text instead.
    rendered_by_chat_template = True
    step_level = False  # several rows per record, from the steps the search scored (steps.py)
    needs_student = False  # its prompts are rendered in the student's chat template (--student)
    no_rows = ""  # a step format: why a record gives no row
    rows_from_alternatives = True  # a step format: the alternatives' steps make rows too (not only label them)

    def columns(self, turns: Turns) -> dict[str, Any]:
        """The format's own columns of a row (the provenance columns follow them)."""
        raise NotImplementedError

    def step_rows(self, tree: StepTree, sources: list[Trajectory], question: str, options: StepOptions) -> Iterator[tuple[dict, str]]:
        """A step format's rows of one record, each as (its own columns, the text near-duplicates
        are judged on); `sources`: the trajectories rows may come from."""
        raise NotImplementedError

    def llama_factory_entry(self, file_name: str) -> dict[str, Any]:
        """The dataset_info.json entry LLaMA-Factory reads the file with (a system column is added
        where rows have one)."""
        raise NotImplementedError(f"LLaMA-Factory does not read --format {self.name}")

    def kept(self, filtered: str) -> str:
        """What the card says was kept, given what the filter keeps."""
        return filtered

    def train_lines(self, name: str) -> list[str]:
        """How to train on the data, as commands that run as written (`name`: the file, folder or
        hub repository the card sits beside)."""
        return ["```bash", f"cord train --data {name} --model <student> --out runs/student", "```"]


class Messages(ExportFormat):
    """TRL's conversational language-modeling rows (what `cord train` reads)."""

    name = "messages"

    def columns(self, turns: Turns) -> dict[str, Any]:
        return {"messages": [*turns.prompt(), said("assistant", turns.answer)]}


class PromptCompletion(ExportFormat):
    """TRL's conversational prompt / completion rows (`cord train` reads them too)."""

    name = "prompt-completion"
    rendered_by_chat_template = False

    def columns(self, turns: Turns) -> dict[str, Any]:
        return {"prompt": turns.prompt(), "completion": [said("assistant", turns.answer)]}


class LlamaFactoryFormat(ExportFormat):
    """A format only LLaMA-Factory reads: a file with a dataset_info.json entry."""

    llama_factory = True
    files_only = True

    def train_lines(self, name: str) -> list[str]:
        return ["With LLaMA-Factory: set `dataset_dir` to this folder and `dataset:` to the name in `dataset_info.json`."]


class ShareGPT(LlamaFactoryFormat):
    name = "sharegpt"

    def columns(self, turns: Turns) -> dict[str, Any]:
        conversation = [{"from": "human", "value": turns.question}, {"from": "gpt", "value": turns.answer}]
        return {"conversations": conversation, "system": turns.system or ""}

    def llama_factory_entry(self, file_name: str) -> dict[str, Any]:
        return {"file_name": file_name, "formatting": "sharegpt", "columns": {"messages": "conversations"}, "tags": dict(SHAREGPT_TAGS)}


class Alpaca(LlamaFactoryFormat):
    name = "alpaca"

    def columns(self, turns: Turns) -> dict[str, Any]:
        return {"instruction": turns.question, "input": "", "output": turns.answer, "system": turns.system or ""}

    def llama_factory_entry(self, file_name: str) -> dict[str, Any]:
        return {"file_name": file_name, "columns": {"prompt": "instruction", "query": "input", "response": "output"}}


class DPO(ExportFormat):
    """Preference pairs: a problem's best-scored correct trajectory (chosen) and best-scored wrong
    one (rejected), in TRL's conversational columns and LLaMA-Factory's sharegpt ones."""

    name = "dpo"
    pairs = True
    llama_factory = True

    def columns(self, turns: Turns) -> dict[str, Any]:
        return {
            # TRL's conversational preference columns
            "prompt": turns.prompt(),
            "chosen": [said("assistant", turns.answer)],
            "rejected": [said("assistant", turns.rejected)],
            # LLaMA-Factory's sharegpt preference columns (its dataset_info.json entry names them)
            "conversations": [{"from": "human", "value": turns.question}],
            "chosen_turn": {"from": "gpt", "value": turns.answer},
            "rejected_turn": {"from": "gpt", "value": turns.rejected},
            "system": turns.system or "",
        }

    def llama_factory_entry(self, file_name: str) -> dict[str, Any]:
        columns = {"messages": "conversations", "chosen": "chosen_turn", "rejected": "rejected_turn"}
        return {"file_name": file_name, "formatting": "sharegpt", "ranking": True, "columns": columns, "tags": dict(SHAREGPT_TAGS)}

    def kept(self, filtered: str) -> str:
        return f"pairs of a problem's best correct trajectory (chosen) and best wrong one (rejected); chosen: {filtered}"

    def train_lines(self, name: str) -> list[str]:
        return [
            "Preference pairs (TRL's `prompt` / `chosen` / `rejected`; LLaMA-Factory reads the `ranking` entry of",
            "`dataset_info.json`). With TRL, from the hub:",
            "",
            "```bash",
            f"trl dpo --model_name_or_path <student> --dataset_name {name} --output_dir runs/student-dpo",
            "```",
        ]


class StepDPO(ExportFormat):
    """Step-level preference pairs (search.keep_candidates): after a prefix of the chosen trajectory,
    its next step (chosen) and a rival scored clearly below it and labelled bad (rejected), in TRL's
    standard text preference columns. The prompt is the user turn in the student's chat template with the
    think block open, then the accepted steps: what the student continues at that step."""

    name = "step-dpo"
    step_level = needs_student = True
    rendered_by_chat_template = False  # the rows are text, already rendered
    no_rows = "no step of the chosen trajectory has a rival scored more than the margin below it and labelled bad"
    # Chosen steps from the chosen trajectory alone: an alternative's right answer comes more often
    # by wrong steps (docs/benchmarks.md, "Step labels against the tiny tasks' truth")
    rows_from_alternatives = False

    def step_rows(self, tree, sources, question, options):
        rendered = None  # the user turn in the student's template: once a record, not once a pair
        for chosen, rejected in preference_pairs(tree, sources, options):
            rendered = rendered or options.render(question)
            columns = {
                "prompt": rendered + "".join(chosen.prefix),
                "chosen": chosen.text,
                "rejected": rejected.text,
                "step": len(chosen.prefix),  # the accepted steps before it
                "chosen_teacher": chosen.teacher,
                "rejected_teacher": rejected.teacher,
                "chosen_score": chosen.score,  # S of prefix + step, as the search ranked it
                "rejected_score": rejected.score,
            }
            yield columns, "\n".join([question, *chosen.prefix, chosen.text, rejected.text])

    def kept(self, filtered: str) -> str:
        return (
            "one pair per step of the chosen trajectory with a rival scored more than the margin below it and labelled bad; "
            f"chosen trajectories: {filtered}"
        )

    def train_lines(self, name: str) -> list[str]:
        return [
            "Step-level preference pairs in TRL's standard text columns (`prompt` / `chosen` / `rejected`; the prompt is",
            "already in the student's chat template). TRL's DPOTrainer appends the end-of-turn token to both sides.",
            "",
            "```bash",
            f"trl dpo --model_name_or_path <student> --dataset_name {name} --output_dir runs/student-step-dpo",
            "```",
        ]


class Stepwise(ExportFormat):
    """TRL's stepwise-supervision rows (search.keep_candidates): the question, the steps and one
    label per step, plus Math-Shepherd's text layout (`input` tagged after each step, `label` with
    each tag followed by its verdict), which the `prm` selection reads."""

    name = "stepwise"
    step_level = True
    rendered_by_chat_template = False
    no_rows = "no labelled step"

    def step_rows(self, tree, sources, question, options):
        for source, nodes, labels in labelled_sequences(tree, sources, options):
            steps = [n.text.replace(THINK_CLOSE, "").strip() for n in nodes]  # as math_shepherd_text lays them out
            verdicts = [options.good if good else options.bad for good in labels]
            columns = {
                "prompt": question,
                "completions": steps,
                "labels": labels,
                "input": math_shepherd_text(question, steps, options.tag),
                "label": math_shepherd_text(question, steps, options.tag, verdicts),
                "source": source,  # chosen | alternative (a finished trajectory) | rival (a step the beam dropped)
                "step_teachers": [n.teacher for n in nodes],
                "step_scores": [n.score for n in nodes],
            }
            yield columns, "\n".join([question, *steps])

    def kept(self, filtered: str) -> str:
        return (
            "every finished trajectory, and every labelled rival after its accepted prefix, of every record that did not "
            "fail (the labels carry the grade), cut before the first step without a label"
        )

    def train_lines(self, name: str) -> list[str]:
        return [
            "TRL's stepwise-supervision columns (`prompt` / `completions` / `labels`), what a trainer of a process reward",
            f"model reads; `input` / `label` hold the same rows in Math-Shepherd's layout (the `prm` selection's). Data: {name}.",
        ]


# name -> format, in the order `cord export --format` lists them (usable as argparse choices)
FORMATS: dict[str, ExportFormat] = {f.name: f for f in (Messages(), PromptCompletion(), ShareGPT(), Alpaca(), DPO(), StepDPO(), Stepwise())}
