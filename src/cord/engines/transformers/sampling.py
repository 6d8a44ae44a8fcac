"""Per-request sampling for the transformers engine's decode loop: each row draws by its own
request's seed and sampling settings (temperature, top-k, min-p, top-p, penalties), whatever
shares its batch."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..base import GenerateRequest


def request_uniform(seed: int, counter: int) -> float:
    """A uniform in (0, 1), 53 bits of BLAKE2b of (seed, counter): a request's draw for its
    `counter`-th token depends on nothing else, whatever shares its batch."""
    digest = hashlib.blake2b(f"{seed}:{counter}".encode(), digest_size=8).digest()
    return ((int.from_bytes(digest, "little") >> 11) + 0.5) / 2.0**53


class Penalties:
    """A request's presence, frequency and repetition penalties, as vLLM and transformers apply
    them: the repetition penalty divides the positive logit (multiplies the negative one) of every
    token in the prompt or generated so far; the presence penalty is subtracted from the logit of
    every token generated so far, the frequency penalty once per time it was generated."""

    def __init__(self, r: GenerateRequest, prompt_ids: Callable[[GenerateRequest], list[int]]):
        self.presence, self.frequency = r.presence_penalty or 0.0, r.frequency_penalty or 0.0
        self.repetition = r.repetition_penalty or 1.0
        self.prompt = prompt_ids(r) if self.repetition != 1.0 else []  # only the repetition penalty reads the prompt
        self.counts: torch.Tensor | None = None  # per vocabulary token: times generated (made at the first logits)
        self.seen: torch.Tensor | None = None  # per vocabulary token: in the prompt or generated

    @staticmethod
    def wanted(r: GenerateRequest) -> bool:
        return bool(r.presence_penalty or r.frequency_penalty) or r.repetition_penalty not in (None, 1.0)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """One row's logits (float64), penalised."""
        if self.counts is None:
            self.counts = torch.zeros_like(logits)
            self.seen = torch.zeros_like(logits, dtype=torch.bool)
            self.seen[torch.tensor(self.prompt, dtype=torch.long, device=logits.device)] = True
        if self.repetition != 1.0:
            scaled = torch.where(logits > 0, logits / self.repetition, logits * self.repetition)
            logits = torch.where(self.seen, scaled, logits)
        return logits - self.frequency * self.counts - self.presence * (self.counts > 0)

    def chose(self, token: int) -> None:
        self.counts[token] += 1
        self.seen[token] = True


@dataclass
class Row:
    """One request's sampling settings and how far it has come."""

    temperature: float
    top_p: float
    top_k: int | None
    min_p: float | None
    seed: int
    penalties: Penalties | None
    counter: int = 0  # tokens chosen so far

    @property
    def samples(self) -> bool:
        return self.temperature > 0  # temperature 0: greedy

    @property
    def truncated(self) -> bool:
        """Top-k or min-p drop tokens before the nucleus is taken (its mass then counts the survivors only)."""
        return self.top_k is not None or bool(self.min_p)


class RequestSampler:
    """Samples each row of a batch by its request's own seed and settings, so the tokens a request
    gets do not depend on what else shares its batch (or its order). Penalties apply first (to
    greedy rows too), then the temperature; top-k, min-p and top-p (over what top-k and min-p
    keep) drop tokens, and each row's draw inverts its cumulative distribution at
    `request_uniform` of the request's seed and the index of the token it is choosing: an exact
    sample, the whole batch in a few tensor operations (no per-row generator or kernel), the same
    on any device for the same logits."""

    def __init__(self, requests: list[GenerateRequest], device: str, prompt_ids: Callable[[GenerateRequest], list[int]] | None = None):
        """`prompt_ids`: a request's prompt as token ids (what the repetition penalty reads)."""
        self.device = device
        self.prompt_ids = prompt_ids or (lambda r: [])
        self.rows: dict[int, Row] = {}  # per request (its index in the batch)
        self.add(requests, 0)

    def add(self, requests: list[GenerateRequest], first: int) -> None:
        """Rows for `requests`, indexed first, first + 1, ... (requests joining a running batch)."""
        for i, r in enumerate(requests, first):
            seed = r.seed if r.seed is not None else int(torch.randint(0, 2**31 - 1, ()).item())
            penalties = Penalties(r, self.prompt_ids) if Penalties.wanted(r) else None
            self.rows[i] = Row(r.temperature, r.top_p, r.top_k, r.min_p, seed, penalties)

    def forget(self, index: int) -> None:
        """A request that ended: its row is not drawn again."""
        self.rows.pop(index, None)

    def __call__(self, scores: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """The next token of each row of `scores`; `rows` are the rows' requests (batch indices)."""
        state = [self.rows[i] for i in rows]
        penalised = [j for j, row in enumerate(state) if row.penalties]
        if penalised:
            scores = scores.to(torch.float64, copy=True)
            for j in penalised:
                scores[j] = state[j].penalties.apply(scores[j])
        drawn = self._draw(scores, state)
        if penalised:
            tokens = drawn.tolist()
            for j in penalised:
                state[j].penalties.chose(tokens[j])
        return drawn

    def _draw(self, scores: torch.Tensor, state: list[Row]) -> torch.Tensor:
        sampled = [j for j, row in enumerate(state) if row.samples]
        uniforms = [request_uniform(state[j].seed, state[j].counter) for j in sampled]
        for row in state:
            row.counter += 1
        if not sampled:
            return scores.argmax(dim=-1)
        every = len(sampled) == len(state)
        which = None if every else torch.tensor(sampled, device=scores.device)
        rows = [state[j] for j in sampled]
        temperature = torch.tensor([row.temperature for row in rows], device=scores.device)
        probs = torch.softmax((scores if every else scores[which]).double() / temperature[:, None], dim=-1)
        if any(row.truncated or row.top_p < 1.0 for row in rows):
            probs = self._truncated(probs, rows)
        cumulative = probs.cumsum(dim=-1)
        target = torch.tensor(uniforms, dtype=torch.float64, device=scores.device)[:, None] * cumulative[:, -1:]
        drawn = torch.searchsorted(cumulative, target).squeeze(1).clamp_(max=scores.shape[-1] - 1)
        if every:
            return drawn
        return scores.argmax(dim=-1).index_copy_(0, which, drawn)  # the greedy rows keep their argmax

    @staticmethod
    def _truncated(probs: torch.Tensor, rows: list[Row]) -> torch.Tensor:
        """`probs` with the tokens each row's top-k, min-p and top-p drop set to 0. Top-k and min-p
        keep a most-likely-first prefix; the nucleus is then the fewest of those whose share of
        the prefix's mass reaches top-p."""
        device, size = probs.device, probs.shape[-1]
        ordered, order = probs.sort(dim=-1, descending=True)
        top_k = torch.tensor([row.top_k or size for row in rows], device=device)
        min_p = torch.tensor([row.min_p or 0.0 for row in rows], dtype=torch.float64, device=device)
        dropped = (torch.arange(size, device=device)[None, :] >= top_k[:, None]) | (ordered < min_p[:, None] * ordered[:, :1])
        kept = ordered.masked_fill(dropped, 0.0)
        # A row that drops nothing before the nucleus keeps the mass 1 (not the sum, which rounds).
        truncated = torch.tensor([row.truncated for row in rows], device=device)
        mass = torch.where(truncated[:, None], kept.sum(-1, keepdim=True), torch.ones_like(kept[:, :1]))
        top_p = torch.tensor([row.top_p for row in rows], device=device)  # float32, as it always was: the same nucleus
        dropped |= kept.cumsum(-1) - kept >= top_p[:, None] * mass
        return probs.scatter(1, order, ordered.masked_fill(dropped, 0.0))
