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


@pytest.fixture(scope="session")
def kept_run(tmp_path_factory):
    """CoRD on 8 tiny problems keeping the 3 best trajectories and every step's losing candidates
    (shared by the export and report tests; copy it before changing it)."""
    from cord.config import load_config
    from cord.run import run
    from helpers import ROOT

    out = tmp_path_factory.mktemp("kept") / "cord-run"
    overrides = [f"output_dir={out}", "data.tiny.n=8", "data.tiny.seed=3", "search.keep_top_k=3", "search.keep_candidates=true"]
    run(load_config(ROOT / "recipes" / "tiny-hetero.yaml", overrides), progress=False)
    return out
