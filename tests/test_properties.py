"""Property-based tests (hypothesis): step segmentation gives the text back, answers are extracted."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cord.engines.base import completion
from cord.prompts import STEP_MARKER, THINK_CLOSE
from cord.scoring.grade import extract_answer, is_correct
from cord.search.segment import PREFIX_CUES, Segmenter

PIECES = [STEP_MARKER, " 1.", " 2 + 3 = 5", "\n", "\n\n", "Wait", " so", "Alternatively", "x", " ", "#", "Step", "é", "→"]
texts = st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=30).map("".join)


@settings(max_examples=200, deadline=None)
@given(texts, st.sampled_from(["prompt", "linebreak", "prefix"]))
def test_split_steps_join_back_into_the_text(text, mode):
    steps = Segmenter(mode).split(text)
    assert "".join(steps) == text
    assert all(steps)


@settings(max_examples=200, deadline=None)
@given(texts.filter(lambda t: THINK_CLOSE not in t), st.sampled_from(["prompt", "linebreak", "prefix"]))
def test_steps_closed_one_by_one_from_a_models_stream_join_back_into_what_it_wrote(written, mode):
    """A model writes `written` then closes its reasoning; the engine cuts at each stop string and
    the segmenter closes each piece: the steps joined are the pre-fill plus exactly that text."""
    seg = Segmenter(mode)
    stream, opening, steps = written + THINK_CLOSE, seg.first_opening, []
    for _ in range(len(stream) + 2):
        piece = completion(stream, len(stream), seg.stops, hit_length=False)
        closed = seg.close(opening, piece)
        steps.append(closed.text)
        if closed.finished:
            break
        stream = stream[len(piece.text) + len(piece.stop or "") :]
        opening = closed.next_opening
    assert "".join(steps) == seg.first_opening + written + THINK_CLOSE
    assert steps[-1].endswith(THINK_CLOSE) and all(THINK_CLOSE not in s for s in steps[:-1])
    if mode == "prefix":
        assert all(s.startswith(PREFIX_CUES) for s in steps[1:])


words = st.text(alphabet=st.characters(categories=["Ll", "Lu", "Zs"]), max_size=40)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=-(10**6), max_value=10**6), words)
def test_the_boxed_answer_is_extracted_and_graded(n, prose):
    text = f"{prose}\nThe final answer is \\boxed{{{n}}}."
    assert extract_answer(text) == str(n)
    assert is_correct(str(n), text)
    assert not is_correct(str(n + 1), text)
