"""Curation's teachers write as the paper's baselines do (§5: a complete trajectory in the model's
own style) unless `search.trajectory_style: steps` asks for CoRD's step layout."""

from __future__ import annotations

from cord.config import Config, ModelConfig
from cord.data import Problem
from cord.prompts import REASONING_INSTRUCTION, STEP_INSTRUCTION, STEP_MARKER, THINK_OPEN
from cord.records.resume import as_today
from cord.search.cord import CordSearch
from cord.search.curation import CurationSearch
from helpers import ROOT, ScriptedEngine, cord_here, needs_tiny, scripted_strategy, teacher_config

PROBLEM = Problem("p1", "What is 3 + 4?", "7")


def config(**search) -> Config:
    return Config(teachers=[teacher_config("A")], meta_prover=ModelConfig(name="mp", model="scripted:mp"), search=search)


def test_own_style_asks_for_plain_reasoning_and_prefills_nothing_unless_steps_is_asked_for():
    own, steps = config(method="curation"), config(method="curation", trajectory_style="steps")
    assert own.search.trajectory_style == "own"  # the paper's baselines by default
    assert CurationSearch.teacher_instruction(own, own.teachers[0]) == REASONING_INSTRUCTION
    assert CurationSearch.teacher_opening(own) == ""
    assert CurationSearch.teacher_instruction(steps, steps.teachers[0]) == STEP_INSTRUCTION
    assert CurationSearch.teacher_opening(steps) == STEP_MARKER
    own.teachers[0].step_instruction = "Think in Spanish."  # a model's own instruction still wins
    assert CurationSearch.teacher_instruction(own, own.teachers[0]) == "Think in Spanish."
    cord = config(method="cord")  # CoRD's teachers are asked for steps whatever the style
    assert CordSearch.teacher_instruction(cord, cord.teachers[0]) == STEP_INSTRUCTION and CordSearch.teacher_opening(cord) == STEP_MARKER


def test_a_curation_teacher_in_its_own_style_continues_from_an_empty_think_block():
    for style, opened in (("own", ""), ("steps", STEP_MARKER)):
        a = ScriptedEngine({"": "First, 3 + 4 = 7.\n</think>"}, answer="\\boxed{7}")
        search = scripted_strategy("curation", {"A": a}, ScriptedEngine(), beam_size=1, trajectory_style=style)
        (record,) = search.run([PROBLEM])
        assert a.generated[0].prompt.split(THINK_OPEN, 1)[1] == opened
        assert record.reasoning == opened + "First, 3 + 4 = 7.\n</think>".removeprefix(opened) and record.correct


def test_runs_from_before_the_setting_resume_with_the_step_layout_they_used():
    data = config(method="curation").model_dump()
    data["search"].pop("trajectory_style")
    assert as_today(data)["search"]["trajectory_style"] == "steps"


@needs_tiny
def test_the_dry_run_shows_what_a_curation_teacher_is_asked():
    recipe = str(ROOT / "recipes" / "tiny-hetero.yaml")  # the tiny teachers' own layout is the step layout
    code, out, err = cord_here("generate", "-c", recipe, "--method", "curation", "--dry-run")
    assert code == 0, err
    assert "start every step on a new line" in out.split("meta-prover")[0]
    assert "stops ['</think>']" in out  # a whole trajectory, not a step
    code, out, err = cord_here("generate", "-c", recipe, "--method", "curation", "--dry-run", "search.trajectory_style=own")
    assert code == 0, err
    teachers = out.split("meta-prover")[0]
    assert f"{REASONING_INSTRUCTION}<|im_end|>" in teachers and "start every step on a new line" not in teachers
