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
        self.device = device
        # per request (its index in the batch): temperature, top-p, whether it samples, seed, tokens chosen so far
        self.rows: dict[int, list] = {}
        self.add(requests, 0)

    def add(self, requests: list[GenerateRequest], first: int) -> None:
        """Rows for `requests`, indexed first, first + 1, ... (requests joining a running batch)."""
        for i, r in enumerate(requests, first):
            seed = r.seed if r.seed is not None else int(torch.randint(0, 2**31 - 1, ()).item())
            self.rows[i] = [max(r.temperature, 1e-6), r.top_p, r.temperature > 0, seed, 0]

    def forget(self, index: int) -> None:
        """A request that ended: its row is not drawn again."""
        self.rows.pop(index, None)

    def __call__(self, scores: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """The next token of each row of `scores`; `rows` are the rows' requests (batch indices)."""
        state = [self.rows[i] for i in rows]
        sampled = [j for j, row in enumerate(state) if row[2]]
        uniforms = [request_uniform(state[j][3], state[j][4]) for j in sampled]
        for row in state:
            row[4] += 1
        if not sampled:
            return scores.argmax(dim=-1)
        every = len(sampled) == len(rows)
        which = None if every else torch.tensor(sampled, device=scores.device)
        temperature = torch.tensor([state[j][0] for j in sampled], device=scores.device)
        probs = torch.softmax((scores if every else scores[which]).double() / temperature[:, None], dim=-1)
        top_p = torch.tensor([state[j][1] for j in sampled], device=scores.device)
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
