import json

import pytest

from cord.cli import main
from helpers import ROOT, SHARED_DATA, cord, cord_here, needs_tiny


def random_recipe(tmp_path, model):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"teachers:\n  - {{name: a, model: {model}, temperature: 0.8, max_step_tokens: 10}}\n"
        f"  - {{name: b, model: {model}, temperature: 1.0, max_step_tokens: 10}}\n"
        f"meta_prover: {{model: {model}}}\n"
        "search: {beam_size: 2, reasoning_budget: 30, answer_budget: 5}\n"
        "data: {tiny: {n: 3, seed: 2}}\n"
    )
    return recipe


def test_generate_writes_records_config_summary_and_resumes(tmp_path, random_model):
    out = tmp_path / "run"
    recipe = random_recipe(tmp_path, random_model)
    code, stdout, _ = cord("generate", "--config", recipe, "--out", out, "-q")
    assert code == 0, _
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 3
    assert set(records[0]) == {
        "schema_version",
        "id",
        "question",
        "answer",
        "method",
        "steps",
        "reasoning",
        "final_answer",
        "answer_teacher",
        "answer_fallback",
        "predicted",
        "correct",
        "predictive_perplexity",
        "answer_only_perplexity",
        "tokens",
        "budget",
        "timing",
        "seconds",
        "cost",
        "valid_trace",
        "failed",
        "raw_integration",
        "judge_reply",
        "alternatives",
        "kept_steps",
        "schedule",
        "quality",
        "index",
    }
    assert records[0]["schema_version"] == 8 and records[0]["alternatives"] == [] and records[0]["schedule"] is None
    assert set(records[0]["budget"]) == {"steps_proposed", "trajectories", "meta_prover_calls", "step_ends", "empty_steps"}
    assert set(records[0]["kept_steps"][0]) == {"step", "tokens", "teachers", "asked"}
    assert set(records[0]["steps"][0]) == {"text", "teacher", "score", "tokens", "end", "category", "candidates", "proposers"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == 3 and summary["new"] == 3
    assert "search:" in (out / "config.yaml").read_text()
    before = (out / "records.jsonl").read_bytes()
    code, stdout, _ = cord("generate", "--config", recipe, "--out", out, "-q")
    assert code == 0 and json.loads(stdout)["new"] == 0
    assert (out / "records.jsonl").read_bytes() == before
    # a different config on the same directory is refused, then allowed with --overwrite
    code, _, err = cord("generate", "--config", recipe, "--out", out, "-q", "search.beam_size=1")
    assert code == 2 and "different config: search.beam_size (2 there, 1 now)" in err
    code, stdout, _ = cord("generate", "--config", recipe, "--out", out, "-q", "--overwrite", "search.beam_size=1", "--limit", "1")
    assert code == 0 and json.loads(stdout)["new"] == 1


@pytest.mark.parametrize(
    "extra, message",
    [
        (["teachers.0.engine=tgi"], "teachers.0.engine"),
        (["teachers.1.temperature=-1"], "teachers.1.temperature"),
        (["search.beam_size=0"], "search.beam_size"),
        (["teachers.0.model=./no/such/model"], "no/such/model"),
        (["search.bogus=1"], "search.bogus"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_output(tmp_path, random_model, extra, message):
    out = tmp_path / "never"
    code, _, err = cord("generate", "--config", random_recipe(tmp_path, random_model), "--out", out, "-q", *extra)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_bad_data_file_exit_2(tmp_path, random_model):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"id": "a", "problem": "1+1", "answer": "2"}\n{not json}\n')
    out = tmp_path / "never"
    code, _, err = cord("generate", "--config", random_recipe(tmp_path, random_model), "--data", data, "--out", out)
    assert code == 2 and "bad.jsonl line 2" in err and not out.exists()


def test_tasks_command(tmp_path, capsys):
    assert main(["tasks", "--n", "5", "--seed", "3", "--out", str(tmp_path / "p.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and {"id", "problem", "answer"} <= set(rows[0])
    assert main(["tasks", "--n", "2", "--out", str(tmp_path / "p.jsonl")]) == 2  # refused, as cord export refuses
    assert "p.jsonl: already exists (use --overwrite to replace it)" in capsys.readouterr().err
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 5
    assert main(["tasks", "--n", "2", "--out", str(tmp_path / "p.jsonl"), "--overwrite"]) == 0
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 2


@needs_tiny
def test_tiny_recipe_end_to_end_on_shared_data_shape(tmp_path):
    out = tmp_path / "tiny"
    code, _, err = cord("generate", "--config", ROOT / "recipes" / "tiny-hetero.yaml", "--out", out, "-q", "data.tiny.n=6")
    assert code == 0, err
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 6
    assert {s["teacher"] for r in records for s in r["steps"]} > {"addsub"}
    assert all(0 < s["score"] <= 1 for r in records for s in r["steps"])


@needs_tiny
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data not present")
def test_shared_gsm8k_runs_through_the_tiny_recipe(tmp_path):
    """Real data through the whole pipeline (the tiny models are not expected to solve it)."""
    out = tmp_path / "gsm"
    code, _, err = cord(
        "generate",
        "--config",
        ROOT / "recipes" / "tiny-hetero.yaml",
        "--data",
        SHARED_DATA / "gsm8k_test.jsonl",
        "--limit",
        "2",
        "--out",
        out,
        "-q",
        "search.beam_size=1",
    )
    assert code == 0, err
    assert len((out / "records.jsonl").read_text().splitlines()) == 2


@needs_tiny
def test_demo_prints_the_table_and_writes_runs(tmp_path):
    code, stdout, err = cord("demo", "--n", "4", "--seed", "9", "--out", tmp_path / "demo", "--quiet")
    assert code == 0, err
    for label in ("addsub alone", "mul alone", "div alone", "curation", "greedy", "cord (B=4)"):
        assert label in stdout
    assert (tmp_path / "demo" / "summary.md").is_file()
    assert sorted(p.name for p in (tmp_path / "demo").iterdir() if p.is_dir()) == sorted(
        ["hetero-addsub", "hetero-mul", "hetero-div", "hetero-curation", "hetero-greedy", "hetero-cord"]
    )
    code, stdout, _ = cord("evaluate", *sorted((tmp_path / "demo").glob("hetero-*")), "--json")
    rows = json.loads(stdout)
    assert len(rows) == 6 and all(r["problems"] == 4 for r in rows)


def test_api_key_is_read_from_the_named_variable_and_never_written(tmp_path, random_model, monkeypatch):
    from cord.config import ConfigError, load_config
    from cord.engines.openai import OpenAIEngine

    with pytest.raises(ConfigError, match="CORD_TEST_KEY"):
        OpenAIEngine(random_model, "http://127.0.0.1:9", api_key_env="CORD_TEST_KEY")
    monkeypatch.setenv("CORD_TEST_KEY", "sk-secret-123")
    engine = OpenAIEngine(random_model, "http://127.0.0.1:9", api_key_env="CORD_TEST_KEY")
    assert engine.api_key == "sk-secret-123" and "sk-secret" not in repr(engine)
    config = load_config(
        random_recipe(tmp_path, random_model),
        ["meta_prover.engine=openai", "meta_prover.base_url=http://127.0.0.1:9", "meta_prover.api_key_env=CORD_TEST_KEY"],
    )
    from cord.config import to_dict

    assert "sk-secret" not in json.dumps(to_dict(config))


def test_help_lists_every_subcommand_and_the_exit_codes(capsys):
    from cord.registry import COMMANDS

    code, out, err = cord("--help")
    assert code == 0, err
    assert all(name in out for name in ["generate", *COMMANDS.names()]) and "Exit codes" in out
    for name in ["generate", *COMMANDS.names()]:
        with pytest.raises(SystemExit):  # argparse's --help exits
            main([name, "--help"])
        assert "--debug" in capsys.readouterr().out, name


def test_a_typo_gets_the_near_key_and_no_recipe_gets_a_hint(capsys):
    assert main(["generate", "-c", str(ROOT / "recipes" / "tiny-hetero.yaml"), "search.beam_sise=2", "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == "cord: error: unknown config key(s): search.beam_sise (did you mean search.beam_size?)"
    assert main(["generate"]) == 2
    assert "teachers: required; no recipe was given: start from one, e.g. `cord generate -c recipes/" in capsys.readouterr().err


def test_help_config_prints_each_key_with_its_type_default_and_help():
    code, out, err = cord("generate", "--help-config", "search.")
    assert code == 0, err
    assert "search.beam_size: integer >= 1 = 4\n    B (paper: 4)" in out
    assert "search.segmentation: prompt | linebreak | prefix" in out and "teachers." not in out
    code, out, _ = cord("generate", "--help-config", "meta_prover")
    assert "meta_prover: model section" in out and "<model>.temperature: number >= 0 = 0.6" in out


def test_version_and_an_override_after_ray_stay_what_they_are(monkeypatch):
    from cord import __version__

    code, out, _ = cord("--version")
    assert code == 0 and out.strip() == f"cord {__version__}"
    seen = {}
    from cord import cli

    monkeypatch.setattr(cli, "_generate", lambda args: seen.update(ray=args.ray, overrides=args.overrides) or 0)
    assert cord_here("generate", "--ray", "search.beam_size=2", "search.seed=3")[0] == 0
    assert seen == {"ray": "", "overrides": ["search.beam_size=2", "search.seed=3"]}  # a local cluster, both overrides kept
    assert cord_here("generate", "--ray", "ray://head:10001", "search.seed=3")[0] == 0
    assert seen == {"ray": "ray://head:10001", "overrides": ["search.seed=3"]}


def test_a_run_resumes_with_the_data_named_another_way_and_a_refusal_keeps_the_finished_work(tmp_path, random_model, monkeypatch):
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "problem": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(2)))
    recipe = random_recipe(tmp_path, random_model)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    code, _, err = cord_here("generate", "--config", recipe, "--data", "p.jsonl", "--out", out, "-q")
    assert code == 0, err
    code, stdout, err = cord_here("generate", "--config", recipe, "--data", str(data), "--out", out, "-q", "data.shard=0/1")
    assert code == 0 and json.loads(stdout)["resumed"] == 2 and json.loads(stdout)["new"] == 0, err  # one file, however named
    code, _, err = cord_here("generate", "--config", recipe, "--data", str(data), "--out", out, "-q", "search.seed=9")
    assert code == 2 and "search.seed (0 there, 9 now)" in err and "--overwrite" not in err and "another output folder (--out)" in err
    assert len((out / "records.jsonl").read_text().splitlines()) == 2


def test_help_config_reads_a_list_item_and_refuses_a_prefix_that_names_nothing():
    code, out, err = cord_here("generate", "--help-config", "teachers.0.")
    assert code == 0, err
    assert "teachers.0.temperature: number >= 0 = 0.6" in out and "teachers.0.price" in out
    assert all(line.startswith(("teachers.0.", "    ")) for line in out.splitlines())  # the one teacher's keys only
    assert cord_here("generate", "--help-config", "teachers.0")[1] == out
    code, out, _ = cord_here("generate", "--help-config", "teachers.")
    assert code == 0 and "teachers.N.max_step_tokens" in out
    code, out, err = cord_here("generate", "--help-config", "teachers.x.")
    expected = "cord: error: --help-config: no configuration key starts with 'teachers.x.' (e.g. search., teachers.0., data.)\n"
    assert code == 2 and not out and err == expected


def test_generate_reads_a_datasets_folder_with_its_own_field_names(tmp_path, random_model):
    import datasets

    rows = [
        {"question": "Ann has 3 apples and gets 4 more. How many now?", "solution": "3 + 4 = 7.\n#### 7", "id": "ann"},
        {"question": "Bo has 12 pens and gives away 5. How many now?", "solution": "12 - 5 = 7.\n#### 7", "id": "bo"},
    ]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    out = tmp_path / "run"
    flags = ["--question-field", "question", "--answer-field", "solution", "--answer-format", "gsm8k"]
    recipe = random_recipe(tmp_path, random_model)
    code, _, err = cord_here("generate", "-c", recipe, "--data", tmp_path / "saved", *flags, "--out", out, "-q")
    assert code == 0, err
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert sorted((r["id"], r["question"][:6], r["answer"]) for r in records) == [("ann", "Ann ha", "7"), ("bo", "Bo has", "7")]
