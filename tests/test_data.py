import json

import pytest

from cord.config import ConfigError, DataConfig
from cord.data import load_problems
from cord.tiny.tasks import TinyTasksConfig
from helpers import SHARED_DATA

needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data not present")


@needs_shared
@pytest.mark.parametrize("name, count", [("aime24", 30), ("aime25", 30), ("math500", 500), ("gsm8k_test", 1319)])
def test_shared_sets_load_with_default_mapping(name, count):
    problems = load_problems(DataConfig(path=str(SHARED_DATA / f"{name}.jsonl")))
    assert len(problems) == count
    assert all(p.question and p.answer for p in problems)
    assert len({p.id for p in problems}) == count


@needs_shared
def test_limit_and_extra_fields():
    problems = load_problems(DataConfig(path=str(SHARED_DATA / "aime24.jsonl"), limit=3))
    assert [p.id for p in problems] == ["2024-I-1", "2024-I-2", "2024-I-3"]
    assert problems[0].answer == "204" and "solution" in problems[0].extra


def test_json_parquet_and_field_mapping(tmp_path):
    rows = [{"question": "1+1?", "solution": "...", "final": 2}, {"question": "2+2?", "solution": "...", "final": 4}]
    (tmp_path / "p.json").write_text(json.dumps({"data": rows}))
    mapping = dict(question_field="question", answer_field="final")
    problems = load_problems(DataConfig(path=str(tmp_path / "p.json"), **mapping))
    assert [(p.id, p.answer) for p in problems] == [("0", "2"), ("1", "4")]
    import datasets

    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "p.parquet"))
    problems = load_problems(DataConfig(path=str(tmp_path / "p.parquet"), **mapping))
    assert [p.question for p in problems] == ["1+1?", "2+2?"]


def test_local_dataset_through_datasets_loader(tmp_path):
    """The hub path is `datasets.load_dataset(name)`; a local dataset folder goes the same way."""
    import datasets

    datasets.Dataset.from_list([{"problem": "3+4?", "answer": "7"}]).to_json(str(tmp_path / "train.jsonl"))
    problems = load_problems(DataConfig(dataset=str(tmp_path)))
    assert problems[0].answer == "7"


def test_tiny_generated_problems():
    problems = load_problems(DataConfig(tiny=TinyTasksConfig(n=5, seed=1)))
    assert len(problems) == 5 and "reference_steps" in problems[0].extra


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"id": 1, "problem": "x", "answer": "1"}\n{"id": 2, "problem": "y"\n', r"p\.jsonl line 2: not valid JSON"),
        ('{"id": 1, "problem": "x", "answer": ""}\n', r"line 1: missing or empty field 'answer'"),
        ('{"id": 1, "answer": "3"}\n', r"line 1: missing or empty field 'problem'"),
        ('{"id": 1, "problem": "x", "answer": "1"}\n{"id": 1, "problem": "y", "answer": "2"}\n', "duplicate id"),
        ("\n", "no problems"),
    ],
)
def test_bad_data_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_problems(DataConfig(path=str(path)))


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(ConfigError, match="data file not found"):
        load_problems(DataConfig(path=str(tmp_path / "none.jsonl")))
    (tmp_path / "p.csv").write_text("a,b\n")
    with pytest.raises(ConfigError, match="unknown data format"):
        load_problems(DataConfig(path=str(tmp_path / "p.csv")))


def test_a_problems_file_saved_by_windows_tools_reads_like_any_other(tmp_path):
    rows = [{"id": "a", "problem": "Ann has 3 apples. How many?", "answer": "3"}, {"id": "b", "problem": "x?", "answer": "1"}]
    text = "\r\n".join(json.dumps(r) for r in rows) + "\r\n"
    (tmp_path / "p.jsonl").write_bytes(b"\xef\xbb\xbf" + text.encode())  # a byte-order mark and CRLF line ends
    (tmp_path / "p.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(rows).encode())
    for name in ("p.jsonl", "p.json"):
        problems = load_problems(DataConfig(path=str(tmp_path / name)))
        assert [(p.id, p.question, p.answer) for p in problems] == [("a", rows[0]["problem"], "3"), ("b", "x?", "1")]
