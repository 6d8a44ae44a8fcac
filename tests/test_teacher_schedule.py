"""Teacher scheduling by position (search.teacher_schedule): the table from kept steps, who
proposes under it, calibration, resume, and a table read from an earlier run."""

import json

import pytest

from cord.config import ConfigError, TeacherScheduleConfig, load_config
from cord.data import Problem, load_problems
from cord.records import KeptStep, read_records
from cord.run import build_strategy, run
from cord.search.teacher_schedule import TeacherSchedule, cover
from helpers import ROOT, ScriptedEngine, cord, needs_tiny, scripted_strategy

ABC = ["A", "B", "C"]


def kept(step, teachers, tokens=0, asked=ABC):
    return KeptStep(step, tokens, list(teachers), list(asked))


def test_cover_takes_the_fewest_teachers_that_proposed_the_share_of_kept_steps():
    proposers = [{"A"}] * 6 + [{"A", "B"}] * 2 + [{"C"}] * 2
    assert cover(ABC, proposers, 0.8) == ["A"]  # A proposed 8 of 10
    assert cover(ABC, proposers, 0.9) == ["A", "C"]  # then C, which covers the most of the rest
    assert cover(ABC, proposers, 1.0) == ["A", "C"]
    assert cover(ABC, [{"A", "B", "C"}] * 4, 1.0) == ["A"]  # all the same: the first listed
    assert cover(ABC, [{"B"}, {"C"}, {"A"}], 1.0) == ABC  # listed in config order


def test_the_table_has_a_phase_per_step_keeps_every_teacher_where_it_saw_little_and_skips_partial_asks():
    cfg = TeacherScheduleConfig(min_kept=3, coverage=1.0)
    steps = [kept(0, "A")] * 3 + [kept(1, "B"), kept(1, "BC"), kept(1, "C")] + [kept(2, "A")] * 2
    steps += [kept(1, "A", asked=["A"])] * 5  # asked only A: says nothing of B and C
    table = TeacherSchedule.fit(cfg, ABC, steps)
    assert table.phases == {0: ["A"], 1: ["B", "C"]}
    assert table.kept == {0: 3, 1: 3, 2: 2}
    assert table.teachers_at(0, 0) == ["A"] and table.teachers_at(1, 50) == ["B", "C"]
    assert table.teachers_at(2, 0) == ABC and table.teachers_at(7, 0) == ABC  # too few, and never seen
    assert table.describe() == "step 0: A (3 kept steps); step 1: B, C (3 kept steps); step 2: A, B, C (2 kept steps); later: A, B, C"
    assert table.written() == "{0: [A], 1: [B, C]}"  # as search.teacher_schedule.table takes it


def test_phases_by_reasoning_tokens():
    cfg = TeacherScheduleConfig(by="tokens", width=100, min_kept=1)
    table = TeacherSchedule.fit(cfg, ABC, [kept(0, "A", tokens=0), kept(3, "A", tokens=99), kept(1, "C", tokens=100)])
    assert table.phases == {0: ["A"], 1: ["C"]}
    assert table.teachers_at(9, 150) == ["C"] and table.teachers_at(0, 250) == ABC


def test_only_the_scheduled_teachers_propose_and_every_kept_step_names_who_proposed_it():
    a = ScriptedEngine({"": "### Step 1. same\n", "### Step 1. same\n": "### Step 2. a\n</think>"})
    b = ScriptedEngine({"": "### Step 1. same\n", "### Step 1. same\n": "### Step 2. b\n</think>"})
    c = ScriptedEngine({"": "### Step 1. other\n", "### Step 1. same\n": "### Step 2. c\n</think>"})
    mp = ScriptedEngine(scores={"### Step 1. same\n": 0.7, "### Step 1. other\n": 0.4, "### Step 1. same\n### Step 2. c\n</think>": 0.9})
    written = TeacherScheduleConfig(table={0: ["B", "A"], 1: ["C"]})  # a table written by hand: no calibration
    search = scripted_strategy("cord", {"A": a, "B": b, "C": c}, mp, beam_size=1, teacher_schedule=written)
    assert search.table == TeacherSchedule(ABC, phases={0: ["A", "B"], 1: ["C"]})
    assert search.table.describe() == "step 0: A, B; step 1: C; later: A, B, C"
    [record] = search.run([Problem("p1", "What is 3 + 4?", "7")])
    assert (len(a.generated), len(b.generated), len(c.generated)) == (1, 1, 2)  # C also writes the final answer
    assert record.budget.steps_proposed == {"A": 1, "B": 1, "C": 1}
    assert record.kept_steps == [KeptStep(0, 0, ["A", "B"], ["A", "B"]), KeptStep(1, 17, ["C"], ["C"])]
    assert record.schedule == "scheduled" and record.reasoning == "### Step 1. same\n### Step 2. c\n</think>"


def test_plain_cord_records_its_kept_steps_without_a_schedule():
    a = ScriptedEngine({"": "### Step 1. x\n</think>"})
    b = ScriptedEngine({"": "### Step 1. x\n</think>"})
    search = scripted_strategy("cord", {"A": a, "B": b}, ScriptedEngine(), beam_size=2)
    [record] = search.solve(Problem("p1", "What is 3 + 4?", "7"))
    assert record.kept_steps == [KeptStep(0, 0, ["A", "B"], ["A", "B"])] and record.schedule is None


def homo(out, n, *extra):
    return load_config(
        ROOT / "recipes" / "tiny-homo.yaml",
        [f"output_dir={out}", f"data.tiny.n={n}", "data.tiny.seed=5", "search.problems_in_flight=4", *extra],
    )


SCHEDULE = ["search.teacher_schedule.calibration=4", "search.teacher_schedule.min_kept=2"]


@needs_tiny
def test_calibration_then_schedule_resumes_to_the_same_records(tmp_path, engine_cache):
    run(homo(tmp_path / "plain", 10), progress=False, engine_cache=engine_cache)
    run(homo(tmp_path / "sched", 10, *SCHEDULE), progress=False, engine_cache=engine_cache)
    plain, scheduled = read_records(tmp_path / "plain"), read_records(tmp_path / "sched")
    ids = sorted(p.id for p in load_problems(homo(tmp_path, 10).data)[:4])
    calibration = [r for r in scheduled if r.schedule == "calibration"]
    assert sorted(r.id for r in calibration) == ids and all(r.schedule == "scheduled" for r in scheduled if r.id not in ids)
    by_id = {r.id: r for r in plain}
    for record in calibration:  # the calibration problems are plain CoRD
        assert record.reasoning == by_id[record.id].reasoning and record.tokens.teachers == by_id[record.id].tokens.teachers
    names = [t.name for t in homo(tmp_path, 1).teachers]
    table = TeacherSchedule.fit(homo(tmp_path, 1, *SCHEDULE).search.teacher_schedule, names, [k for r in calibration for k in r.kept_steps])
    assert any(len(who) < len(names) for who in table.phases.values())  # the generalist's temperatures are redundant somewhere
    later = [r for r in scheduled if r.schedule == "scheduled"]
    assert all(k.asked == table.teachers_at(k.step, k.tokens) for r in later for k in r.kept_steps)
    spent = sum(sum(r.tokens.teachers.values()) for r in later)
    assert spent < sum(sum(by_id[r.id].tokens.teachers.values()) for r in later)
    written = f"as a written table: {table.written()}"
    assert f"teacher schedule fit on 4 calibration problems: {table.describe()}; {written}" in (tmp_path / "sched" / "run.log").read_text()
    pinned = homo(tmp_path / "pinned", 10, f"search.teacher_schedule.table={table.written()}")
    assert build_strategy(pinned, engine_cache).table.phases == table.phases  # the logged table, pinned from the command line
    # stopped during calibration, and after it: resumed, the same table and the same records
    for stop in (2, 6):
        out = tmp_path / f"resumed-{stop}"
        run(homo(out, 10, *SCHEDULE, f"data.limit={stop}"), progress=False, engine_cache=engine_cache)
        run(homo(out, 10, *SCHEDULE), progress=False, engine_cache=engine_cache)
        resumed = {r.id: r for r in read_records(out)}
        assert {r.id: (r.reasoning, r.schedule) for r in scheduled} == {i: (r.reasoning, r.schedule) for i, r in resumed.items()}
    # the table read from an earlier run: every problem scheduled, none calibrating
    config = homo(tmp_path / "from", 10, *SCHEDULE, f"search.teacher_schedule.table_from={tmp_path / 'plain'}")
    strategy = build_strategy(config, engine_cache)
    assert strategy.table == TeacherSchedule.fit(config.search.teacher_schedule, names, [k for r in plain for k in r.kept_steps])
    run(config, progress=False, engine_cache=engine_cache)
    assert {r.schedule for r in read_records(tmp_path / "from")} == {"scheduled"}
    summary = json.loads((tmp_path / "from" / "summary.json").read_text())
    assert summary["problems"] == 10 and summary["failures"] == 0
    renamed = homo(tmp_path / "renamed", 10, f"search.teacher_schedule.table_from={tmp_path / 'plain'}", "teachers.0.name=other")
    with pytest.raises(ConfigError, match="teacher\\(s\\) other never proposed in that run; the teacher names must match"):
        build_strategy(renamed, engine_cache)


def test_a_schedule_is_refused_where_it_cannot_apply(tmp_path, random_model):
    with pytest.raises(ConfigError, match=r"search.teacher_schedule: method 'curation' has no step proposals to schedule"):
        scripted_strategy("curation", {"A": ScriptedEngine()}, ScriptedEngine(), teacher_schedule=TeacherScheduleConfig())
    bad = {
        "search.teacher_schedule.by=position": "search.teacher_schedule.by: 'position' is not one of step, tokens",
        "search.teacher_schedule.coverage=0": r"search.teacher_schedule.coverage: must be in \(0, 1\]",
        "search.teacher_schedule.calibration=0": "search.teacher_schedule.calibration: must be >= 1",
        f"search.teacher_schedule.table_from={tmp_path}": f"search.teacher_schedule.table_from: {tmp_path} is not a cord run directory",
    }
    table = "search.teacher_schedule.table"
    bad[f"{table}.0=[generalist-t0.5, nobody]"] = rf"{table}.0: 'nobody' is not a teacher \(teachers: generalist-t0.5, "
    bad[f"{table}.first=[generalist-t0.5]"] = f"{table}: a phase is a whole number >= 0, got 'first'"
    bad[f"{table}.1=generalist-t0.5"] = f"{table}.1: expected a list of teacher names, got 'generalist-t0.5'"
    for override, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            load_config(ROOT / "recipes" / "tiny-homo.yaml", [override])
    both = [f"{table}.0=[generalist-t0.5]", f"search.teacher_schedule.table_from={tmp_path}"]
    with pytest.raises(ConfigError, match=r"search\.teacher_schedule: set table or table_from, not both"):
        load_config(ROOT / "recipes" / "tiny-homo.yaml", both)
    assert load_config(ROOT / "recipes" / "tiny-homo.yaml", both[:1]).search.teacher_schedule.table == {0: ["generalist-t0.5"]}
    recipe = ROOT / "recipes" / "tiny-homo.yaml"
    code, _, err = cord("generate", "--config", recipe, "--out", tmp_path / "x", "search.teacher_schedule.width=0")
    assert code != 0 and "search.teacher_schedule.width: must be >= 1" in err and not (tmp_path / "x").exists()
