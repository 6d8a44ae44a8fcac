"""`cord evaluate`: the 95 % interval of accuracy and the teacher hit rate by position (Figure 2)."""

from __future__ import annotations

import csv
import json

import pytest

from cord.records import Record, RunDirectory, Step, summarize
from cord.results.compare import teacher_hit_rate, wilson_interval
from helpers import FIXTURES, cord


def test_wilson_interval_matches_the_textbook_values_and_stays_inside_0_1():
    lo, hi = wilson_interval(55, 100)
    assert lo == pytest.approx(0.4524, abs=1e-4) and hi == pytest.approx(0.6438, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def record(*teachers: str) -> Record:
    return Record("x", "q", "1", "cord", steps=[Step("s", t) for t in teachers])


def test_hit_rate_places_each_step_by_its_normalised_position_and_each_bin_sums_to_one():
    figure = teacher_hit_rate([record("a", "b"), record("a", "a", "b", "b")], bins=2)
    assert figure["steps"] == [3, 3]
    assert figure["hit_rate"] == {"a": [1.0, 0.0], "b": [0.0, 1.0]}
    figure = teacher_hit_rate([record("a", "b", "c")], bins=10)
    for b, steps in enumerate(figure["steps"]):
        rates = [figure["hit_rate"][t][b] for t in "abc"]
        assert (sum(rates) == pytest.approx(1.0)) if steps else all(r is None for r in rates)


def test_evaluate_prints_the_interval_and_figure_2_and_writes_its_data(tmp_path):
    runs = [FIXTURES / "run-v0" / "cord", FIXTURES / "run-v0" / "curation"]
    code, out, err = cord("evaluate", *runs, "--figure2", "--bins", "4", "--figure2-data", tmp_path / "fig2.csv")
    assert code == 0, err
    assert "95% CI" in out and "teacher hit rate by position" in out
    rows = list(csv.DictReader((tmp_path / "fig2.csv").open()))
    assert {r["run"] for r in rows} == {"cord", "curation"} and {r["bin_start"] for r in rows} == {"0.0", "0.25", "0.5", "0.75"}
    for run in ("cord", "curation"):
        for start in ("0.0", "0.25", "0.5", "0.75"):
            rates = [float(r["hit_rate"]) for r in rows if r["run"] == run and r["bin_start"] == start and r["hit_rate"]]
            assert not rates or sum(rates) == pytest.approx(1.0, abs=1e-5)


def test_evaluate_heads_the_table_with_eq_3_and_names_s_with_the_closing_end_apart(tmp_path):
    record = Record(id="1", question="q", answer="1", method="cord", correct=True, predictive_perplexity=0.7)
    record.answer_only_perplexity = 0.55  # S 0.7 scored the answer and its closing "."
    run = RunDirectory(tmp_path / "run", {"search": {"method": "cord"}})
    run.open()
    run.append(record)
    run.close(summarize([record]))
    code, out, err = cord("evaluate", tmp_path / "run", "--json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["mean_predictive_perplexity"] == pytest.approx(0.55) and row["mean_predictive_perplexity_with_end"] == pytest.approx(0.7)
    code, out, err = cord("evaluate", tmp_path / "run")
    assert "| pred. perplexity | S with end |" in out and "| 0.550            | 0.700      |" in out
