from cord.data import Problem
from cord.scoring.grade import extract_answer, graded_part, is_correct, valid_trace


def test_math_verify_equivalence_not_string_equality():
    assert is_correct("204", "\nThe final answer is \\boxed{204}.")
    assert is_correct("\\frac{3}{4}", "so the answer is \\boxed{0.75}")
    assert is_correct("\\left( 3, \\frac{\\pi}{2} \\right)", "\\boxed{(3, \\pi/2)}")
    assert not is_correct("204", "The final answer is \\boxed{205}.")
    assert not is_correct("204", "I do not know")
    assert extract_answer("The final answer is \\boxed{32}.") == "32"
    assert extract_answer("no answer here") is None


def test_only_the_text_after_the_closing_think_tag_is_graded():
    assert graded_part("<think>\n7 + 10 = \\boxed{17}\n</think>\nThe final answer is \\boxed{17}.") == "\nThe final answer is \\boxed{17}."
    assert graded_part("### Step 1. 3 + 4 = 7\n</think> 7") == " 7"  # the template opened <think>: no opening tag
    assert graded_part("<think>a</think>b</think>c") == "c"  # the last one
    assert graded_part("<think>\nso it is \\boxed{17}, but wait") is None  # cut off: never closed, wrong
    assert graded_part("") is None


def test_a_record_is_graded_on_its_answer_and_never_on_its_reasoning():
    from cord.records import Record, Step

    record = Record("r", "q", "17", "cord", steps=[Step("### Step 1. 7 + 10 = 17\n</think>", "A", 0.5, 9, "think")])
    record.final_answer = "\nThe final answer is \\boxed{16}."
    Grader(GradingConfig()).grade(Problem("r", "q", "17"), record)
    assert record.predicted == "16" and record.correct is False
    record.steps[-1].text = "### Step 1. 7 + 10 = \\boxed{17}\n"  # a reasoning that never closed
    record.final_answer = ""
    Grader(GradingConfig()).grade(Problem("r", "q", "17"), record)
    assert record.predicted is None and record.correct is False


def test_valid_trace_only_for_problems_with_reference_steps():
    from cord.tiny.tasks import generate_problems

    row = generate_problems(1, seed=5)[0]
    problem = Problem(row["id"], row["problem"], row["answer"], {k: v for k, v in row.items() if k not in ("id", "problem", "answer")})
    good = "".join(f"### Step {i}. {eq}\n" for i, eq in enumerate(row["reference_steps"], 1)) + "</think>"
    assert valid_trace(problem, good, row["answer"]) is True
    assert valid_trace(problem, good, str(int(row["answer"]) + 1)) is False
    assert valid_trace(Problem("x", "q", "1"), good, "1") is None


# ---------------------------------------------------------------------------
# Open-ended tasks: a configurable scoring lead-in, an LLM judge with strict verdicts, or no grading

import pytest  # noqa: E402

from cord.config import ConfigError, GradingConfig, ModelConfig, load_config  # noqa: E402
from cord.engines.base import Completion, Engine  # noqa: E402
from cord.records import summarize  # noqa: E402
from cord.scoring.grade import Grader, parse_verdict  # noqa: E402
from helpers import ScriptedEngine, scripted_strategy  # noqa: E402

OPEN = Problem("q1", "Does aspirin lower the risk of a second heart attack?", "Yes: daily low-dose aspirin lowers the risk.")


class KeywordJudge(Engine):
    """A judge that reads the prompt it is sent: CORRECT when the response holds `key`, and a reply
    with no verdict line when the response says `shrug`."""

    name = "keyword-judge"

    def __init__(self, key: str):
        self.key, self.prompts = key, []

    @classmethod
    def from_config(cls, cfg, model):
        return cls("")

    def chat_prompt(self, question, system=None):
        return question

    def generate(self, requests):
        out = []
        for r in requests:
            self.prompts.append(r.prompt)
            response = r.prompt.split("Response:\n", 1)[1]
            text = (
                "It is hard to say."
                if "shrug" in response
                else f"<think>VERDICT: INCORRECT?</think>Reasons.\nVERDICT: {'CORRECT' if self.key in response else 'INCORRECT'}"
            )
            out.append(Completion(text, len(text), "eos"))
        return out

    def score(self, requests):
        raise NotImplementedError


def test_verdicts_are_parsed_strictly():
    assert parse_verdict("Both say yes.\nVERDICT: CORRECT") is True
    assert parse_verdict("VERDICT: INCORRECT") is False
    assert parse_verdict("<think>maybe VERDICT: CORRECT</think>\nVERDICT: INCORRECT") is False  # only after the think block
    assert parse_verdict("VERDICT: CORRECT ... no wait, VERDICT: INCORRECT") is None  # both: no verdict
    assert parse_verdict("verdict: correct") is None and parse_verdict("The response is correct.") is None


def open_ended_search(answer: str, method: str = "judge"):
    a = ScriptedEngine({"": "### Step 1. Trials show fewer events.\n</think>"}, answer=answer)
    mp = ScriptedEngine(scores={"### Step 1. Trials show fewer events.\n</think>": 0.5})
    search = scripted_strategy("cord", {"A": a}, mp, beam_size=1, answer_lead=" The answer is: ", answer_end="")
    judge = KeywordJudge("lowers the risk")
    cfg = GradingConfig(method=method, judge=ModelConfig(name="judge", model="judge", temperature=0.0) if method == "judge" else None)
    search.grader = Grader(cfg, judge if method == "judge" else None)
    return search, mp, judge


@pytest.mark.parametrize(
    ("answer", "correct"),
    [("Yes, it lowers the risk of recurrence.", True), ("No effect was found.", False), ("shrug", None)],
)
def test_an_open_ended_run_is_graded_by_the_judge_and_scored_with_the_configured_lead_in_and_end(answer, correct):
    search, mp, judge = open_ended_search(answer)
    (record,) = list(search.run([OPEN]))
    assert record.correct is correct
    assert record.judge_reply is not None and (correct is None) == ("VERDICT" not in record.judge_reply)
    assert OPEN.answer in judge.prompts[0] and answer in judge.prompts[0] and OPEN.question in judge.prompts[0]
    assert all(r.lead_in.endswith(" The answer is: ") and r.target == OPEN.answer for r in mp.scored)


def test_the_judge_prompt_fills_its_fields_once_and_leaves_other_braces():
    prompt = 'Reply as {"v": ...}. Q: {question} R: {reference} A: {response}'
    grader = Grader(GradingConfig(method="judge", judge=ModelConfig(model="judge"), prompt=prompt))
    assert grader.judge_prompt("q {response}", "r", "a") == 'Reply as {"v": ...}. Q: q {response} R: r A: a'


def test_ungraded_runs_have_no_accuracy_and_say_how_many_were_not_graded():
    search, _, _ = open_ended_search("Yes.", method="none")
    records = list(search.run([OPEN]))
    assert records[0].correct is None and records[0].judge_reply is None
    summary = summarize(records)
    assert summary["accuracy"] is None and summary["ungraded"] == 1


def test_grading_settings_are_checked():
    with pytest.raises(ConfigError, match=r"grading\.judge: set a judge model exactly when"):
        load_config(None, ["teachers=[{model: tiny:tiny-addsub}]", "meta_prover.model=tiny:tiny-reader", "grading.method=judge"])
    with pytest.raises(ConfigError, match=r"grading\.prompt: must contain \{response\}"):
        load_config(
            None,
            ["teachers=[{model: tiny:tiny-addsub}]", "meta_prover.model=tiny:tiny-reader", "grading.prompt=Grade {question} {reference}"],
        )
    with pytest.raises(ConfigError, match=r"grading\.method: 'llm' is not one of"):
        load_config(None, ["teachers=[{model: tiny:tiny-addsub}]", "meta_prover.model=tiny:tiny-reader", "grading.method=llm"])
