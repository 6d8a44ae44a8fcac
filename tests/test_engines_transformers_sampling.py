"""The transformers engine's sampler: exact draws of the tempered, nucleus-truncated distribution,
each a function of its request's seed and token index alone."""

import torch

from cord.engines.base import GenerateRequest
from cord.engines.transformers.sampling import RequestSampler, request_uniform

LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])


def draw(n: int, temperature: float, top_p: float = 1.0) -> torch.Tensor:
    sampler = RequestSampler([GenerateRequest("q", 4, temperature, top_p, seed=s) for s in range(n)], "cpu")
    return torch.bincount(sampler(LOGITS.expand(n, -1), list(range(n))), minlength=len(LOGITS)).double() / n


def test_draws_follow_the_tempered_softmax():
    for temperature in (1.0, 0.6):
        expected = torch.softmax(LOGITS.double() / temperature, -1)
        assert (draw(20000, temperature) - expected).abs().max() < 0.015


def test_the_nucleus_keeps_the_fewest_tokens_that_reach_top_p():
    expected = torch.softmax(LOGITS.double(), -1)
    expected[3:] = 0  # the first three hold 0.89 >= 0.8; the two before them only 0.77
    frequencies = draw(20000, 1.0, top_p=0.8)
    assert frequencies[3:].sum() == 0
    assert (frequencies - expected / expected.sum()).abs().max() < 0.015


def test_a_row_draws_the_same_tokens_alone_or_in_any_batch_and_greedy_rows_take_the_argmax():
    rng = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 50, 100, generator=rng)  # 4 requests, 50 steps, vocabulary 100
    logits[3] = logits[0]
    requests = [GenerateRequest("q", 50, t, seed=s) for s, t in ((11, 0.7), (12, 1.0), (13, 0.0), (11, 0.7))]
    together, alone = RequestSampler(requests, "cpu"), [RequestSampler([r], "cpu") for r in requests]
    batched = torch.stack([together(logits[[2, 0, 3, 1], k], [2, 0, 3, 1]) for k in range(50)], 1)
    single = torch.stack([torch.stack([alone[i](logits[i, k : k + 1], [0])[0] for k in range(50)]) for i in range(4)])
    assert torch.equal(batched, single[[2, 0, 3, 1]])
    assert torch.equal(single[2], logits[2].argmax(-1))  # temperature 0
    assert torch.equal(single[0], single[3])  # same seed, same logits: same tokens
    assert len(set(single[0].tolist())) > 10  # the counter moves on: not one token repeated


def test_uniforms_are_uniform_open_and_move_with_the_counter():
    u = torch.tensor([request_uniform(seed, 0) for seed in range(50000)], dtype=torch.float64)
    assert u.min() > 0 and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 0.005 and abs(u.var().item() - 1 / 12) < 0.002
    histogram = torch.histc(u.float(), 10, 0, 1) / (len(u) / 10)
    assert (histogram - 1).abs().max() < 0.04
    along = torch.tensor([request_uniform(5, k) for k in range(50000)], dtype=torch.float64)  # one request, token after token
    assert abs(along.mean().item() - 0.5) < 0.005
    assert abs(torch.corrcoef(torch.stack([along[:-1], along[1:]]))[0, 1].item()) < 0.015


def sampler_for(n: int, **settings) -> RequestSampler:
    return RequestSampler([GenerateRequest("q", 4, seed=s, **settings) for s in range(n)], "cpu")


def frequencies(sampler: RequestSampler, n: int) -> torch.Tensor:
    return torch.bincount(sampler(LOGITS.expand(n, -1), list(range(n))), minlength=len(LOGITS)).double() / n


def test_top_k_1_is_greedy_and_top_k_keeps_the_k_most_likely():
    drawn = sampler_for(200, temperature=1.0, top_k=1)(LOGITS.expand(200, -1), list(range(200)))
    assert torch.equal(drawn, torch.zeros(200, dtype=torch.long))
    expected = torch.softmax(LOGITS.double(), -1)
    expected[2:] = 0
    assert (frequencies(sampler_for(20000, temperature=1.0, top_k=2), 20000) - expected / expected.sum()).abs().max() < 0.015


def test_min_p_drops_tokens_less_likely_than_its_share_of_the_most_likely():
    probs = torch.softmax(LOGITS.double(), -1)
    expected = torch.where(probs >= 0.3 * probs[0], probs, 0.0)  # keeps 2.0 (1), 1.0 (0.37), 0.5 (0.22 < 0.3: dropped)
    assert expected[2] == 0 and expected[1] > 0
    assert (frequencies(sampler_for(20000, temperature=1.0, min_p=0.3), 20000) - expected / expected.sum()).abs().max() < 0.015


def test_the_nucleus_after_top_k_takes_its_share_of_what_top_k_kept():
    kept = torch.softmax(LOGITS[:3].double(), -1)  # top_k 3: 0.63, 0.23, 0.14; top_p 0.8 of that keeps the first two
    expected = torch.zeros(len(LOGITS), dtype=torch.float64)
    expected[:2] = kept[:2] / kept[:2].sum()
    assert (frequencies(sampler_for(20000, temperature=1.0, top_k=3, top_p=0.8), 20000) - expected).abs().max() < 0.015


def test_a_row_without_truncation_draws_the_same_next_to_rows_with_it():
    rng = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 30, 100, generator=rng)
    requests = [
        GenerateRequest("q", 30, 0.8, 0.9, seed=5),
        GenerateRequest("q", 30, 0.8, 0.9, seed=6, top_k=5, min_p=0.05, presence_penalty=1.0),
        GenerateRequest("q", 30, 0.8, 1.0, seed=7, repetition_penalty=1.3),
    ]
    together, alone = RequestSampler(requests, "cpu"), [RequestSampler([r], "cpu") for r in requests]
    batched = torch.stack([together(logits[:, k], [0, 1, 2]) for k in range(30)], 1)
    single = torch.stack([torch.stack([alone[i](logits[i, k : k + 1], [0])[0] for k in range(30)]) for i in range(3)])
    assert torch.equal(batched, single)


def test_penalties_push_a_greedy_row_off_the_tokens_it_has_seen():
    flat = torch.zeros(1, 6)
    flat[0, 0] = 1.0  # token 0 leads by 1
    presence = RequestSampler([GenerateRequest("q", 4, 0.0, presence_penalty=1.5)], "cpu")
    assert [presence(flat, [0]).item() for _ in range(3)] == [0, 1, 2]  # each token, once chosen, falls behind the rest
    frequency = RequestSampler([GenerateRequest("q", 4, 0.0, frequency_penalty=0.6)], "cpu")
    assert [frequency(flat, [0]).item() for _ in range(3)] == [0, 0, 1]  # 1 - 0.6 still leads; 1 - 1.2 does not
    # the repetition penalty reads the prompt too: token 0 is in it, 1.0 / 2 falls behind token 1 (0.9)
    leading = torch.tensor([[1.0, 0.9, 0.0, 0.0, 0.0, 0.0]])
    repetition = RequestSampler([GenerateRequest("q", 4, 0.0, repetition_penalty=2.0)], "cpu", prompt_ids=lambda r: [0, 3])
    assert repetition(leading, [0]).item() == 1
    assert RequestSampler([GenerateRequest("q", 4, 0.0)], "cpu", prompt_ids=lambda r: [0, 3])(leading, [0]).item() == 0
