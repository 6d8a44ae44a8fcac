"""`cord train`: fine-tune a model on a `cord export` with TRL's SFTTrainer: a student on the
assistant turns (task sft, student/sft.py), or a process reward model on stepwise rows (task prm,
student/prm.py) for `search.selection: prm`.

    cord train --data EXPORT --model M --out DIR [--config recipes/student/r1-qwen-7b.yaml] [key=value ...]

Any other field of TRL's `SFTConfig` passes through (`weight_decay=0.1`), and `lora: {...}` trains
a peft LoRA adapter instead of every weight (student/trl_options.py).

The export's `user_instruction` (what follows the question in its user turns) is written to
OUT/cord_train.json, where `cord eval-student` reads it, so the student is evaluated on the user
turn it was trained on; a PRM's cord_train.json names the tag and verdicts the search must use.

Defaults are the paper's student recipe (5 epochs, learning rate 5e-6, cosine, batch 8, max
length 20,480 tokens); `recipes/student/tiny.yaml` trains a tiny student on a CPU in minutes,
`recipes/student/tiny-prm.yaml` a tiny PRM.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..command import command_parser
from ..config import Located, Section, Text, apply_override, from_dict, read_yaml, to_dict
from ..config.search import SearchConfig
from ..data.files import FILE_SUFFIXES, read_rows
from ..engines import resolve_model
from ..engines.chat import ChatTokenizer
from ..errors import ConfigError
from . import prm, sft
from .sft import adds_bos, text_pairs  # noqa: F401  (cord.student.train's names before sft.py)
from .trl_options import (
    as_number,
    coerced,
    extras_lines,
    lift_sft_keys,
    lora_config,
    lora_fields,
    lora_problem,
    resolve_dtype,
    sft_fields,
    sft_problem,
    trainer_arguments,
)

PRM_DEFAULTS = SearchConfig.model_fields  # the prm selection's tag and verdicts are the PRM's defaults


class TrainConfig(Section):
    """`cord train`'s settings: cord's own fields, any other field of trl.SFTConfig (top-level in a
    recipe or on the command line, kept under `sft`), and an optional LoRA adapter."""

    model: Text = Field("", description="the model to fine-tune: hub id, local folder, or tiny:<name>")
    data: Text = Field(
        "",
        description="a `cord export` (.jsonl, .json, .parquet, a datasets folder or hub repository): messages or "
        "prompt-completion rows (sft), or stepwise rows with prompt, completions, labels (prm)",
    )
    task: Literal["auto", "sft", "prm"] = Field(
        "auto",
        description="sft: a student on the assistant turns; prm: a process reward model for search.selection: prm, "
        "in Math-Shepherd's layout with the loss on the verdicts; auto: prm when the first row is stepwise",
    )
    output_dir: Text = Field("runs/student", description="where the trained model (or LoRA adapter) and cord_train.json go")
    epochs: float = Field(5.0, description="passes over the data (trl.SFTConfig num_train_epochs)")
    learning_rate: float = Field(5e-6, description="peak learning rate")
    lr_scheduler: Text = Field("cosine", description="learning-rate schedule (trl.SFTConfig lr_scheduler_type), e.g. cosine, linear")
    warmup_ratio: float = Field(0.0, description="share of the steps with a linear warmup")
    batch_size: int = Field(8, description="effective batch: per_device_batch_size x gradient accumulation x devices")
    per_device_batch_size: int = Field(1, description="rows per device per forward pass; batch_size / this is the accumulation")
    max_length: int = Field(20480, description="tokens per row; longer rows are cut (their count is printed)")
    max_steps: int = Field(-1, description="> 0: stop after this many optimizer steps, whatever `epochs` says")
    seed: int = Field(0, description="the seed of the model's new weights, dropout and the data order")
    dtype: Text = Field("auto", description="auto (bfloat16 on CUDA, float32 on CPU), bfloat16 or float32")
    gradient_checkpointing: bool = Field(True, description="on CUDA only (memory for 20K-token rows)")
    logging_steps: int = Field(10, description="optimizer steps between logged losses")
    save_strategy: Text = Field("epoch", description='checkpoints: "epoch", "steps" or "no" (tiny runs); checkpoints let a long run resume')
    report_to: Text = Field("none", description="where the trainer logs, e.g. wandb, tensorboard")
    prm_step_tag: Text = Field(
        PRM_DEFAULTS["prm_step_tag"].default, description="task prm: what follows each step (as search.prm_step_tag, which must match)"
    )
    prm_good: Text = Field(PRM_DEFAULTS["prm_good"].default, description="task prm: the verdict token of a good step (search.prm_good)")
    prm_bad: Text = Field(PRM_DEFAULTS["prm_bad"].default, description="task prm: the verdict token of a bad step (search.prm_bad)")
    sft: dict[str, Any] = Field(
        default_factory=dict,
        description="any other trl.SFTConfig field, e.g. {weight_decay: 0.1}; written top-level (weight_decay=0.1) it lands here. "
        "Fields cord sets from its own (num_train_epochs: epochs, ...) are refused, naming cord's",
    )
    lora: dict[str, Any] | None = Field(
        None,
        description="train a LoRA adapter instead of every weight: peft.LoraConfig fields, e.g. {r: 16, lora_alpha: 32}; "
        "cord's defaults r 16, lora_alpha 32, lora_dropout 0.05, target_modules all-linear; {} takes them all",
    )
    merge_lora: bool = Field(
        False, description="with lora: write the model with the adapter merged in (loads in every engine, vLLM's too), not the adapter"
    )

    @field_validator("epochs", "learning_rate", "warmup_ratio", mode="before")
    @classmethod
    def _numbers(cls, value: Any) -> Any:
        return as_number(value)

    @field_validator("save_strategy", mode="before")
    @classmethod
    def _no(cls, value: Any) -> Any:
        return "no" if value is False else value  # YAML 1.1 reads `save_strategy=no` as false

    @field_validator("sft")
    @classmethod
    def _sft_fields(cls, sft: dict[str, Any]) -> dict[str, Any]:
        for key, value in sft.items():
            problem = sft_problem(key, value, cls.model_fields)
            if problem:
                raise Located(key, problem)
        return {key: coerced(sft_fields()[key], value) for key, value in sft.items()}

    @field_validator("lora")
    @classmethod
    def _lora_fields(cls, lora: dict[str, Any] | None) -> dict[str, Any] | None:
        for key, value in (lora or {}).items():
            problem = lora_problem(key, value)
            if problem:
                raise Located(key, problem)
        return None if lora is None else {key: coerced(lora_fields()[key], value) for key, value in lora.items()}

    @model_validator(mode="after")
    def _merge_needs_lora(self) -> TrainConfig:
        if self.merge_lora and self.lora is None:
            raise Located("merge_lora", "needs a lora section (lora: {} for cord's defaults)")
        return self


def load_train_config(path: str | None, overrides: list[str]) -> TrainConfig:
    """The settings from a recipe (optional) and dotted overrides; trl.SFTConfig fields may be
    written top-level (`weight_decay=0.1`)."""
    data = read_yaml(path) if path is not None else {}
    for item in overrides:
        apply_override(data, item)
    cfg = from_dict(TrainConfig, lift_sft_keys(data, TrainConfig.model_fields))
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


def user_instruction(rows: list[dict]) -> str | None:
    """The export's one user instruction ("" for bare questions); None for data cord did not export
    or rows that disagree."""
    found = {row.get("user_instruction") for row in rows}
    return found.pop() if len(found) == 1 and None not in found else None


@dataclass
class Prepared:
    """What training reads, before any model loads: the rows, each as trained (sft: prompt /
    completion texts in the student's template; prm: token ids and labels), and each row's token
    count as TRL tokenizes it."""

    task: str
    rows: list[dict]
    examples: list[dict]
    lengths: list[int]
    tokenizer: object
    verdicts: prm.Verdicts | None = None


def prepare(cfg: TrainConfig, log=print) -> Prepared:
    from transformers import AutoTokenizer

    rows = read_export(cfg.data)
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(cfg.model))
    except OSError as err:
        raise ConfigError(f"model: could not load the tokenizer of {cfg.model} ({str(err).splitlines()[0]})") from None
    task = cfg.task if cfg.task != "auto" else "prm" if prm.is_stepwise(rows[0]) else "sft"
    if task == "prm":
        verdicts = prm.verdicts(tokenizer, cfg.prm_step_tag, cfg.prm_good, cfg.prm_bad, cfg.model)
        examples = prm.examples(rows, tokenizer, verdicts, cfg.data)
        return Prepared(task, rows, examples, [len(e["input_ids"]) for e in examples], tokenizer, verdicts)
    pairs = text_pairs(rows, tokenizer, cfg.data)
    if log and ChatTokenizer.from_tokenizer(tokenizer).drops_reasoning():
        log(
            f"note: {cfg.model}'s chat template drops <think>...</think> from assistant turns it renders; cord train keeps the "
            "reasoning (it renders prompt and completion itself), a trainer given the conversations would not"
        )
    lengths = [len(tokenizer(p["prompt"] + p["completion"]).input_ids) for p in pairs]  # as TRL tokenizes them
    return Prepared(task, rows, pairs, lengths, tokenizer)


def optimizer_steps(cfg: TrainConfig, rows: int, devices: int) -> int:
    """The optimizer steps the trainer will take (transformers' Trainer: batches per epoch over
    the gradient accumulation, rounded up, times the epochs; or max_steps)."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    batches = math.ceil(rows / (cfg.per_device_batch_size * devices))
    accumulation = cfg.batch_size // cfg.per_device_batch_size
    return math.ceil(cfg.epochs * max(math.ceil(batches / accumulation), 1))


def dry_run(cfg: TrainConfig) -> str:
    """What `cord train` would do, printed before any model loads: the first row as trained, with
    the part that carries the loss marked, the token counts, the optimizer steps, and what goes to
    TRL and peft beyond cord's own fields."""
    import torch

    data = prepare(cfg, log=None)
    devices = max(torch.cuda.device_count(), 1)
    steps = optimizer_steps(cfg, len(data.examples), devices)
    over = sum(n > cfg.max_length for n in data.lengths)
    instruction = user_instruction(data.rows)
    lines = [
        f"cord train --dry-run: {cfg.model} on {cfg.data}; nothing is loaded beyond the tokenizer, nothing is written",
        f"rows: {len(data.examples)}; user instruction: {instruction!r}" if instruction is not None else f"rows: {len(data.examples)}",
    ]
    if data.task == "prm":
        lines += prm.dry_run_lines(data.rows, data.examples, data.tokenizer, data.verdicts)
    else:
        lines += sft.dry_run_lines(data.examples, data.tokenizer)
    lines += [
        f"tokens per row: longest {max(data.lengths):,}, mean {sum(data.lengths) / len(data.lengths):,.0f}; "
        f"{over} of {len(data.lengths)} rows exceed max_length {cfg.max_length:,} and would be cut",
        f"optimizer steps: {steps:,} (batch {cfg.batch_size} = {cfg.per_device_batch_size} per device x "
        f"{cfg.batch_size // cfg.per_device_batch_size} accumulated x {devices} device(s), {cfg.epochs:g} epochs"
        f"{f', max_steps {cfg.max_steps}' if cfg.max_steps > 0 else ''})",
        *extras_lines(cfg),
    ]
    return "\n".join(lines)


def save(trainer, cfg: TrainConfig, tokenizer) -> None:
    """The model (or LoRA adapter, or the model with the adapter merged in) and its tokenizer."""
    if cfg.lora is not None and cfg.merge_lora:
        trainer.model.merge_and_unload().save_pretrained(cfg.output_dir)
    else:
        trainer.save_model(cfg.output_dir)
    tokenizer.save_pretrained(cfg.output_dir)


def train(cfg: TrainConfig, log=print) -> dict:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM

    try:
        from trl import SFTTrainer
    except ImportError:
        raise ConfigError("cord train needs TRL: pip install 'cord-distill[train]'") from None

    model_path = resolve_model(cfg.model)
    data = prepare(cfg, log)
    cuda = torch.cuda.is_available()
    args = trainer_arguments(cfg, cuda)
    peft_config = lora_config(cfg.lora) if cfg.lora is not None else None
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=resolve_dtype(cfg, cuda))
    dataset = datasets.Dataset.from_list(data.examples)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=data.tokenizer, peft_config=peft_config)
    result = trainer.train()
    save(trainer, cfg, data.tokenizer)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    info = {
        "task": data.task,
        "model": cfg.model,
        "data": cfg.data,
        "rows": len(data.examples),
        "user_instruction": user_instruction(data.rows),
        "rows_cut_at_max_length": sum(n > cfg.max_length for n in data.lengths),
        "max_row_tokens": max(data.lengths),
        "steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "first_logged_loss": losses[0] if losses else None,
        "last_logged_loss": losses[-1] if losses else None,
        "lora": None if cfg.lora is None else ("merged" if cfg.merge_lora else "adapter"),
        "config": to_dict(cfg),
    }
    if data.task == "prm":  # what the search must be told to read this PRM
        v = data.verdicts
        info["search"] = {"selection": "prm", "prm_step_tag": v.tag, "prm_good": v.good, "prm_bad": v.bad}
    Path(cfg.output_dir, "cord_train.json").write_text(json.dumps(info, indent=2) + "\n")
    if log:
        what = "a PRM" if data.task == "prm" else "a student"
        loss = f"loss {result.training_loss:.4f}"
        log(f"trained {what} from {cfg.model} on {len(data.examples)} rows for {info['steps']} steps ({loss}) -> {cfg.output_dir}")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(
        prog="cord train",
        description="Fine-tune a student (messages rows) or a process reward model (stepwise rows) on a `cord export` (TRL SFTTrainer).",
    )
    parser.add_argument("--config", "-c", help="a student recipe YAML (e.g. recipes/student/tiny.yaml)")
    parser.add_argument("--data", help="the export; sets data")
    parser.add_argument("--model", help="the student: hub id, folder, or tiny:<name>; sets model")
    parser.add_argument("--out", help="where the trained model goes; sets output_dir")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the task, the first row as trained (loss part marked), token counts, optimizer steps, the SFTConfig and LoRA extras",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        help="dotted overrides, e.g. epochs=3 learning_rate=1e-5, any trl.SFTConfig field (weight_decay=0.1), lora.r=8",
    )
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
