"""Gold answers as datasets hold them (data.answer_format): GSM8K's worked solutions, MATH-style
boxed solutions, a regex; a row with no final answer refused, raw solutions warned about."""

from __future__ import annotations

import json
import logging

import pytest

from cord.config import ConfigError, DataConfig, load_config
from cord.data import load_problems
from cord.data.answers import extract_answer, looks_worked
from cord.data.evalsets import load_eval_set
from helpers import ROOT, cord_here, needs_tiny

# Two rows as GSM8K's train split holds them (question / answer, the answer a worked solution)
GSM8K_ROWS = [
    {
        "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether in April and May?",
        "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in "
        "April and May.\n#### 72",
    },
    {
        "question": "A shop sold 1,200 pens on Monday and 300 on Tuesday. How many pens did it sell?",
        "answer": "It sold 1,200 + 300 = <<1200+300=1500>>1,500 pens.\n#### 1,500",
    },
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.mark.parametrize(
    "text, answer_format, regex, expected",
    [
        ("  7 ", "raw", None, "7"),
        ("so 3 + 4 = 7.\n#### 7", "gsm8k", None, "7"),
        ("#### 1,000", "gsm8k", None, "1000"),
        ("no mark here", "gsm8k", None, None),
        ("####  ", "gsm8k", None, None),
        ("first \\boxed{2}, then \\boxed{\\frac{1}{2}} at last", "boxed", None, "\\frac{1}{2}"),
        ("\\boxed{unclosed", "boxed", None, None),
        ("The answer is: 17", "regex", r"The answer is:? (.+)", "17"),
        ("no answer stated", "regex", r"The answer is:? (.+)", None),
    ],
)
def test_each_format_takes_the_final_answer(text, answer_format, regex, expected):
    assert extract_answer(text, answer_format, regex) == expected


def test_worked_solutions_are_told_from_final_answers():
    assert looks_worked(GSM8K_ROWS[0]["answer"]) and looks_worked("We add them: \\boxed{7}")
    assert not looks_worked("\\boxed{7}") and not looks_worked("\\frac{1}{2}") and not looks_worked("(2, 3)")
    paragraph = "The author argues that trade grows. " * 8  # a judge's reference: long text, no marker
    assert looks_worked(paragraph) and not looks_worked(paragraph, math_graded=False)


def test_a_gsm8k_file_gives_its_final_answers(tmp_path):
    path = write_jsonl(tmp_path / "gsm8k.jsonl", GSM8K_ROWS)
    problems = load_problems(DataConfig(path=path, question_field="question", answer_format="gsm8k"))
    assert [p.answer for p in problems] == ["72", "1500"] and problems[0].question.startswith("Natalia")


def test_a_row_without_a_final_answer_is_refused_naming_the_file_row_field_and_count(tmp_path):
    rows = [GSM8K_ROWS[0], {"question": "q", "answer": "It is 5."}, {"question": "r", "answer": "It is 6."}]
    path = write_jsonl(tmp_path / "gsm8k.jsonl", rows)
    with pytest.raises(ConfigError) as err:
        load_problems(DataConfig(path=path, question_field="question", answer_format="gsm8k"))
    assert str(err.value) == (
        f"{path} line 2: no final answer in field 'answer' (data.answer_format gsm8k: no '####' followed by an answer); "
        "2 of 3 rows have none"
    )


def test_raw_worked_solutions_are_warned_about_once_with_a_count_and_an_example(tmp_path, caplog):
    path = write_jsonl(tmp_path / "gsm8k.jsonl", [*GSM8K_ROWS, {"question": "1+1?", "answer": "2"}])
    with caplog.at_level(logging.WARNING, logger="cord"):
        problems = load_problems(DataConfig(path=path, question_field="question"))
    assert problems[0].answer == GSM8K_ROWS[0]["answer"]  # raw stays raw: existing runs are unchanged
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith("2 of 3 gold answers ('answer') look like worked solutions") and f"{path} line 1" in warning
    assert "#### 72" in warning and "data.answer_format" in warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cord"):
        load_problems(DataConfig(path=path, question_field="question", answer_format="gsm8k", limit=2))
    assert not caplog.records


def test_under_judge_grading_a_long_reference_is_not_warned_about(tmp_path, caplog, random_model):
    reference = "The author argues that trade grows when tariffs fall. " * 6
    path = write_jsonl(tmp_path / "essays.jsonl", [{"problem": "Summarise the essay.", "answer": reference}])
    items = [f"teachers=[{{model: {random_model}}}]", f"meta_prover.model={random_model}", f"data.path={path}"]
    judge = load_config(None, [*items, "grading.method=judge", f"grading.judge={{model: {random_model}}}"])
    with caplog.at_level(logging.WARNING, logger="cord"):
        load_problems(judge.data)
        assert not caplog.records
        load_problems(load_config(None, items).data)
    assert len(caplog.records) == 1


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"answer_format": "regex"}, "data.answer_regex: set answer_regex exactly when data.answer_format is regex"),
        ({"answer_regex": "(.+)"}, "data.answer_regex: set answer_regex exactly"),
        ({"answer_format": "regex", "answer_regex": "answer: .+"}, "data.answer_regex: needs a group"),
        ({"answer_format": "regex", "answer_regex": "(.+"}, "data.answer_regex: not a regular expression"),
        ({"answer_format": "last-number"}, "data.answer_format"),
    ],
)
def test_a_bad_answer_setting_is_a_one_line_error(settings, message, random_model):
    items = [f"teachers=[{{model: {random_model}}}]", f"meta_prover.model={random_model}"]
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_config(None, items + [f"data.{key}={json.dumps(value)}" for key, value in settings.items()])


def test_the_gsm8k_evaluation_set_from_the_hub_is_cut_the_same_way(monkeypatch):
    import datasets

    monkeypatch.delenv("CORD_EVAL_DATA", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: GSM8K_ROWS)
    assert [p.answer for p in load_eval_set("gsm8k")] == ["72", "1500"]


@needs_tiny
def test_the_warning_of_a_run_reaches_stderr_as_a_warning_and_run_log(tmp_path):

    path = write_jsonl(tmp_path / "gsm8k.jsonl", GSM8K_ROWS)
    out = tmp_path / "out"
    code, _, err = cord_here(
        "generate",
        "-c",
        str(ROOT / "recipes" / "tiny-hetero.yaml"),
        "--data",
        path,
        "--question-field",
        "question",
        "--out",
        str(out),
        "-q",
        "search.beam_size=1",
    )
    assert code == 0, err
    assert "cord: warning: 2 of 2 gold answers ('answer') look like worked solutions" in err
    assert "2 of 2 gold answers ('answer') look like worked solutions" in (out / "run.log").read_text()
