"""The quality pass (records/quality.py), on the traces real teachers wrote in issue 35's trial."""

from cord.records import Record, Step
from cord.records.quality import assess, boxed_contents, cut_answer, is_computation, repeated_share, says_nothing

# A final answer SmolLM2 wrote after its reasoning: it closed its thinking again and ran on.
RAN_ON = (
    "\n\nTom has 3 apples and buys 4 more, so he will have 3 + 4 = 7 apples.\n\nTom has 3 apples and</think>\n\n"
    "Tom has 3 apples and buys 4 more,\nThe final answer is \\boxed{3+4=7}"
)


def record(steps, final_answer="\nThe final answer is \\boxed{7}.", fallback=None) -> Record:
    r = Record("p1", "What is 3 + 4?", "7", "cord", steps=steps, final_answer=final_answer)
    r.answer_fallback = fallback
    return r


def test_an_answer_ends_at_the_first_tag_marker_or_special_token():
    assert cut_answer(RAN_ON).endswith("Tom has 3 apples and")
    assert cut_answer("\nThe final answer is \\boxed{7}.\n### Step 6: more") == "\nThe final answer is \\boxed{7}."
    assert cut_answer("\\boxed{7}<|im_end|>\nuser") == "\\boxed{7}"
    assert cut_answer("\\boxed{7}<｜end▁of▁sentence｜>") == "\\boxed{7}"
    assert cut_answer("\nThe final answer is \\boxed{7}.") == "\nThe final answer is \\boxed{7}."


def test_steps_of_only_tags_markers_or_whitespace_say_nothing():
    assert says_nothing("\n\n<think>") and says_nothing("### Step 2.\n#") and says_nothing("### Step 3. </think>")
    assert says_nothing("<|im_end|>\n")
    assert not says_nothing("### Step 2. 3 + 4 = 7\n")


def test_a_loop_repeats_most_of_its_ngrams_and_arithmetic_steps_none():
    assert repeated_share("I will stop when I finish the thought process. " * 10) > 0.8
    assert repeated_share("### Step 1. 3 + 4 = 7\n### Step 2. 7 * 2 = 14\n### Step 3. 14 - 5 = 9\n</think>") == 0.0


def test_a_boxed_computation_is_told_from_a_result():
    assert boxed_contents("so \\boxed{\\frac{1}{2}} and \\boxed{3+4=7}") == ["\\frac{1}{2}", "3+4=7"]
    assert is_computation("3+4=7") and is_computation("2 \\times 3 = 6")
    assert not any(is_computation(b) for b in ("x = 5", "f(x)=2x+1", "7", "x+1 \\le 3"))


def test_a_clean_trajectory_has_no_flags():
    steps = [Step("### Step 1. 3 + 4 = 7\n", "A", tokens=9), Step("### Step 2. so 7\n</think>", "B", tokens=8, end="think")]
    q = assess(record(steps))
    assert q.flags == [] and q.reasoning_end == "think" and q.answer == "teacher" and q.reasoning_tokens == 17


def test_the_trial_trace_is_flagged_for_everything_it_would_teach():
    steps = [
        Step("### Step 1.\n", "A", tokens=4),  # empty, kept
        Step("### Step 2. Tom has 3 apples and buys 4 more, so he", "A", tokens=32, end="cap"),
        Step(" will have 7.\n\n<think>\n", "B", tokens=7),  # continued mid-sentence by the other teacher
        Step("### Step 4. I will stop when I finish the thought process. " * 6 + "</think>", "B", tokens=96, end="budget"),
    ]
    q = assess(record(steps, RAN_ON, fallback="prefilled"))
    assert q.flags == [
        "budget_forced",
        "answer_prefilled",
        "repetitive",
        "empty_steps",
        "cut_steps",
        "cut_continued_by_other",
        "stray_tags",
        "boxed_computation",
    ]
    assert q.cut_steps == [{"step": 1, "teacher": "A", "continued_by": "B"}]
    assert "<think> in reasoning" in q.stray_tags and "</think> in answer" in q.stray_tags
    assert q.empty_steps == 1


def test_unclosed_reasoning_and_a_missing_answer_are_flagged():
    q = assess(record([Step("### Step 1. 3 + 4 = 7\n", "A", end="marker")], final_answer="", fallback="empty"))
    assert q.flags == ["unclosed", "answer_missing"]


def test_quality_survives_the_records_file():
    r = record([Step("### Step 1. 7\n</think>", "A", end="think")])
    r.quality = assess(r)
    back = Record.from_dict(r.to_dict())
    assert back.quality == r.quality
