"""Local tokenizer work every engine shares: chat rendering, cached piece ids, target positions."""

from __future__ import annotations

from ..config import ConfigError
from .base import ScoreRequest


class ChatTokenizer:
    def __init__(self, name_or_path: str):
        from transformers import AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        except Exception as err:
            raise ConfigError(f"{name_or_path}: could not load tokenizer ({type(err).__name__}: {str(err).splitlines()[0]})") from None
        self.name = name_or_path
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._piece_ids: dict[str, list[int]] = {}
        self._tails: dict[tuple[str, str], tuple[list[int], list[int]]] = {}

    def chat_prompt(self, question: str, system: str | None = None) -> str:
        """The model's own chat template with the generation prompt (system turn only if given)."""
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return (f"{system}\n\n" if system else "") + f"{question}\n\n"

    def ids(self, piece: str) -> list[int]:
        ids = self._piece_ids.get(piece)
        if ids is None:
            ids = self.tokenizer(piece, add_special_tokens=False)["input_ids"]
            if len(self._piece_ids) > 100_000:
                self._piece_ids.clear()
            self._piece_ids[piece] = ids
        return ids

    def prompt_ids(self, request) -> list[int]:
        """A generation prompt's token ids: piece by piece when the request is cut into pieces."""
        if request.pieces:
            return [t for piece in request.pieces for t in self.ids(piece)]
        return self.ids(request.prompt)

    def tail(self, last_piece: str, target: str) -> tuple[list[int], list[int]]:
        """Ids of last_piece + target tokenized together, and the positions of the target's tokens
        (a lead-in and answer pair repeats for every candidate of a problem: kept)."""
        key = (last_piece, target)
        if key not in self._tails:
            enc = self.tokenizer(last_piece + target, add_special_tokens=False, return_offsets_mapping=True)
            lo = len(last_piece)
            positions = [j for j, (a, b) in enumerate(enc["offset_mapping"]) if b > lo and b > a]
            if not positions:
                raise ValueError(f"target {target!r} produced no tokens")
            if len(self._tails) > 100_000:
                self._tails.clear()
            self._tails[key] = (enc["input_ids"], positions)
        ids, positions = self._tails[key]
        return list(ids), list(positions)

    def sequence(self, request: ScoreRequest) -> tuple[list[int], list[int]]:
        """Whole scored sequence (pieces tokenized one by one) and the target's positions in it."""
        ids = [t for piece in request.pieces for t in self.ids(piece)]
        tail, positions = self.tail(request.lead_in, request.target)
        return ids + tail, [len(ids) + p for p in positions]

    def next_token_prompts(self, request: ScoreRequest) -> list[tuple[list[int], int]]:
        """The scored sequence as one (prompt ids, next token) pair per target token: the log-prob of
        each target token is that of a 1-token continuation, which an engine can serve from its
        prefix cache (prompt log-probs cannot be)."""
        ids, positions = self.sequence(request)
        return [(ids[:p], ids[p]) for p in positions]
