"""Engines behind one contract (`base.Engine`), registered by name in `cord.registry.ENGINES`;
`load_engine` shares one instance per model."""

from __future__ import annotations

import re
from pathlib import Path

from ..config import ModelConfig
from ..errors import ConfigError
from ..registry import ENGINES, MODEL_SOURCES
from .base import Completion, Engine, GenerateRequest, ScoreRequest, ScoreResult

__all__ = [
    "Completion",
    "Engine",
    "GenerateRequest",
    "ScoreRequest",
    "ScoreResult",
    "cache_key",
    "check_engine",
    "check_files",
    "close_engines",
    "load_engine",
    "resolve_model",
]


def resolve_model(model: str) -> str:
    """`<source>:<name>` of a registered model source (`cord.registry.MODEL_SOURCES`, e.g.
    `tiny:tiny-reader`) is that source's local folder; anything else passes through."""
    source, sep, name = model.partition(":")
    if sep and source in MODEL_SOURCES:
        try:
            return str(MODEL_SOURCES.load(source)(name))
        except (KeyError, ValueError, FileNotFoundError) as err:
            text = err.args[0] if isinstance(err, KeyError) and err.args else err  # str(KeyError) adds quotes
            raise ConfigError(f"{model}: {text}") from None
    return model


def check_engine(cfg: ModelConfig, where: str) -> None:
    """The engine's own refusals for `cfg` (before any model loads)."""
    complaint = ENGINES.unknown(cfg.engine, f"{where}.engine")
    if complaint:
        raise ConfigError(complaint)
    ENGINES.load(cfg.engine).check(cfg, where)


def check_files(cfg: ModelConfig, where: str, servers: bool = True) -> None:
    """The model (and tokenizer) named by `cfg` can be found on this machine or the hub, and (with
    `servers`) a server engine's server answers: run just before engines load, apart from
    `check_engine`, which reads the settings only."""
    engine = ENGINES.load(cfg.engine)
    for key in engine.files(cfg):
        check_findable(getattr(cfg, key), f"{where}.{key}")
    if servers:
        engine.check_server(cfg, where)


HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")
HUB_TIMEOUT = 5.0  # seconds to ask the hub whether a model exists


def check_findable(model: str, where: str) -> None:
    """A model that is neither a local folder, a registered source nor in the hub cache must exist
    on the hub: asked once, with a short timeout, so a name that cannot be found is one line naming
    the field in seconds, not a minute of the hub client's retries. HF_HUB_OFFLINE: no asking."""
    if ":" in model or Path(model).expanduser().exists() or not HUB_ID.match(model):
        return
    from huggingface_hub import constants, model_info, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    if isinstance(try_to_load_from_cache(model, "config.json"), str) or isinstance(
        try_to_load_from_cache(model, "tokenizer_config.json"), str
    ):
        return
    if constants.HF_HUB_OFFLINE:
        raise ConfigError(f"{where}: {model!r} is not a local folder and not in the hub cache (HF_HUB_OFFLINE is set)")
    try:
        model_info(model, timeout=HUB_TIMEOUT)
    except RepositoryNotFoundError:
        raise ConfigError(f"{where}: {model!r} is not a local folder and no hub model has that name") from None
    except HfHubHTTPError:
        return  # gated or rate-limited: it exists; loading says the rest
    except Exception as err:  # no network: nothing to download it from
        raise ConfigError(
            f"{where}: {model!r} is not a local folder, not in the hub cache, and the hub could not be reached "
            f"({type(err).__name__}); download it first or give a local path"
        ) from None


def cache_key(cfg: ModelConfig) -> tuple:
    """What makes two models one loaded engine: the same engine, weights, dtype, device and server."""
    return (cfg.engine, resolve_model(cfg.model), cfg.gguf_file, cfg.dtype, cfg.device, str(cfg.base_url))


def load_engine(cfg: ModelConfig, cache: dict | None = None) -> Engine:
    """Create (or reuse from `cache`) the engine serving `cfg.model`, whose settings `check_engine`
    has checked (`run.prepare` checks every model of a run before any loads).

    Teachers that share a model (the homogeneous setting: one model, three temperatures) and
    a meta-prover that is also a teacher share one loaded copy.
    """
    key = cache_key(cfg)
    if cache is not None and key in cache:
        return cache[key]
    engine = ENGINES.load(cfg.engine).from_config(cfg, key[1])
    engine.model_name = cfg.model  # what an error about this engine names
    if cache is not None:
        cache[key] = engine
    return engine


def close_engines(cache: dict) -> None:
    """Shut down every engine in `cache` (vLLM's worker processes, server connections) and empty it."""
    for engine in {id(e): e for e in cache.values()}.values():
        engine.close()
    cache.clear()
