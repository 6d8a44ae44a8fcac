"""Engines behind one interface (`base.Engine`); `load_engine` shares one instance per model."""

from __future__ import annotations

from ..config import ConfigError, ModelConfig
from .base import Completion, Engine, GenerateRequest, ScoreRequest, ScoreResult

__all__ = ["Completion", "Engine", "GenerateRequest", "ScoreRequest", "ScoreResult", "load_engine", "resolve_model"]


def resolve_model(model: str) -> str:
    """`tiny:<name>` names a model shipped with the package; anything else passes through."""
    if model.startswith("tiny:"):
        from ..tiny import model_path

        try:
            return str(model_path(model.split(":", 1)[1]))
        except (KeyError, ValueError, FileNotFoundError) as err:
            raise ConfigError(f"{model}: {err}") from None
    return model


def load_engine(cfg: ModelConfig, cache: dict | None = None) -> Engine:
    """Create (or reuse from `cache`) the engine serving `cfg.model`.

    Teachers that share a model (the homogeneous setting: one model, three temperatures) and
    a meta-prover that is also a teacher share one loaded copy.
    """
    model = resolve_model(cfg.model)
    key = (cfg.engine, model, cfg.dtype, cfg.device, str(cfg.base_url))
    if cache is not None and key in cache:
        return cache[key]
    if cfg.engine == "transformers":
        from .transformers import TransformersEngine

        engine: Engine = TransformersEngine(model, dtype=cfg.dtype, device=cfg.device)
    elif cfg.engine == "vllm":
        from .vllm import VLLMEngine

        engine = VLLMEngine(model, dtype=cfg.dtype, max_model_len=cfg.max_model_len, tokenizer=cfg.tokenizer, **cfg.engine_kwargs)
    elif cfg.engine in ("openai", "sglang"):
        from .openai import OpenAIEngine
        from .sglang import SGLangEngine

        kind = OpenAIEngine if cfg.engine == "openai" else SGLangEngine
        engine = kind(model, cfg.base_url, tokenizer=resolve_model(cfg.tokenizer) if cfg.tokenizer else None,
                      api_key_env=cfg.api_key_env, max_concurrency=cfg.max_concurrency,
                      request_timeout=cfg.request_timeout, max_retries=cfg.max_retries)
    else:
        raise ConfigError(f"engine {cfg.engine!r} for {cfg.name or cfg.model}: unknown")
    if cache is not None:
        cache[key] = engine
    return engine
