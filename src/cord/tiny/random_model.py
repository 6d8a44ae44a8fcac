"""A randomly initialised Llama with the shipped tiny tokenizer: for exact-math tests and for
cost benchmarks, where what matters is the shape and the length, not what the weights learned.
Tests and benchmarks build it with this one function."""

from __future__ import annotations

from pathlib import Path


def build_random_model(
    path: str | Path, hidden: int = 64, layers: int = 2, head_dim: int = 32, mlp: int = 2, max_positions: int = 1024, seed: int = 0
) -> str:
    """Write the model and tokenizer into `path` (a Hugging Face folder); return the path.

    hidden // head_dim attention heads, half as many key/value heads (grouped-query attention, as
    in Qwen2 and Llama 3), an MLP `mlp` times as wide as the hidden size."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from .tokenizer import build_tokenizer, default_corpus, save

    tok = build_tokenizer(default_corpus(n=300))
    save(tok, path)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // head_dim,
        num_key_value_heads=max(1, hidden // head_dim // 2),
        intermediate_size=mlp * hidden,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    return str(path)
