import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The project's evaluation sets live beside the checkout (../shared/data), never in the repo.
SHARED_DATA = Path(os.environ.get("CORD_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shipped(*names: str) -> bool:
    from cord.tiny import MODELS_DIR

    return all((MODELS_DIR / n / "model.safetensors").is_file() for n in names)


@pytest.fixture(scope="session")
def random_model(tmp_path_factory) -> str:
    """A randomly initialised tiny Llama with the shipped tokenizer layout (for exact-math tests)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from cord.tiny.tokenizer import build_tokenizer, default_corpus, save

    out = tmp_path_factory.mktemp("random-llama")
    tok = build_tokenizer(default_corpus(n=300))
    save(tok, out)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=128, max_position_embeddings=1024, tie_word_embeddings=True,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def engine_cache() -> dict:
    """Loaded engines shared across tests (models load once)."""
    return {}


TINY_TEACHERS = ("tiny-addsub", "tiny-mul", "tiny-div")
needs_tiny = pytest.mark.skipif(not shipped(*TINY_TEACHERS, "tiny-reader"), reason="shipped tiny models not trained yet")


def tiny_overrides(out: Path, n: int = 4, **search) -> list[str]:
    items = [f"output_dir={out}", f"data.tiny.n={n}", "data.tiny.seed=123", "search.problems_in_flight=8"]
    items += [f"search.{k}={v}" for k, v in search.items()]
    return items
