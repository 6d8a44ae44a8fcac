"""The transformers engine's model: loading (device, dtype, the tokenizer and chat template, clear
errors for a missing folder) and the two forward passes decoding and scoring make."""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from ...errors import ConfigError
from ..chat import ChatTokenizer, gguf_location
from .kv import growing_cache, growing_layer_class


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    except KeyError:
        raise ConfigError(f"dtype: {dtype!r} is not one of auto, float32, float16, bfloat16") from None


class LoadedModel:
    """A causal LM on its device with its tokenizer: what the decode loop and the scorer share."""

    def __init__(self, model: str, dtype: str = "auto", device: str = "auto", loaded=None, gguf_file: str | None = None):
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self.device = resolve_device(device)
        folder, gguf_file = gguf_location(model, gguf_file)
        local = Path(folder).expanduser()
        if gguf_file and (local.exists() or folder.startswith((".", "/", "~"))) and not (local / gguf_file).is_file():
            raise ConfigError(f"{local / gguf_file}: GGUF file not found")
        if not gguf_file and (model.startswith((".", "/", "~")) or local.exists()) and not (local / "config.json").is_file():
            raise ConfigError(f"{model}: model folder not found (no config.json)")
        self.chat = ChatTokenizer(folder, gguf_file)
        self.tokenizer = self.chat.tokenizer
        extra = {"gguf_file": gguf_file} if gguf_file else {}  # dequantized as it loads (needs the gguf package)
        try:  # `loaded`: a model already in memory (benchmarks of random models at real shapes); `model` gives the tokenizer
            self.model = loaded or AutoModelForCausalLM.from_pretrained(folder, dtype=resolve_dtype(dtype, self.device), **extra)
        except Exception as err:
            raise ConfigError(f"{model}: could not load model ({type(err).__name__}: {str(err).splitlines()[0]})") from None
        self.model.to(self.device).eval()
        self.pad = self.tokenizer.pad_token_id
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "past_key_values" if "past_key_values" in params else "cache"
        self.keeps_last_logits = "logits_to_keep" in params
        self._growing_layer = growing_layer_class()
        self.stop_ids = {i for i in (self.tokenizer.eos_token_id, self.tokenizer.pad_token_id) if i is not None}
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        self.stop_ids |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])

    @property
    def context_length(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    def ids(self, piece: str) -> list[int]:
        return self.chat.ids(piece)

    def new_cache(self, past=None):
        """A cache that grows in place as decoding writes to it, started from `past`."""
        return growing_cache(self._growing_layer, past)

    def last_logits(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache) -> torch.Tensor:
        kwargs = {self._cache_kw: cache, "attention_mask": mask, "position_ids": positions, "use_cache": True}
        if self.keeps_last_logits:
            kwargs["logits_to_keep"] = 1  # the vocabulary's logits for the last position only
        return self.model(input_ids=ids, **kwargs).logits[:, -1]

    def forward(self, ids: torch.Tensor, past: list[tuple[torch.Tensor, torch.Tensor]] | None, mask=None, positions=None, keep: int = 0):
        """Logits (float) and the per-layer KV after `ids`; with `keep`, the logits of the last
        `keep` positions only (a 152K-token vocabulary makes every position's logits the largest
        tensor of a scoring pass: 64 rows x 300 tokens are 12 GB in float32)."""
        from transformers import DynamicCache

        cache = DynamicCache(ddp_cache_data=past) if past else DynamicCache()
        extra = {} if mask is None else {"attention_mask": mask, "position_ids": positions}
        if keep and self.keeps_last_logits:
            extra["logits_to_keep"] = keep
        out = self.model(input_ids=ids, use_cache=True, **{self._cache_kw: cache}, **extra)
        layers = [(layer.keys, layer.values) for layer in cache.layers]  # updated in place by the model
        return (out.logits[:, -keep:] if keep else out.logits).float(), layers
