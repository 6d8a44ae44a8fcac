"""`cord export`: run directories -> a training set for TRL or LLaMA-Factory.

    cord export RUN_DIR... --format messages|prompt-completion|sharegpt|alpaca|dpo --out PATH

The assistant turn is `<think>\\n` + the chosen reasoning (which ends with `</think>`) + the final
answer, exactly as the teachers wrote it. The user turn is the question and the student instruction
(`--student-instruction`, by default the one `cord eval-student` sends: the student is trained on the
prompt it is evaluated on; `cord train` records it beside the model and `eval-student` reads it from
there), or the question and the step instruction the teachers were given (`--with-step-instruction`).
Every format carries the
same provenance columns (run, method, teacher of each step, scores), so rows of several runs
share one schema. PATH decides the container: `.jsonl`, `.json` (one JSON array, as LLaMA-Factory's
own datasets are), `.parquet`, or otherwise a `datasets` folder (`save_to_disk`). The filters
(`--only-correct`, `--require-valid-trace`, `--all`) apply to every format (for DPO, to the chosen
trajectory of each pair) and the card says what was kept. LLaMA-Factory formats and DPO pairs get a
`dataset_info.json` entry beside the file (preference pairs with `ranking: true`). Everything is
checked before anything is written; nothing is written when nothing is left to write.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import ConfigError
from ..data.evalsets import Contamination, load_eval_sets
from ..engines import resolve_model
from ..engines.chat import ChatTokenizer
from ..prompts import REASONING_INSTRUCTION, THINK_OPEN, user_turn
from ..records import CONFIG, Alternative, Record, RunData, atomic_write, read_run

FORMATS = ("messages", "prompt-completion", "sharegpt", "alpaca", "dpo")
KEEP = ("correct", "valid", "all")  # --only-correct (default), --require-valid-trace, --all
LLAMA_FACTORY_INFO = "dataset_info.json"
LLAMA_FACTORY_FORMATS = ("sharegpt", "alpaca", "dpo")  # formats LLaMA-Factory reads through a dataset_info.json entry


@dataclass
class ExportReport:
    read: int = 0
    written: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> count
    contaminated: Counter = field(default_factory=Counter)  # evaluation set -> count
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"read {self.read} records, wrote {self.written} rows"]
        out += [f"dropped {n}: {reason}" for reason, n in sorted(self.dropped.items())]
        out += [f"decontamination: {n} shared an n-gram with {name}" for name, n in sorted(self.contaminated.items())]
        return out


def assistant_text(reasoning: str, final_answer: str) -> str:
    """The assistant turn a student learns: the think block, then the final answer."""
    return THINK_OPEN + reasoning + final_answer


def drop_reason(record: Record, keep: str) -> str | None:
    if record.failed:
        return f"failed ({record.failed})" if keep != "all" else None
    if keep == "all":
        return None
    if record.correct is None:
        return "not graded (grading.method none, or the judge gave no verdict); export with --all"
    if not record.correct:
        return "incorrect final answer"
    if keep == "valid" and record.valid_trace is not True:
        return "trace not valid" if record.valid_trace is False else "trace validity unknown (only generated tiny problems carry it)"
    return None


def provenance(run: RunData, record: Record, chosen: Record | Alternative, instruction: str | None) -> dict[str, Any]:
    """Columns every format carries, with the same types for every run."""
    return {
        "id": record.id,
        "user_instruction": instruction or "",  # what follows the question in the user turn
        "run": run.path.name,
        "method": record.method,
        "answer": record.answer,
        "correct": chosen.correct,
        "valid_trace": chosen.valid_trace,
        "predictive_perplexity": chosen.predictive_perplexity,
        "step_teachers": [s.teacher for s in chosen.steps],
        "step_scores": [s.score for s in chosen.steps],
        "answer_teacher": chosen.answer_teacher,
    }


def dpo_pair(record: Record) -> tuple[Record | Alternative, Record | Alternative] | None:
    """(chosen, rejected): the best-scored correct trajectory and the best-scored wrong one."""
    ranked = [record, *record.alternatives]
    right = [t for t in ranked if t.correct is True]
    wrong = [t for t in ranked if t.correct is False and t.final_answer]
    return (right[0], wrong[0]) if right and wrong else None


def rows_for(run: RunData, record: Record, fmt: str, instruction: str | None, system: str | None) -> dict[str, Any]:
    question = user_turn(record.question, instruction)
    prompt = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    if fmt == "dpo":
        chosen, rejected = dpo_pair(record)  # type: ignore[misc]
        good, bad = (assistant_text(t.reasoning, t.final_answer) for t in (chosen, rejected))
        return {
            # TRL's conversational preference columns
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": good}],
            "rejected": [{"role": "assistant", "content": bad}],
            # LLaMA-Factory's sharegpt preference columns (its dataset_info.json entry names them)
            "conversations": [{"from": "human", "value": question}],
            "chosen_turn": {"from": "gpt", "value": good},
            "rejected_turn": {"from": "gpt", "value": bad},
            "system": system or "",
            **provenance(run, record, chosen, instruction),
        }
    answer = assistant_text(record.reasoning, record.final_answer)
    if fmt == "messages":
        row = {"messages": [*prompt, {"role": "assistant", "content": answer}]}
    elif fmt == "prompt-completion":
        row = {"prompt": prompt, "completion": [{"role": "assistant", "content": answer}]}
    elif fmt == "sharegpt":
        row = {"conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}], "system": system or ""}
    else:  # alpaca
        row = {"instruction": question, "input": "", "output": answer, "system": system or ""}
    return {**row, **provenance(run, record, record, instruction)}


def step_instruction_of(run: RunData) -> str | None:
    return (run.config.get("search") or {}).get("step_instruction")


def collect(
    runs: list[RunData],
    fmt: str,
    keep: str,
    instruction: str | None,
    with_step_instruction: bool,
    system: str | None,
    contamination: Contamination | None,
) -> tuple[list[dict], ExportReport]:
    report = ExportReport()
    rows = []
    for run in runs:
        if with_step_instruction:
            instruction = step_instruction_of(run)
        for record in run.records:
            report.read += 1
            # A DPO row is kept for its pair (a right and a wrong trajectory), whatever the best one's
            # grade; the filter then applies to the pair's chosen trajectory.
            reason = drop_reason(record, "all" if fmt == "dpo" else keep)
            pair = dpo_pair(record) if fmt == "dpo" and reason is None else None
            if reason is None and fmt == "dpo" and pair is None:
                reason = "no correct and wrong trajectory to pair (set search.keep_top_k > 1 when generating)"
            if pair is not None and keep == "valid" and pair[0].valid_trace is not True:
                reason = "chosen trajectory not a valid trace" if pair[0].valid_trace is False else "chosen trajectory's validity unknown"
            if reason is None and contamination is not None:
                hit = contamination.match(record.question)
                if hit:
                    report.contaminated[hit] += 1
                    reason = "contaminated"
            if reason:
                report.dropped[reason] += 1
                continue
            rows.append(rows_for(run, record, fmt, instruction, system))
    report.written = len(rows)
    return rows, report


def write_dataset(rows: list[dict], out: Path) -> None:
    """One container by suffix, written to a temporary name and renamed, so a failure leaves nothing."""
    import datasets

    datasets.disable_progress_bars()
    dataset = datasets.Dataset.from_list(rows)  # also checks that every row has one schema
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        target = tmp / out.name
        if out.suffix == ".jsonl":  # by hand: pandas' writer rounds floats to 10 digits and escapes "/"
            target.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        elif out.suffix == ".json":  # one array, as LLaMA-Factory's own datasets are written
            target.write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        elif out.suffix == ".parquet":
            dataset.to_parquet(target)
        else:
            dataset.save_to_disk(str(target))
        if out.is_dir():
            shutil.rmtree(out)
        os.replace(target, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


FILE_SUFFIXES = (".jsonl", ".json", ".parquet")  # containers LLaMA-Factory reads (a datasets folder it does not)


def llama_factory_entry(fmt: str, out: Path, system: bool) -> dict[str, Any]:
    """The `dataset_info.json` entry LLaMA-Factory reads the file with."""
    if fmt == "dpo":
        entry = {
            "file_name": out.name,
            "formatting": "sharegpt",
            "ranking": True,
            "columns": {"messages": "conversations", "chosen": "chosen_turn", "rejected": "rejected_turn"},
            "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
        }
    elif fmt == "sharegpt":
        entry = {
            "file_name": out.name,
            "formatting": "sharegpt",
            "columns": {"messages": "conversations"},
            "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
        }
    else:
        entry = {"file_name": out.name, "columns": {"prompt": "instruction", "query": "input", "response": "output"}}
    if system:
        entry["columns"]["system"] = "system"
    return entry


def llama_factory_key(out: Path) -> str:
    """The dataset's name in dataset_info.json (what `--dataset` names in LLaMA-Factory): the file name
    without its suffix."""
    return out.name.removesuffix(out.suffix)


def read_llama_factory_info(fmt: str, out: Path) -> dict:
    """The folder's dataset_info.json, checked before anything is written: an entry of the same name
    for another file is refused (it would be replaced)."""
    info_path = out.parent / LLAMA_FACTORY_INFO
    info: dict = {}
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{info_path}: not valid JSON ({err.msg}); fix or remove it") from None
    key = llama_factory_key(out)
    other = (info.get(key) or {}).get("file_name")
    if other not in (None, out.name):
        raise ConfigError(f"{info_path}: the dataset {key!r} already names {other}; export to another name (--out) or remove that entry")
    return info


def write_llama_factory_info(fmt: str, out: Path, system: bool, info: dict) -> Path:
    """Add (or replace) this dataset's entry in the folder's dataset_info.json, keeping the others."""
    info = {**info, llama_factory_key(out): llama_factory_entry(fmt, out, system)}
    info_path = out.parent / LLAMA_FACTORY_INFO
    atomic_write(info_path, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return info_path


def card_path(out: Path) -> Path:
    return out / "README.md" if out.suffix not in FILE_SUFFIXES else out.with_name(llama_factory_key(out) + ".README.md")


def user_turn_line(runs: list[RunData], instruction: str | None, with_step_instruction: bool) -> str:
    if with_step_instruction:
        return "the question, then the step instruction the teachers were given (`user_instruction` column)"
    if not instruction:
        return "the question alone (evaluate with `cord eval-student --instruction ''`)"
    return f"the question, a blank line, then {instruction!r} (the `user_instruction` column; evaluate with the same)"


def dataset_card(
    runs: list[RunData],
    fmt: str,
    keep: str,
    report: ExportReport,
    decontaminated: str | None,
    ngram: int,
    name: str = "<this dataset>",
    instruction: str | None = REASONING_INSTRUCTION,
    with_step_instruction: bool = False,
) -> str:
    """A Hugging Face dataset card (YAML metadata + Markdown) made from config.yaml and summary.json."""
    n = report.written
    size = "n<1K" if n < 1000 else "1K<n<10K" if n < 10_000 else "10K<n<100K" if n < 100_000 else "n>100K"
    meta = {
        "license": "other",
        "task_categories": ["text-generation"],
        "tags": ["reasoning", "chain-of-thought", "distillation", "cord", f"format-{fmt}"],
        "size_categories": [size],
    }
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "", "# Long chain-of-thought data made with cord", ""]
    kept = {"correct": "correct final answers", "valid": "correct final answers whose every step is right", "all": "every record"}[keep]
    if fmt == "dpo":
        kept = f"pairs of a problem's best correct trajectory (chosen) and best wrong one (rejected); chosen: {kept}"
    lines += [
        "Trajectories written step by step by several teacher models, each step chosen by a meta-prover's predictive "
        "perplexity (collaborative step-wise multi-teacher decoding, CoRD).",
        "",
        f"- format: `{fmt}`; rows kept: {kept}",
        f"- rows: {n} of {report.read} records",
        f"- user turn: {user_turn_line(runs, instruction, with_step_instruction)}",
    ]
    lines += [f"- dropped {c}: {reason}" for reason, c in sorted(report.dropped.items())]
    if decontaminated:
        lines.append(f"- decontaminated against {decontaminated} ({ngram}-gram word overlap)")
    lines += ["", "## Source runs", ""]
    for run in runs:
        c, s = run.config, run.summary
        teachers = ", ".join(f"{t.get('name')} ({t.get('model')}, T={t.get('temperature')})" for t in c.get("teachers") or [])
        search = c.get("search") or {}
        acc = s.get("accuracy")
        lines += [
            f"### {run.path.name}",
            "",
            f"- method: {search.get('method')}, beam size {search.get('beam_size')}, reasoning budget {search.get('reasoning_budget')}",
            f"- teachers: {teachers}",
            f"- meta-prover: {(c.get('meta_prover') or {}).get('model')}",
            f"- problems: {s.get('problems', len(run.records))}, accuracy: {'-' if acc is None else f'{100 * acc:.1f}%'}",
            "",
        ]
    lines += ["## Train", ""] + train_lines(fmt, name) + [""]
    return "\n".join(lines)


def train_lines(fmt: str, name: str) -> list[str]:
    """How to train on this dataset, as commands that run as written (`name`: the file, folder or
    hub repository the card sits beside)."""
    if fmt == "dpo":
        return [
            "Preference pairs (TRL's `prompt` / `chosen` / `rejected`; LLaMA-Factory reads the `ranking` entry of",
            "`dataset_info.json`). With TRL, from the hub:",
            "",
            "```bash",
            f"trl dpo --model_name_or_path <student> --dataset_name {name} --output_dir runs/student-dpo",
            "```",
        ]
    if fmt in ("sharegpt", "alpaca"):
        return ["With LLaMA-Factory: set `dataset_dir` to this folder and `dataset:` to the name in `dataset_info.json`."]
    return ["```bash", f"cord train --data {name} --model <student> --out runs/student", "```"]


def check_card(text: str) -> None:
    """Parse the card as the hub does, so a malformed card fails here and not at upload."""
    from huggingface_hub import DatasetCard

    card = DatasetCard(text)
    if not card.data.to_dict().get("task_categories"):
        raise ConfigError("dataset card: metadata did not parse")


def export(
    run_dirs: list[str | Path],
    out: str | Path,
    fmt: str = "messages",
    keep: str = "correct",
    instruction: str | None = REASONING_INSTRUCTION,
    with_step_instruction: bool = False,
    system: str | None = None,
    decontaminate: str | None = None,
    ngram: int = 8,
    overwrite: bool = False,
    hub_repo: str | None = None,
    student: str | None = None,
) -> ExportReport:
    """The runs' records as a training set at `out`, its card, and its dataset_info.json entry.
    The user turn is the question and `instruction` ("" or None: the question alone), or each run's
    step instruction with `with_step_instruction`;
    `hub_repo`: the repository it will be pushed to (the card's commands name it); `student`: the
    model to be trained on it, whose chat template is checked for dropping the reasoning."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if keep not in KEEP:
        raise ConfigError(f"keep: {keep!r} is not one of {', '.join(KEEP)}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out}: already exists (use --overwrite to replace it)")
    if fmt in ("sharegpt", "alpaca") and out.suffix not in FILE_SUFFIXES:
        raise ConfigError(f"{out}: LLaMA-Factory reads files; give --out a .json, .jsonl or .parquet name for --format {fmt}")
    info = read_llama_factory_info(fmt, out) if fmt in LLAMA_FACTORY_FORMATS and out.suffix in FILE_SUFFIXES else None
    runs = [read_run(p) for p in run_dirs]
    contamination = Contamination(load_eval_sets(decontaminate), ngram) if decontaminate else None
    rows, report = collect(runs, fmt, keep, instruction, with_step_instruction, system, contamination)
    if not rows:
        raise ConfigError(f"nothing to export: {'; '.join(report.lines())}")
    if student and fmt != "prompt-completion" and ChatTokenizer(resolve_model(student)).drops_reasoning():
        report.warnings.append(
            f"{student}'s chat template drops <think>...</think> from the assistant turns it renders: a trainer given these "
            "conversations trains on final answers alone; train with `cord train` (it renders prompt and completion itself) "
            "or export --format prompt-completion and give the trainer the text"
        )
    card = dataset_card(runs, fmt, keep, report, decontaminate, ngram, hub_repo or str(out), instruction, with_step_instruction)
    check_card(card)
    write_dataset(rows, out)
    report.files.append(str(out))
    atomic_write(card_path(out), card)
    report.files.append(str(card_path(out)))
    if info is not None:
        report.files.append(str(write_llama_factory_info(fmt, out, bool(system), info)))
    return report


def push_to_hub(out: str | Path, repo: str, run_dirs: list[str | Path], private: bool = False) -> None:
    """Upload an export, its card and each source run's config.yaml (`cord/<run>/config.yaml`: what
    made the data, enough to run it again). Needs network and a token: the one part no test reaches."""
    import datasets
    from huggingface_hub import DatasetCard, HfApi

    out = Path(out)
    if out.suffix in (".jsonl", ".json"):
        dataset = datasets.load_dataset("json", data_files=str(out), split="train")
    elif out.suffix == ".parquet":
        dataset = datasets.load_dataset("parquet", data_files=str(out), split="train")
    else:
        dataset = datasets.load_from_disk(str(out))
    dataset.push_to_hub(repo, private=private)
    DatasetCard(card_path(out).read_text(encoding="utf-8")).push_to_hub(repo, repo_type="dataset")
    api = HfApi()
    for run in map(Path, run_dirs):
        api.upload_file(path_or_fileobj=str(run / CONFIG), path_in_repo=f"cord/{run.name}/{CONFIG}", repo_id=repo, repo_type="dataset")


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="cord export", description="Run directories -> a training set for TRL or LLaMA-Factory.")
    parser.add_argument("runs", nargs="+", help="run directories")
    parser.add_argument("--out", required=True, help=".jsonl, .json (one array), .parquet, or a folder (datasets save_to_disk)")
    parser.add_argument("--format", default="messages", choices=FORMATS)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--only-correct", dest="keep", action="store_const", const="correct", help="rows whose answer is right (default)")
    which.add_argument("--require-valid-trace", dest="keep", action="store_const", const="valid", help="right answer and every step right")
    which.add_argument("--all", dest="keep", action="store_const", const="all", help="every record that did not fail")
    turn = parser.add_mutually_exclusive_group()
    turn.add_argument(
        "--student-instruction",
        default=REASONING_INSTRUCTION,
        help="after the question in the user turn ('' for the question alone; default: what cord eval-student sends)",
    )
    turn.add_argument("--with-step-instruction", action="store_true", help="the user turn carries the step instruction the teachers saw")
    parser.add_argument("--system-prompt", help="a system turn in every row")
    parser.add_argument("--decontaminate", metavar="SETS", help="comma-separated: aime24, aime25, math500, gsm8k or JSONL paths")
    parser.add_argument("--ngram", type=int, default=8, help="word n-gram length for --decontaminate (default 8)")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload the export and its card to this dataset repository")
    parser.add_argument("--private", action="store_true", help="with --push-to-hub: a private repository")
    parser.add_argument("--student", metavar="MODEL", help="the model to train on it: warn if its chat template drops the reasoning")
    args = parser.parse_args(argv)
    report = export(
        args.runs,
        args.out,
        args.format,
        args.keep or "correct",
        args.student_instruction,
        args.with_step_instruction,
        args.system_prompt,
        args.decontaminate,
        args.ngram,
        args.overwrite,
        args.push_to_hub,
        args.student,
    )
    for line in report.lines():
        print(line, file=sys.stderr)
    for warning in report.warnings:
        print(f"cord: warning: {warning}", file=sys.stderr)
    for path in report.files:
        print(f"wrote {path}", file=sys.stderr)
    if args.push_to_hub:
        push_to_hub(args.out, args.push_to_hub, args.runs, args.private)
        print(f"pushed to https://huggingface.co/datasets/{args.push_to_hub}", file=sys.stderr)
    return 0
