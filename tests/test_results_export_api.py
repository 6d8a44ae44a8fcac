"""`cord.export` from Python (records from `cord.generate`, a Dataset of records, run folders; a
Dataset or a file out) and `--eval-split` (both sides written, split by problem id, stable, counted
on the card), on real tiny runs."""

from __future__ import annotations

import json

import datasets
import pytest

import cord
from cord.records import read_records
from cord.results.export import FORMATS, QualityFilter
from cord.results.export import export as export_runs
from cord.results.export.split import eval_path, problem_hash
from helpers import ROOT, cord_here, needs_tiny

pytestmark = needs_tiny


def rows_of(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def generated(engine_cache):
    """Records of a tiny `cord.generate` on 4 generated problems (1 right, 3 wrong), and the config that made them."""
    config = cord.load_config(ROOT / "recipes" / "tiny-hetero.yaml", ["search.beam_size=2", "data.tiny.n=4", "data.tiny.seed=5"])
    return cord.generate(cord.load_problems(config.data), config, engine_cache), config


def test_the_readmes_python_example_exports_as_it_says(tmp_path, monkeypatch, capsys):
    readme = (ROOT / "README.md").read_text()
    code = readme.split("## From Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "read 2 records, wrote 2 rows" in out and "<think>" in out
    assert "1 row (1 problem) to train on, 1 row (1 problem) held out in notebook.eval.jsonl" in out
    assert (tmp_path / "data" / "notebook.jsonl").is_file() and (tmp_path / "data" / "notebook.eval.jsonl").is_file()


def test_records_from_generate_export_to_a_dataset_and_to_a_file_with_drops_counted(generated, tmp_path):
    records, config = generated
    right = [r for r in records if r.correct and not r.failed]
    assert 0 < len(right) < len(records)  # the default filter has something to drop
    exported = cord.export(records, config=config)
    assert isinstance(exported.dataset, datasets.Dataset) and exported.files == []
    assert exported.report.read == len(records) and exported.report.written == len(right) == len(exported.dataset)
    assert exported.report.dropped["incorrect final answer"] == len(records) - len(right)
    assert sorted(exported.dataset["id"]) == sorted(r.id for r in right)
    assert set(exported.dataset["run"]) == {"tiny-hetero"}  # the config's output folder names the run
    assert "- problems: 4" in exported.card and "dropped" in str(exported)
    written = cord.export(records, tmp_path / "train.jsonl", config=config, name="mine")
    assert written.dataset is None and written.files[0] == str(tmp_path / "train.jsonl")
    rows = rows_of(tmp_path / "train.jsonl")
    assert [r["id"] for r in rows] == exported.dataset["id"] and {r["run"] for r in rows} == {"mine"}
    assert [r["messages"] for r in rows] == exported.dataset["messages"]
    assert (tmp_path / "train.jsonl.README.md").read_text() == written.card


def test_a_quality_filter_drops_rows_and_counts_them(generated):
    records, config = generated
    twice = records + records  # every row nearly repeats one kept before it
    kept = cord.export(twice, config=config, keep="all", quality=QualityFilter(near_duplicates="keep"))
    dropped = cord.export(twice, config=config, keep="all")  # the default filter drops near-duplicates
    assert kept.report.written == 2 * len(records) and dropped.report.written == len(records)
    assert dropped.report.dropped == {"near-duplicate of a row kept (--near-duplicates)": len(records)}
    assert "dropped 4: near-duplicate" in str(dropped) and "- dropped 4: near-duplicate" in dropped.card


def test_a_run_folder_and_a_dataset_of_its_records_give_the_rows_the_command_writes(kept_run, tmp_path):
    export_runs([kept_run], tmp_path / "cli.jsonl", fmt="prompt-completion", keep="all")
    from_cli = rows_of(tmp_path / "cli.jsonl")
    from_folder = cord.export(kept_run, format="prompt-completion", keep="all").dataset
    records = datasets.Dataset.from_list([r.to_dict() for r in read_records(kept_run)])  # as cord.generate gives one
    from_dataset = cord.export(records, format="prompt-completion", keep="all", name=kept_run.name).dataset
    assert from_folder.to_list() == from_dataset.to_list()
    assert [r["id"] for r in from_cli] == from_folder["id"] and [r["completion"] for r in from_cli] == from_folder["completion"]
    assert cord.export([kept_run, kept_run], keep="all", quality=QualityFilter(near_duplicates="keep")).report.read == 2 * len(records)


def test_eval_split_from_python_is_a_dataset_dict_split_by_problem(kept_run):
    exported = cord.export(kept_run, keep="all", eval_split=3)
    train, test = exported.dataset["train"], exported.dataset["test"]
    ids = sorted({*train["id"], *test["id"]}, key=problem_hash)
    assert set(test["id"]) == set(ids[:3]) and not set(train["id"]) & set(test["id"])  # the 3 lowest hashes
    assert exported.report.split.eval_problems == 3 and "held out in the test split" in exported.card
    assert exported.report.written == len(train) + len(test)


def load_side(path):
    """An exported file or folder as datasets reads it."""
    if path.suffix in (".jsonl", ".parquet"):
        return datasets.load_dataset("json" if path.suffix == ".jsonl" else "parquet", data_files=str(path), split="train")
    return datasets.load_from_disk(str(path))


def test_eval_split_writes_both_files_beside_the_output_the_same_in_every_format(kept_run, tmp_path):
    held = {}
    for name, fmt in (("train.jsonl", "messages"), ("pc.parquet", "prompt-completion"), ("folder", "messages")):
        out = tmp_path / name
        # the run twice: every problem has two rows, which must land on one side
        both = [kept_run, kept_run, "--all", "--near-duplicates", "keep"]
        code, _, err = cord_here("export", *both, "--format", fmt, "--eval-split", "0.4", "--out", out)
        assert code == 0, err
        train, test = load_side(out), load_side(eval_path(out))
        assert len(test) > 0 and not set(train["id"]) & set(test["id"])
        assert len(train) + len(test) == 2 * len(read_records(kept_run))
        assert f"{len(train)} rows" in err and f"{len(test)} rows" in err and str(eval_path(out)) in err
        held[name] = frozenset(test["id"])
    assert len(set(held.values())) == 1  # the same problems held out in every format and container
    card = (tmp_path / "train.jsonl.README.md").read_text()
    assert "- evaluation split: " in card and "held out in train.eval.jsonl" in card


@pytest.mark.skipif("stepwise" not in FORMATS, reason="no step-level format in this checkout")
def test_eval_split_keeps_the_many_rows_of_a_step_level_format_together(kept_run):
    exported = cord.export(kept_run, format="stepwise", keep="all", eval_split=0.4)
    train, test = exported.dataset["train"], exported.dataset["test"]
    assert len(train) > len(set(train["id"])) and len(test) > 0  # several rows a problem
    assert not set(train["id"]) & set(test["id"])
    assert exported.report.split.eval_problems == len(set(test["id"]))


def test_eval_split_gives_llama_factory_an_entry_for_each_file(kept_run, tmp_path):
    report = cord.export(kept_run, tmp_path / "cord_share.json", format="sharegpt", keep="all", eval_split=2).report
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert info["cord_share"]["file_name"] == "cord_share.json" and info["cord_share.eval"]["file_name"] == "cord_share.eval.json"
    assert report.split.eval_problems == 2 and len(json.loads((tmp_path / "cord_share.eval.json").read_text())) == 2


@pytest.mark.parametrize("value", ["1.5", "0", "abc", "8"])
def test_a_bad_eval_split_is_one_line_and_writes_nothing(kept_run, tmp_path, value):
    code, _, err = cord_here("export", kept_run, "--all", "--eval-split", value, "--out", tmp_path / "t.jsonl")
    assert code == 2 and "--eval-split" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
