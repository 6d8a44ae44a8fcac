import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from cord.engines.transformers import TransformersEngine
from cord.scoring.meta_prover import MetaProver, ScoreItem, meta_prover_request, predictive_perplexity
from helpers import needs_tiny, shipped

QUESTION = "Ann has 3 apples. Then she finds 4 more. Then the number of apples doubles. How many apples?"
STEPS = ("### Step 1. 3 + 4 = 7\n", "### Step 2. 7 * 2 = 14\n")
CANDIDATES = ("### Step 3. 14 - 1 = 13\n", "### Step 3. 14 * 2 = 28\n</think>", "")


def direct_score(model_dir: str, question: str, steps, candidate: str, answer: str) -> float:
    """S computed the plain way: whole text, tokenized at once, one forward pass."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    chat = tok.apply_chat_template([{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True)
    request = meta_prover_request(chat, tuple(steps), candidate, answer)
    context = request.context
    assert request.target == answer + "."  # the closing "." is scored with the answer
    enc = tok(context + request.target, add_special_tokens=False, return_offsets_mapping=True)
    ids = torch.tensor([enc["input_ids"]])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0].float(), -1)
    positions = [j for j, (a, b) in enumerate(enc["offset_mapping"]) if b > len(context) and b > a]
    values = [logprobs[j - 1, enc["input_ids"][j]].item() for j in positions]
    return math.exp(sum(values) / len(values))


def models():
    yield "random"
    if shipped("tiny-reader"):
        yield "tiny-reader"


@pytest.mark.parametrize("which", list(models()))
def test_score_equals_direct_full_sequence_computation(which, random_model):
    from cord.tiny import model_path

    model_dir = random_model if which == "random" else str(model_path(which))
    mp = MetaProver(TransformersEngine(model_dir))
    items = [ScoreItem(QUESTION, "14", STEPS[:1], STEPS[1])] + [ScoreItem(QUESTION, "14", STEPS, c) for c in CANDIDATES]
    scores = [s.score for s in mp.score(items)]
    for item, s in zip(items, scores):
        assert 0 < s <= 1
        assert s == pytest.approx(direct_score(model_dir, QUESTION, item.steps, item.candidate, "14"), abs=1e-4)


def test_kept_kv_gives_the_same_scores_for_less_work(random_model):
    cached, full = TransformersEngine(random_model), TransformersEngine(random_model, reuse_kv=False)
    prompt = cached.chat_prompt(QUESTION)
    rounds = [
        [((), STEPS[0]), ((), "### Step 1. 3 * 4 = 12\n")],
        [(STEPS[:1], STEPS[1]), (STEPS[:1], "### Step 2. 7 - 2 = 5\n")],
        [(STEPS, c) for c in CANDIDATES],
    ]
    for pairs in rounds:
        requests = [meta_prover_request(prompt, steps, candidate, "14") for steps, candidate in pairs]
        a, b = cached.score(requests), full.score(requests)
        for x, y in zip(a, b):
            assert x.logprobs == pytest.approx(y.logprobs, abs=1e-5)
        # After the first round the accepted prefix is already cached: each candidate costs
        # its own step plus the answer lead-in, not the whole prefix.
        assert sum(x.new_tokens for x in a) < sum(y.new_tokens for y in b)
    last_cached = sum(x.new_tokens for x in a)
    prefix_len = len(cached._ids(prompt + "<think>\n")) + sum(len(cached._ids(s)) for s in STEPS)
    assert last_cached < sum(y.new_tokens for y in b) - 2 * prefix_len


def test_candidates_after_different_prefixes_share_one_forward_pass_and_score_as_alone(random_model):
    """Beams of several problems in one call: every candidate reads its own prefix's KV (prefixes
    of different lengths, padded and masked) in one batch, and scores as the full sequence does."""
    cached, full = TransformersEngine(random_model), TransformersEngine(random_model, reuse_kv=False)
    prompts = [cached.chat_prompt(QUESTION), cached.chat_prompt("Bob has 2 pears. How many pears?")]
    warm = [meta_prover_request(prompts[0], (), STEPS[0], "14"), meta_prover_request(prompts[1], (), "### Step 1. 2\n", "2")]
    cached.score(warm)  # the previous round: these prefixes are now cached
    pairs = [(prompts[0], (), "### Step 1. 3 * 4 = 12\n"), (prompts[1], ("### Step 1. 2\n",), "### Step 2. 2\n</think>")]
    pairs += [(prompts[0], STEPS[:1], c) for c in CANDIDATES] + [(prompts[0], STEPS[:1], STEPS[1])]
    requests = [meta_prover_request(prompt, steps, candidate, "14") for prompt, steps, candidate in pairs]
    calls = []
    forward = cached.lm.forward
    cached.lm.forward = lambda ids, *rest, **kw: calls.append(tuple(ids.shape)) or forward(ids, *rest, **kw)
    a, b = cached.score(requests), full.score(requests)
    assert len(calls) == 1 and calls[0][0] == len(requests)  # one pass, every row
    for x, y in zip(a, b):
        assert x.logprobs == pytest.approx(y.logprobs, abs=1e-5) and x.total_tokens == y.total_tokens


def test_first_round_prompts_go_through_the_model_together_and_score_as_alone(random_model):
    """Problems' first rounds (no prefix of theirs cached) compute their prompts in one padded pass,
    keeping only the last position's logits, and score, and count computed tokens, as the full
    sequences do."""
    cached, full = TransformersEngine(random_model), TransformersEngine(random_model, reuse_kv=False)
    questions = [QUESTION, "Bob has 2 pears. How many pears?", "Cy has 10 figs. She eats 3. Then she buys 5 more. How many figs?"]
    requests = [meta_prover_request(cached.chat_prompt(q), (), c, "14") for q in questions for c in CANDIDATES[:2]]
    calls = []
    forward = cached.lm.forward
    cached.lm.forward = lambda ids, *rest, **kw: calls.append((tuple(ids.shape), kw.get("keep"))) or forward(ids, *rest, **kw)
    a, b = cached.score(requests), full.score(requests)
    tail = max(len(cached.chat.tail(r.lead_in, r.target)[0]) for r in requests)
    assert [(shape[0], keep) for shape, keep in calls] == [(3, 1), (6, tail + 1)]  # prompts, then candidates: last positions only
    for x, y in zip(a, b):
        assert x.logprobs == pytest.approx(y.logprobs, abs=1e-5) and x.total_tokens == y.total_tokens
    # a problem's prompt is charged to its first candidate only
    assert [x.new_tokens == y.new_tokens for x, y in zip(a, b)] == [True, False] * 3


def test_a_batch_of_empty_candidates_scores_as_the_full_sequences(random_model):
    """Only the answer after the prefix (a PRM's verdict token): the answer's first token reads the
    prefix's own last logits, and no row has a candidate token."""
    cached, full = TransformersEngine(random_model), TransformersEngine(random_model, reuse_kv=False)
    chat = cached.chat_prompt(QUESTION)
    requests = [meta_prover_request(chat, STEPS, "", answer) for answer in ("14", "7")]
    for x, y in zip(cached.score(requests), full.score(requests)):
        assert x.logprobs == pytest.approx(y.logprobs, abs=1e-5)


def test_identical_items_are_scored_once(random_model):
    mp = MetaProver(TransformersEngine(random_model))
    item = ScoreItem(QUESTION, "14", STEPS[:1], STEPS[1])
    first, again = mp.score([item, item])
    assert first.score == again.score and first.tokens > 0 and again.tokens == 0


def test_predictive_perplexity_is_inverse_perplexity():
    assert predictive_perplexity([0.0, 0.0]) == 1.0
    assert predictive_perplexity([math.log(0.5), math.log(0.125)]) == pytest.approx(0.25)


@needs_tiny
def test_reader_prefers_correct_steps():
    from cord.tiny import model_path

    mp = MetaProver(TransformersEngine(str(model_path("tiny-reader"))))
    good, bad = mp.score([ScoreItem(QUESTION, "14", STEPS[:1], STEPS[1]), ScoreItem(QUESTION, "14", STEPS[:1], "### Step 2. 7 * 2 = 15\n")])
    assert good[0] > bad[0]


def test_answer_end_is_scored_with_the_answer(random_model):
    """search.answer_end closes the scored answer: its tokens count in S ("" scores the answer alone)."""
    engine = TransformersEngine(random_model)
    chat = engine.chat_prompt(QUESTION)
    closed, bare = meta_prover_request(chat, STEPS[:1], STEPS[1], "14"), meta_prover_request(chat, STEPS[:1], STEPS[1], "14", end="")
    assert closed.target == "14." and bare.target == "14" and closed.context == bare.context
    item = ScoreItem(QUESTION, "14", STEPS[:1], STEPS[1])
    (with_end,), (without,) = MetaProver(engine).score([item]), MetaProver(engine, end="").score([item])
    logprobs = [r.logprobs for r in engine.score([closed, bare])]
    assert len(logprobs[0]) == len(logprobs[1]) + 1 and logprobs[0][:-1] == pytest.approx(logprobs[1], abs=1e-5)
    assert with_end.score == pytest.approx(predictive_perplexity(logprobs[0]))
    assert without.score == pytest.approx(predictive_perplexity(logprobs[1]))
