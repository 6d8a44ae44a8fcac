"""The transformers engine's generation: per-request sampling and how completions end."""

from cord.engines.base import GenerateRequest
from cord.engines.transformers import TransformersEngine
from helpers import needs_tiny

PROMPT = "Ann has 3 apples. Then she finds 4 more. How many apples?"


def test_a_request_samples_the_same_tokens_alone_or_in_any_batch(random_model):
    engine = TransformersEngine(random_model)
    prompt = engine.chat_prompt(PROMPT) + "<think>\n"
    mine = GenerateRequest(prompt, 12, temperature=0.9, seed=1234)
    others = [
        GenerateRequest(engine.chat_prompt("Q " * k) + "<think>\n", 12, temperature=t, seed=k) for k, t in ((1, 0.5), (2, 0.0), (3, 1.2))
    ]
    alone = engine.generate([mine])[0]
    first = engine.generate([mine, *others])[0]
    last = engine.generate([*others, mine])[-1]
    assert alone.text == first.text == last.text and alone.tokens == first.tokens == last.tokens


def test_different_seeds_give_different_samples_and_temperature_zero_is_greedy(random_model):
    engine = TransformersEngine(random_model)
    prompt = engine.chat_prompt(PROMPT) + "<think>\n"
    texts = {c.text for c in engine.generate([GenerateRequest(prompt, 12, temperature=1.0, seed=s) for s in range(6)])}
    assert len(texts) >= 5  # a random model at temperature 1: distinct seeds, distinct samples
    greedy = engine.generate([GenerateRequest(prompt, 12, temperature=0.0, seed=s) for s in range(3)])
    assert len({c.text for c in greedy}) == 1


def test_top_p_keeps_sampling_inside_the_nucleus(random_model):
    engine = TransformersEngine(random_model)
    prompt = engine.chat_prompt(PROMPT) + "<think>\n"
    tiny_nucleus = engine.generate([GenerateRequest(prompt, 8, temperature=1.0, top_p=1e-6, seed=s) for s in range(3)])
    greedy = engine.generate([GenerateRequest(prompt, 8, temperature=0.0)])[0]
    assert all(c.text == greedy.text for c in tiny_nucleus)


@needs_tiny
def test_a_stop_string_ends_the_completion_before_it():
    from cord.tiny import model_path

    engine = TransformersEngine(str(model_path("tiny-generalist")))
    prompt = engine.chat_prompt("Omar has 3 stamps. Then he doubles his stamps. How many stamps does Omar have now?") + "<think>\n### Step"
    free = engine.generate([GenerateRequest(prompt, 40, temperature=0.0)])[0]
    step = engine.generate([GenerateRequest(prompt, 40, temperature=0.0, stop=("### Step", "</think>"))])[0]
    assert step.finish == "stop" and step.stop in ("### Step", "</think>")
    assert free.text.startswith(step.text + step.stop) and "### Step" not in step.text
    capped = engine.generate([GenerateRequest(prompt, 3, temperature=0.0, stop=("### Step",))])[0]
    assert capped.finish == "length" and capped.tokens == 3 and free.text.startswith(capped.text)


@needs_tiny
def test_a_teacher_starts_from_the_kept_kv_of_its_accepted_steps_and_writes_the_same_tokens():
    """Round 2's prompt extends round 1's by an accepted step: the engine computes only that step
    and the opening (the rest comes from its kept KV), or only the opening where the step is one
    it wrote itself (its row's KV kept too), and samples what a fresh engine samples."""
    from cord.engines.transformers.decode import common_prefix
    from cord.tiny import model_path

    kept, fresh = (TransformersEngine(str(model_path("tiny-generalist")), reuse_kv=reuse) for reuse in (True, False))
    chat = kept.chat_prompt("Omar has 3 stamps. Then he gets 4 more. Then he doubles his stamps. How many stamps?") + "<think>\n"
    stops = ("### Step", "</think>")
    computed = []
    forward = kept.lm.last_logits
    kept.lm.last_logits = lambda ids, *rest: computed.append(ids.shape[1]) or forward(ids, *rest)

    def round_of(steps):
        return [GenerateRequest("".join(p), 24, 0.7, 1.0, stops, seed=s, pieces=p) for s, p in enumerate([(chat, *steps, "### Step")] * 3)]

    kept.decoder.KEEP_WRITTEN_FROM = 1  # the tiny teacher's steps are short; a real teacher's run to hundreds of tokens
    first = kept.generate(round_of(()))
    assert [c.text for c in first] == [c.text for c in fresh.generate(round_of(()))]
    opening = len(kept.chat.ids("### Step"))
    rows = [kept.chat.ids("### Step" + c.text) for c in first]  # what each row wrote after the opening it read
    written = "### Step" + first[0].text
    for step in (written, "### Step 1. 3 + 4 = 7.\n", written + "Hence"):  # its own, another's, its own and more
        computed.clear()
        second = kept.generate(round_of((step,)))
        assert [c.text for c in second] == [c.text for c in fresh.generate(round_of((step,)))]
        ids = kept.chat.ids(step)
        wrote = max(common_prefix(ids, tuple(row)) for row in rows)  # the leading tokens a row read or wrote
        wrote = wrote if 2 * wrote >= len(ids) else 0  # at least half of it, or not this teacher's step
        assert (wrote == len(ids)) if step == written else (bool(wrote) == step.startswith(written))
        assert computed[0] == len(ids) - wrote + opening  # not the chat prompt again, nor what a row wrote
    short = TransformersEngine(str(model_path("tiny-generalist")))  # by default a step this short is read again
    short.generate(round_of(()))
    assert not any(key[0] == "row" for key in short._gen_kv._entries)


@needs_tiny
def test_ended_rows_riding_along_until_the_batch_compacts_change_no_completion():
    """Ended rows stay in the decode batch (their KV kept, their tokens padding) until half the
    batch has ended; the completions are those of dropping each row the moment it ends."""
    from cord.tiny import model_path

    engine = TransformersEngine(str(model_path("tiny-generalist")))
    questions = ["Omar has 3 stamps. Then he doubles his stamps. How many stamps?", "Ann has 12 apples. She gives away 5. How many apples?"]
    prompts = [engine.chat_prompt(q) + "<think>\n### Step" for q in questions]
    requests = [GenerateRequest(prompts[s % 2], 6 + 5 * (s % 4), 0.8, stop=("### Step", "</think>"), seed=s) for s in range(12)]
    runs = {}
    for share in (0.0, 0.5, 1.0):
        engine.decoder.compact_when_ended = share
        runs[share] = [(c.text, c.tokens, c.finish) for c in engine.generate(requests)]
    assert runs[0.0] == runs[0.5] == runs[1.0]
    assert len({finish for _, _, finish in runs[0.0]}) == 2  # rows ended at a stop string and at their cap, at different steps


def test_a_whole_batch_of_more_requests_than_rows_refills_and_gives_each_its_own_completion(monkeypatch):
    """A whole batch larger than max_batch_size decodes in one running batch: a row leaves as it
    ends and the waiting requests join, each getting what it gets when every row decodes at once,
    and the cache stays as wide as its widest live row (joined rows are padded to the running width)."""
    from cord.engines.transformers.decode import RunningBatch
    from cord.tiny import model_path

    engine = TransformersEngine(str(model_path("tiny-generalist")))
    questions = ["Omar has 3 stamps. Then he doubles his stamps. How many stamps?", "Ann has 12 apples. She gives away 5. How many apples?"]
    prompts = [engine.chat_prompt(q) + "<think>\n### Step" for q in questions]
    requests = [GenerateRequest(prompts[s % 2], 4 + 7 * (s % 3), 0.8, stop=("### Step", "</think>"), seed=s) for s in range(24)]
    engine.max_batch_size = len(requests)
    together = [(c.text, c.tokens, c.finish) for c in engine.generate(requests)]
    admits, widths = [], []
    admit, step = RunningBatch.admit, RunningBatch.step
    monkeypatch.setattr(RunningBatch, "admit", lambda self, batch: admits.append(len(batch)) or admit(self, batch))
    monkeypatch.setattr(RunningBatch, "step", lambda self: widths.append(self.mask.shape[1]) or step(self))
    engine.max_batch_size, engine.refill = 4, True
    refilled = [(c.text, c.tokens, c.finish) for c in engine.generate(requests)]
    assert refilled == together
    assert len(admits) > len(requests) // 4 and max(admits) <= 4 and sum(admits) == len(requests)
    longest = max(len(engine.chat.prompt_ids(r)) + r.max_tokens for r in requests)
    assert max(widths) <= longest  # without dropping the padding on the left it grows past this
    assert len(widths) > longest


@needs_tiny
def test_a_refilled_batch_holds_requests_with_different_stop_strings_each_ending_at_its_own(monkeypatch):
    """Steps (stop at the marker) and answers (no stop string) of one call decode in one refilled
    batch, not a batch for each, and each ends as it does in passes grouped by stop strings."""
    from cord.engines.transformers.decode import Decoder
    from cord.tiny import model_path

    engine = TransformersEngine(str(model_path("tiny-generalist")))
    prompt = engine.chat_prompt("Omar has 3 stamps. Then he doubles his stamps. How many stamps?") + "<think>\n### Step"
    requests = [GenerateRequest(prompt, 6 + 3 * s, 0.8, stop=("### Step", "</think>") if s % 2 else (), seed=s) for s in range(10)]
    engine.max_batch_size, engine.refill = 4, False
    passes = [(c.text, c.tokens, c.finish) for c in engine.generate(requests)]
    batches = []
    batch = Decoder.batch
    monkeypatch.setattr(Decoder, "batch", lambda self, b, rows=None, **kw: batches.append(len(b)) or batch(self, b, rows, **kw))
    engine.refill = True
    assert [(c.text, c.tokens, c.finish) for c in engine.generate(requests)] == passes
    assert batches == [len(requests)]
    assert {"stop", "length"} <= {finish for _, _, finish in passes}


@needs_tiny
def test_a_batchs_last_rows_carried_to_the_next_batch_end_as_if_it_had_run_them_to_their_end():
    """With the scheduler's whole batches, a refilled batch returns once nothing waits and at most
    a quarter of its rows still decode, answering those CARRIED; the next batch that asks for them
    resumes them (with its own new rows), and each ends as in one batch that ran every row to its
    end. A resumed row is not carried again, and a carried row nobody asks for is dropped."""
    from cord.engines.base import CARRIED
    from cord.tiny import model_path

    engine = TransformersEngine(str(model_path("tiny-generalist")))
    questions = ["Omar has 3 stamps. Then he doubles his stamps. How many stamps?", "Ann has 12 apples. She gives away 5. How many apples?"]
    prompts = [engine.chat_prompt(q) + "<think>\n### Step" for q in questions]
    requests = [GenerateRequest(prompts[s % 2], 4 + 9 * (s % 3), 0.8, stop=("### Step", "</think>"), seed=s) for s in range(24)]
    whole = {r: (c.text, c.tokens, c.finish) for r, c in zip(requests, engine.generate(requests))}
    engine.max_batch_size, engine.refill, engine.whole_batches = 8, True, True
    got, carried, todo, counts = {}, [], list(requests), []
    while todo or carried:  # each batch: what the last one carried, then up to 12 new requests
        batch, todo = carried + todo[:12], todo[12:]
        out = engine.generate(batch)
        resumed, carried = set(carried), [r for r, c in zip(batch, out) if c.finish == CARRIED]
        assert len(carried) <= 2 and not resumed & set(carried)
        got |= {r: (c.text, c.tokens, c.finish) for r, c in zip(batch, out) if c.finish != CARRIED}
        counts.append(len(carried))
    assert counts[0] and got == whole
    assert any(c.finish == CARRIED for c in engine.generate(requests[:12]))
    engine.whole_batches = False  # the next batch asks for others, and carries nothing
    rest = {r: (c.text, c.tokens, c.finish) for r, c in zip(requests[12:16], engine.generate(requests[12:16]))}
    assert rest == {r: whole[r] for r in requests[12:16]} and engine.decoder._carried is None


def test_requests_joining_a_running_batch_from_many_threads_get_what_a_whole_batch_gives():
    """Continuous batching: requests arrive one by one from threads of their own while others
    decode, with different stop strings and caps; each gets the completion it gets in a whole
    batch (its own seed; rows padded to the running batch's width)."""
    import threading
    import time

    from cord.tiny import model_path

    engine = TransformersEngine(str(model_path("tiny-generalist")), continuous=True)
    questions = ["Omar has 3 stamps. Then he doubles his stamps. How many stamps?", "Ann has 12 apples. She gives away 5. How many apples?"]
    prompts = [engine.chat_prompt(q) + "<think>\n### Step" for q in questions]
    stops = [("### Step", "</think>"), ("</think>",)]
    requests = [GenerateRequest(prompts[s % 2], 6 + 5 * (s % 4), 0.8, stop=stops[s // 6], seed=s) for s in range(12)]
    whole = engine._generate_whole(requests)
    joined: list = [None] * len(requests)

    def ask(i: int) -> None:
        joined[i] = engine.generate([requests[i]])[0]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
        time.sleep(0.002)  # later requests join while earlier ones decode
    for thread in threads:
        thread.join()
    engine.close()
    assert [(c.text, c.tokens, c.finish, c.stop) for c in joined] == [(c.text, c.tokens, c.finish, c.stop) for c in whole]
    assert {c.finish for c in whole} == {"stop", "length"}


def test_engines_on_one_device_take_turns_in_the_order_they_asked():
    import threading

    from cord.engines.transformers.continuous import DeviceTurns

    turns, order, started = DeviceTurns(), [], threading.Event()

    def engine(name: str, first: bool = False) -> None:
        with turns.turn():
            if first:
                started.set()
                threading.Event().wait(0.2)  # the others queue up meanwhile
            order.append(name)

    threads = [threading.Thread(target=engine, args=("a", True))]
    threads[0].start()
    started.wait()
    for name in "bcd":
        threads.append(threading.Thread(target=engine, args=(name,)))
        threads[-1].start()
        threading.Event().wait(0.02)
    for thread in threads:
        thread.join()
    assert order == ["a", "b", "c", "d"]


def test_continuous_auto_means_whole_batches_on_a_cpu():
    from cord.tiny import model_path

    assert TransformersEngine(str(model_path("tiny-addsub")), device="cpu").continuous is False
    assert TransformersEngine(str(model_path("tiny-addsub")), device="cpu", continuous=True).continuous is True


def test_refill_auto_means_passes_on_a_cpu(random_model):
    assert TransformersEngine(random_model).refill is False
    assert TransformersEngine(random_model, refill=True).refill is True


def test_top_k_1_samples_the_greedy_tokens(random_model):
    engine = TransformersEngine(random_model)
    prompt = engine.chat_prompt(PROMPT) + "<think>\n"
    greedy = engine.generate([GenerateRequest(prompt, 12, temperature=0.0)])[0]
    sampled = engine.generate([GenerateRequest(prompt, 12, temperature=1.0, seed=s) for s in range(3)])
    top_1 = engine.generate([GenerateRequest(prompt, 12, temperature=1.0, top_k=1, seed=s) for s in range(3)])
    assert all(c.text != greedy.text for c in sampled) and all(c.text == greedy.text for c in top_1)


@needs_tiny
def test_a_repetition_penalty_changes_what_a_tiny_teacher_writes_greedily():
    """The tiny generalist repeats "### Step", "=" and digits: a penalty on tokens already seen moves it off them."""
    from cord.tiny import model_path

    engine = TransformersEngine(str(model_path("tiny-generalist")))
    prompt = engine.chat_prompt("Omar has 3 stamps. Then he doubles his stamps. How many stamps does Omar have now?") + "<think>\n### Step"
    greedy, penalised, neutral = engine.generate(
        [
            GenerateRequest(prompt, 40, temperature=0.0),
            GenerateRequest(prompt, 40, temperature=0.0, repetition_penalty=3.0),
            GenerateRequest(prompt, 40, temperature=0.0, repetition_penalty=1.0),  # set, but no penalty
        ]
    )
    assert penalised.text != greedy.text and neutral.text == greedy.text


def test_presence_and_frequency_penalties_change_greedy_tokens(random_model):
    engine = TransformersEngine(random_model)
    prompt = engine.chat_prompt(PROMPT) + "<think>\n"
    greedy = engine.generate([GenerateRequest(prompt, 24, temperature=0.0)])[0].text
    for penalty in ("presence_penalty", "frequency_penalty"):
        (penalised,) = engine.generate([GenerateRequest(prompt, 24, temperature=0.0, **{penalty: 2.0})])
        assert penalised.text != greedy, penalty
