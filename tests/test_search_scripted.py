"""The search logic, exactly: strategies over scripted engines whose proposals and scores each test
sets (helpers.ScriptedEngine), so every expected value is known in advance."""

import time

import pytest

from cord.data import Problem
from cord.prompts import THINK_CLOSE, THINK_OPEN
from helpers import ScriptedEngine, scripted_strategy

PROBLEM = Problem("p1", "What is 3 + 4?", "7")


def reasoning_of(request) -> str:
    """The reasoning a teacher was asked to continue (without the opening of the next step)."""
    return request.prompt.split(THINK_OPEN, 1)[1].removesuffix("### Step")


def texts(trajectory) -> list[str]:
    return [s.text for s in trajectory.steps]


def test_each_prefix_gets_one_proposal_per_teacher_and_the_top_b_survive():
    a = ScriptedEngine({"": "### Step 1. a\n", "### Step 1. b\n": "### Step 2. ba\n", "### Step 1. c\n": "### Step 2. ca\n"})
    b = ScriptedEngine({"": "### Step 1. b\n", "### Step 1. b\n": "### Step 2. bb\n", "### Step 1. c\n": "### Step 2. cb\n"})
    c = ScriptedEngine({"": "### Step 1. c\n", "### Step 1. b\n": "### Step 2. bc\n", "### Step 1. c\n": "### Step 2. cc\n"})
    mp = ScriptedEngine(scores={"### Step 1. a\n": 0.2, "### Step 1. b\n": 0.9, "### Step 1. c\n": 0.5})
    search = scripted_strategy("cord", {"A": a, "B": b, "C": c}, mp, beam_size=2)
    run = search.start(PROBLEM)

    search.advance(run)
    assert [texts(t) for t in run.beam] == [["### Step 1. b\n"], ["### Step 1. c\n"]]
    assert [t.score for t in run.beam] == pytest.approx([0.9, 0.5])
    assert [t.steps[-1].teacher for t in run.beam] == ["B", "C"]
    assert [t.steps[-1].end for t in run.beam] == ["marker", "marker"]
    assert len(mp.scored) == 3 and run.finished == []

    search.advance(run)  # B x K = 2 x 3 proposals, one per teacher per prefix
    for engine in (a, b, c):
        assert [reasoning_of(r) for r in engine.generated] == ["", "### Step 1. b\n", "### Step 1. c\n"]
    assert len(mp.scored) == 3 + 6
    assert [r.steps for r in mp.scored[3:]] == [("### Step 1. b\n",)] * 3 + [("### Step 1. c\n",)] * 3
    assert run.usage.budget.steps_proposed == {"A": 3, "B": 3, "C": 3}


def test_identical_candidates_are_scored_once():
    a = ScriptedEngine({"": "### Step 1. same\n"})
    b = ScriptedEngine({"": "### Step 1. same\n"})
    c = ScriptedEngine({"": "### Step 1. other\n"})
    mp = ScriptedEngine(scores={"### Step 1. same\n": 0.7, "### Step 1. other\n": 0.4})
    search = scripted_strategy("cord", {"A": a, "B": b, "C": c}, mp, beam_size=3)
    run = search.start(PROBLEM)
    search.advance(run)
    assert [r.candidate for r in mp.scored] == ["### Step 1. same\n", "### Step 1. other\n"]
    # the duplicate is one candidate: the beam holds two prefixes; A is its seeded writer (test_search_credit.py)
    assert [(texts(t), t.steps[-1].teacher) for t in run.beam] == [(["### Step 1. same\n"], "A"), (["### Step 1. other\n"], "C")]
    assert run.usage.budget.steps_proposed == {"A": 1, "B": 1, "C": 1} and run.usage.budget.meta_prover_calls == 2


def test_finished_trajectories_leave_the_beam_and_the_best_finished_one_is_the_record():
    a = ScriptedEngine(
        {
            "": "### Step 1. done\n</think>",
            "### Step 1. go\n": "### Step 2. x\n</think>",
            "### Step 1. go\n### Step 2. y\n": "### Step 3. z\n</think>",
        },
        answer="The final answer is \\boxed{7}.",
    )
    b = ScriptedEngine(
        {"": "### Step 1. go\n", "### Step 1. go\n": "### Step 2. y\n", "### Step 1. go\n### Step 2. y\n": "### Step 3. w\n</think>"},
        answer="The final answer is \\boxed{8}.",
    )
    mp = ScriptedEngine(
        scores={
            "### Step 1. done\n</think>": 0.9,
            "### Step 1. go\n": 0.5,
            "### Step 1. go\n### Step 2. x\n</think>": 0.4,
            "### Step 1. go\n### Step 2. y\n": 0.8,
            "### Step 1. go\n### Step 2. y\n### Step 3. z\n</think>": 0.3,
            "### Step 1. go\n### Step 2. y\n### Step 3. w\n</think>": 0.6,
        }
    )
    search = scripted_strategy("cord", {"A": a, "B": b}, mp, beam_size=2)
    run = search.start(PROBLEM)
    search.advance(run)
    assert [texts(t) for t in run.finished] == [["### Step 1. done\n</think>"]]
    assert [texts(t) for t in run.beam] == [["### Step 1. go\n"]]
    assert run.finished[0].steps[-1].end == "think"
    search.advance(run)  # room for B - 1 = 1: the open y (0.8) beats the finished x (0.4)
    assert [texts(t) for t in run.beam] == [["### Step 1. go\n", "### Step 2. y\n"]] and len(run.finished) == 1
    search.advance(run)  # w (0.6) finishes: B trajectories are done
    assert run.beam == [] and search.done(run)
    assert [t.score for t in run.finished] == pytest.approx([0.9, 0.6])

    (record,) = search.run([PROBLEM])  # the same search from the start, to its record
    assert [s.text for s in record.steps] == ["### Step 1. done\n</think>"]
    assert record.predictive_perplexity == pytest.approx(0.9)
    assert record.budget.trajectories == {"A": 1, "B": 1}
    assert record.answer_teacher == "A" and record.final_answer == "The final answer is \\boxed{7}."
    assert record.predicted == "7" and record.correct is True and record.failed is None


def test_greedy_follows_the_best_candidate_and_its_teacher_writes_the_answer():
    a = ScriptedEngine({"": "### Step 1. a\n", "### Step 1. a\n": "### Step 2. a2\n</think>"}, answer="The final answer is \\boxed{5}.")
    b = ScriptedEngine({"": "### Step 1. b\n", "### Step 1. a\n": "### Step 2. b2\n</think>"}, answer="The final answer is \\boxed{7}.")
    mp = ScriptedEngine(
        scores={
            "### Step 1. a\n": 0.6,
            "### Step 1. b\n": 0.3,
            "### Step 1. a\n### Step 2. a2\n</think>": 0.2,
            "### Step 1. a\n### Step 2. b2\n</think>": 0.7,
        }
    )
    search = scripted_strategy("greedy", {"A": a, "B": b}, mp, beam_size=4)  # greedy ignores B
    assert search.beam_size == 1 and search.method == "greedy"
    (record,) = search.run([PROBLEM])
    assert [(s.text, s.teacher) for s in record.steps] == [("### Step 1. a\n", "A"), ("### Step 2. b2\n</think>", "B")]
    assert [s.score for s in record.steps] == pytest.approx([0.6, 0.7])
    assert record.answer_teacher == "B" and record.final_answer == "The final answer is \\boxed{7}." and record.correct
    # one proposal per teacher per step (B = 1), and only B was asked for the final answer
    assert [reasoning_of(r) for r in a.generated] == ["", "### Step 1. a\n"]
    assert [reasoning_of(r) for r in b.generated] == ["", "### Step 1. a\n", "### Step 1. a\n### Step 2. b2\n</think>"]
    assert b.generated[-1].stop == ("</think>", "<think>", "### Step") and b.generated[-1].max_tokens == search.search.answer_budget


def test_the_reasoning_budget_caps_the_last_step_and_closes_the_reasoning():
    a = ScriptedEngine(
        {"": "### Step 1. aaaa\n", "### Step 1. aaaa\n": "### Step 2. bbbb\n", "### Step 1. aaaa\n### Step 2. bbbb\n": "### Step 3. cccc\n"}
    )
    search = scripted_strategy("greedy", {"A": a}, ScriptedEngine(), reasoning_budget=40)
    (record,) = search.run([PROBLEM])
    # " 1. aaaa\n" + the "### Step" that stopped it is 17 tokens, so is step 2; step 3 gets the 6 left
    assert [s.tokens for s in record.steps] == [17, 17, 6]
    assert [r.max_tokens for r in a.generated[:3]] == [40, 23, 6]
    assert [s.end for s in record.steps] == ["marker", "marker", "budget"]
    assert record.steps[-1].text == "### Step 3. cc" + THINK_CLOSE
    assert record.reasoning.endswith(THINK_CLOSE) and record.tokens.reasoning == 40 and record.failed is None


def test_a_step_cut_at_its_cap_continues_in_the_next_round_with_no_invented_marker():
    a = ScriptedEngine(
        {
            "": "### Step 1. abcdefghijk\n",
            "### Step 1. abcdefghij": "k\n### Step 2. x</think>",
            "### Step 1. abcdefghijk\n": "### Step 2. x</think>",
        }
    )
    search = scripted_strategy("greedy", {"A": a}, ScriptedEngine(), max_step_tokens=14)
    (record,) = search.run([PROBLEM])
    # the next request continues right after "j": the opening is empty, not a new "### Step"
    assert [reasoning_of(r) for r in a.generated[:2]] == ["", "### Step 1. abcdefghij"]
    assert a.generated[1].prompt.endswith("### Step 1. abcdefghij")
    assert [(s.text, s.end, s.tokens) for s in record.steps] == [
        ("### Step 1. abcdefghij", "cap", 14),
        ("k\n", "marker", 10),
        ("### Step 2. x</think>", "think", 13),
    ]
    assert record.reasoning == "### Step 1. abcdefghijk\n### Step 2. x</think>"


def test_with_cut_step_writer_the_teacher_that_was_cut_continues_its_step_alone():
    done = {"### Step 1. abcdefghijk\n": "### Step 2. x</think>"}
    a = ScriptedEngine({"": "### Step 1. abcdefghijk\n", "### Step 1. abcdefghij": "k\n### Step 2. x</think>", **done})
    b = ScriptedEngine({"": "### Step 1. b\n", "### Step 1. abcdefghij": " mid.</think>", **done})
    mp = ScriptedEngine(scores={"### Step 1. abcdefghij": 0.9, "### Step 1. b\n": 0.1, "### Step 1. abcdefghij mid.</think>": 0.99})
    for rule, continued_by in (("open", "B"), ("writer", "A")):
        search = scripted_strategy("greedy", {"A": a, "B": b}, mp, max_step_tokens=14, cut_step=rule)
        (record,) = search.run([PROBLEM])
        assert record.steps[0].end == "cap" and record.steps[1].teacher == continued_by, rule
        assert record.quality.cut_steps == [{"step": 0, "teacher": "A", "continued_by": continued_by}]
        assert ("cut_continued_by_other" in record.quality.flags) == (continued_by == "B")


def test_curation_keeps_the_best_whole_trajectory():
    a = ScriptedEngine({"": ["### Step 1. a1\n</think>", "### Step 1. a2\n### Step 2. a2b\n</think>"]}, answer="\\boxed{7}")
    b = ScriptedEngine({"": ["### Step 1. b1\n</think>", "### Step 1. b2\n</think>"]})
    mp = ScriptedEngine(
        scores={
            "### Step 1. a1\n</think>": 0.3,
            "### Step 1. a2\n### Step 2. a2b\n</think>": 0.8,
            "### Step 1. b1\n</think>": 0.5,
            "### Step 1. b2\n</think>": 0.1,
        }
    )
    search = scripted_strategy("curation", {"A": a, "B": b}, mp, beam_size=2)
    assert search.search.rollouts == 2
    (record,) = search.run([PROBLEM])
    assert [(s.text, s.teacher, s.end) for s in record.steps] == [
        ("### Step 1. a2\n", "A", "marker"),
        ("### Step 2. a2b\n</think>", "A", "think"),
    ]
    assert record.predictive_perplexity == pytest.approx(0.8) and record.answer_teacher == "A" and record.correct
    # four trajectories scored, then the kept one's answer alone, without the closing "." (Eq. 3)
    assert record.budget.trajectories == {"A": 2, "B": 2} and len(mp.scored) == 5
    assert [r.target for r in mp.scored] == ["7."] * 4 + ["7"]
    assert all(r.stop == (THINK_CLOSE,) for r in a.generated[:2])


def test_mcts_values_each_teachers_step_by_rollouts_and_keeps_the_best():
    a = ScriptedEngine(
        {"": "### Step 1. a\n", "### Step 1. a\n": "### Step 2. a2\n</think>", "### Step 1. b\n": "### Step 2. ba\n</think>"}
    )
    b = ScriptedEngine({"": "### Step 1. b\n", "### Step 1. b\n": "### Step 2. b2\n</think>"}, answer="\\boxed{7}")
    scores = {"### Step 1. a\n": 0.5, "### Step 1. b\n": 0.4}
    scores |= {"### Step 1. a\n### Step 2. a2\n</think>": 0.3, "### Step 1. b\n### Step 2. b2\n</think>": 0.7}
    scores |= {"### Step 1. b\n### Step 2. ba\n</think>": 0.6}
    mp = ScriptedEngine(scores=scores)
    search = scripted_strategy("mcts", {"A": a, "B": b}, mp, rollouts=2, mcts_exploration=1.0)
    run = search.start(PROBLEM)

    search.step(run)  # a scores higher as a step (0.5 > 0.4), but its rollout ends worse (0.3 < 0.7)
    assert [(c.visits, c.value) for c in run.children] == [(1, pytest.approx(0.3)), (1, pytest.approx(0.7))]
    assert texts(run.kept) == ["### Step 1. b\n"] and run.kept.steps[0].teacher == "B"
    assert [reasoning_of(r) for r in a.generated] == ["", "### Step 1. a\n"]  # A proposed, then rolled its own step out
    assert a.generated[1].stop == (THINK_CLOSE,)

    search.step(run)  # both children close the reasoning: each is valued by its own S
    assert texts(run.kept) == ["### Step 1. b\n", "### Step 2. b2\n</think>"] and run.kept.finished
    assert run.usage.budget.trajectories == {"A": 2, "B": 2}

    (record,) = scripted_strategy("mcts", {"A": a, "B": b}, mp, rollouts=2).run([PROBLEM])
    assert [(s.text, s.teacher) for s in record.steps] == [("### Step 1. b\n", "B"), ("### Step 2. b2\n</think>", "B")]
    assert record.predictive_perplexity == pytest.approx(0.7) and record.answer_teacher == "B" and record.correct


def test_mcts_cord_rollouts_complete_a_child_with_every_teacher_and_keep_the_best_step():
    """`mcts-cord` (cord's `mcts` before the paper's): a child's value does not hang on its proposer finishing alone."""
    a = ScriptedEngine(
        {"": "### Step 1. a\n", "### Step 1. a\n": "### Step 2. a2\n</think>", "### Step 1. b\n": "### Step 2. ba\n</think>"}
    )
    b = ScriptedEngine(
        {"": "### Step 1. b\n", "### Step 1. a\n": "### Step 2. ab\n</think>", "### Step 1. b\n": "### Step 2. b2\n</think>"}
    )
    scores = {"### Step 1. a\n": 0.5, "### Step 1. b\n": 0.4}
    scores |= {"### Step 1. a\n### Step 2. a2\n</think>": 0.3, "### Step 1. a\n### Step 2. ab\n</think>": 0.9}
    scores |= {"### Step 1. b\n### Step 2. b2\n</think>": 0.7, "### Step 1. b\n### Step 2. ba\n</think>": 0.6}
    kept = {}
    for method in ("mcts", "mcts-cord"):
        search = scripted_strategy(method, {"A": a, "B": b}, ScriptedEngine(scores=scores), rollouts=2)
        run = search.start(PROBLEM)
        search.step(run)
        kept[search.method] = (texts(run.kept), [c.value for c in run.children])
    assert kept["mcts"] == (["### Step 1. b\n"], [pytest.approx(0.3), pytest.approx(0.7)])  # A alone ends a at 0.3
    assert kept["mcts+cord-rollouts"] == (["### Step 1. a\n"], [pytest.approx(0.9), pytest.approx(0.7)])  # B's step after a: 0.9


def test_mcts_spends_k_times_rollouts_in_all_then_chooses_steps_by_s_alone():
    """K = 2, rollouts = 1: two rollouts for the problem, one each in steps 1 and 2; steps 3 and 4
    are chosen by S of the children (b3 over the closing a3), where mcts-cord rolls out every step."""
    a = ScriptedEngine({"": "### Step 1. a1\n", "### Step 1. a1\n": ["### Step 2. ar\n</think>", "### Step 2. a2\n"]})
    a.steps |= {
        "### Step 1. a1\n### Step 2. b2\n": "### Step 3. a3\n</think>",
        "### Step 1. a1\n### Step 2. a2\n": "### Step 3. ar\n</think>",
    }
    a.steps |= {"### Step 1. a1\n### Step 2. b2\n### Step 3. b3\n": "### Step 4. a4\n</think>"}
    b = ScriptedEngine(
        {"": "### Step 1. b1\n", "### Step 1. a1\n": "### Step 2. b2\n", "### Step 1. a1\n### Step 2. b2\n": "### Step 3. b3\n"}
    )
    b.steps |= {"### Step 1. a1\n### Step 2. b2\n### Step 3. b3\n": "### Step 4. b4\n</think>"}
    a1, b2, b3 = "### Step 1. a1\n", "### Step 2. b2\n", "### Step 3. b3\n"
    scores = {a1: 0.2, "### Step 1. b1\n": 0.5, a1 + "### Step 2. ar\n</think>": 0.9}  # a1's rollout beats b1's S
    scores |= {a1 + "### Step 2. a2\n": 0.4, a1 + b2: 0.3, a1 + "### Step 2. a2\n### Step 3. ar\n</think>": 0.1}  # a2's, not
    scores |= {a1 + b2 + "### Step 3. a3\n</think>": 0.6, a1 + b2 + b3: 0.8}
    scores |= {a1 + b2 + b3 + "### Step 4. a4\n</think>": 0.4, a1 + b2 + b3 + "### Step 4. b4\n</think>": 0.7}
    mp = ScriptedEngine(scores=scores)
    search = scripted_strategy("mcts", {"A": a, "B": b}, mp, rollouts=1)
    assert search.rollout_budget == 2
    run = search.start(PROBLEM)
    spent = []
    while not run.kept.finished:
        search.step(run)
        spent.append((run.simulations, run.rollouts_spent))
    assert spent == [(1, 1), (1, 2), (0, 2), (0, 2)]
    assert texts(run.kept) == [a1, b2, b3, "### Step 4. b4\n</think>"]
    rollouts = [r for r in a.generated + b.generated if r.stop == (THINK_CLOSE,)]
    assert [reasoning_of(r) for r in rollouts] == [a1, a1 + "### Step 2. a2\n"]  # A's children, first by UCB
    assert run.usage.budget.trajectories == {"A": 4, "B": 1}  # A: 2 rollouts, the closing a3 and a4; B: b4

    uncapped = scripted_strategy("mcts-cord", {"A": a, "B": b}, mp, rollouts=1)
    assert uncapped.rollout_budget is None and uncapped.method == "mcts+cord-rollouts"
    capless = scripted_strategy("mcts", {"A": a, "B": b}, mp, rollouts=1, mcts_rollout_cap=False)
    assert capless.rollout_budget is None and capless.method == "mcts+proposer-rollouts"


def test_with_keep_beam_width_the_beam_stays_b_wide_until_b_have_finished():
    a = ScriptedEngine({"": "### Step 1. done\n</think>", "### Step 1. go\n": "### Step 2. x\n", "### Step 1. on\n": "### Step 2. y\n"})
    b = ScriptedEngine(
        {"": "### Step 1. go\n", "### Step 1. go\n": "### Step 2. z\n</think>", "### Step 1. on\n": "### Step 2. w\n</think>"}
    )
    c = ScriptedEngine({"": "### Step 1. on\n", "### Step 1. go\n": "### Step 2. v\n", "### Step 1. on\n": "### Step 2. u\n"})
    go, on = "### Step 1. go\n", "### Step 1. on\n"
    scores = {"### Step 1. done\n</think>": 0.9, go: 0.5, on: 0.4, go + "### Step 2. z\n</think>": 0.8, on + "### Step 2. w\n</think>": 0.7}
    scores |= {go + "### Step 2. x\n": 0.3, on + "### Step 2. y\n": 0.2, go + "### Step 2. v\n": 0.6, on + "### Step 2. u\n": 0.1}
    mp = ScriptedEngine(scores=scores)
    narrowing = scripted_strategy("cord", {"A": a, "B": b, "C": c}, mp, beam_size=2)
    run = narrowing.start(PROBLEM)
    narrowing.advance(run)
    assert len(run.finished) == 1 and [texts(t) for t in run.beam] == [["### Step 1. go\n"]]  # B - 1 live
    wide = scripted_strategy("cord", {"A": a, "B": b, "C": c}, mp, beam_size=2, keep_beam_width=True)
    run = wide.start(PROBLEM)
    wide.advance(run)
    assert len(run.finished) == 1 and [texts(t) for t in run.beam] == [["### Step 1. go\n"], ["### Step 1. on\n"]]  # B live
    wide.advance(run)  # 2 x 3 proposals: z (0.8) and w (0.7) finish and are the top two; v and x stay live
    assert [t.score for t in run.finished] == pytest.approx([0.9, 0.8, 0.7]) and wide.done(run)
    assert [texts(t)[-1] for t in run.beam] == ["### Step 2. v\n", "### Step 2. x\n"]


def test_keep_candidates_records_the_candidates_each_chosen_step_beat():
    a = ScriptedEngine({"": "### Step 1. a\n", "### Step 1. a\n": "### Step 2. a2\n</think>"})
    b = ScriptedEngine({"": "### Step 1. b\n", "### Step 1. a\n": "### Step 2. b2\n</think>"})
    mp = ScriptedEngine(scores={"### Step 1. a\n": 0.6, "### Step 1. b\n": 0.3, "### Step 1. a\n### Step 2. a2\n</think>": 0.9})
    search = scripted_strategy("greedy", {"A": a, "B": b}, mp, keep_candidates=True)
    (record,) = list(search.run([PROBLEM]))
    assert [s.teacher for s in record.steps] == ["A", "A"]
    assert record.steps[0].candidates == [{"text": "### Step 1. b\n", "teacher": "B", "score": 0.3}]
    assert [c["teacher"] for c in record.steps[1].candidates] == ["B"]


def test_a_step_with_nothing_in_it_ranks_below_every_step_with_content_and_is_counted():
    """Small models write bare markers ("### Step 1.\n"): they cost the answer's likelihood nothing,
    so by S alone they would win; they rank below every step with content and are counted."""
    a = ScriptedEngine({"": "### Step 1.\n", "### Step 1. 3 + 4 = 7\n": "### Step 2. #\n"})
    b = ScriptedEngine({"": "### Step 1. 3 + 4 = 7\n", "### Step 1. 3 + 4 = 7\n": "### Step 2. so 7\n</think>"})
    mp = ScriptedEngine(scores={"### Step 1.\n": 0.9, "### Step 1. 3 + 4 = 7\n": 0.2, "### Step 1. 3 + 4 = 7\n### Step 2. #\n": 0.95})
    search = scripted_strategy("greedy", {"A": a, "B": b}, mp)
    (record,) = search.run([PROBLEM])
    assert [(s.text, s.teacher) for s in record.steps] == [("### Step 1. 3 + 4 = 7\n", "B"), ("### Step 2. so 7\n</think>", "B")]
    assert record.budget.empty_steps == {"A": 2}  # both of A's proposals, though S ranked them first
    # empty steps are still scored (a round with nothing else keeps the best of them); then the answer alone
    assert len(mp.scored) == 4 + 1
    assert search.segmenter.is_empty("### Step 3.\n#") and not search.segmenter.is_empty("### Step 3. 7")


def test_a_final_answer_with_nothing_to_grade_is_continued_after_a_prefilled_box_and_marked():
    steps = {"": "### Step 1. 3 + 4 = 7\n</think>"}
    # the teacher's own text is kept up to where an answer ends (a step marker is another step)
    for own, kept in (("", ""), ("### Step 2", ""), ("It is seven apples.", "It is seven apples.")):
        teacher = ScriptedEngine(steps, answer=own, prefilled="7}.")
        (record,) = scripted_strategy("greedy", {"A": teacher}, ScriptedEngine()).run([PROBLEM])
        assert record.answer_fallback == "prefilled" and record.correct, own
        assert record.final_answer == kept + "\nThe final answer is \\boxed{7}."
        assert teacher.generated[-1].pieces[-1] == kept + "\nThe final answer is \\boxed{" and teacher.generated[-1].stop == ("\n",)
        assert record.quality.flags == ["answer_prefilled"]
    boxed = ScriptedEngine(steps, answer="So \\boxed{7}.")
    (record,) = scripted_strategy("greedy", {"A": boxed}, ScriptedEngine()).run([PROBLEM])
    assert record.answer_fallback is None and len(boxed.generated) == 2  # a boxed answer is graded as written
    silent = ScriptedEngine(steps, answer="", prefilled="}.")
    (record,) = scripted_strategy("greedy", {"A": silent}, ScriptedEngine()).run([PROBLEM])
    assert record.answer_fallback == "empty" and record.correct is False
    from cord.records import summarize

    summary = summarize([record])
    assert summary["empty_answers"] == 1 and any("nothing to grade" in w for w in summary["warnings"])


def test_a_final_answer_ends_where_the_answer_ends_and_the_graded_text_is_the_exported_one():
    """A teacher that ignores its stop strings (a server, a model past its answer) ran on into a
    second think block and new steps; the record keeps the answer alone, graded as kept."""
    steps = {"": "### Step 1. 3 + 4 = 7\n</think>"}
    ran_on = "\nThe final answer is \\boxed{7}.</think>\n### Step 6: and then \\boxed{8}"
    teacher = ScriptedEngine(steps, answer=ran_on)
    (record,) = scripted_strategy("greedy", {"A": teacher}, ScriptedEngine()).run([PROBLEM])
    assert record.final_answer == "\nThe final answer is \\boxed{7}." and record.predicted == "7" and record.correct
    assert teacher.generated[-1].stop == ("</think>", "<think>", "### Step")  # asked to stop there in the first place
    assert record.quality.flags == [] and record.quality.stray_tags == []


def test_a_proposed_step_of_only_tags_ranks_as_an_empty_step():
    a = ScriptedEngine({"": "### Step 1.\n\n<think>\n", "### Step 1. 3 + 4 = 7\n": "### Step 2. so 7\n</think>"})
    b = ScriptedEngine({"": "### Step 1. 3 + 4 = 7\n", "### Step 1. 3 + 4 = 7\n": "### Step 2. so 7\n</think>"})
    mp = ScriptedEngine(scores={"### Step 1.\n\n<think>\n": 0.99, "### Step 1. 3 + 4 = 7\n": 0.2})
    (record,) = scripted_strategy("greedy", {"A": a, "B": b}, mp).run([PROBLEM])
    assert record.steps[0].text == "### Step 1. 3 + 4 = 7\n" and record.budget.empty_steps == {"A": 1}


class ScriptedServer(ScriptedEngine):
    """A scripted teacher called at once, as a server is; a step after `slow` reasoning comes back late."""

    concurrent = True

    def __init__(self, steps, slow: tuple[str, ...] = (), **kwargs):
        super().__init__(steps, **kwargs)
        self.slow = slow

    def generate(self, requests):
        if any(reasoning_of(r) in self.slow for r in requests):
            time.sleep(0.3)
        return super().generate(requests)


def speculative_run(c_score: float, speculative: bool):
    """Two rounds at B = 2 where teacher C's first step comes back last and scores `c_score`."""
    from collections import Counter

    from cord.search.meter import Meter

    a = ScriptedServer(
        {
            "": "### Step 1. a\n",
            "### Step 1. a\n": "### Step 2. aa\n</think>",
            "### Step 1. b\n": "### Step 2. ba\n</think>",
            "### Step 1. c\n": "### Step 2. ca\n</think>",
        }
    )
    b = ScriptedServer(
        {
            "": "### Step 1. b\n",
            "### Step 1. a\n": "### Step 2. ab\n</think>",
            "### Step 1. b\n": "### Step 2. bb\n</think>",
            "### Step 1. c\n": "### Step 2. cb\n</think>",
        }
    )
    c = ScriptedServer(
        {
            "": "### Step 1. c\n",
            "### Step 1. a\n": "### Step 2. ac\n</think>",
            "### Step 1. b\n": "### Step 2. bc\n</think>",
            "### Step 1. c\n": "### Step 2. cc\n</think>",
        },
        slow=("",),
    )
    scores = {"### Step 1. a\n": 0.5, "### Step 1. b\n": 0.9, "### Step 1. c\n": c_score}
    for first in "abc":
        for second in "abc":
            scores[f"### Step 1. {first}\n### Step 2. {first}{second}\n</think>"] = 0.1 + 0.1 * "abc".index(second)
    mp = ScriptedEngine(scores=scores)
    extra = {"rows_in_flight": 64, "speculative": True} if speculative else {}
    search = scripted_strategy("cord", {"A": a, "B": b, "C": c}, mp, beam_size=2, **extra)
    search.meter = Meter()
    events = Counter()
    search.meter.count = lambda event, n=1: events.update({event: n})
    (record,) = search.run([PROBLEM])
    return record, events, len(mp.scored)


@pytest.mark.parametrize("c_score", [0.1, 0.95])
def test_speculative_rounds_start_the_next_proposals_early_and_keep_the_record(c_score):
    plain, _, scored = speculative_run(c_score, speculative=False)
    ahead, events, scored_ahead = speculative_run(c_score, speculative=True)
    assert ahead.to_dict() | {"seconds": 0, "timing": None} == plain.to_dict() | {"seconds": 0, "timing": None}
    assert scored_ahead == scored  # each candidate scored once, as it came back
    if c_score < 0.5:  # C's late step ranks last: the beam started ahead (b, a) is the beam, all 6 proposals taken up
        assert events["proposals_ahead_kept"] == 6 and events["proposals_ahead_dropped"] == 0
        assert [s.text for s in ahead.steps] == ["### Step 1. b\n", "### Step 2. bc\n</think>"]
    else:  # C's step ranks first: the beam is (c, b), so every proposal started after (b, a) is dropped
        assert events["proposals_ahead_kept"] == 0 and events["proposals_ahead_dropped"] == 6
        assert [s.text for s in ahead.steps] == ["### Step 1. c\n", "### Step 2. cc\n</think>"]


def test_speculative_needs_rows_in_flight_and_ranking_by_s():
    from cord.errors import ConfigError

    engines = {"A": ScriptedEngine(), "B": ScriptedEngine()}
    with pytest.raises(ConfigError, match=r"search\.speculative: needs search\.rows_in_flight"):
        scripted_strategy("cord", engines, ScriptedEngine(), speculative=True)
    with pytest.raises(ConfigError, match=r"search\.speculative: ranks candidates as they arrive"):
        scripted_strategy("cord", engines, ScriptedEngine(), speculative=True, rows_in_flight=8, selection="random")
