import pytest

from cord.config import load_config
from cord.data import load_problems
from cord.run import build_strategy, generate
from helpers import ROOT, needs_tiny, random_config


@pytest.mark.parametrize("beam_size, teachers", [(1, 1), (1, 3), (3, 1), (2, 2)])
def test_beam_search_works_for_any_b_and_k(random_model, tmp_path, engine_cache, beam_size, teachers):
    config = random_config(random_model, tmp_path, teachers=teachers, beam_size=beam_size)
    problems = load_problems(config.data)
    records = generate(problems, config, engine_cache)
    assert [r.id for r in sorted(records, key=lambda r: r.id)] == sorted(p.id for p in problems)
    for r in records:
        assert r.reasoning.endswith("</think>")
        assert r.reasoning == "".join(s.text for s in r.steps)
        assert all(0 < s.score <= 1 for s in r.steps)
        assert r.predictive_perplexity == r.steps[-1].score
        assert all(s.end in ("marker", "think", "cap", "eos", "budget") for s in r.steps)
        assert r.steps[-1].end in ("think", "eos", "budget")
        assert all(s.end in ("marker", "cap") for s in r.steps[:-1])
        # the reasoning budget holds: the last step is closed when it is spent
        assert r.tokens.reasoning <= config.search.reasoning_budget + 0
        assert sum(r.budget.trajectories.values()) <= beam_size
        assert r.answer_teacher == r.steps[-1].teacher
        assert set(r.tokens.teachers) <= {t.name for t in config.teachers}


def test_records_carry_s_over_the_answer_alone_beside_s_with_the_closing_token(random_model, tmp_path, engine_cache):
    """S scores search.answer_end ('.') after the answer; answer_only_perplexity is the paper's Eq. 3
    (the answer's tokens alone), for the record and its alternatives, so figures compare with the paper's."""
    from cord.engines import load_engine
    from cord.scoring import MetaProver, ScoreItem

    config = random_config(random_model, tmp_path, teachers=2, beam_size=2, keep_top_k=2)
    records = generate(load_problems(config.data), config, engine_cache)
    mp = config.meta_prover
    alone = MetaProver(load_engine(mp), mp.system_prompt, config.step_instruction_for(mp), config.search.answer_lead, end="")
    trajectories = [(r, t) for r in records for t in (r, *r.alternatives)]
    assert len(records) == 3 and len(trajectories) == 6
    for r, t in trajectories:
        texts = tuple(step.text for step in t.steps)
        (want,) = alone.score([ScoreItem(r.question, r.answer, texts[:-1], texts[-1])])
        assert t.answer_only_perplexity == pytest.approx(want.score, rel=1e-4)
        assert t.answer_only_perplexity != pytest.approx(t.predictive_perplexity, rel=1e-4)
    config.search.answer_end = ""
    config.output_dir = str(tmp_path / "no-end")
    same = generate(load_problems(config.data), config, engine_cache)
    assert len(same) == 3 and all(r.answer_only_perplexity is None for r in same)


def test_greedy_is_beam_one(random_model, tmp_path, engine_cache):
    config = random_config(random_model, tmp_path, teachers=2, method="greedy", beam_size=4)
    strategy = build_strategy(config, engine_cache)
    assert strategy.beam_size == 1
    problems = load_problems(config.data)
    records = generate(problems, config, engine_cache)
    assert len(records) == len(problems) == 3
    assert all(r.method == "greedy" and sum(r.budget.trajectories.values()) == 1 for r in records)


def test_curation_keeps_the_best_of_b_per_teacher(random_model, tmp_path, engine_cache):
    config = random_config(random_model, tmp_path, teachers=2, method="curation", beam_size=3)
    records = generate(load_problems(config.data), config, engine_cache)
    assert len(records) == 3
    for r in records:
        assert r.budget.trajectories == {"t0": 3, "t1": 3}
        assert len({s.teacher for s in r.steps}) == 1
        assert 0 < r.predictive_perplexity <= 1


@needs_tiny
def test_tiny_cord_composes_steps_from_several_teachers(tmp_path, engine_cache):
    config = load_config(ROOT / "recipes" / "tiny-hetero.yaml", ["data.tiny.n=12", "data.tiny.seed=11", f"output_dir={tmp_path}"])
    records = generate(load_problems(config.data), config, engine_cache)
    assert len(records) == 12
    mixed = [r for r in records if len({s.teacher for s in r.steps}) > 1]
    assert len(mixed) >= len(records) // 2
    # single tiny teachers solve ~0-5 % of mixed problems (MODELS.md); CoRD composes them
    assert sum(r.correct for r in records) >= len(records) // 4
    assert all(r.valid_trace is not None for r in records)


def test_library_generate_takes_plain_dicts(random_model, tmp_path, engine_cache):
    config = random_config(random_model, tmp_path, teachers=1, beam_size=1)
    records = generate([{"id": "q1", "problem": "What is 2 + 2?", "answer": "4"}], config, engine_cache)
    assert [r.id for r in records] == ["q1"] and records[0].answer == "4"


@needs_tiny
def test_records_do_not_depend_on_batching_or_order(tmp_path, engine_cache):
    """Per-request seeds: the same problem gets the same record alone, in a batch, or later in the list."""
    config = load_config(ROOT / "recipes" / "tiny-homo.yaml", ["data.tiny.n=6", "data.tiny.seed=4", "search.beam_size=2"])
    problems = load_problems(config.data)
    config.search.problems_in_flight = 6
    batched = {r.id: r for r in generate(problems, config, engine_cache)}
    config.search.problems_in_flight = 1
    alone = {r.id: r for r in generate(problems[::-1], config, engine_cache)}
    assert set(batched) == set(alone) == {p.id for p in problems}
    for pid, r in batched.items():
        assert [(s.text, s.teacher) for s in r.steps] == [(s.text, s.teacher) for s in alone[pid].steps]
        assert r.final_answer == alone[pid].final_answer


def test_two_teachers_on_one_model_never_share_a_seed(random_model, tmp_path, engine_cache):
    config = random_config(random_model, tmp_path, teachers=3, beam_size=2)
    strategy = build_strategy(config, engine_cache)
    problem = load_problems(config.data)[0]
    seeds = [strategy.seed_for(problem, "step", 0, slot, t.name) for slot in (0, 1) for t in strategy.teachers]
    assert len(set(seeds)) == 6
    assert strategy.seed_for(problem, "step", 0, 0, "t0") == strategy.seed_for(problem, "step", 0, 0, "t0")


@needs_tiny
def test_the_library_path_names_unnamed_teachers_and_checks_the_config_again(engine_cache):
    """`cord.generate` with a Config built in Python: two unnamed teachers are named from their
    models (not both ""), each keeps its own tokens, and a change made after the config was built
    is checked as a recipe would be."""
    import cord
    from cord.config import Config, ConfigError, DataConfig, ModelConfig, SearchConfig
    from cord.tiny.tasks import TinyTasksConfig

    config = Config(
        teachers=[ModelConfig(model="tiny:tiny-addsub", max_step_tokens=32), ModelConfig(model="tiny:tiny-mul", max_step_tokens=32)],
        meta_prover=ModelConfig(model="tiny:tiny-reader"),
        search=SearchConfig(beam_size=2, reasoning_budget=256, answer_budget=24),
        data=DataConfig(tiny=TinyTasksConfig(n=4, seed=9)),
    )
    problems = cord.load_problems(config.data)
    records = cord.generate(problems, config, engine_cache)
    assert len(records) == 4
    names = {"tiny-addsub", "tiny-mul"}
    for r in records:
        assert set(r.tokens.teachers) == names and all(n > 0 for n in r.tokens.teachers.values())
        assert r.answer_teacher == r.steps[-1].teacher and {s.teacher for s in r.steps} <= names
    assert {s.teacher for r in records for s in r.steps} == names  # both write steps: the answers are not all teacher 0's
    # records come back in the order of the problems given, whatever order they finished in
    given = problems[::-1]
    assert [r.id for r in cord.generate(given, config, engine_cache)] == [p.id for p in given]
    import datasets

    table = datasets.Dataset.from_list([{"id": p.id, "problem": p.question, "answer": p.answer} for p in given])
    out = cord.generate(table, config, engine_cache)
    assert isinstance(out, datasets.Dataset) and out["id"] == [p.id for p in given] and out["index"] == [0, 1, 2, 3]
    assert out["final_answer"] == [r.final_answer for r in records[::-1]]
    config.teachers[1].name = "tiny-addsub"  # a duplicate made after the config was built
    with pytest.raises(ConfigError, match=r"teachers\.1\.name: duplicate teacher name 'tiny-addsub'"):
        cord.generate(problems, config, engine_cache)


@needs_tiny
def test_a_run_batching_continuously_writes_the_steps_of_whole_batches(tmp_path):
    """Every model forced to batch continuously (problems' requests join running batches from
    their own threads) gives the steps, answers and grades of the reproducible whole batches; only
    the scores' last digits may differ (a row's padding depends on who shares its batch)."""
    from cord.engines import close_engines

    overrides = ["data.tiny.n=8", "data.tiny.seed=5", f"output_dir={tmp_path}"]
    forced = [f"{m}.transformers.continuous=true" for m in ("teachers.0", "teachers.1", "teachers.2", "meta_prover")]
    runs, caches = {}, {}
    for mode, extra in (("whole", ["search.reproducible=true"]), ("continuous", forced)):
        config = load_config(ROOT / "recipes" / "tiny-hetero.yaml", overrides + extra)
        caches[mode] = {}
        runs[mode] = {r.id: r for r in generate(load_problems(config.data), config, caches[mode])}
    assert all(engine._decoding is not None for engine in caches["continuous"].values())  # the workers ran
    assert all(engine._decoding is None for engine in caches["whole"].values())
    for pid, whole in runs["whole"].items():
        joined = runs["continuous"][pid]
        assert [(s.text, s.teacher) for s in joined.steps] == [(s.text, s.teacher) for s in whole.steps]
        assert (joined.final_answer, joined.correct) == (whole.final_answer, whole.correct)
        assert [s.score for s in joined.steps] == pytest.approx([s.score for s in whole.steps], abs=1e-5)
    for cache in caches.values():
        close_engines(cache)


@needs_tiny
def test_whole_batches_that_carry_their_last_rows_to_the_next_batch_write_the_same_records(tmp_path, monkeypatch):
    """Reproducible whole batches, refilled 8 rows at a time as on a GPU: a teacher's batch that
    carries its last rows (resumed in its next batch, their problems waiting meanwhile) writes the
    records of batches that run every row to its end."""
    from cord.engines import close_engines
    from cord.engines.base import CARRIED
    from cord.engines.transformers.decode import Decoder

    carried, batch = [], Decoder.batch

    def counting(self, *args, **kwargs):
        out = batch(self, *args, **kwargs)
        carried.extend(c.finish == CARRIED for c in out)
        return out

    monkeypatch.setattr(Decoder, "batch", counting)
    teachers = ("teachers.0", "teachers.1", "teachers.2")
    overrides = ["data.tiny.n=8", "data.tiny.seed=5", f"output_dir={tmp_path}", "search.reproducible=true"]
    overrides += [f"{m}.transformers.{k}" for m in teachers for k in ("refill=true", "max_batch_size=8")]
    runs = {}
    for carry in ("true", "false"):
        config = load_config(ROOT / "recipes" / "tiny-hetero.yaml", overrides + [f"{m}.transformers.carry={carry}" for m in teachers])
        cache, before = {}, len(carried)
        runs[carry] = {r.id: r for r in generate(load_problems(config.data), config, cache)}
        close_engines(cache)
        assert any(carried[before:]) == (carry == "true")
    for pid, ran in runs["false"].items():
        got = runs["true"][pid]
        assert [(s.text, s.teacher) for s in got.steps] == [(s.text, s.teacher) for s in ran.steps]
        assert (got.final_answer, got.correct) == (ran.final_answer, ran.correct)
        assert [s.score for s in got.steps] == pytest.approx([s.score for s in ran.steps], abs=1e-5)


@needs_tiny
def test_speculative_rounds_with_continuous_engines_write_the_records_of_whole_batches(tmp_path):
    """search.speculative with every tiny model batching continuously: next-round proposals start
    before a round's last ones are back, and the records are those of the reproducible whole
    batches (steps, writers, answers, grades; the scores' last digits may differ)."""
    import json

    from cord.records.rundir import read_records
    from cord.run import run

    overrides = ["data.tiny.n=8", "data.tiny.seed=5"]
    forced = [f"{m}.transformers.continuous=true" for m in ("teachers.0", "teachers.1", "teachers.2", "meta_prover")]
    ahead = [*forced, "search.speculative=true", "search.rows_in_flight=64"]
    records, summaries = {}, {}
    for mode, extra in (("whole", ["search.reproducible=true"]), ("ahead", ahead)):
        config = load_config(ROOT / "recipes" / "tiny-hetero.yaml", [*overrides, *extra, f"output_dir={tmp_path / mode}"])
        run(config, progress=False)
        records[mode] = {r.id: r for r in read_records(tmp_path / mode)}
        summaries[mode] = json.loads((tmp_path / mode / "summary.json").read_text())
    proposals = summaries["ahead"]["proposals"]
    assert proposals["ahead_kept"] > 0 and proposals["sent"] > 0 and "proposals" not in summaries["whole"]
    for pid, whole in records["whole"].items():
        got = records["ahead"][pid]
        assert [(s.text, s.teacher, s.proposers) for s in got.steps] == [(s.text, s.teacher, s.proposers) for s in whole.steps]
        assert (got.final_answer, got.correct) == (whole.final_answer, whole.correct)
        assert [s.score for s in got.steps] == pytest.approx([s.score for s in whole.steps], abs=1e-5)
        assert got.tokens.teachers == whole.tokens.teachers  # proposals dropped are not charged to the record
