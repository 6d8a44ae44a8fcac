"""Shards, merge and Ray: one problem set over several runs gives the records of one run."""

from __future__ import annotations

import json

import pytest

from cord.config import ConfigError, load_config
from cord.data import select_shard
from cord.records import read_records
from cord.run import run
from cord.shards import merge
from helpers import cord, random_config


def trajectories(records):
    """Texts exactly; S to float rounding (a problem's candidates share their scoring pass with
    whatever other problems are in flight, padded differently)."""
    return {r.id: (r.reasoning, r.final_answer, pytest.approx(r.predictive_perplexity, rel=1e-5)) for r in records}


def test_shards_partition_the_problems():
    items = list(range(10))
    parts = [select_shard(items, f"{i}/3") for i in range(3)]
    assert sorted(x for part in parts for x in part) == items
    assert parts[0] == [0, 3, 6, 9]
    assert select_shard(items, None) == items


@pytest.mark.parametrize("spec", ["3/3", "-1/2", "1", "a/b", "0/0"])
def test_a_bad_shard_is_a_one_line_error(spec, random_model):
    with pytest.raises(ConfigError, match=r"data\.shard: expected I/N"):
        load_config(None, [f"teachers=[{{model: {random_model}}}]", f"meta_prover.model={random_model}", f"data.shard='{spec}'"])


def test_merged_shards_equal_one_run(random_model, tmp_path):
    whole = random_config(random_model, tmp_path / "whole")
    run(whole, progress=False)
    dirs = []
    for i in range(2):
        shard = random_config(random_model, tmp_path / f"shard{i}")
        shard.data.shard = f"{i}/2"
        run(shard, progress=False)
        dirs.append(tmp_path / f"shard{i}")
    assert len(read_records(dirs[0])) == 2 and len(read_records(dirs[1])) == 1
    summary = merge(dirs, tmp_path / "merged")
    merged = read_records(tmp_path / "merged")
    # Per-request seeds: a problem's search does not depend on which run it was in.
    assert trajectories(merged) == trajectories(read_records(tmp_path / "whole"))
    assert summary["problems"] == 3 and [s["problems"] for s in summary["shards"]] == [2, 1]
    # The merged directory is an ordinary run directory: the unsharded run resumes from it.
    whole.output_dir = str(tmp_path / "merged")
    assert run(whole, progress=False)["new"] == 0


def test_merge_refuses_overlapping_or_different_runs_and_writes_nothing(random_model, tmp_path):
    a = random_config(random_model, tmp_path / "a")
    run(a, progress=False)
    b = random_config(random_model, tmp_path / "b", beam_size=2)
    b.data.shard = "0/2"
    run(b, progress=False)
    with pytest.raises(ConfigError, match="also in"):
        merge([tmp_path / "a", tmp_path / "a"], tmp_path / "out")
    with pytest.raises(ConfigError, match=r"config differs .*search.beam_size"):
        merge([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    with pytest.raises(ConfigError, match="nothing: does not exist"):
        merge([tmp_path / "nothing"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="not empty"):
        merge([tmp_path / "b"], tmp_path / "a", allow_missing=True)


def test_merge_refuses_a_shard_that_stopped_early_naming_what_it_lacks(random_model, tmp_path):
    import json

    for i in range(2):
        config = random_config(random_model, tmp_path / f"s{i}")
        config.data.shard = f"{i}/2"
        run(config, progress=False)
    lines = (tmp_path / "s0" / "records.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "s0" / "records.jsonl").write_text(lines[0])  # stopped after one of its two problems
    with pytest.raises(ConfigError, match=r"s0: stopped early: 1 of its 2 planned problems have no record; .*--allow-missing"):
        merge([tmp_path / "s0", tmp_path / "s1"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    summary = merge([tmp_path / "s0", tmp_path / "s1"], tmp_path / "out", allow_missing=True)
    assert summary["problems"] == 2 and summary["missing"] == 1 and summary["shards"][0]["missing"] == 1
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["missing"] == 1


def test_merge_refuses_a_set_with_a_shard_missing_naming_it(random_model, tmp_path):
    for i in (0, 2):  # shard 1/3 never ran
        config = random_config(random_model, tmp_path / "sh" / f"{i}_3")
        config.data.shard = f"{i}/3"
        run(config, progress=False)
    given = [tmp_path / "sh" / "0_3", tmp_path / "sh" / "2_3"]
    code, _, err = cord("merge", *given, "--out", tmp_path / "out")
    assert code == 2 and err == (
        f"cord: error: shard 1/3 (likely {tmp_path / 'sh' / '1_3'}) is missing: merge every shard of the set (run a missing one "
        "with --shard I/N), or merge anyway with --allow-missing\n"
    )
    assert not (tmp_path / "out").exists()
    code, _, err = cord("merge", *given, "--out", tmp_path / "out", "--allow-missing")
    assert code == 0 and err.strip().endswith("; missing: shard 1/3"), err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["problems"] == 2 and summary["missing_shards"] == ["1/3"]


def test_merge_command(random_model, tmp_path):
    for i in range(2):
        config = random_config(random_model, tmp_path / f"s{i}")
        config.data.shard = f"{i}/2"
        run(config, progress=False)
    code, _, err = cord("merge", tmp_path / "s0", tmp_path / "s1", "--out", tmp_path / "all")
    assert code == 0, err
    assert len(read_records(tmp_path / "all")) == 3
    code, _, err = cord("merge", tmp_path / "s0", tmp_path / "s0", "--out", tmp_path / "dup")
    assert code == 2 and err.count("\n") == 1 and "also in" in err


@pytest.mark.slow
def test_ray_shards_over_two_local_workers_and_resumes(random_model, tmp_path):
    pytest.importorskip("ray", reason="Ray not installed (pip install 'cord-distill[ray]')")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"teachers:\n  - {{name: a, model: {random_model}, temperature: 0.8, max_step_tokens: 10}}\n"
        f"  - {{name: b, model: {random_model}, temperature: 1.0, max_step_tokens: 10}}\n"
        f"meta_prover: {{model: {random_model}}}\n"
        "search: {beam_size: 2, reasoning_budget: 30, answer_budget: 5}\n"
        "data: {tiny: {n: 5, seed: 2}}\n"
    )
    code, _, err = cord("generate", "-c", recipe, "--out", tmp_path / "plain", "-q")
    assert code == 0, err
    code, out, err = cord("generate", "-c", recipe, "--out", tmp_path / "ray", "-q", "--ray", "--workers", "2")
    assert code == 0, err
    assert json.loads(out)["new"] == 5
    records = read_records(tmp_path / "ray")
    assert len({r.id for r in records}) == 5
    assert trajectories(records) == trajectories(read_records(tmp_path / "plain"))
    assert sorted(p.name for p in (tmp_path / "ray" / "shards").iterdir()) == ["0-of-2", "1-of-2"]
    code, out, err = cord("generate", "-c", recipe, "--out", tmp_path / "ray", "-q", "--ray", "--workers", "2")
    assert code == 0, err
    assert json.loads(out)["new"] == 0 and json.loads(out)["resumed"] == 5
