"""`cord export`: every format and container from a real tiny run, filters, provenance, DPO pairs,
decontamination against the shared evaluation sets, the dataset card, and refusals."""

from __future__ import annotations

import json

import datasets
import pytest

from cord.config import ConfigError, load_config
from cord.data.evalsets import Contamination, load_eval_set, ngrams
from cord.prompts import REASONING_INSTRUCTION, THINK_OPEN, user_turn
from cord.records import read_records
from cord.results.export import FORMATS, QualityFilter, card_path, export
from cord.results.export.rows import dpo_pair
from helpers import ROOT, SHARED_DATA, cord, needs_tiny

pytestmark = needs_tiny
needs_shared_data = pytest.mark.skipif(not (SHARED_DATA / "aime24.jsonl").is_file(), reason="../shared/data not beside the checkout")


@pytest.fixture
def tiny_run(kept_run):
    return kept_run


def rows_of(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_messages_rows_are_the_correct_records_with_think_reasoning_answer_and_provenance(tiny_run, tmp_path):
    records = read_records(tiny_run)
    right = [r for r in records if r.correct and not r.failed]
    report = export([tiny_run], tmp_path / "train.jsonl")
    rows = rows_of(tmp_path / "train.jsonl")
    assert report.read == len(records) and report.written == len(rows) == len(right) > 0
    assert report.dropped["incorrect final answer"] == len(records) - len(right)
    by_id = {r.id: r for r in right}
    for row in rows:
        record = by_id[row["id"]]
        user, assistant = row["messages"]
        assert user == {"role": "user", "content": user_turn(record.question, REASONING_INSTRUCTION)}
        assert assistant["role"] == "assistant"
        assert assistant["content"] == THINK_OPEN + record.reasoning + record.final_answer
        assert assistant["content"].count("</think>") == 1
        assert row["run"] == tiny_run.name and row["method"] == "cord" and row["correct"] is True
        assert row["step_teachers"] == [s.teacher for s in record.steps]
        assert row["step_scores"] == [s.score for s in record.steps]
        assert row["step_proposers"] == [s.proposers or [s.teacher] for s in record.steps]
        # Eq. 3 under the paper's name, the ranked S under its own
        assert row["predictive_perplexity"] == (record.answer_only_perplexity or record.predictive_perplexity)
        assert row["predictive_perplexity_with_end"] == record.predictive_perplexity


def test_every_container_loads_back_with_datasets_with_one_schema(tiny_run, tmp_path):
    for name in ("train.jsonl", "train.parquet", "train-folder"):
        export([tiny_run], tmp_path / name, fmt="prompt-completion")
    from_jsonl = datasets.load_dataset("json", data_files=str(tmp_path / "train.jsonl"), split="train")
    from_parquet = datasets.load_dataset("parquet", data_files=str(tmp_path / "train.parquet"), split="train")
    from_folder = datasets.load_from_disk(str(tmp_path / "train-folder"))
    assert from_jsonl.column_names == from_parquet.column_names == from_folder.column_names
    assert from_parquet["id"] == from_folder["id"] == from_jsonl["id"]
    assert from_folder[0]["completion"][0]["content"].startswith(THINK_OPEN)
    assert (tmp_path / "train-folder" / "README.md").is_file()
    jsonl_card, parquet_card = (tmp_path / "train.jsonl.README.md").read_text(), (tmp_path / "train.parquet.README.md").read_text()
    assert "train.jsonl" in jsonl_card and "train.parquet" in parquet_card  # one card each, not one replacing the other


def test_llama_factory_formats_write_their_dataset_info_entry_and_keep_other_entries(tiny_run, tmp_path):
    (tmp_path / "dataset_info.json").write_text(json.dumps({"mine": {"file_name": "mine.json"}}))
    export([tiny_run], tmp_path / "cord_sharegpt.jsonl", fmt="sharegpt")
    export([tiny_run], tmp_path / "cord_alpaca.jsonl", fmt="alpaca", system="You are a careful solver.")
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert set(info) == {"mine", "cord_sharegpt", "cord_alpaca"}
    assert info["cord_sharegpt"]["formatting"] == "sharegpt" and info["cord_sharegpt"]["columns"] == {"messages": "conversations"}
    assert info["cord_alpaca"]["columns"] == {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}
    share = rows_of(tmp_path / "cord_sharegpt.jsonl")[0]
    assert [t["from"] for t in share["conversations"]] == ["human", "gpt"]
    alpaca = rows_of(tmp_path / "cord_alpaca.jsonl")[0]
    assert alpaca["output"].startswith(THINK_OPEN) and alpaca["system"] == "You are a careful solver."


def test_with_step_instruction_puts_the_runs_instruction_in_the_user_turn(tiny_run, tmp_path):
    instructed = tmp_path / "instructed"
    config = load_config(ROOT / "recipes" / "tiny-hetero.yaml", [f"output_dir={instructed}", "data.tiny.n=2"])
    config.search.step_instruction = "Write steps."
    (instructed).mkdir()
    from cord.config import to_dict

    (instructed / "config.yaml").write_text(json.dumps(to_dict(config)))  # JSON is YAML
    (instructed / "records.jsonl").write_bytes((tiny_run / "records.jsonl").read_bytes())
    export([instructed], tmp_path / "a.jsonl", with_step_instruction=True)
    row = rows_of(tmp_path / "a.jsonl")[0]
    assert row["messages"][0]["content"].endswith("\n\nWrite steps.")


def test_dpo_pairs_a_correct_trajectory_with_a_wrong_one_of_the_same_problem(tiny_run, tmp_path):
    report = export([tiny_run], tmp_path / "dpo.jsonl", fmt="dpo")  # the default filter: pairs decide
    rows = rows_of(tmp_path / "dpo.jsonl")
    assert rows, report.lines()
    records = {r.id: r for r in read_records(tiny_run)}
    for row in rows:
        record = records[row["id"]]
        texts = {THINK_OPEN + t.reasoning + t.final_answer: t.correct for t in (record, *record.alternatives)}
        assert texts[row["chosen"][0]["content"]] is True and texts[row["rejected"][0]["content"]] is False
        assert row["prompt"] == [{"role": "user", "content": user_turn(record.question, REASONING_INSTRUCTION)}]
    unpaired = sum(1 for r in records.values() if not ({True, False} <= {t.correct for t in (r, *r.alternatives)}))
    assert report.dropped.get("no correct and wrong trajectory to pair (set search.keep_top_k > 1 when generating)", 0) == unpaired


def test_refusals_write_nothing(tiny_run, tmp_path):
    out = tmp_path / "x.jsonl"
    out.write_text("keep me")
    with pytest.raises(ConfigError, match="already exists"):
        export([tiny_run], out)
    assert out.read_text() == "keep me"
    with pytest.raises(ConfigError, match="LLaMA-Factory reads files"):
        export([tiny_run], tmp_path / "folder", fmt="alpaca")
    with pytest.raises(ConfigError, match="not a cord run directory"):
        export([tmp_path], tmp_path / "y.jsonl")
    code, _, err = cord(
        "export", tiny_run, "--out", tmp_path / "z.jsonl", "--require-valid-trace", "--decontaminate", str(tmp_path / "no.jsonl")
    )
    assert code == 2 and "no.jsonl" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "z.jsonl").exists() and not list(tmp_path.glob(".z.jsonl*"))


def test_the_dataset_card_parses_as_a_hub_card_and_states_the_runs(tiny_run, tmp_path):
    from huggingface_hub import DatasetCard

    export([tiny_run], tmp_path / "t.parquet")
    card = DatasetCard.load(card_path(tmp_path / "t.parquet"))
    assert "text-generation" in card.data.task_categories and "cord" in card.data.tags
    assert "tiny:tiny-reader" in card.text and "method: cord" in card.text


def test_ngram_overlap_finds_a_planted_problem_and_not_a_different_one():
    sets = {"evalset": [type("P", (), {"question": "Find the number of ordered pairs of integers such that x plus y equals ten."})()]}
    index = Contamination(sets, n=8)
    assert index.match("Warm-up. Find the NUMBER of ordered pairs of integers such that $x$ plus $y$ equals ten!") == "evalset"
    assert index.match("Find the number of unordered triples of primes that sum to forty.") is None
    assert ngrams("a b", 8) == {("a", "b")}


@needs_shared_data
def test_decontamination_drops_problems_that_share_an_8_gram_with_aime24_and_reports_them(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setenv("CORD_EVAL_DATA", str(SHARED_DATA))
    aime = load_eval_set("aime24")
    assert len(aime) == 30
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "config.yaml").write_bytes((tiny_run / "config.yaml").read_bytes())
    lines = rows_of(tiny_run / "records.jsonl")
    right = [line for line in lines if line["correct"]]
    right[0]["question"] = "As a warm-up: " + aime[4].question  # an AIME problem, reworded at the start
    (planted / "records.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = export([planted], tmp_path / "clean.jsonl", decontaminate="aime24,aime25,math500", ngram=8)
    assert report.contaminated == {"aime24": 1} and report.dropped["contaminated"] == 1
    assert report.written == len(right) - 1
    assert right[0]["id"] not in {row["id"] for row in rows_of(tmp_path / "clean.jsonl")}
    assert "decontaminated against aime24,aime25,math500" in card_path(tmp_path / "clean.jsonl").read_text()


@needs_shared_data
def test_named_sets_load_from_the_local_folder(monkeypatch):
    monkeypatch.setenv("CORD_EVAL_DATA", str(SHARED_DATA))
    assert [len(load_eval_set(n)) for n in ("aime24", "aime25", "math500", "gsm8k")] == [30, 30, 500, 1319]
    assert load_eval_set("gsm8k")[0].answer.isdigit()


def test_an_unknown_set_name_is_a_one_line_error():
    with pytest.raises(ConfigError, match="neither a known evaluation set"):
        load_eval_set("aime2099")


def test_every_filter_applies_to_dpo_pairs_and_the_card_says_what_was_kept(tiny_run, tmp_path):
    records = {r.id: r for r in read_records(tiny_run)}
    report = export([tiny_run], tmp_path / "dpo.jsonl", fmt="dpo", keep="valid")
    rows = rows_of(tmp_path / "dpo.jsonl") if report.written else []
    for row in rows:
        record = records[row["id"]]
        chosen = next(t for t in (record, *record.alternatives) if THINK_OPEN + t.reasoning + t.final_answer == row["chosen"][0]["content"])
        assert chosen.valid_trace is True and row["valid_trace"] is True
    every = export([tiny_run], tmp_path / "all.jsonl", fmt="dpo")
    assert report.written < every.written and report.dropped["chosen trajectory not a valid trace"] > 0
    card = card_path(tmp_path / "dpo.jsonl").read_text()
    assert "pairs of a problem's best correct trajectory" in card and "every step is right" in card
    assert "trl dpo --model_name_or_path <student> --dataset_name" in card and "cord train" not in card


def test_llama_factory_reads_json_arrays_preference_pairs_and_never_loses_an_entry(tiny_run, tmp_path):
    export([tiny_run], tmp_path / "sg.json", fmt="sharegpt")  # LLaMA-Factory's own datasets are JSON arrays
    rows = json.loads((tmp_path / "sg.json").read_text())
    assert isinstance(rows, list) and [t["from"] for t in rows[0]["conversations"]] == ["human", "gpt"]
    export([tiny_run], tmp_path / "pairs.jsonl", fmt="dpo")
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert info["sg"]["file_name"] == "sg.json" and info["pairs"]["ranking"] is True
    assert info["pairs"]["columns"] == {"messages": "conversations", "chosen": "chosen_turn", "rejected": "rejected_turn"}
    pair = rows_of(tmp_path / "pairs.jsonl")[0]
    assert pair["chosen_turn"] == {"from": "gpt", "value": pair["chosen"][0]["content"]} and pair["conversations"][0]["from"] == "human"
    before = (tmp_path / "dataset_info.json").read_text()
    with pytest.raises(ConfigError, match=r"dataset_info.json: the dataset 'sg' already names sg.json; export to another name"):
        export([tiny_run], tmp_path / "sg.parquet", fmt="alpaca")  # its entry would replace sg.json's
    assert (tmp_path / "dataset_info.json").read_text() == before and not (tmp_path / "sg.parquet").exists()
    export([tiny_run], tmp_path / "sg.json", fmt="sharegpt", overwrite=True)  # the same file replaces its own entry


def test_export_warns_when_the_students_template_drops_the_reasoning(tiny_run, tmp_path, random_model):
    from helpers import model_with_template

    r1 = model_with_template(random_model, tmp_path / "r1", "strips-think")
    code, _, err = cord("export", tiny_run, "--out", tmp_path / "m.jsonl", "--student", r1)
    assert code == 0 and "drops <think>...</think>" in err and "cord train" in err
    code, _, err = cord("export", tiny_run, "--out", tmp_path / "p.jsonl", "--student", random_model)
    assert code == 0 and "drops" not in err


def test_each_format_is_one_object_in_the_order_the_command_line_lists_them():
    assert list(FORMATS) == ["messages", "prompt-completion", "sharegpt", "alpaca", "dpo", "step-dpo", "stepwise"]
    assert [name for name, f in FORMATS.items() if f.pairs] == ["dpo"]
    assert [name for name, f in FORMATS.items() if f.llama_factory] == ["sharegpt", "alpaca", "dpo"]
    assert [name for name, f in FORMATS.items() if f.files_only] == ["sharegpt", "alpaca"]
    assert [name for name, f in FORMATS.items() if not f.rendered_by_chat_template] == ["prompt-completion", "step-dpo", "stepwise"]
    code, _, err = cord("export", "run", "--out", "x.jsonl", "--format", "chatml")
    assert code == 2 and "choose from 'messages', 'prompt-completion', 'sharegpt', 'alpaca', 'dpo'" in err


def flagged_copy(run, tmp_path):
    """The run with three of its correct records spoiled as real teachers spoil them, and the
    quality pass taken out of every record (records from before it existed are assessed on read)."""
    import shutil

    from cord.records import Record

    copy = tmp_path / "flagged"
    shutil.copytree(run, copy)
    records = read_records(copy)
    right = [r for r in records if r.correct and not r.failed]
    right[0].final_answer += "</think>\n### Step 9. more"  # a stray tag and a marker in the answer
    right[1].steps[-1].end = "budget"  # the budget closed its reasoning
    right[2].steps.insert(0, type(right[2].steps[0])("### Step 1.\n", "x"))  # an empty step kept
    lines = []
    for r in records:
        data = r.to_dict()
        data.pop("quality")
        for alternative in data["alternatives"]:
            alternative.pop("quality")
        lines.append(json.dumps(Record.from_dict(data).to_dict()) + "\n")
    (copy / "records.jsonl").write_text("".join(lines))
    return copy, right


def test_flagged_rows_are_dropped_by_default_each_counted_by_reason_in_the_card(tiny_run, tmp_path):
    run, right = flagged_copy(tiny_run, tmp_path)
    report = export([run], tmp_path / "clean.jsonl")
    rows = rows_of(tmp_path / "clean.jsonl")
    assert report.written == len(rows) == len(right) - 3
    assert {row["id"] for row in rows} == {r.id for r in right[3:]} and all(row["quality_flags"] == [] for row in rows)
    reasons = {reason: n for reason, n in report.dropped.items() if reason.startswith("flagged")}
    expected = {"flagged stray_tags": 1, "flagged budget_forced": 1, "flagged empty_steps": 1}
    assert {r.split(" (")[0]: n for r, n in reasons.items()} == expected
    card = card_path(tmp_path / "clean.jsonl").read_text()
    assert "quality filters: rows flagged budget_forced" in card and "- dropped 1: flagged stray_tags" in card
    loose = export([run], tmp_path / "loose.jsonl", quality=QualityFilter.from_options(None, "empty_steps,budget_forced", 0.3, "drop"))
    assert loose.written == len(right) - 1
    assert sorted(row["quality_flags"] for row in rows_of(tmp_path / "loose.jsonl") if row["quality_flags"]) == [
        ["budget_forced"],
        ["empty_steps"],
    ]
    with pytest.raises(ConfigError, match="--drop-flagged: unknown flag"):
        QualityFilter.from_options("loops", None, 0.3, "drop")


def test_near_duplicate_rows_are_dropped_or_flagged(tiny_run, tmp_path):
    import shutil

    twin = tmp_path / "twin"
    shutil.copytree(tiny_run, twin)
    once = export([tiny_run], tmp_path / "once.jsonl").written
    report = export([tiny_run, twin], tmp_path / "twice.jsonl")
    assert report.written == once and report.dropped["near-duplicate of a row kept (--near-duplicates)"] == once
    flagged = export([tiny_run, twin], tmp_path / "flagged.jsonl", quality=QualityFilter(near_duplicates="flag"))
    rows = rows_of(tmp_path / "flagged.jsonl")
    assert flagged.written == 2 * once and sum("near_duplicate" in row["quality_flags"] for row in rows) == once


def test_a_dpo_pair_is_dropped_when_either_side_is_flagged(tiny_run, tmp_path):
    clean = export([tiny_run], tmp_path / "dpo.jsonl", fmt="dpo")
    strict = export([tiny_run], tmp_path / "strict.jsonl", fmt="dpo", quality=QualityFilter(drop=frozenset({"cut_steps"})))
    records = read_records(tiny_run)
    cut = sum(
        any(s.end == "cap" for s in (t.steps if t is not None else []))
        for r in records
        if (pair := dpo_pair(r)) is not None
        for t in pair[:1]
    )
    assert strict.written <= clean.written - cut
    assert all(reason.startswith(("chosen flagged", "rejected flagged")) for reason in strict.dropped if "flagged" in reason)
