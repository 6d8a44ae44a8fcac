"""`cord train`: supervised fine-tuning of a student on a `cord export`, with TRL's SFTTrainer.

    cord train --data EXPORT --model M --out DIR [--config recipes/student/r1-qwen-7b.yaml] [key=value ...]

Every row becomes a plain-text prompt / completion pair: the prompt is the student's own chat
template around the user turn (generation prompt included), the completion is the assistant turn
as exported (`<think>` reasoning `</think>` answer) and the end-of-turn token; loss is on the
completion only. Rendering the prompt ourselves, instead of handing TRL the conversation, keeps
the reasoning: some chat templates (R1-Distill's, QwQ's) drop `<think>...</think>` from the
assistant turns they render, so a conversational dataset would train those students on the final
answers alone; training says when the student's does. A template whose generation prompt already opens `<think>`
gets the completion without its own `<think>` line. TRL tokenizes the text with the tokenizer's
special tokens, so a prompt whose template writes BOS loses that BOS text when the tokenizer adds
one itself (R1-Distill-Qwen's does): every row starts with exactly one BOS, as in evaluation.

The export's `user_instruction` (what follows the question in its user turns) is written to
OUT/cord_train.json, where `cord eval-student` reads it, so the student is evaluated on the user
turn it was trained on.

Defaults are the paper's student recipe (5 epochs, learning rate 5e-6, cosine, batch 8, max
length 20,480 tokens); `recipes/student/tiny.yaml` trains a tiny student on a CPU in minutes.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from ..command import command_parser
from ..config import Section, Text, load, to_dict
from ..data.files import FILE_SUFFIXES, read_rows
from ..engines import resolve_model
from ..engines.chat import ChatTokenizer
from ..errors import ConfigError
from ..prompts import THINK_OPEN, opens_think


class TrainConfig(Section):
    model: Text = ""  # hub id, local folder, or tiny:<name>
    data: Text = ""  # a `cord export` (.jsonl, .parquet or a datasets folder), messages or prompt-completion
    output_dir: Text = "runs/student"
    epochs: float = 5.0
    learning_rate: float = 5e-6
    lr_scheduler: Text = "cosine"
    warmup_ratio: float = 0.0  # share of the steps with a linear warmup
    batch_size: int = 8  # effective: per_device_batch_size x gradient accumulation x devices
    per_device_batch_size: int = 1
    max_length: int = 20480  # longer rows are cut (their count is printed)
    max_steps: int = -1  # > 0: stop after this many optimizer steps, whatever `epochs` says
    seed: int = 0
    dtype: Text = "auto"  # auto: bfloat16 on CUDA, float32 on CPU
    gradient_checkpointing: bool = True  # on CUDA only (memory for 20K-token rows)
    logging_steps: int = 10
    save_strategy: Text = "epoch"  # "no" for tiny runs; checkpoints let a long run resume
    report_to: Text = "none"  # e.g. wandb, tensorboard


def load_train_config(path: str | None, overrides: list[str]) -> TrainConfig:
    cfg = load(TrainConfig, path, overrides)
    for key in ("model", "data"):
        if not getattr(cfg, key):
            raise ConfigError(f"{key}: required (--{key})")
    for key in ("batch_size", "per_device_batch_size", "max_length", "logging_steps"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{key}: must be >= 1, got {getattr(cfg, key)}")
    if cfg.batch_size % cfg.per_device_batch_size:
        raise ConfigError(f"batch_size: {cfg.batch_size} is not a multiple of per_device_batch_size {cfg.per_device_batch_size}")
    if cfg.learning_rate <= 0 or cfg.epochs <= 0:
        raise ConfigError("learning_rate and epochs: must be > 0")
    return cfg


def read_export(path: str) -> list[dict]:
    """The rows of an export: a local file or datasets folder, or, for an `owner/name` that is no
    local path, the hub repository `cord export --push-to-hub` uploaded it to."""
    p = Path(path)
    if not p.exists() and p.suffix not in FILE_SUFFIXES and path.count("/") == 1:
        rows = read_hub_export(path)
    elif p.is_dir() or p.suffix.lower() in FILE_SUFFIXES:
        try:
            rows = [row for _, row in read_rows(p)]
        except OSError as err:
            raise ConfigError(f"{path}: could not read ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    else:
        raise ConfigError(f"{path}: not found (data: a .jsonl, .json, .parquet, datasets folder or hub repository from `cord export`)")
    if not rows:
        raise ConfigError(f"{path}: no rows")
    return rows


def read_hub_export(repo: str) -> list[dict]:
    """The train split of a dataset repository on the hub (needs network, unless cached)."""
    import datasets

    datasets.disable_progress_bars()
    try:
        return list(datasets.load_dataset(repo, split="train"))
    except Exception as err:
        raise ConfigError(f"{repo}: not a local export, and could not load it from the hub ({type(err).__name__})") from None


def conversation(row: dict, where: str) -> tuple[list[dict], str]:
    """(prompt messages, assistant text) of a `messages` or `prompt-completion` row."""
    if "messages" in row:
        messages = row["messages"]
        prompt, last = messages[:-1], messages[-1] if messages else {}
    elif "prompt" in row and "completion" in row and isinstance(row["prompt"], list):
        prompt, last = row["prompt"], (row["completion"] or [{}])[-1]
    else:
        raise ConfigError(f"{where}: expected a `messages` or `prompt-completion` row (cord export --format messages)")
    if last.get("role") != "assistant" or not prompt:
        raise ConfigError(f"{where}: the last message must be the assistant's, after at least one prompt message")
    return prompt, last["content"]


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts BOS in front of any text it tokenizes with special tokens."""
    return tokenizer.bos_token_id is not None and tokenizer("a").input_ids[:1] == [tokenizer.bos_token_id]


def user_instruction(rows: list[dict]) -> str | None:
    """The export's one user instruction ("" for bare questions); None for data cord did not export
    or rows that disagree."""
    found = {row.get("user_instruction") for row in rows}
    return found.pop() if len(found) == 1 and None not in found else None


def text_pairs(rows: list[dict], tokenizer, data: str) -> list[dict]:
    """Plain-text prompt / completion pairs in the student's chat template (see the module doc)."""
    if tokenizer.chat_template is None:
        raise ConfigError("model: its tokenizer has no chat template")
    strip_bos = tokenizer.bos_token if adds_bos(tokenizer) else None
    pairs = []
    for i, row in enumerate(rows):
        prompt_messages, answer = conversation(row, f"{data} row {i}")
        prompt = tokenizer.apply_chat_template(prompt_messages, tokenize=False, add_generation_prompt=True)
        if opens_think(prompt) and answer.startswith(THINK_OPEN):
            answer = answer[len(THINK_OPEN) :]
        if strip_bos and prompt.startswith(strip_bos):
            prompt = prompt[len(strip_bos) :]
        pairs.append({"prompt": prompt, "completion": answer + tokenizer.eos_token})
    return pairs


@dataclass
class Prepared:
    """What training reads, before any model loads: the rows, their prompt / completion texts in
    the student's template, and each row's token count as TRL tokenizes it."""

    rows: list[dict]
    pairs: list[dict]
    lengths: list[int]
    tokenizer: object


def prepare(cfg: TrainConfig, log=print) -> Prepared:
    from transformers import AutoTokenizer

    rows = read_export(cfg.data)
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(cfg.model))
    except OSError as err:
        raise ConfigError(f"model: could not load the tokenizer of {cfg.model} ({str(err).splitlines()[0]})") from None
    pairs = text_pairs(rows, tokenizer, cfg.data)
    if log and ChatTokenizer.from_tokenizer(tokenizer).drops_reasoning():
        log(
            f"note: {cfg.model}'s chat template drops <think>...</think> from assistant turns it renders; cord train keeps the "
            "reasoning (it renders prompt and completion itself), a trainer given the conversations would not"
        )
    lengths = [len(tokenizer(p["prompt"] + p["completion"]).input_ids) for p in pairs]  # as TRL tokenizes them
    return Prepared(rows, pairs, lengths, tokenizer)


def optimizer_steps(cfg: TrainConfig, rows: int, devices: int) -> int:
    """The optimizer steps the trainer will take (transformers' Trainer: batches per epoch over
    the gradient accumulation, rounded up, times the epochs; or max_steps)."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    batches = math.ceil(rows / (cfg.per_device_batch_size * devices))
    accumulation = cfg.batch_size // cfg.per_device_batch_size
    return math.ceil(cfg.epochs * max(math.ceil(batches / accumulation), 1))


def loss_mask(tokenizer, pair: dict) -> tuple[list[int], int]:
    """(token ids, where the loss starts) of one row, as TRL masks a prompt-completion row: the
    completion starts where the tokenized prompt and prompt + completion part."""
    prompt = tokenizer(pair["prompt"]).input_ids
    ids = tokenizer(pair["prompt"] + pair["completion"]).input_ids
    start = next((i for i, (a, b) in enumerate(zip(prompt, ids)) if a != b), min(len(prompt), len(ids)))
    return ids, start


def dry_run(cfg: TrainConfig) -> str:
    """What `cord train` would do, printed before any model loads: the first row as trained, with
    the part that carries the loss marked, the token counts and the optimizer steps."""
    import torch

    data = prepare(cfg, log=None)
    ids, start = loss_mask(data.tokenizer, data.pairs[0])
    decode = lambda part: data.tokenizer.decode(part, skip_special_tokens=False)
    devices = max(torch.cuda.device_count(), 1)
    steps = optimizer_steps(cfg, len(data.pairs), devices)
    over = sum(n > cfg.max_length for n in data.lengths)
    instruction = user_instruction(data.rows)
    lines = [
        f"cord train --dry-run: {cfg.model} on {cfg.data}; nothing is loaded beyond the tokenizer, nothing is written",
        f"rows: {len(data.pairs)}; user instruction: {instruction!r}" if instruction is not None else f"rows: {len(data.pairs)}",
        f"the first row as trained ({len(ids)} tokens):",
        f"--- no loss: the prompt ({start} tokens) ---",
        decode(ids[:start]),
        f"--- loss: the completion ({len(ids) - start} tokens) ---",
        decode(ids[start:]),
        "---",
        f"tokens per row: longest {max(data.lengths):,}, mean {sum(data.lengths) / len(data.lengths):,.0f}; "
        f"{over} of {len(data.lengths)} rows exceed max_length {cfg.max_length:,} and would be cut",
        f"optimizer steps: {steps:,} (batch {cfg.batch_size} = {cfg.per_device_batch_size} per device x "
        f"{cfg.batch_size // cfg.per_device_batch_size} accumulated x {devices} device(s), {cfg.epochs:g} epochs"
        f"{f', max_steps {cfg.max_steps}' if cfg.max_steps > 0 else ''})",
    ]
    return "\n".join(lines)


def train(cfg: TrainConfig, log=print) -> dict:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM

    try:
        from trl import SFTConfig, SFTTrainer
    except ImportError:
        raise ConfigError("cord train needs TRL: pip install 'cord-distill[train]'") from None

    model_path = resolve_model(cfg.model)
    data = prepare(cfg, log)
    rows, pairs, lengths, tokenizer = data.rows, data.pairs, data.lengths, data.tokenizer
    cut = sum(n > cfg.max_length for n in lengths)
    cuda = torch.cuda.is_available()
    dtype = {"auto": torch.bfloat16 if cuda else torch.float32, "bfloat16": torch.bfloat16, "float32": torch.float32}.get(cfg.dtype)
    if dtype is None:
        raise ConfigError(f"dtype: {cfg.dtype!r} is not one of auto, bfloat16, float32")
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    args = SFTConfig(
        output_dir=cfg.output_dir,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a share of the steps
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.batch_size // cfg.per_device_batch_size,
        max_length=cfg.max_length,
        completion_only_loss=True,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=dtype == torch.bfloat16,
        gradient_checkpointing=cfg.gradient_checkpointing and cuda,
        logging_steps=cfg.logging_steps,
        save_strategy=cfg.save_strategy,
        report_to=cfg.report_to,
        use_cpu=not cuda,
        disable_tqdm=True,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list(pairs), processing_class=tokenizer)
    result = trainer.train()
    trainer.save_model(cfg.output_dir)
    tokenizer.save_pretrained(cfg.output_dir)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    info = {
        "model": cfg.model,
        "data": cfg.data,
        "rows": len(pairs),
        "user_instruction": user_instruction(rows),
        "rows_cut_at_max_length": cut,
        "max_row_tokens": max(lengths),
        "steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "first_logged_loss": losses[0] if losses else None,
        "last_logged_loss": losses[-1] if losses else None,
        "config": to_dict(cfg),
    }
    Path(cfg.output_dir, "cord_train.json").write_text(json.dumps(info, indent=2) + "\n")
    if log:
        log(f"trained {cfg.model} on {len(pairs)} rows for {info['steps']} steps (loss {result.training_loss:.4f}) -> {cfg.output_dir}")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(prog="cord train", description="Fine-tune a student on a `cord export` (TRL SFTTrainer).")
    parser.add_argument("--config", "-c", help="a student recipe YAML (e.g. recipes/student/tiny.yaml)")
    parser.add_argument("--data", help="the export; sets data")
    parser.add_argument("--model", help="the student: hub id, folder, or tiny:<name>; sets model")
    parser.add_argument("--out", help="where the trained model goes; sets output_dir")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the first row as trained (loss part marked), token counts and optimizer steps"
    )
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. epochs=3 learning_rate=1e-5")
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    for key, value in (("data", args.data), ("model", args.model), ("output_dir", args.out)):
        if value:
            overrides.append(f"{key}={value}")
    cfg = load_train_config(args.config, overrides)
    if args.dry_run:
        print(dry_run(cfg))
        return 0
    train(cfg, log=lambda line: print(line, file=sys.stderr))
    return 0
