"""Engines behind one contract (`base.Engine`), registered by name in `cord.registry.ENGINES`;
`load_engine` shares one instance per model."""

from __future__ import annotations

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
            raise ConfigError(f"{model}: {err}") from None
    return model


def check_engine(cfg: ModelConfig, where: str) -> None:
    """The engine's own refusals for `cfg` (before any model loads)."""
    complaint = ENGINES.unknown(cfg.engine, f"{where}.engine")
    if complaint:
        raise ConfigError(complaint)
    ENGINES.load(cfg.engine).check(cfg, where)


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
    if cache is not None:
        cache[key] = engine
    return engine


def close_engines(cache: dict) -> None:
    """Shut down every engine in `cache` (vLLM's worker processes, server connections) and empty it."""
    for engine in {id(e): e for e in cache.values()}.values():
        engine.close()
    cache.clear()
