"""Local tokenizer work every engine shares: chat rendering (or the plain layout of a base model),
cached piece ids, target positions, and the special tokens a completion's text must not carry."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ConfigError
from ..prompts import THINK, THINK_CLOSE
from .base import ScoreRequest

GGUF = ".gguf"


def gguf_location(model: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """(folder or hub id, GGUF file name in it or None): a model named as a `.gguf` path, or as a
    folder plus `gguf_file`, is read from that file (transformers dequantizes it)."""
    if gguf_file:
        return model, gguf_file
    if model.endswith(GGUF):
        path = Path(model).expanduser()
        return str(path.parent), path.name
    return model, None


def _load(name_or_path: str, gguf_file: str | None, where: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path, **({"gguf_file": gguf_file} if gguf_file else {}))
    except Exception as err:
        raise ConfigError(f"{where}: could not load tokenizer ({type(err).__name__}: {str(err).splitlines()[0]})") from None


class ChatTokenizer:
    def __init__(self, name_or_path: str, gguf_file: str | None = None, tokenizer=None):
        """`tokenizer`: one already loaded (`from_tokenizer`)."""
        name_or_path, gguf_file = gguf_location(name_or_path, gguf_file)
        where = f"{name_or_path}/{gguf_file}" if gguf_file else name_or_path
        self.tokenizer = tokenizer if tokenizer is not None else _load(name_or_path, gguf_file, where)
        self.name = where
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._piece_ids: dict[str, list[int]] = {}
        self._tails: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
        # Special tokens' texts (end of turn, BOS, padding, role markers) never belong in a step or an
        # answer; <think> and </think> are the reasoning's own markers, kept where a tokenizer lists them.
        specials = sorted({t for t in self.tokenizer.all_special_tokens if t and t not in (THINK, THINK_CLOSE)}, key=len, reverse=True)
        self._specials = re.compile("|".join(map(re.escape, specials))) if specials else None

    @classmethod
    def from_tokenizer(cls, tokenizer) -> ChatTokenizer:
        return cls(getattr(tokenizer, "name_or_path", "") or "tokenizer", tokenizer=tokenizer)

    def drops_reasoning(self) -> bool:
        """Whether the chat template leaves out `<think>...</think>` of an assistant turn it renders
        (R1-Distill's, QwQ's): a trainer given conversations would then never see the reasoning."""
        if not self.has_template:
            return False
        turns = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": f"{THINK}\nreasoning-marker\n{THINK_CLOSE}\nA."}]
        try:
            rendered = self.tokenizer.apply_chat_template(turns, tokenize=False)
        except Exception:  # a template that refuses this conversation tells nothing either way
            return False
        return "reasoning-marker" not in rendered

    @property
    def has_template(self) -> bool:
        return bool(self.tokenizer.chat_template)

    def chat_prompt(self, question: str, system: str | None = None) -> str:
        """The model's own chat template with the generation prompt (system turn only if given).
        A model without a template (a base model) gets the plain layout: its BOS token where its
        tokenizer defines one (the pieces are tokenized without special tokens added, so nothing
        else would put it there), the system prompt if given, and the user turn."""
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
        if self.has_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return (self.tokenizer.bos_token or "") + (f"{system}\n\n" if system else "") + f"{question}\n\n"

    def decode_after(self, last_prompt_id: int, ids: list[int]) -> str:
        """The text of generated `ids` as it continues the prompt: decoded after the prompt's last
        token, since a SentencePiece tokenizer drops the leading space of a sequence's first token."""
        head = self.tokenizer.decode([last_prompt_id], skip_special_tokens=False)
        full = self.tokenizer.decode([last_prompt_id, *ids], skip_special_tokens=False)
        return full[len(head) :] if full.startswith(head) else self.tokenizer.decode(ids, skip_special_tokens=False)

    def clean(self, text: str) -> str:
        """Generated text without the text of any special token (an end-of-turn token a server
        spells out, a role marker a model wrote)."""
        return self._specials.sub("", text) if self._specials else text

    def special_tokens(self) -> str:
        """One line for `--dry-run`: the model's BOS and end-of-turn tokens."""
        tok = self.tokenizer
        bos = f"BOS {tok.bos_token!r}" if tok.bos_token else "no BOS token"
        return f"{bos}; end of turn {tok.eos_token!r}; {'chat template' if self.has_template else 'no chat template: plain layout'}"

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


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts BOS in front of any text it tokenizes with special tokens."""
    return tokenizer.bos_token_id is not None and tokenizer("a").input_ids[:1] == [tokenizer.bos_token_id]
