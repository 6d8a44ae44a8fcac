"""`cord export`: run directories -> a training set for TRL or LLaMA-Factory.

    cord export RUN_DIR... --format messages|prompt-completion|sharegpt|alpaca|dpo --out PATH

The assistant turn is `<think>\\n` + the chosen reasoning (which ends with `</think>`) + the final
answer, exactly as the teachers wrote it. The user turn is the question, or the question and the
step instruction the teachers were given (`--with-step-instruction`). Every format carries the
same provenance columns (run, method, teacher of each step, scores), so rows of several runs
share one schema. PATH decides the container: `.jsonl`, `.parquet`, or otherwise a `datasets`
folder (`save_to_disk`). Nothing is written when nothing is left to write.
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
from ..prompts import THINK_OPEN, user_turn
from ..records import Alternative, Record, RunData, atomic_write, read_run

FORMATS = ("messages", "prompt-completion", "sharegpt", "alpaca", "dpo")
KEEP = ("correct", "valid", "all")  # --only-correct (default), --require-valid-trace, --all
LLAMA_FACTORY_INFO = "dataset_info.json"


@dataclass
class ExportReport:
    read: int = 0
    written: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> count
    contaminated: Counter = field(default_factory=Counter)  # evaluation set -> count
    files: list[str] = field(default_factory=list)

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


def provenance(run: RunData, record: Record, chosen: Record | Alternative) -> dict[str, Any]:
    """Columns every format carries, with the same types for every run."""
    return {
        "id": record.id,
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
        return {
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": assistant_text(chosen.reasoning, chosen.final_answer)}],
            "rejected": [{"role": "assistant", "content": assistant_text(rejected.reasoning, rejected.final_answer)}],
            **provenance(run, record, chosen),
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
    return {**row, **provenance(run, record, record)}


def step_instruction_of(run: RunData) -> str | None:
    return (run.config.get("search") or {}).get("step_instruction")


def collect(
    runs: list[RunData], fmt: str, keep: str, with_instruction: bool, system: str | None, contamination: Contamination | None
) -> tuple[list[dict], ExportReport]:
    report = ExportReport()
    rows = []
    for run in runs:
        instruction = step_instruction_of(run) if with_instruction else None
        for record in run.records:
            report.read += 1
            # A DPO row is kept for its pair (a right and a wrong trajectory), whatever the best one's grade.
            reason = drop_reason(record, "all" if fmt == "dpo" else keep)
            if reason is None and fmt == "dpo" and dpo_pair(record) is None:
                reason = "no correct and wrong trajectory to pair (set search.keep_top_k > 1 when generating)"
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
        elif out.suffix == ".parquet":
            dataset.to_parquet(target)
        else:
            dataset.save_to_disk(str(target))
        if out.is_dir():
            shutil.rmtree(out)
        os.replace(target, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def llama_factory_entry(fmt: str, out: Path, system: bool) -> dict[str, Any]:
    """The `dataset_info.json` entry LLaMA-Factory reads the file with."""
    if fmt == "sharegpt":
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


def write_llama_factory_info(fmt: str, out: Path, system: bool) -> Path:
    """Add (or replace) this dataset's entry in the folder's dataset_info.json, keeping the others."""
    info_path = out.parent / LLAMA_FACTORY_INFO
    info = {}
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{info_path}: not valid JSON ({err.msg}); fix or remove it") from None
    info[out.name.split(".")[0]] = llama_factory_entry(fmt, out, system)
    atomic_write(info_path, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return info_path


def card_path(out: Path) -> Path:
    return out / "README.md" if out.suffix not in (".jsonl", ".parquet") else out.with_name(out.name.split(".")[0] + ".README.md")


def dataset_card(runs: list[RunData], fmt: str, keep: str, report: ExportReport, decontaminated: str | None, ngram: int) -> str:
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
    lines += [
        "Trajectories written step by step by several teacher models, each step chosen by a meta-prover's predictive "
        "perplexity (collaborative step-wise multi-teacher decoding, CoRD).",
        "",
        f"- format: `{fmt}`; rows kept: {'correct final answers' if keep == 'correct' else 'valid traces' if keep == 'valid' else 'all'}",
        f"- rows: {n} of {report.read} records",
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
    lines += ["## Train", "", "```bash", "cord train --data <this dataset> --model <student> --out runs/student", "```", ""]
    return "\n".join(lines)


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
    with_instruction: bool = False,
    system: str | None = None,
    decontaminate: str | None = None,
    ngram: int = 8,
    overwrite: bool = False,
) -> ExportReport:
    if fmt not in FORMATS:
        raise ConfigError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if keep not in KEEP:
        raise ConfigError(f"keep: {keep!r} is not one of {', '.join(KEEP)}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out}: already exists (use --overwrite to replace it)")
    if fmt in ("sharegpt", "alpaca") and out.suffix not in (".jsonl", ".parquet"):
        raise ConfigError(f"{out}: LLaMA-Factory reads files; give --out a .jsonl or .parquet name for --format {fmt}")
    runs = [read_run(p) for p in run_dirs]
    contamination = Contamination(load_eval_sets(decontaminate), ngram) if decontaminate else None
    rows, report = collect(runs, fmt, keep, with_instruction, system, contamination)
    if not rows:
        raise ConfigError(f"nothing to export: {'; '.join(report.lines())}")
    write_dataset(rows, out)
    report.files.append(str(out))
    card = dataset_card(runs, fmt, keep, report, decontaminate, ngram)
    check_card(card)
    atomic_write(card_path(out), card)
    report.files.append(str(card_path(out)))
    if fmt in ("sharegpt", "alpaca"):
        report.files.append(str(write_llama_factory_info(fmt, out, bool(system))))
    return report


def push_to_hub(out: str | Path, repo: str, private: bool = False) -> None:
    """Upload an export and its card (needs network and a token: the one line no test reaches)."""
    import datasets
    from huggingface_hub import DatasetCard

    out = Path(out)
    if out.suffix == ".jsonl":
        dataset = datasets.load_dataset("json", data_files=str(out), split="train")
    elif out.suffix == ".parquet":
        dataset = datasets.load_dataset("parquet", data_files=str(out), split="train")
    else:
        dataset = datasets.load_from_disk(str(out))
    dataset.push_to_hub(repo, private=private)
    DatasetCard(card_path(out).read_text(encoding="utf-8")).push_to_hub(repo, repo_type="dataset")


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="cord export", description="Run directories -> a training set for TRL or LLaMA-Factory.")
    parser.add_argument("runs", nargs="+", help="run directories")
    parser.add_argument("--out", required=True, help=".jsonl, .parquet, or a folder (datasets save_to_disk)")
    parser.add_argument("--format", default="messages", choices=FORMATS)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--only-correct", dest="keep", action="store_const", const="correct", help="rows whose answer is right (default)")
    which.add_argument("--require-valid-trace", dest="keep", action="store_const", const="valid", help="right answer and every step right")
    which.add_argument("--all", dest="keep", action="store_const", const="all", help="every record that did not fail")
    parser.add_argument("--with-step-instruction", action="store_true", help="the user turn carries the step instruction the teachers saw")
    parser.add_argument("--system-prompt", help="a system turn in every row")
    parser.add_argument("--decontaminate", metavar="SETS", help="comma-separated: aime24, aime25, math500, gsm8k or JSONL paths")
    parser.add_argument("--ngram", type=int, default=8, help="word n-gram length for --decontaminate (default 8)")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload the export and its card to this dataset repository")
    parser.add_argument("--private", action="store_true", help="with --push-to-hub: a private repository")
    args = parser.parse_args(argv)
    report = export(
        args.runs,
        args.out,
        args.format,
        args.keep or "correct",
        args.with_step_instruction,
        args.system_prompt,
        args.decontaminate,
        args.ngram,
        args.overwrite,
    )
    for line in report.lines():
        print(line, file=sys.stderr)
    for path in report.files:
        print(f"wrote {path}", file=sys.stderr)
    if args.push_to_hub:
        push_to_hub(args.out, args.push_to_hub, args.private)
        print(f"pushed to https://huggingface.co/datasets/{args.push_to_hub}", file=sys.stderr)
    return 0
