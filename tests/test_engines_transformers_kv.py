"""The transformers engine's kept KV within a byte budget: least recently used out, the same
scores and samples when entries had to be computed again."""

import pytest
import torch
from test_scoring_meta_prover import CANDIDATES, QUESTION, STEPS

from cord.config import ConfigError, ModelConfig
from cord.engines.base import GenerateRequest
from cord.engines.transformers import TransformersEngine
from cord.engines.transformers.kv import KVStore, kv_bytes
from cord.scoring.meta_prover import meta_prover_request


def kv(tokens: int) -> list:
    """Two layers of K/V for `tokens` positions: 2 x 2 x tokens x 4 float32 = 64 bytes a token."""
    return [(torch.zeros(1, 1, tokens, 4), torch.zeros(1, 1, tokens, 4)) for _ in range(2)]


def test_the_store_keeps_the_most_recently_used_within_its_budget():
    store = KVStore(max_bytes=64 * 10)
    assert kv_bytes(kv(3)) == 64 * 3
    store.put("a", kv(3))
    store.put("b", kv(3))
    store.put("c", kv(3))
    assert store.get("a") is not None  # a is now the most recently used
    store.put("d", kv(3))  # 12 tokens > 10: b, the least recently used, goes
    assert ("a" in store, "b" in store, "c" in store, "d" in store) == (True, False, True, True)
    assert store.bytes == 64 * 9
    store.put("huge", kv(11))  # larger than the whole budget: not kept, nothing else dropped
    assert "huge" not in store and len(store) == 3
    store.put("c", kv(1))  # replacing an entry counts its new size
    assert store.bytes == 64 * 7 and store.peak_bytes == 64 * 9
    store.next_call()
    store.get("a")
    store.next_call()
    store.drop_unused()  # neither this call nor the one before used c or d
    assert ("a" in store, "c" in store, "d" in store) == (True, False, False) and store.bytes == 64 * 3
    store.clear()
    assert len(store) == 0 and store.bytes == store.peak_bytes == 0


def test_a_spare_entry_takes_only_free_room_and_goes_first():
    """A decoded row's own step (a spare entry: most are never used) never pushes out what the
    search read, and is the first to go when that needs room."""
    store = KVStore(max_bytes=64 * 10)
    store.put("read", kv(6))
    store.put("wrote", kv(5), spare=True)  # 11 tokens > 10: no room, not kept, nothing dropped
    assert ("read" in store, "wrote" in store) == (True, False)
    store.put("wrote", kv(3), spare=True)
    store.put("next", kv(3))  # 12 > 10: the spare entry goes, though it is the newest
    assert ("read" in store, "wrote" in store, "next" in store) == (True, False, True)
    assert store.own("next")[0][0].shape[-2] == 3 and store.own("wrote") is None


def test_an_entry_after_its_parent_holds_only_its_own_tokens_and_is_gone_with_the_parent():
    store = KVStore(max_bytes=64 * 20)
    store.put("p", kv(8))
    store.put("p+a", kv(2), "A", parent="p")
    store.put("p+b", kv(3), "B", parent="p")
    assert store.bytes == 64 * 13  # the prefix once, not once per candidate
    chain, extra = store.get("p+a")
    assert [segment[0][0].shape[-2] for segment in chain] == [8, 2] and extra == "A"
    store.next_call()
    store.get("p+b")  # uses p too
    store.next_call()
    store.drop_unused()
    assert ("p" in store, "p+a" in store, "p+b" in store) == (True, False, True)
    store.put("q", kv(12))  # over budget: p, the least recently used, goes
    assert "p" not in store and store.get("p+b") is None and "p+b" not in store  # an orphan is a miss, and dropped


def test_the_candidates_of_one_prefix_keep_only_their_own_steps(random_model):
    engine = TransformersEngine(random_model)
    prompt = engine.chat_prompt(QUESTION)
    engine.score([meta_prover_request(prompt, (), STEPS[0], "14")])
    requests = [meta_prover_request(prompt, STEPS[:1], c, "14") for c in CANDIDATES]
    engine.score(requests)
    per_token = kv_bytes(engine._kv.get(requests[0].prefix)[0][-1]) // len(engine.chat.ids(STEPS[0]))
    for r in requests:
        chain, _ = engine._kv.get(r.pieces)
        assert chain[-1][0][0].shape[-2] == len(engine.chat.ids(r.candidate))  # its own step, after the shared prefix
    prefix_tokens = sum(len(engine.chat.ids(piece)) for piece in requests[0].prefix)
    assert engine._kv.bytes == per_token * (prefix_tokens + sum(len(engine.chat.ids(c)) for c in CANDIDATES))


def test_the_beams_of_one_problem_keep_their_common_prefix_once_and_sample_the_same(random_model):
    """A teacher's kept KV: each accepted step after the entry it extends, so beams that branch
    after a shared prefix hold that prefix once; samples match an engine that keeps nothing."""
    engine, fresh = TransformersEngine(random_model), TransformersEngine(random_model, reuse_kv=False)
    chat = engine.chat_prompt(QUESTION) + "<think>\n"
    other, another = "### Step 1. 3 * 4 = 12\n", "### Step 2. 7 - 2 = 5\n"
    rounds = [[()], [STEPS[:1], (other,)], [STEPS[:2], (STEPS[0], another)]]
    for beams in rounds:
        pieces = [(chat, *steps, "### Step") for steps in beams for _ in range(2)]
        requests = [GenerateRequest("".join(p), 8, 0.8, 1.0, ("### Step",), seed=s, pieces=p) for s, p in enumerate(pieces)]
        assert [c.text for c in engine.generate(requests)] == [c.text for c in fresh.generate(requests)]
    chain, _ = engine._gen_kv.get((chat, STEPS[0], another))
    assert [segment[0][0].shape[-2] for segment in chain] == [len(engine.chat.ids(piece)) for piece in (chat, STEPS[0], another)]
    per_token = kv_bytes(chain[-1]) // len(engine.chat.ids(another))
    kept = (chat, STEPS[0], other, STEPS[1], another)  # each once, though four beams extend the prompt
    read = sum(entry[3] for key, entry in engine._gen_kv._entries.items() if key[0] != "row")  # not the rows' own steps
    assert read == per_token * sum(len(engine.chat.ids(piece)) for piece in kept)


def test_a_small_budget_scores_and_samples_the_same_and_stays_within_it(random_model):
    roomy = TransformersEngine(random_model)
    small = TransformersEngine(random_model, kv_cache_bytes=30_000)  # a few short prefixes of this model
    prompt = roomy.chat_prompt(QUESTION)
    rounds = [
        [((), STEPS[0]), ((), "### Step 1. 3 * 4 = 12\n")],
        [(STEPS[:1], STEPS[1]), (STEPS[:1], "### Step 2. 7 - 2 = 5\n")],
        [(STEPS, c) for c in CANDIDATES],
    ]
    spent = {id(roomy): 0, id(small): 0}
    for pairs in rounds:
        requests = [meta_prover_request(prompt, steps, candidate, "14") for steps, candidate in pairs]
        a, b = roomy.score(requests), small.score(requests)
        for x, y in zip(a, b):
            assert x.logprobs == pytest.approx(y.logprobs, abs=1e-5)
        spent[id(roomy)] += sum(x.new_tokens for x in a)
        spent[id(small)] += sum(y.new_tokens for y in b)
        assert small._kv.bytes <= 30_000 < roomy._kv.bytes
    assert spent[id(small)] > spent[id(roomy)]  # what was dropped was computed again
    chat = prompt + "<think>\n"
    for steps in ((), (STEPS[0],), STEPS):
        pieces = (chat, *steps, "### Step")
        requests = [GenerateRequest("".join(pieces), 16, 0.8, 1.0, ("### Step",), seed=s, pieces=pieces) for s in range(4)]
        assert [c.text for c in small.generate(requests)] == [c.text for c in roomy.generate(requests)]
        assert small._gen_kv.bytes <= 30_000
    assert roomy._gen_kv.bytes > 30_000  # so the small engine had to drop some


def test_typed_transformers_options_reach_the_engine_and_others_are_refused(random_model):
    cfg = ModelConfig(name="m", model=random_model, transformers={"kv_cache_bytes": 12345, "max_batch_size": 3})
    TransformersEngine.check(cfg, "teachers.0")
    engine = TransformersEngine.from_config(cfg, random_model)
    assert engine._kv.max_bytes == engine._gen_kv.max_bytes == 12345 and engine.max_batch_size == 3
    with pytest.raises(ConfigError, match=r"teachers.0.engine_kwargs: tensor_parallel_size not used by engine 'transformers'"):
        TransformersEngine.check(ModelConfig(model=random_model, engine_kwargs={"tensor_parallel_size": 2}), "teachers.0")
    with pytest.raises(ConfigError, match=r"transformers.kv_cache_bytes: expected an integer, got '1GB'"):
        ModelConfig(model=random_model, transformers={"kv_cache_bytes": "1GB"})
    with pytest.raises(ConfigError, match=r"transformers.max_batch_size: must be >= 1, got 0"):
        ModelConfig(model=random_model, transformers={"max_batch_size": 0})
    with pytest.raises(ConfigError, match=r"teachers.0.transformers: set for engine 'vllm', which does not read it"):
        from cord.engines.base import Engine

        Engine.check(ModelConfig(model=random_model, engine="vllm", transformers={"reuse_kv": False}), "teachers.0")
    # engine_kwargs of configs written before the typed options still reach them
    legacy = ModelConfig(model=random_model, engine_kwargs={"kv_cache_bytes": 777, "reuse_kv": False})
    assert legacy.transformers.kv_cache_bytes == 777 and legacy.transformers.reuse_kv is False and legacy.engine_kwargs == {}
