"""Credit for a chosen step goes to every teacher that proposed it, one of them (a seeded pick) writes
on, and a step that closes the reasoning with nothing in it ranks below steps with content; over
scripted engines (helpers.ScriptedEngine), so every expected value is known in advance."""

from cord.data import Problem
from cord.records import Record, Step, summarize
from cord.results.compare import teacher_hit_rate
from helpers import ScriptedEngine, scripted_strategy

STEP_1, OTHER_1 = "### Step 1. 3 + 4 = 7\n", "### Step 1. 3 + 3 = 6\n"
CLOSE_7, CLOSE_8 = "### Step 2. so 7\n</think>", "### Step 2. so 8\n</think>"
SCORES = {STEP_1: 0.8, OTHER_1: 0.3, STEP_1 + CLOSE_7: 0.9, STEP_1 + CLOSE_8: 0.2}


def teachers() -> dict[str, ScriptedEngine]:
    """A and B write step 1, A and C the closing step 2; each answers with its own letter."""
    return {
        "A": ScriptedEngine({"": STEP_1, STEP_1: CLOSE_7}, answer="written by A \\boxed{7}"),
        "B": ScriptedEngine({"": STEP_1, STEP_1: CLOSE_8}, answer="written by B \\boxed{7}"),
        "C": ScriptedEngine({"": OTHER_1, STEP_1: CLOSE_7}, answer="written by C \\boxed{7}"),
    }


def test_every_proposer_of_a_chosen_step_gets_an_equal_share_of_its_credit():
    (record,) = scripted_strategy("greedy", teachers(), ScriptedEngine(scores=SCORES)).run([Problem("p2", "What is 3 + 4?", "7")])
    assert [s.text for s in record.steps] == [STEP_1, CLOSE_7]
    assert [s.proposers for s in record.steps] == [["A", "B"], ["A", "C"]]
    assert [s.teacher for s in record.steps] == ["B", "A"]  # the seeded writer of each (see the next test)
    assert summarize([record])["selected_steps_by_teacher"] == {"A": 1.0, "B": 0.5, "C": 0.5}
    assert teacher_hit_rate([record], bins=2)["hit_rate"] == {"A": [0.5, 0.5], "B": [0.5, 0.0], "C": [0.0, 0.5]}
    assert [k.teachers for k in record.kept_steps] == [["A", "B"], ["A", "C"]]
    # the proposers survive the record's line; a record from before them credits its writer alone
    assert Record.from_dict(record.to_dict()).steps[1].proposers == ["A", "C"]
    assert Step("### Step 1. x\n", "B").credit == {"B": 1.0}


def test_the_answer_writer_is_a_seeded_pick_among_the_proposers_of_the_last_step():
    """A and C propose the closing step, B another one that loses: the writer of the answer is A or
    C, picked by the problem's seed and the step's index, the same on every run."""
    problems = [Problem(f"p{i}", "What is 3 + 4?", "7") for i in range(1, 7)]
    writers = []
    for _ in range(2):
        scripted = teachers()
        records = sorted(scripted_strategy("greedy", scripted, ScriptedEngine(scores=SCORES)).run(problems), key=lambda r: r.id)
        writers.append([r.answer_teacher for r in records])
        assert all(r.final_answer == f"written by {r.answer_teacher} \\boxed{{7}}" for r in records)
        assert all(r.steps[-1].teacher == r.answer_teacher and r.steps[-1].proposers == ["A", "C"] for r in records)
        # B, which did not propose the closing step, was never asked for an answer (2 steps each)
        assert len(scripted["B"].generated) == 2 * len(problems)
    assert writers[0] == writers[1] == ["C", "A", "C", "C", "A", "A"]


def test_a_step_that_closes_the_reasoning_with_nothing_in_it_ranks_below_steps_with_content():
    """A closing step of only a marker ("### Step 2.</think>") costs the answer's likelihood nothing
    (S 0.95 here); it ranks below both steps with content, so it takes no finish slot."""
    a = ScriptedEngine({"": STEP_1, STEP_1: "### Step 2.</think>"})
    b = ScriptedEngine({"": STEP_1, STEP_1: CLOSE_7})
    c = ScriptedEngine({"": STEP_1, STEP_1: "### Step 2. 7 it is\n"})
    scores = {STEP_1: 0.8, STEP_1 + "### Step 2.</think>": 0.95, STEP_1 + CLOSE_7: 0.4, STEP_1 + "### Step 2. 7 it is\n": 0.3}
    search = scripted_strategy("cord", {"A": a, "B": b, "C": c}, ScriptedEngine(scores=scores), beam_size=2)
    run = search.start(Problem("p1", "What is 3 + 4?", "7"))
    search.advance(run)
    search.advance(run)
    assert [[s.text for s in t.steps] for t in run.finished] == [[STEP_1, CLOSE_7]]
    assert [[s.text for s in t.steps] for t in run.beam] == [[STEP_1, "### Step 2. 7 it is\n"]]
    assert run.usage.budget.empty_steps == {"A": 1}  # counted as every empty step is
    # with nothing but empty closing steps proposed, one still closes the reasoning
    only = {name: ScriptedEngine({"": STEP_1, STEP_1: "### Step 2.</think>"}) for name in "AB"}
    (record,) = scripted_strategy("greedy", only, ScriptedEngine(scores=scores)).run([Problem("p1", "What is 3 + 4?", "7")])
    assert [s.text for s in record.steps] == [STEP_1, "### Step 2.</think>"] and record.steps[-1].proposers == ["A", "B"]
