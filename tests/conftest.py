import pytest


@pytest.fixture(scope="session")
def random_model(tmp_path_factory) -> str:
    """A randomly initialised tiny Llama with the shipped tokenizer layout (for exact-math tests)."""
    from cord.tiny.random_model import build_random_model

    return build_random_model(tmp_path_factory.mktemp("random-llama"))


@pytest.fixture(scope="session")
def engine_cache() -> dict:
    """Loaded engines shared across tests (models load once)."""
    return {}
