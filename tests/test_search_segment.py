from cord.engines.base import Completion, cut_at_stop
from cord.search.segment import Segmenter


def test_prompt_segmentation_rules():
    seg = Segmenter("prompt")
    assert seg.first_opening == "### Step"
    assert seg.stops == ("### Step", "</think>")
    step = seg.close("### Step", Completion(" 1. 3 + 4 = 7\nWait, check.\n\n", 12, "stop", "### Step"))
    assert step.text == "### Step 1. 3 + 4 = 7\nWait, check.\n\n" and step.end == "marker" and not step.finished
    assert step.next_opening == "### Step"
    last = seg.close("### Step", Completion(" 2. 7 * 2 = 14\n", 9, "stop", "</think>"))
    assert last.text.endswith("</think>") and last.end == "think" and last.finished
    cut = seg.close("### Step", Completion(" 3. a very long", 32, "length"))
    # cut at the cap: the text stays as generated and the next step continues it (no invented marker)
    assert cut.text == "### Step 3. a very long" and cut.end == "cap" and cut.next_opening == "" and not cut.finished
    eos = seg.close("### Step", Completion(" 4. done", 3, "eos"))
    assert eos.end == "eos" and eos.finished and eos.text.endswith("</think>")


def test_linebreak_and_prefix_segmentation():
    lb = Segmenter("linebreak")
    step = lb.close("", Completion("First we add.", 4, "stop", "\n\n"))
    assert step.text == "First we add.\n\n" and lb.first_opening == ""
    px = Segmenter("prefix")
    step = px.close("", Completion("So x = 3", 5, "stop", ". Wait"))
    assert step.text == "So x = 3. " and step.next_opening == "Wait"
    nxt = px.close(step.next_opening, Completion(", that is wrong.", 5, "stop", "</think>"))
    assert nxt.text.startswith("Wait, that")
    after_line = px.close("", Completion("x = 3", 3, "stop", "\nAlternatively"))
    assert after_line.text == "x = 3\n" and after_line.next_opening == "Alternatively"


def test_prefix_cues_cut_only_where_they_start_a_sentence():
    """The prefix cue phrases (§4.1; the list is cord's), at a sentence start (after a line break or '. ', '? ', '! '), as the docs
    say: the engine stops there and nowhere else."""
    px = Segmenter("prefix")
    text = "x is 3, wait no, 4. Wait, check: 2 + 2 = 4.\nAlternatively count. Let me check it! Double-check done"
    stops = [s for s in px.stops if s != "</think>"]
    hits = sorted((text.find(s), s) for s in stops if s in text)
    assert hits == [(18, ". Wait"), (43, "\nAlternatively"), (63, ". Let me check"), (80, "! Double-check")]
    assert px.split(text) == [
        "x is 3, wait no, 4. ",
        "Wait, check: 2 + 2 = 4.\n",
        "Alternatively count. ",
        "Let me check it! ",
        "Double-check done",
    ]
    assert px.split("Wait, first.") == ["Wait, first."]  # a cue at the very start opens the first step


def test_split_whole_reasoning():
    seg = Segmenter("prompt")
    text = "### Step 1. a\n### Step 2. b\nwait c\n\n### Step 3. d\n</think>"
    assert seg.split(text) == ["### Step 1. a\n", "### Step 2. b\nwait c\n\n", "### Step 3. d\n</think>"]
    assert "".join(Segmenter("linebreak").split("a\n\nb\n\nc")) == "a\n\nb\n\nc"
    assert Segmenter("prefix").split("x. Wait, y. Alternatively z") == ["x. ", "Wait, y. ", "Alternatively z"]
    assert Segmenter("prefix").split("Wait: x. The mistake was y") == ["Wait: x. ", "The mistake was y"]


def test_cut_at_earliest_stop():
    assert cut_at_stop("abc</think>x### Step", ("### Step", "</think>")) == ("abc", "</think>")
    assert cut_at_stop("abc", ("### Step",)) == ("abc", None)
