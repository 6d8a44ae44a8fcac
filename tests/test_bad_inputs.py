"""Bad input, table-driven: each case is one line on stderr naming the file, line or field, exit
code 2, and no output written (the run directory, export or report is not created)."""

from __future__ import annotations

import json

import pytest

from cord.cli import main
from helpers import ROOT, needs_tiny

pytestmark = needs_tiny
RECIPE = str(ROOT / "recipes" / "tiny-hetero.yaml")
GOOD = {"id": "a", "problem": "Ann has 3 apples. Then she gets 4 more. How many apples does Ann have now?", "answer": "7"}


def jsonl(*rows) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


# name -> (files to write {name: bytes}, argv after "cord" with {tmp} for the folder, expected text in the error)
CASES = {
    "malformed JSONL": (
        {"p.jsonl": jsonl(GOOD, b'{"id": "b", "problem": ')},
        ["--data", "{tmp}/p.jsonl"],
        "p.jsonl line 2: not valid JSON",
    ),
    "non-UTF-8 byte": (
        {"p.jsonl": jsonl(GOOD, b'{"id": "b", "problem": "caf\xe9", "answer": "1"}')},
        ["--data", "{tmp}/p.jsonl"],
        "line 2: not UTF-8",
    ),
    "non-UTF-8 JSON": (
        {"p.json": b'[{"id": "b", "problem": "caf\xe9", "answer": "1"}]'},
        ["--data", "{tmp}/p.json"],
        "p.json line 1: not UTF-8",
    ),
    "missing answer": ({"p.jsonl": jsonl({"id": "a", "problem": "q"})}, ["--data", "{tmp}/p.jsonl"], "missing or empty field 'answer'"),
    "empty question": ({"p.jsonl": jsonl({"id": "a", "problem": " ", "answer": "1"})}, ["--data", "{tmp}/p.jsonl"], "field 'problem'"),
    "answer that is only whitespace": ({"p.jsonl": jsonl({**GOOD, "answer": "  \t"})}, ["--data", "{tmp}/p.jsonl"], "field 'answer'"),
    "duplicate ids": ({"p.jsonl": jsonl(GOOD, GOOD)}, ["--data", "{tmp}/p.jsonl"], "line 2: duplicate id 'a'"),
    "empty file": ({"p.jsonl": b""}, ["--data", "{tmp}/p.jsonl"], "no problems found"),
    "row that is not an object": ({"p.jsonl": jsonl([1, 2])}, ["--data", "{tmp}/p.jsonl"], "line 1: expected an object"),
    "JSON that holds no list": ({"p.json": b'{"a": 1}'}, ["--data", "{tmp}/p.json"], "expected a list of problems"),
    "missing path": ({}, ["--data", "{tmp}/nope.jsonl"], "nope.jsonl: data file not found"),
    "folder that is no datasets folder": ({"d/x": b""}, ["--data", "{tmp}/d"], "d: could not load dataset"),
    "directory given as data.path": ({"d/x": b""}, ["data.path={tmp}/d", "data.tiny=null"], "is a directory, not a data file"),
    "unknown data format": ({"p.txt": b"hi"}, ["--data", "{tmp}/p.txt"], "unknown data format '.txt'"),
    "conflicting data sources": ({"p.jsonl": jsonl(GOOD)}, ["data.path={tmp}/p.jsonl"], "set only one of data.path"),
    "unknown config key": ({}, ["search.beem_size=2"], "unknown config key(s): search.beem_size"),
    "unknown top-level key in YAML": ({"r.yaml": b"serch: {}\n"}, ["--config", "{tmp}/r.yaml"], "unknown config key(s): serch"),
    "YAML that is not a mapping": ({"r.yaml": b"- a\n- b\n"}, ["--config", "{tmp}/r.yaml"], "expected a mapping at the top level"),
    "YAML that does not parse": ({"r.yaml": b"a: [1, 2\n"}, ["--config", "{tmp}/r.yaml"], "not valid YAML"),
    "missing recipe": ({}, ["--config", "{tmp}/none.yaml"], "none.yaml: config file not found"),
    "beam size 0": ({}, ["search.beam_size=0"], "search.beam_size: must be >= 1"),
    "negative temperature": ({}, ["teachers.0.temperature=-0.5"], "teachers.0.temperature: must be >= 0"),
    "top_p 0": ({}, ["teachers.1.top_p=0"], "teachers.1.top_p: must be in (0, 1]"),
    "a number given as text": ({}, ["search.beam_size=four"], "search.beam_size: expected an integer"),
    "reasoning budget 0": ({}, ["search.reasoning_budget=0"], "search.reasoning_budget: must be >= 1"),
    "answer budget 0": ({}, ["search.answer_budget=0"], "search.answer_budget: must be >= 1"),
    "step cap 0": ({}, ["teachers.2.max_step_tokens=0"], "teachers.2.max_step_tokens: must be >= 1"),
    "limit 0": ({}, ["data.limit=0"], "data.limit: must be >= 1"),
    "--limit 0": ({}, ["--limit", "0"], "data.limit: must be >= 1, got 0"),
    "a gold answer with no final answer in it": (
        {"p.jsonl": jsonl({**GOOD, "answer": "She has 3 + 4 = 7.\n#### 7"}, {**GOOD, "id": "b"})},
        ["--data", "{tmp}/p.jsonl", "--answer-format", "gsm8k"],
        "p.jsonl line 2: no final answer in field 'answer' (data.answer_format gsm8k: no '####' followed by an answer); 1 of 2 rows",
    ),
    "answer_format regex without a regex": ({}, ["--answer-format", "regex"], "data.answer_regex: set answer_regex exactly when"),
    "an answer regex without a group": ({}, ["data.answer_format=regex", "--answer-regex", "#### .+"], "data.answer_regex: needs a group"),
    "bad shard": ({}, ["--shard", "3/2"], "data.shard: expected I/N with 0 <= I < N"),
    "unknown method": ({}, ["search.method=beamz"], "beamz"),
    "unknown engine": ({}, ["teachers.0.engine=tensorrt"], "tensorrt"),
    "no teachers": ({}, ["teachers=[]"], "at least one teacher"),
    "duplicate teacher names": ({}, ["teachers.1.name=addsub"], "duplicate teacher name 'addsub'"),
    "missing model folder": ({}, ["teachers.0.model={tmp}/no-model"], "no-model: model folder not found"),
    "unknown tiny model": ({}, ["meta_prover.model=tiny:tiny-giant"], "unknown tiny model 'tiny-giant'"),
    "a setting the method does not use": ({}, ["--method", "curation", "search.keep_candidates=true"], "search.keep_candidates"),
    "judge grading without a judge": ({}, ["grading.method=judge"], "grading.judge"),
    "one loaded model, two settings": (
        {},
        ["teachers.1.model=tiny:tiny-addsub", "teachers.1.transformers.max_batch_size=8"],
        "teachers.1.transformers.max_batch_size: 8 differs from teachers.0.transformers.max_batch_size (64)",
    ),
    "a sampling setting the engine cannot apply": (
        {},
        ["teachers.0.extra_body={chat_template_kwargs: {enable_thinking: true}}"],
        "teachers.0.extra_body: engine 'transformers' cannot apply it (only server engines send request JSON)",
    ),
    "presence penalty out of range": ({}, ["teachers.0.presence_penalty=3"], "teachers.0.presence_penalty: must be <= 2"),
    "output path that is a file": ({"out": b"x"}, ["--out", "{tmp}/out/run"], "is a file, not a directory"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(name, tmp_path, capsys):
    files, args, expected = CASES[name]
    for rel, content in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(content)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = tmp_path / "run"
    argv = ["generate", "--config", RECIPE, "--out", str(out), "-q", *args]
    if "--out" in args:
        argv = ["generate", "--config", RECIPE, "-q", *args]
    if "--config" in args:
        argv = ["generate", "--out", str(out), "-q", *args]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("cord: error: ") and expected in err[0], err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


OTHER_COMMANDS = {
    "export of a folder that is not a run": (["export", "{tmp}", "--out", "{tmp}/x.jsonl"], "not a cord run directory"),
    "export to an unknown evaluation set": (["export", "{run}", "--out", "{tmp}/x.jsonl", "--decontaminate", "aime2099"], "aime2099"),
    "export with no rows left": (["export", "{run}", "--out", "{tmp}/x.jsonl", "--require-valid-trace"], "nothing to export"),
    "report of a folder that is not a run": (["report", "{tmp}", "--out", "{tmp}/r.html"], "not a cord run directory"),
    "evaluate a missing folder": (["evaluate", "{tmp}/none"], "none: does not exist"),
    "merge of a folder that is not a run": (["merge", "{run}", "{tmp}", "--out", "{tmp}/m"], "not a cord run directory"),
    "eval-student with n 0": (
        ["eval-student", "--model", "tiny:tiny-generalist", "--data", "tiny:2", "--n", "0", "--out", "{tmp}/e"],
        "--n",
    ),
    "eval-student of an unknown set": (["eval-student", "--model", "m", "--data", "aime2099", "--out", "{tmp}/e"], "aime2099"),
    "train without data": (["train", "--model", "tiny:tiny-generalist", "--data", "{tmp}/none.jsonl", "--out", "{tmp}/s"], "none.jsonl"),
}


@pytest.fixture
def planted_run(tmp_path):
    """A run directory whose one record has a wrong answer and no valid trace."""
    run = tmp_path / "given-run"
    run.mkdir()
    (run / "config.yaml").write_text("search: {method: cord}\n")
    record = {"id": "a", "question": "q", "answer": "1", "method": "cord", "correct": True, "valid_trace": False}
    (run / "records.jsonl").write_text(json.dumps(record) + "\n")
    return run


@pytest.mark.parametrize("name", list(OTHER_COMMANDS))
def test_other_commands_refuse_bad_input_the_same_way(name, tmp_path, planted_run, capsys):
    args, expected = OTHER_COMMANDS[name]
    work = tmp_path / "work"
    work.mkdir()
    argv = [a.replace("{tmp}", str(work)).replace("{run}", str(planted_run)) for a in args]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and expected in err[0], err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_model_that_cannot_be_found_offline_is_one_line_naming_the_field(monkeypatch, tmp_path, capsys):
    from huggingface_hub import constants

    from cord.engines import check_findable

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "run"
    code = main(["generate", "--config", RECIPE, "--out", str(out), "-q", "teachers.1.model=nosuch-org/nosuch-model"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "teachers.1.model: 'nosuch-org/nosuch-model' is not a local folder and not in the hub cache" in err[0]
    assert not out.exists()
    check_findable("tiny:tiny-reader", "meta_prover.model")  # a registered source is not asked for
