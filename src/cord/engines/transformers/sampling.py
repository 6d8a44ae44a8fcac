"""Per-request sampling for the transformers engine's decode loop: each row draws by its own
request's seed, temperature and top-p, whatever shares its batch."""

from __future__ import annotations

import hashlib

import torch

from ..base import GenerateRequest


def request_uniform(seed: int, counter: int) -> float:
    """A uniform in (0, 1), 53 bits of BLAKE2b of (seed, counter): a request's draw for its
    `counter`-th token depends on nothing else, whatever shares its batch."""
    digest = hashlib.blake2b(f"{seed}:{counter}".encode(), digest_size=8).digest()
    return ((int.from_bytes(digest, "little") >> 11) + 0.5) / 2.0**53


class RequestSampler:
    """Samples each row of a batch by its request's own seed, temperature and top-p, so the tokens
    a request gets do not depend on what else shares its batch (or its order). Each row's draw
    inverts its cumulative distribution (tempered, nucleus-truncated) at `request_uniform` of the
    request's seed and the index of the token it is choosing: an exact sample, the whole batch in
    a few tensor operations (no per-row generator or kernel), the same on any device for the same
    logits."""

    def __init__(self, requests: list[GenerateRequest], device: str):
        self.temperature = torch.tensor([max(r.temperature, 1e-6) for r in requests], device=device)
        self.top_p = torch.tensor([r.top_p for r in requests], device=device)
        self.sampled = [r.temperature > 0 for r in requests]
        self.seeds = [r.seed if r.seed is not None else int(torch.randint(0, 2**31 - 1, ()).item()) for r in requests]
        self.counters = [0] * len(requests)  # tokens chosen so far, per request

    def __call__(self, scores: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """The next token of each row of `scores`; `rows` are the rows' requests (batch indices)."""
        sampled = [j for j, i in enumerate(rows) if self.sampled[i]]
        uniforms = [request_uniform(self.seeds[rows[j]], self.counters[rows[j]]) for j in sampled]
        for i in rows:
            self.counters[i] += 1
        if not sampled:
            return scores.argmax(dim=-1)
        every = len(sampled) == len(rows)
        which = None if every else torch.tensor(sampled, device=scores.device)
        index = torch.tensor([rows[j] for j in sampled], device=scores.device)
        probs = torch.softmax((scores if every else scores[which]).double() / self.temperature[index, None], dim=-1)
        top_p = self.top_p[index]
        if bool((top_p < 1.0).any()):  # nucleus: the smallest set of tokens whose mass reaches top_p
            ordered, order = probs.sort(dim=-1, descending=True)
            outside = ordered.cumsum(-1) - ordered >= top_p[:, None]
            probs = probs.scatter(1, order, ordered.masked_fill(outside, 0.0))
        cumulative = probs.cumsum(dim=-1)
        target = torch.tensor(uniforms, dtype=torch.float64, device=scores.device)[:, None] * cumulative[:, -1:]
        drawn = torch.searchsorted(cumulative, target).squeeze(1).clamp_(max=scores.shape[-1] - 1)
        if every:
            return drawn
        return scores.argmax(dim=-1).index_copy_(0, which, drawn)  # the greedy rows keep their argmax
