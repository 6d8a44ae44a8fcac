import json

import pytest

from cord.config import ConfigError
from cord.records import RunDirectory, read_records, summarize


def record(i, correct=True):
    return {"id": str(i), "method": "cord", "correct": correct, "predictive_perplexity": 0.5,
            "steps": [{"teacher": "a"}], "tokens": {"teachers": {"a": 10}, "meta_prover": 5},
            "timing": {"generation_seconds": 1.0, "scoring_seconds": 0.25}}


def test_records_are_appended_whole_and_a_torn_line_is_dropped(tmp_path):
    run = RunDirectory(tmp_path / "out", {"a": 1})
    assert run.check() == []
    run.open()
    run.append(record(1))
    run.append(record(2))
    run.close(summarize([record(1), record(2)]))
    with (tmp_path / "out" / "records.jsonl").open("a") as handle:
        handle.write('{"id": "3", "meth')  # a crash mid-write
    assert [r["id"] for r in read_records(tmp_path / "out")] == ["1", "2"]
    again = RunDirectory(tmp_path / "out", {"a": 1})
    assert [r["id"] for r in again.check()] == ["1", "2"]
    again.open()
    again.append(record(3))
    again.close({})
    lines = (tmp_path / "out" / "records.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["1", "2", "3"]


def test_a_different_config_is_refused_unless_overwrite(tmp_path):
    run = RunDirectory(tmp_path, {"search": {"beam_size": 4}})
    run.open()
    run.close({})
    with pytest.raises(ConfigError, match="different config"):
        RunDirectory(tmp_path, {"search": {"beam_size": 2}}).check()
    assert RunDirectory(tmp_path, {"search": {"beam_size": 2}}, overwrite=True).check() == []
    # output_dir and data.limit may change between a run and its resume
    RunDirectory(tmp_path, {"search": {"beam_size": 4}, "output_dir": "elsewhere"}).check()


def test_summary_figures():
    s = summarize([record(1), record(2, correct=False)], seconds=3.0)
    assert s["accuracy"] == 0.5 and s["problems"] == 2
    assert s["tokens"]["teachers_total"] == 20 and s["meta_prover_share"] == pytest.approx(0.2)
