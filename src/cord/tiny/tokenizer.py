"""The one byte-level BPE tokenizer shared by every tiny model.

* digits are split one per token (a digit may carry its leading space: ``" 7"``);
* special tokens: ``<|endoftext|>`` (pad), ``<|im_start|>``, ``<|im_end|>`` (eos),
  ``<think>``, ``</think>``;
* ChatML chat template; with ``add_generation_prompt`` the render is
  ``[<|im_start|>system\\n{system}<|im_end|>\\n]<|im_start|>user\\n{q}<|im_end|>\\n<|im_start|>assistant\\n``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from ..prompts import ANSWER_LEAD, STEP_INSTRUCTION, THINK, THINK_CLOSE, user_turn

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [PAD_TOKEN, IM_START, IM_END, THINK, THINK_CLOSE]

SPLIT_PATTERN = r" ?\d| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def render_chat(question: str, system: str | None = None, add_generation_prompt: bool = True) -> str:
    """Pure-Python equivalent of the chat template (used for training text)."""
    out = ""
    if system is not None:
        out += f"{IM_START}system\n{system}{IM_END}\n"
    out += f"{IM_START}user\n{question}{IM_END}\n"
    if add_generation_prompt:
        out += f"{IM_START}assistant\n"
    return out


def render_prompt(question: str) -> str:
    """The chat prompt every tiny model was trained on: the question and the default step
    instruction (search.step_instruction) in the user turn, no system message."""
    return render_chat(user_turn(question, STEP_INSTRUCTION))


def build_backend(corpus: Iterable[str], vocab_size: int = 384):
    """Train a ``tokenizers.Tokenizer`` (byte-level BPE, digit split) on ``corpus``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    return tok


def wrap(backend):
    """A ``PreTrainedTokenizerFast`` around a trained backend, with specials and template."""
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        unk_token=None,
        bos_token=None,
        clean_up_tokenization_spaces=False,
        model_max_length=512,
    )
    hf.chat_template = CHAT_TEMPLATE
    hf.padding_side = "left"
    return hf


def save(hf, out_dir) -> Path:
    """Save tokenizer files plus ``chat_template.jinja`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(str(out))
    # Always ship the template as its own file (transformers >= 4.5x and 5.x read it).
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.exists() else {}
    # A class name that every transformers version (4.x and 5.x) resolves.
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg["eos_token"] = IM_END
    cfg["pad_token"] = PAD_TOKEN
    cfg.pop("chat_template", None)
    for loader_state in ("is_local", "local_files_only"):  # written by a reloaded tokenizer; not config
        cfg.pop(loader_state, None)
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 384):
    """Trained, wrapped tokenizer."""
    return wrap(build_backend(corpus, vocab_size=vocab_size))


def default_corpus(seed: int = 0, n: int = 3000) -> list[str]:
    """Seeded training text for the tokenizer: problems, traces, meta-prover texts."""
    from .tasks import SKILLS, assistant_text, generate_problems, reasoning_text

    texts = []
    for mix in ("mixed",) + SKILLS:
        for row in generate_problems(n // 4, seed + 1000, mix):
            texts.append(render_prompt(row["problem"]) + assistant_text(row) + IM_END)
            texts.append(reasoning_text(row["reference_steps"]) + ANSWER_LEAD + row["answer"])
    texts.append(render_chat("q", system="You are a helpful assistant."))
    return texts
