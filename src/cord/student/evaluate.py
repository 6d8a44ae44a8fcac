"""`cord eval-student`: Pass@1 averaged over n samples per problem (the paper's protocol), graded
with math-verify.

    cord eval-student --model M --data aime24|aime25|math500|gsm8k|tiny:N|PATH --n 16 --temperature 0.6 --out DIR

Every problem is asked n times with its own seed; a sample is right when the answer after its
last `</think>` is equivalent to the reference, the rule records are graded by
(`scoring.grade.graded_part`): a sample that never closes its reasoning is wrong, and the summary
counts them (`unclosed`). `--no-think` grades the whole text instead, for a student trained to
answer without a think block. Pass@1 is
the mean over problems of the share of right samples; the spread is the standard deviation of
the n single-sample accuracies, and the 95 % interval is over problems. OUT/samples.jsonl holds
one line per problem with every sample (written as each batch finishes, so a rerun resumes);
OUT/summary.json the figures. Generation goes through any engine (`transformers`, `vllm`, or a
server with `--engine openai --base-url URL`).

The user turn is the question, a blank line and the instruction the student was trained with: the
one `cord train` recorded in the model's cord_train.json (from its export), else
`prompts.REASONING_INSTRUCTION`, which is also `cord export`'s default. `--instruction` sets another
("" for the question alone); `--dry-run` prints the first problem's rendered prompt and writes nothing.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from pathlib import Path

import yaml

from ..command import command_parser
from ..config import DataConfig, ModelConfig, Section, Text, from_dict, to_dict
from ..config.run import ANSWER_FORMATS
from ..data.evalsets import load_eval_set
from ..engines import GenerateRequest, check_engine, check_findable, load_engine, resolve_model
from ..engines.base import request_seed
from ..engines.chat import ChatTokenizer
from ..errors import ConfigError
from ..prompts import REASONING_INSTRUCTION, user_turn
from ..records import atomic_write
from ..registry import ENGINES
from ..scoring.grade import extract_answer, graded_part, is_correct

DATA_FIELDS = ("question_field", "answer_field", "answer_format", "answer_regex", "id_field", "subset", "split")
SAMPLES = "samples.jsonl"
EVAL_CONFIG = "eval_config.yaml"
SUMMARY = "summary.json"


class EvalConfig(Section):
    model: Text = ""
    data: Text = ""
    output_dir: Text = "runs/eval-student"
    engine: Text = "transformers"
    base_url: Text | None = None  # server engines
    n: int = 16
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 32768
    instruction: Text | None = None  # after the question in the user turn; "" for none; None: what the student was trained with
    think: bool = True  # the student reasons in a think block; False: it answers without one (the whole text is graded)
    system_prompt: Text | None = None
    seed: int = 0
    limit: int | None = None
    # How a problem file or dataset maps to problems (generate's data.* keys of the same names).
    question_field: Text | None = None
    answer_field: Text | None = None
    answer_format: Text | None = None
    answer_regex: Text | None = None
    id_field: Text | None = None
    subset: Text | None = None
    split: Text | None = None
    problems_per_batch: int = 8  # problems whose n samples go to the engine in one call
    dtype: Text = "auto"
    device: Text = "auto"


def graded_sample(text: str, gold: str, think: bool = True) -> dict:
    """What grading finds in one sample: the answer it states and whether it is right, and whether
    its reasoning never closed (then it is wrong; `think` False: the whole text is the answer)."""
    answer = graded_part(text) if think else text
    if answer is None:
        return {"predicted": None, "correct": False, "unclosed": True}
    return {"predicted": extract_answer(answer), "correct": is_correct(gold, answer), "unclosed": False}


def trained_instruction(model: str) -> str | None:
    """The user instruction `cord train` recorded beside a model (None when it recorded none)."""
    path = Path(resolve_model(model)) / "cord_train.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("user_instruction")
    except (OSError, ValueError):
        return None


def instruction_of(cfg: EvalConfig) -> tuple[str, str]:
    """(instruction, where it came from)."""
    if cfg.instruction is not None:
        return cfg.instruction, "--instruction"
    trained = trained_instruction(cfg.model)
    if trained is not None:
        return trained, f"{cfg.model}/cord_train.json"
    return REASONING_INSTRUCTION, "the default (cord export's default too)"


def rendered_prompt(cfg: EvalConfig, question: str) -> str:
    """The first problem's prompt as the student will see it (for an engine whose server renders
    the prompt, e.g. openai-chat, the template is not known here: the user turn then)."""
    turn = user_turn(question, cfg.instruction)
    if ENGINES.load(cfg.engine).local_tokenizer:
        return ChatTokenizer(resolve_model(cfg.model)).chat_prompt(turn, cfg.system_prompt)
    return f"(the server applies {cfg.model}'s chat template to) user: {turn}"


def check(cfg: EvalConfig) -> None:
    for key in ("model", "data"):
        if not getattr(cfg, key):
            raise ConfigError(f"--{key}: required")
    for key in ("n", "max_tokens", "problems_per_batch"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"--{key.replace('_', '-')}: must be >= 1, got {getattr(cfg, key)}")
    if cfg.temperature < 0 or not 0 < cfg.top_p <= 1:
        raise ConfigError("--temperature must be >= 0 and --top-p in (0, 1]")


def summarize(lines: list[dict], n: int) -> dict:
    per_problem = [sum(s["correct"] for s in line["samples"]) / len(line["samples"]) for line in lines]
    p = len(per_problem)
    mean = sum(per_problem) / p
    by_sample = [sum(line["samples"][k]["correct"] for line in lines) / p for k in range(n)]
    spread = math.sqrt(sum((a - mean) ** 2 for a in by_sample) / (n - 1)) if n > 1 else 0.0
    sd = math.sqrt(sum((x - mean) ** 2 for x in per_problem) / (p - 1)) if p > 1 else 0.0
    samples = [s for line in lines for s in line["samples"]]
    return {
        "problems": p,
        "samples_per_problem": n,
        "pass@1": mean,
        "pass@1_std_over_samples": spread,
        "pass@1_ci95": [max(0.0, mean - 1.96 * sd / math.sqrt(p)), min(1.0, mean + 1.96 * sd / math.sqrt(p))],
        f"pass@{n}": sum(x > 0 for x in per_problem) / p,
        "mean_tokens": sum(s["tokens"] for s in samples) / len(samples),
        "truncated_share": sum(s["finish"] == "length" for s in samples) / len(samples),
        "unclosed": sum(s.get("unclosed", False) for s in samples),  # never closed </think>: graded wrong
    }


def evaluate(cfg: EvalConfig, overwrite: bool = False, log=print, dry_run: bool = False) -> dict:
    check(cfg)
    out = Path(cfg.output_dir)
    fields = {key: getattr(cfg, key) for key in DATA_FIELDS if getattr(cfg, key) is not None}
    try:
        problems = load_eval_set(cfg.data, cfg.limit, fields)
    except ConfigError as err:  # name this command's options, not generate's data.* keys
        raise ConfigError(re.sub(r"\(data\.(\w+)\)", lambda m: f"(--{m[1].replace('_', '-')})", str(err))) from None
    # Everything is checked before anything is written: a wrong engine or model leaves no folder.
    fields = ("model", "engine", "base_url", "dtype", "device")
    student = from_dict(ModelConfig, {"name": "student", **{key: getattr(cfg, key) for key in fields}}, "student")
    check_engine(student, "--engine")
    check_findable(student.model, "--model")
    resolve_model(student.model)
    instruction, source = instruction_of(cfg)
    cfg = cfg.model_copy(update={"instruction": instruction})
    if log:
        turn = f'the question, a blank line, then "{instruction}"' if instruction else "the question alone"
        log(f"user turn: {turn} ({source})")
    if dry_run:
        return {"problem": problems[0].id, "prompt": rendered_prompt(cfg, problems[0].question)}
    done: dict[str, dict] = {}
    settings = to_dict(cfg) | {"limit": None, "output_dir": None}
    if (out / EVAL_CONFIG).is_file() and not overwrite:
        # a key an older eval_config.yaml lacks was unset (None) then; `think` was not a setting: the
        # samples were think-block samples, graded again below
        older = dict.fromkeys(settings) | {"think": True}
        if older | (yaml.safe_load((out / EVAL_CONFIG).read_text()) or {}) != settings:
            raise ConfigError(f"{out}: holds an evaluation with other settings (use --overwrite to replace it)")
        raw = (out / SAMPLES).read_bytes() if (out / SAMPLES).is_file() else b""
        for line in raw.split(b"\n")[:-1]:  # a torn last line is dropped and redone
            row = json.loads(line)
            # graded again: a directory from before the closing-tag rule resumes under it
            row["samples"] = [s | graded_sample(s["text"], row["answer"], cfg.think) for s in row["samples"]]
            done[row["id"]] = row
        with (out / SAMPLES).open("r+b" if raw else "wb") as handle:
            handle.truncate(raw.rfind(b"\n") + 1)
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out}: exists and is not an eval-student directory (use --overwrite to replace it)")
    else:
        (out / SAMPLES).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / EVAL_CONFIG, yaml.safe_dump(settings, sort_keys=False))
    todo = [p for p in problems if p.id not in done]
    engine = None
    start = time.perf_counter()
    with (out / SAMPLES).open("a", encoding="utf-8") as handle:
        for first in range(0, len(todo), cfg.problems_per_batch):
            if engine is None:
                engine = load_engine(student)
            batch = todo[first : first + cfg.problems_per_batch]
            requests = [
                GenerateRequest(
                    prompt=engine.chat_prompt(user_turn(p.question, cfg.instruction), cfg.system_prompt),
                    max_tokens=cfg.max_tokens,
                    temperature=cfg.temperature,
                    top_p=cfg.top_p,
                    seed=request_seed(cfg.seed, p.id, k),
                )
                for p in batch
                for k in range(cfg.n)
            ]
            completions = engine.generate(requests)
            for i, problem in enumerate(batch):
                samples = []
                for c in completions[i * cfg.n : (i + 1) * cfg.n]:
                    graded = graded_sample(c.text, problem.answer, cfg.think)
                    samples.append({"text": c.text, **graded, "tokens": c.tokens, "finish": c.finish})
                row = {"id": problem.id, "question": problem.question, "answer": problem.answer, "samples": samples}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                done[problem.id] = row
            handle.flush()
            os.fsync(handle.fileno())
            if log:
                log(f"{len(done)}/{len(problems)} problems, {time.perf_counter() - start:.0f}s")
    if engine is not None:
        engine.close()
    lines = [done[p.id] for p in problems]
    summary = {"model": cfg.model, "data": cfg.data, "user_instruction": cfg.instruction, **summarize(lines, cfg.n)}
    summary["wall_seconds"] = time.perf_counter() - start
    atomic_write(out / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(prog="cord eval-student", description="Pass@1 averaged over n samples (math-verify grading).")
    parser.add_argument("--model", required=True, help="hub id, folder, tiny:<name>, or a served model name")
    parser.add_argument(
        "--data", required=True, help="aime24, aime25, math500, gsm8k, tiny:N[:SEED], a problem file, a datasets folder or a hub dataset"
    )
    parser.add_argument("--question-field", help="the field holding the question (default problem)")
    parser.add_argument("--answer-field", help="the field holding the reference answer (default answer)")
    parser.add_argument("--answer-format", choices=ANSWER_FORMATS, help=DataConfig.model_fields["answer_format"].description)
    parser.add_argument("--answer-regex", help="with --answer-format regex: a regex whose first group is the answer")
    parser.add_argument("--id-field", help="the field holding a problem's id (default id; the row number when missing)")
    parser.add_argument("--subset", help="a hub dataset's configuration name")
    parser.add_argument("--split", help="a hub dataset's split (default train)")
    parser.add_argument("--out", help="output directory (default runs/eval-student)")
    parser.add_argument("--engine", default="transformers", help="transformers, vllm, openai, sglang")
    parser.add_argument("--base-url", help="server engines: the server's URL")
    parser.add_argument("--n", type=int, default=16, help="samples per problem (default 16)")
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--max-tokens", type=int, default=32768)
    parser.add_argument(
        "--instruction", help='after the question in the user turn ("" for none; default: what the student was trained with)'
    )
    parser.add_argument(
        "--no-think",
        dest="think",
        action="store_false",
        default=None,
        help="grade the whole text, for a student trained to answer without a think block "
        "(default: the text after </think>; a sample that never closes it is wrong)",
    )
    parser.add_argument("--system-prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="first N problems")
    parser.add_argument("--problems-per-batch", type=int, default=8)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="print the first problem's rendered prompt; write nothing")
    args = parser.parse_args(argv)
    values = {k: v for k, v in vars(args).items() if k not in ("out", "overwrite", "dry_run") and v is not None}
    cfg = from_dict(EvalConfig, values | ({"output_dir": args.out} if args.out else {}))
    summary = evaluate(cfg, overwrite=args.overwrite, log=lambda line: print(line, file=sys.stderr), dry_run=args.dry_run)
    if args.dry_run:
        print(f"first problem ({summary['problem']}), as the student sees it:\n{summary['prompt']}")
        return 0
    print(json.dumps(summary, indent=2))
    return 0
