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
