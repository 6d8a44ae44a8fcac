"""`cord export --format step-dpo / stepwise`: step rows from the candidates a tiny CoRD run kept
(search.keep_candidates), their labels, the filters and card, the refusals, and TRL reading them:
DPOTrainer trains a tiny student on step-dpo rows."""

from __future__ import annotations

import json
import shutil

import datasets
import pytest

from cord.config import ConfigError
from cord.engines import resolve_model
from cord.engines.chat import ChatTokenizer
from cord.prompts import REASONING_INSTRUCTION, open_reasoning, user_turn
from cord.records import read_records
from cord.records.quality import FLAGS
from cord.results.export import QualityFilter, card_path, export
from cord.results.export.steps import DEFAULT_MARGIN, StepTree
from cord.scoring.selection import math_shepherd_text
from helpers import cord, needs_tiny

pytestmark = needs_tiny
STUDENT = "tiny:tiny-generalist"


def rows_of(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_step_dpo_pairs_an_accepted_step_with_a_rival_scored_clearly_below_it(kept_run, tmp_path):
    out = tmp_path / "step-dpo.jsonl"
    report = export([kept_run], out, "step-dpo", student=STUDENT)
    rows = rows_of(out)
    assert report.written == len(rows) > 0
    records = {r.id: r for r in read_records(kept_run)}
    chat = ChatTokenizer(resolve_model(STUDENT))
    for row in rows:
        record = records[row["id"]]
        head = open_reasoning(chat.chat_prompt(user_turn(record.question, REASONING_INSTRUCTION)))
        steps = record.steps  # chosen steps come from the chosen trajectory, a right one (--only-correct)
        assert record.correct and steps[row["step"]].text == row["chosen"]
        assert row["prompt"] == head + "".join(s.text for s in steps[: row["step"]])
        rival = next(c for c in steps[row["step"]].candidates if c["text"] == row["rejected"])
        assert row["chosen_score"] - row["rejected_score"] > DEFAULT_MARGIN and rival["score"] == row["rejected_score"]
        assert row["run"] == kept_run.name and row["method"] == "cord" and row["user_instruction"] == REASONING_INSTRUCTION
    card = card_path(out).read_text(encoding="utf-8")
    assert f"- rows: {len(rows)} step rows from {report.read} records" in card and f"margin {DEFAULT_MARGIN}" in card


def test_a_wider_margin_makes_fewer_pairs(kept_run, tmp_path):
    default = export([kept_run], tmp_path / "a.jsonl", "step-dpo", student=STUDENT)
    code, _, err = cord("export", kept_run, "--format", "step-dpo", "--student", STUDENT, "--margin", "0.2", "--out", tmp_path / "b.jsonl")
    wide = rows_of(tmp_path / "b.jsonl")
    assert code == 0 and f"wrote {len(wide)} rows" in err and 0 < len(wide) < default.written
    assert all(r["chosen_score"] - r["rejected_score"] > 0.2 for r in wide)


def test_stepwise_rows_are_trls_stepwise_supervision_with_math_shepherd_text(kept_run, tmp_path):
    out = tmp_path / "stepwise.parquet"
    report = export([kept_run], out, "stepwise")
    table = datasets.load_dataset("parquet", data_files=str(out), split="train")
    assert table.features["labels"].feature.dtype == "bool" and table.features["prompt"].dtype == "string"
    assert report.written == len(table) > 0 and {"chosen", "alternative", "rival"} <= set(table["source"])
    trees = {r.id: (r, StepTree(r)) for r in read_records(kept_run)}
    for row in table:
        record, tree = trees[row["id"]]
        assert row["prompt"] == record.question and len(row["completions"]) == len(row["labels"]) > 0
        verdicts = ["+" if good else "-" for good in row["labels"]]
        assert row["input"] == math_shepherd_text(record.question, row["completions"], " ки")
        assert row["label"] == math_shepherd_text(record.question, row["completions"], " ки", verdicts)
        if row["source"] == "chosen":  # the chosen trajectory: a right one is good throughout (its outcome)
            path = tree.path(record)[: len(row["labels"])]
            assert row["labels"] == [tree.label(node) for node in path] and (not record.correct or all(row["labels"]))
    assert not any(row["labels"][-1] for row in table if row["source"] == "rival")  # a dropped rival is never shown good


def test_filters_and_decontamination_drop_a_records_step_rows(kept_run, tmp_path):
    records = read_records(kept_run)
    banned = records[0]
    evalset = tmp_path / "held-out.jsonl"
    evalset.write_text(json.dumps({"problem": banned.question, "answer": banned.answer}) + "\n", encoding="utf-8")
    report = export([kept_run], tmp_path / "s.jsonl", "stepwise", decontaminate=str(evalset))
    assert report.dropped["contaminated"] == 1 and banned.id not in {r["id"] for r in rows_of(tmp_path / "s.jsonl")}
    everything = QualityFilter(drop=frozenset(FLAGS), near_duplicates="keep")
    flagged = {r.id for r in records if everything.reason(r)}
    kept = export([kept_run], tmp_path / "q.jsonl", "stepwise", quality=everything)
    assert not flagged & {r["id"] for r in rows_of(tmp_path / "q.jsonl")}
    assert sum(n for reason, n in kept.dropped.items() if reason.startswith("flagged")) == len(flagged)
    loose = export([kept_run], tmp_path / "k.jsonl", "stepwise", quality=QualityFilter(near_duplicates="keep"))
    strict = export([kept_run], tmp_path / "d.jsonl", "stepwise")
    near = strict.dropped["step row: near-duplicate of a row kept (--near-duplicates)"]
    assert loose.written == strict.written + near


def test_step_formats_refuse_without_student_or_candidates_and_write_nothing(kept_run, tmp_path):
    with pytest.raises(ConfigError, match=r"^--student: --format step-dpo renders"):
        export([kept_run], tmp_path / "a.jsonl", "step-dpo")
    with pytest.raises(ConfigError, match=r"^--margin: -0.1 is not in \[0, 1\)"):
        export([kept_run], tmp_path / "a.jsonl", "stepwise", margin=-0.1)
    bare = tmp_path / "bare-run"
    shutil.copytree(kept_run, bare)
    lines = [json.loads(line) for line in (bare / "records.jsonl").read_text(encoding="utf-8").splitlines()]
    for record in lines:
        for trajectory in [record, *record["alternatives"]]:
            for step in trajectory["steps"]:
                step["candidates"] = None
    (bare / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    code, _, err = cord("export", bare, "--format", "stepwise", "--out", tmp_path / "b.jsonl")
    assert code == 2 and err.strip().splitlines()[-1].endswith("set search.keep_candidates: true when generating")
    assert not list(tmp_path.glob("*.jsonl*"))


def test_trl_dpo_trainer_trains_a_tiny_student_on_step_dpo_rows(kept_run, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    out = tmp_path / "step-dpo.jsonl"
    export([kept_run], out, "step-dpo", student=STUDENT)
    table = datasets.load_dataset("json", data_files=str(out), split="train").select(range(4))
    path = resolve_model(STUDENT)
    tokenizer = AutoTokenizer.from_pretrained(path)
    args = DPOConfig(
        output_dir=str(tmp_path / "dpo"), max_steps=2, per_device_train_batch_size=2, report_to=[], save_strategy="no", use_cpu=True
    )
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(path), args=args, train_dataset=table, processing_class=tokenizer)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 0.7M-parameter model: more threads only contend on a shared CPU (4 s against 39 s here)
    try:
        result = trainer.train()
    finally:
        torch.set_num_threads(threads)
    assert result.global_step == 2 and result.training_loss > 0
