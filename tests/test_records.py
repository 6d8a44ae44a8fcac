import json
import shutil

import pytest
import yaml

from cord.config import ConfigError
from cord.records import SCHEMA_VERSION, Budget, Record, RunDirectory, Step, Timing, Tokens, iter_records, read_records, summarize
from helpers import FIXTURES, ROOT, cord, needs_tiny


def record(i, correct=True) -> Record:
    return Record(
        id=str(i),
        question="q",
        answer="1",
        method="cord",
        correct=correct,
        predictive_perplexity=0.5,
        steps=[Step("### Step 1. x\n</think>", "a", 0.5, 3, "think")],
        tokens=Tokens({"a": 10}, 5, 3),
        budget=Budget({"a": 1}, {"a": 1}, 1),
        timing=Timing(1.0, 0.25),
    )


def test_a_record_round_trips_through_its_dict():
    r = record(7)
    r.steps.append(Step("more", "b", None, 2, "cap", category="Verification"))
    data = r.to_dict()
    assert data["schema_version"] == SCHEMA_VERSION and data["reasoning"] == "### Step 1. x\n</think>more"
    assert Record.from_dict(json.loads(json.dumps(data))) == r


def test_unknown_keys_are_kept_and_newer_versions_refused():
    data = record(1).to_dict() | {"written_by_a_later_cord": [1, 2]}
    r = Record.from_dict(data)
    assert r.extra == {"written_by_a_later_cord": [1, 2]} and r.to_dict()["written_by_a_later_cord"] == [1, 2]
    with pytest.raises(ConfigError, match="schema_version 99"):
        Record.from_dict(record(1).to_dict() | {"schema_version": 99})
    with pytest.raises(ConfigError, match="missing field"):
        Record.from_dict({"id": "1"})


def test_the_last_lines_end_is_found_from_the_file_end_a_chunk_at_a_time(tmp_path):
    import io

    from cord.records.rundir import last_line_end

    for data in (b"", b"torn", b"a\n", b"a\nb\n", b"a\n" + b"x" * 50, b"\n" + b"y" * 7):
        expected = data.rfind(b"\n") + 1
        assert last_line_end(io.BytesIO(data), len(data), chunk=4) == expected, data


def test_records_are_appended_whole_and_a_torn_line_is_dropped(tmp_path):
    run = RunDirectory(tmp_path / "out", {"a": 1})
    assert list(run.check()) == []
    run.open()
    run.append(record(1))
    run.append(record(2))
    run.close(summarize([record(1), record(2)]))
    with (tmp_path / "out" / "records.jsonl").open("a") as handle:
        handle.write('{"id": "3", "meth')  # a crash mid-write
    assert [r.id for r in read_records(tmp_path / "out")] == ["1", "2"]
    again = RunDirectory(tmp_path / "out", {"a": 1})
    assert [r.id for r in again.check()] == ["1", "2"]
    again.open()
    again.append(record(3))
    again.close({})
    lines = (tmp_path / "out" / "records.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["1", "2", "3"]


def test_a_corrupt_line_before_the_last_names_the_file_and_line(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(record(1).to_dict()) + "\n{broken\n" + json.dumps(record(2).to_dict()) + "\n")
    with pytest.raises(ConfigError, match=r"records\.jsonl line 2"):
        read_records(path)


def test_a_different_config_is_refused_unless_overwrite(tmp_path):
    run = RunDirectory(tmp_path, {"search": {"beam_size": 4}})
    run.open()
    run.close({})
    with pytest.raises(ConfigError, match="different config"):
        RunDirectory(tmp_path, {"search": {"beam_size": 2}}).check()
    assert list(RunDirectory(tmp_path, {"search": {"beam_size": 2}}, overwrite=True).check()) == []
    # output_dir and data.limit may change between a run and its resume
    RunDirectory(tmp_path, {"search": {"beam_size": 4}, "output_dir": "elsewhere"}).check()


def test_summary_figures():
    s = summarize([record(1), record(2, correct=False)], seconds=3.0)
    assert s["accuracy"] == 0.5 and s["problems"] == 2
    assert s["tokens"]["teachers_total"] == 20 and s["meta_prover_share"] == pytest.approx(0.2)


# Run directories written by cord 0.1.0 before the Record type (schema version 0), kept as they were.
V0 = FIXTURES / "run-v0"


def test_records_written_before_the_schema_version_still_read():
    cord_records = read_records(V0 / "cord")
    assert len(cord_records) == 3 and all(r.schema_version == 0 for r in cord_records)
    first = cord_records[0]
    assert first.steps[0].teacher == "div" and first.steps[-1].end == "think" and first.steps[0].category is None
    assert first.reasoning == json.loads((V0 / "cord" / "records.jsonl").read_text().splitlines()[0])["reasoning"]
    assert first.failed is None and first.valid_trace is False and first.correct is True
    (failed,) = read_records(V0 / "integration")
    assert failed.failed == "integration reply could not be parsed" and failed.raw_integration and failed.steps == []


def test_evaluate_reads_run_directories_written_before_the_change():
    code, stdout, err = cord("evaluate", V0 / "cord", V0 / "curation", V0 / "integration", "--json")
    assert code == 0, err
    rows = {r["run"]: r for r in json.loads(stdout)}
    assert rows["cord"]["problems"] == 3 and rows["cord"]["method"] == "cord" and rows["cord"]["teachers"] == "addsub, mul, div"
    assert rows["curation"]["method"] == "curation" and rows["integration"]["failures"] == 1
    assert rows["cord"]["accuracy"] == sum(r.correct for r in read_records(V0 / "cord")) / 3


@needs_tiny
def test_resume_continues_a_run_directory_written_before_the_change(tmp_path):
    run = tmp_path / "cord"
    shutil.copytree(V0 / "cord", run)
    lines = (run / "records.jsonl").read_text().splitlines(keepends=True)
    (run / "records.jsonl").write_text("".join(lines[:2]))  # as if killed after two problems
    code, stdout, err = cord(
        "generate",
        "--config",
        ROOT / "recipes" / "tiny-hetero.yaml",
        "--out",
        run,
        "-q",
        "data.tiny.n=3",
        "data.tiny.seed=5",
        "search.beam_size=2",
        'search.answer_end=""',  # that run scored the answer alone
        "search.step_instruction=null",  # and its teachers were sent the question alone
    )
    assert code == 0, err
    assert json.loads(stdout)["resumed"] == 2 and json.loads(stdout)["new"] == 1
    records = list(iter_records(run))  # file order: the old lines, then the new one appended
    assert [r.schema_version for r in records] == [0, 0, SCHEMA_VERSION]
    assert [r.id for r in records] == [json.loads(line)["id"] for line in lines]
    assert [r.id for r in read_records(run)] == [records[2].id, records[0].id, records[1].id]  # input order: no index last


def test_step_ends_are_summed_per_teacher_and_a_teacher_that_runs_to_the_cap_is_warned_about():
    a, b = record(1), record(2)
    a.budget.step_ends = {"qwq": {"marker": 6, "think": 1}, "phi": {"cap": 3, "marker": 1}}
    b.budget.step_ends = {"qwq": {"marker": 2, "cap": 1}, "phi": {"cap": 4}}
    s = summarize([a, b])
    assert s["step_ends"] == {"qwq": {"marker": 8, "think": 1, "cap": 1}, "phi": {"cap": 7, "marker": 1}}
    (warning,) = s["warnings"]
    assert warning.startswith("teacher phi does not follow the step format: 7 of its 8 proposed steps (88%)")


def test_mcts_runs_from_before_mcts_cord_resume_as_they_ran_or_name_what_changed(tmp_path):
    """An old config.yaml says `method: mcts` with `mcts_rollout` (every method wrote it; missing
    before it existed: 'teacher'). Greedy rollouts are `mcts-cord` now; proposer rollouts ran without
    today's total cap (`mcts_rollout_cap: false`); another method's old config.yaml resumes as it was."""
    recipe = ROOT / "recipes" / "tiny-hetero.yaml"

    def old_run(name, method, old_search, *overrides):
        run = tmp_path / name
        args = ("generate", "-c", recipe, "--out", run, "-q", "data.tiny.n=2")
        code, _, err = cord(*args, f"search.method={method}", *overrides)
        assert code == 0, err
        config = yaml.safe_load((run / "config.yaml").read_text())
        del config["search"]["mcts_rollout_cap"]
        config["search"] |= old_search
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        return args

    args = old_run("greedy", "mcts-cord", {"method": "mcts", "mcts_rollout": "greedy"})
    code, _, err = cord(*args, "search.method=mcts")
    assert code == 2 and "search.method ('mcts-cord' there, 'mcts' now)" in err
    code, stdout, err = cord(*args, "search.method=mcts-cord")
    assert code == 0 and json.loads(stdout)["resumed"] == 2, err

    for name, old in (("teacher", {"mcts_rollout": "teacher"}), ("before", {})):
        args = old_run(name, "mcts", old, "search.mcts_rollout_cap=false")
        code, _, err = cord(*args, "search.method=mcts")
        assert code == 2 and "search.mcts_rollout_cap (False there, True now)" in err
        code, stdout, err = cord(*args, "search.method=mcts", "search.mcts_rollout_cap=false")
        assert code == 0 and json.loads(stdout)["resumed"] == 2, err

    args = old_run("cord", "cord", {"mcts_rollout": "greedy"})
    code, stdout, err = cord(*args, "search.method=cord")
    assert code == 0 and json.loads(stdout)["resumed"] == 2, err


def test_sampling_settings_are_in_config_yaml_and_a_run_from_before_them_resumes(tmp_path):
    """config.yaml carries a teacher's sampling settings and a changed one is refused; a config.yaml
    written before they existed (no such keys) resumes as a run that set none."""
    run = tmp_path / "run"
    args = ("generate", "-c", ROOT / "recipes" / "tiny-hetero.yaml", "--out", run, "-q", "data.tiny.n=2")
    code, _, err = cord(*args, "teachers.0.top_k=20", "teachers.0.repetition_penalty=1.1")
    assert code == 0, err
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (config["teachers"][0]["top_k"], config["teachers"][0]["repetition_penalty"], config["teachers"][1]["top_k"]) == (20, 1.1, None)
    code, _, err = cord(*args)
    assert code == 2 and "holds a run with a different config: teachers" in err
    for section in [*config["teachers"], config["meta_prover"]]:
        for key in ("top_k", "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty", "extra_body"):
            del section[key]
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    code, stdout, err = cord(*args)
    assert code == 0 and json.loads(stdout)["resumed"] == 2, err


def test_the_headline_predictive_perplexity_is_eq_3_and_s_with_the_closing_end_keeps_its_own_name():
    scored_end = record(1)  # S 0.5 scored the answer and its "."; the answer alone 0.4
    scored_end.answer_only_perplexity = 0.4
    same = record(2)  # answer_end "": S is the answer alone, answer_only_perplexity null
    s = summarize([scored_end, same])
    assert s["mean_predictive_perplexity"] == pytest.approx(0.45) == s["mean_answer_only_perplexity"]
    assert s["mean_predictive_perplexity_with_end"] == pytest.approx(0.5)
    # before schema 5 a null answer_only_perplexity does not say that S was the answer alone
    old = Record.from_dict(record(3).to_dict() | {"schema_version": 4})
    s = summarize([old])
    assert s["mean_predictive_perplexity"] is None and s["mean_predictive_perplexity_with_end"] == pytest.approx(0.5)


def test_a_config_yaml_of_an_earlier_cord_reads_in_todays_keys():
    """What `cord merge` parses of older shards: search.mcts_rollout (every method wrote it) is gone."""
    from cord.config import Config, from_dict, load_config, to_dict
    from cord.records.resume import as_today

    data = to_dict(load_config(ROOT / "recipes" / "tiny-hetero.yaml"))
    data["search"].pop("mcts_rollout_cap")
    data["search"]["mcts_rollout"] = "greedy"
    assert from_dict(Config, as_today(data)).search.method == "cord"
    data["search"]["method"] = "mcts"
    assert from_dict(Config, as_today(data)).search.method == "mcts-cord"
    data["search"]["mcts_rollout"] = "teacher"
    config = from_dict(Config, as_today(data))
    assert config.search.method == "mcts" and config.search.mcts_rollout_cap is False
    assert data["search"]["mcts_rollout"] == "teacher"  # a copy: the stored dict is left as it was
