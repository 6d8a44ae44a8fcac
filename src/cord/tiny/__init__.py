"""Embedded tiny models: heterogeneous step-skill teachers and a meta-prover (a plug-in).

They run CoRD on a CPU with no network.  The shipped folders are standard Hugging Face
model folders (Llama architecture) under :data:`MODELS_DIR`; see ``MODELS.md``.  The core never
imports this package: `cord.registry` names what it offers (the ``tiny:`` model names, the
generated problems and their trace checker), and ``cord demo`` (``demo.py``) runs on it.
"""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent / "models"

# name -> role.  Teachers write ``### Step k. a op b = c`` lines inside <think>.
MODEL_ROLES: dict[str, str] = {
    "tiny-addsub": "teacher (heterogeneous): specialist for add/subtract steps",
    "tiny-mul": "teacher (heterogeneous): specialist for double/triple steps",
    "tiny-div": "teacher (heterogeneous): specialist for split-into-equal-parts steps",
    "tiny-generalist": "teacher (homogeneous setting, one model at temperatures 0.5/0.6/0.7): a deliberately under-trained generalist",
    "tiny-reader": "meta-prover: reads a (partial) reasoning prefix and states the answer it implies",
}
MODEL_NAMES: tuple[str, ...] = tuple(MODEL_ROLES)
HETEROGENEOUS_TEACHERS: tuple[str, ...] = ("tiny-addsub", "tiny-mul", "tiny-div")
HOMOGENEOUS_TEACHER = "tiny-generalist"
HOMOGENEOUS_TEMPERATURES: tuple[float, ...] = (0.5, 0.6, 0.7)
META_PROVER = "tiny-reader"
TEACHER_TEMPERATURE = 0.6


def model_path(name: str) -> Path:
    """Folder of the shipped tiny model ``name``.

    Raises ``KeyError`` for an unknown name (listing the known ones) and
    ``FileNotFoundError`` when the folder has not been trained/shipped.
    """
    if name not in MODEL_ROLES:
        known = ", ".join(MODEL_NAMES)
        raise KeyError(f"unknown tiny model {name!r}; known tiny models: {known}")
    path = MODELS_DIR / name
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"tiny model {name!r} is not present at {path}; train it with `cord train-tiny --only {name}`")
    return path


__all__ = [
    "HETEROGENEOUS_TEACHERS",
    "HOMOGENEOUS_TEACHER",
    "HOMOGENEOUS_TEMPERATURES",
    "META_PROVER",
    "MODELS_DIR",
    "MODEL_NAMES",
    "MODEL_ROLES",
    "TEACHER_TEMPERATURE",
    "model_path",
]
