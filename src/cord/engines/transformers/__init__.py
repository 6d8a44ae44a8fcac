"""The local transformers engine, one concern a file: the engine (`engine.py`), the loaded model and
its forward passes (`model.py`), the decode loop (`decode.py`) with per-request sampling
(`sampling.py`), prefix scoring (`score.py`), and kept KV, its chains and padding (`kv.py`)."""

from .engine import TransformersEngine

__all__ = ["TransformersEngine"]
