"""The transformers engine's scoring: teacher-forced log-probabilities of the answer after each
candidate, with every scored prefix's KV kept.

When the search accepts a candidate step, the next round finds `prompt + steps` already cached,
so a candidate costs only its own tokens plus the answer's. A candidate's entry holds only its
step's KV, after its prefix's entry (one copy of the prefix for all its candidates). Candidates
after different prefixes share one forward pass (each row reads its own prefix's KV, padded and
masked), which computes logits only where the answer is read (at a 152K-token vocabulary, logits
at every token would be the pass's largest tensor).
"""

from __future__ import annotations

import torch

from ..base import ScoreRequest, ScoreResult
from .kv import KVStore, chain_length, joined, padded_past, row_span
from .model import LoadedModel


class PrefixScorer:
    def __init__(self, lm: LoadedModel, store: KVStore):
        self.lm, self.store = lm, store

    def cached_length(self, prefix: tuple[str, ...]) -> int:
        return sum(len(self.lm.ids(piece)) for piece in prefix)

    def prefix_state(self, prefix: tuple[str, ...]):
        """(KV of `prefix` as a chain of segments, its last logits, tokens computed), extending the
        longest cached leading run of pieces; what is computed is kept as a segment after it."""
        if not prefix:
            return None, None, 0
        for cut in range(len(prefix), 0, -1):
            hit = self.store.get(prefix[:cut])
            if hit is not None:
                break
        else:
            cut, hit = 0, None
        if cut == len(prefix):
            return hit[0], hit[1], 0
        rest = [t for piece in prefix[cut:] for t in self.lm.ids(piece)]
        chain = hit[0] if hit else []
        if not rest:
            return chain, hit[1], 0
        done = chain_length(chain)
        logits, kv = self.lm.forward(torch.tensor([rest], device=self.lm.device), joined(chain) if chain else None, keep=1)
        own = row_span(kv, 0, done)
        self.store.put(prefix, own, logits[0, -1], parent=prefix[:cut] if chain else None)
        return [*chain, own], logits[0, -1], len(rest)

    def left_padded(self, rows: list[list[int]]):
        """Token ids, attention mask and positions for whole sequences, left-padded to the longest."""
        width, pad = max(len(row) for row in rows), self.lm.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(row)) + row for row in rows], device=self.lm.device)
        mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows], device=self.lm.device)
        return ids, mask, (mask.cumsum(dim=1) - 1).clamp(min=0)

    def cold_prefixes(self, prefixes: list[tuple[str, ...]]) -> dict[tuple[str, ...], int]:
        """Compute and keep the KV of prefixes none of whose leading pieces is cached (a problem's
        first round: its prompt) in one forward pass, left-padded; {prefix: tokens computed}."""
        ids = [[t for piece in prefix for t in self.lm.ids(piece)] for prefix in prefixes]
        tensor, mask, positions = self.left_padded(ids)
        logits, kv = self.lm.forward(tensor, None, mask, positions, keep=1)
        width = tensor.shape[1]
        for i, (prefix, row) in enumerate(zip(prefixes, ids)):
            start = width - len(row)
            self.store.put(prefix, row_span(kv, i, start), logits[i, -1].clone())
        return {prefix: len(row) for prefix, row in zip(prefixes, ids)}

    def rows(self, batch: list[ScoreRequest]) -> list[ScoreResult]:
        distinct = list(dict.fromkeys(r.prefix for r in batch))
        cold = [p for p in distinct if self.cached_length(p) and not any(p[:cut] in self.store for cut in range(1, len(p) + 1))]
        computed = self.cold_prefixes(cold) if cold else {}
        states = {}
        for prefix in distinct:
            past, last, new = self.prefix_state(prefix)
            states[prefix] = (past, last, computed.get(prefix, new))
        lengths = {key: chain_length(chain) if chain else 0 for key, (chain, _, _) in states.items()}
        width_past = max(lengths.values())
        rows, cands, tails, targets = [], [], [], []
        for r in batch:
            cand = self.lm.ids(r.candidate)
            tail, positions = self.lm.chat.tail(r.lead_in, r.target)
            rows.append(cand + tail)
            cands.append(len(cand))
            tails.append(len(tail))
            targets.append([len(cand) + p for p in positions])
        width = max(len(row) for row in rows)
        n, pad = len(rows), self.lm.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(row)) + row for row in rows], device=self.lm.device)
        # Each row: [padding | its prefix's KV] [padding | its candidate + answer]: right-aligned,
        # so every logit scoring needs (the candidate's last token's on) is in the last `keep`.
        mask = torch.zeros(n, width_past + width, dtype=torch.long, device=self.lm.device)
        offsets = torch.zeros(n, 1, dtype=torch.long, device=self.lm.device)
        past = padded_past([states[r.prefix][0] for r in batch], width_past, self.lm.device)
        for i, (r, row) in enumerate(zip(batch, rows)):
            c = lengths[r.prefix]
            mask[i, width_past - c : width_past] = 1
            mask[i, width_past + width - len(row) :] = 1
            offsets[i, 0] = c - (width - len(row))
        positions = (offsets + torch.arange(width, device=self.lm.device)[None, :]).clamp(min=0)
        keep = min(max(tails) + 1, width)  # an empty candidate: the prefix's own logits start the answer
        logits, kv = self.lm.forward(ids, past, mask, positions, keep=keep)
        logprobs = torch.log_softmax(logits, dim=-1)
        results, charged = [], set()
        for i, (r, row, pos) in enumerate(zip(batch, rows, targets)):
            _, last_logits, new_prefix_tokens = states[r.prefix]
            first = torch.log_softmax(last_logits, dim=-1) if last_logits is not None else None
            at = keep - len(row)  # row index j's logits are logits[i, at + j]
            values = []
            for p in pos:
                dist = logprobs[i, at + p - 1] if p > 0 else first
                values.append(float(dist[row[p]]))
            # Keep this candidate's prefix + step: if it is selected, the next round starts here.
            c, cand_len = lengths[r.prefix], cands[i]
            step_last = logits[i, at + cand_len - 1].clone() if cand_len else last_logits  # not a view: it would hold the batch's logits
            # Only the step's own KV, after its prefix's entry (shared by every candidate of that prefix).
            lo = width_past + width - len(row)
            own = row_span(kv, i, lo, lo + cand_len)
            self.store.put(r.pieces, own, step_last, parent=r.prefix if c else None)
            share = 0 if r.prefix in charged else new_prefix_tokens
            charged.add(r.prefix)
            results.append(ScoreResult(values, share + len(row), c + len(row)))
        return results

    def full(self, batch: list[ScoreRequest]) -> list[ScoreResult]:
        """Reference path: whole sequences through the model, left-padded, no cache reuse; the
        logits from each row's first answer token on only."""
        sequences = [self.lm.chat.sequence(r) for r in batch]
        ids, mask, position_ids = self.left_padded([row for row, _ in sequences])
        keep = min(max(len(row) - targets[0] + 1 for row, targets in sequences), ids.shape[1])
        logits, _ = self.lm.forward(ids, None, mask, position_ids, keep=keep)
        logprobs = torch.log_softmax(logits, dim=-1)
        return [
            ScoreResult([float(logprobs[i, keep - len(row) + p - 1, row[p]]) for p in targets], len(row), len(row))
            for i, (row, targets) in enumerate(sequences)
        ]
